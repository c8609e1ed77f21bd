//! The inventory: the boxes one controller drives, by name, with groups — Ansible's model
//! (`hosts:` and `groups:`, `--limit NAME|GROUP`), kept to what `doctor`, `setup`, `status` and
//! `pool` need. No scheduler: a host's `priority` is only written into the device pool.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::ui::{HintExt, UsageError};

/// Where the inventory is read from when `--limit` or `pool` is given without `--inventory`.
pub const DEFAULT_PATH: &str = ".config/lifeos-spark/inventory.yaml";

/// What a host is for in the pool: the primary takes work first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    #[default]
    Primary,
    Secondary,
}

/// One box: how to reach it and how it is deployed.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct HostEntry {
    /// `local`, `[user@]host[:port]` or a ~/.ssh/config alias.
    pub ssh: String,
    pub playbook: Option<String>,
    pub root: Option<String>,
    /// ComfyUI's URL (default: the SSH target's address and the default port).
    pub url: Option<String>,
    #[serde(default)]
    pub role: Role,
    /// Lower is preferred, as in the seed's `comfyui_devices`.
    pub priority: Option<u32>,
    pub capabilities: Option<Vec<String>>,
    /// Images per batch the router may send this host.
    pub batch_size: Option<u32>,
    /// Measured seconds per image (`bench/`), when known.
    pub seconds_per_image: Option<f64>,
}

impl HostEntry {
    /// `priority`, else 1 for a primary and 2 for a secondary (the seed's numbers).
    pub fn priority(&self) -> u32 {
        self.priority.unwrap_or(match self.role {
            Role::Primary => 1,
            Role::Secondary => 2,
        })
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct InventoryFile {
    hosts: BTreeMap<String, HostEntry>,
    #[serde(default)]
    groups: BTreeMap<String, Vec<String>>,
}

/// The earlier `status --inventory` form: a list of `{name, url}`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct LegacyEntry {
    name: String,
    url: String,
}

#[derive(Debug, Clone)]
pub struct Inventory {
    pub path: PathBuf,
    pub hosts: BTreeMap<String, HostEntry>,
    pub groups: BTreeMap<String, Vec<String>>,
}

/// A host picked by `--limit`, with its name.
#[derive(Debug, Clone)]
pub struct Selected {
    pub name: String,
    pub entry: HostEntry,
}

impl Inventory {
    pub fn load(path: &Path) -> Result<Inventory> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read inventory `{}`", path.display()))?;
        Self::parse(&text, path)
    }

    pub fn parse(text: &str, path: &Path) -> Result<Inventory> {
        let source = path.display().to_string();
        let value: serde_yaml::Value = serde_yaml::from_str(text)
            .map_err(|e| anyhow::anyhow!(crate::yaml::located(&e, &source)))?;
        let file = if value.is_sequence() {
            legacy(text, &source)?
        } else {
            serde_yaml::from_str::<InventoryFile>(text)
                .map_err(|e| anyhow::anyhow!(crate::yaml::located(&e, &source)))
                .hint("an inventory is `hosts:` (name -> {ssh, url, playbook, root, role, priority, capabilities}) and `groups:` (name -> [host, ...])")?
        };
        let inv = Inventory {
            path: path.to_path_buf(),
            hosts: file.hosts,
            groups: file.groups,
        };
        inv.validate(text, &source)?;
        Ok(inv)
    }

    fn validate(&self, text: &str, source: &str) -> Result<()> {
        for (name, entry) in &self.hosts {
            check_name(name, text, source, "host")?;
            if entry.ssh.trim().is_empty() {
                bail!("{}: host `{name}`: `ssh` is empty (give `local`, `user@host:port` or a ~/.ssh/config alias)", at(text, source, name));
            }
            if entry.batch_size == Some(0) {
                bail!(
                    "{}: host `{name}`: `batch_size` must be at least 1",
                    at(text, source, name)
                );
            }
        }
        for (group, members) in &self.groups {
            check_name(group, text, source, "group")?;
            if self.hosts.contains_key(group) {
                bail!(
                    "{}: group `{group}` has the name of a host; `--limit {group}` would be ambiguous",
                    at(text, source, group)
                );
            }
            for m in members {
                if !self.hosts.contains_key(m) {
                    bail!(
                        "{}: group `{group}` names `{m}`, which is not under `hosts:`",
                        at(text, source, m)
                    );
                }
            }
        }
        Ok(())
    }

    /// The hosts `--limit` names (hosts or groups, comma-separated; `all` or none: every
    /// host), each once, in name order.
    pub fn select(&self, limit: &[String]) -> Result<Vec<Selected>> {
        let mut names = std::collections::BTreeSet::new();
        for item in limit.iter().map(|s| s.trim()).filter(|s| !s.is_empty()) {
            if item == "all" {
                names.extend(self.hosts.keys().cloned());
            } else if self.hosts.contains_key(item) {
                names.insert(item.to_string());
            } else if let Some(members) = self.groups.get(item) {
                names.extend(members.iter().cloned());
            } else {
                return Err(anyhow::Error::new(UsageError(format!(
                    "`--limit {item}`: no host or group of that name in `{}`",
                    self.path.display()
                ))))
                .hint(format!(
                    "hosts: {}; groups: {}",
                    join(self.hosts.keys()),
                    join(self.groups.keys())
                ));
            }
        }
        if limit.iter().all(|s| s.trim().is_empty()) {
            names.extend(self.hosts.keys().cloned());
        }
        Ok(names
            .into_iter()
            .map(|name| Selected {
                entry: self.hosts[&name].clone(),
                name,
            })
            .collect())
    }
}

/// `--inventory`, else the default file when `required` or when it exists; `None`: no
/// inventory mode.
pub fn resolve(explicit: Option<&Path>, required: bool) -> Result<Option<PathBuf>> {
    if let Some(p) = explicit {
        return Ok(Some(p.to_path_buf()));
    }
    let default = dirs_home().map(|h| h.join(DEFAULT_PATH));
    match default {
        Some(p) if p.exists() => Ok(Some(p)),
        _ if required => Err(anyhow::Error::new(UsageError(
            "no inventory: give `--inventory PATH`".into(),
        )))
        .hint(format!(
            "or write one at ~/{DEFAULT_PATH} (see the README's inventory section)"
        )),
        _ => Ok(None),
    }
}

fn dirs_home() -> Option<PathBuf> {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
}

fn legacy(text: &str, source: &str) -> Result<InventoryFile> {
    let entries: Vec<LegacyEntry> = serde_yaml::from_str(text)
        .map_err(|e| anyhow::anyhow!(crate::yaml::located(&e, source)))?;
    let mut hosts = BTreeMap::new();
    for e in entries {
        let entry = HostEntry {
            ssh: "local".into(),
            playbook: None,
            root: None,
            url: Some(e.url),
            role: Role::Primary,
            priority: None,
            capabilities: None,
            batch_size: None,
            seconds_per_image: None,
        };
        if hosts.insert(e.name.clone(), entry).is_some() {
            bail!(
                "{}: host `{}` is listed twice",
                at(text, source, &e.name),
                e.name
            );
        }
    }
    Ok(InventoryFile {
        hosts,
        groups: BTreeMap::new(),
    })
}

fn check_name(name: &str, text: &str, source: &str, what: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !ok || name == "all" {
        bail!(
            "{}: {what} name `{name}`: use letters, digits, `-`, `_` and `.` (and not `all`)",
            at(text, source, name)
        );
    }
    Ok(())
}

/// `file:line` of the first line mentioning `needle` (serde_yaml has no spans for map keys
/// once parsed, and a name is short enough to find again).
fn at(text: &str, source: &str, needle: &str) -> String {
    match text.lines().position(|l| l.contains(needle)) {
        Some(i) => format!("{source}:{}", i + 1),
        None => source.to_string(),
    }
}

fn join<'a>(names: impl Iterator<Item = &'a String>) -> String {
    let v: Vec<&str> = names.map(String::as_str).collect();
    if v.is_empty() {
        "(none)".into()
    } else {
        v.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TWO: &str = "hosts:\n  rtx:\n    ssh: me@192.168.1.100:22\n    url: http://192.168.1.100:8188\n    role: secondary\n    priority: 2\n  spark:\n    ssh: spark\n    priority: 1\ngroups:\n  sparks: [spark]\n";

    fn inv(text: &str) -> Result<Inventory> {
        Inventory::parse(text, Path::new("inv.yaml"))
    }

    #[test]
    fn limit_by_name_group_and_all() {
        let i = inv(TWO).unwrap();
        let names = |l: &[&str]| -> Vec<String> {
            let l: Vec<String> = l.iter().map(|s| s.to_string()).collect();
            i.select(&l).unwrap().into_iter().map(|s| s.name).collect()
        };
        assert_eq!(names(&[]), ["rtx", "spark"]);
        assert_eq!(names(&["sparks"]), ["spark"]);
        assert_eq!(names(&["rtx", "sparks", "spark"]), ["rtx", "spark"]);
        assert_eq!(names(&["all"]), ["rtx", "spark"]);
        let err = i.select(&["nope".into()]).unwrap_err();
        assert!(format!("{err:#}").contains("nope"), "{err:#}");
        assert_eq!(i.hosts["rtx"].role, Role::Secondary);
    }

    #[test]
    fn unknown_group_member_names_its_line() {
        let text = format!("{TWO}  rtxs: [rtx, rtx2]\n");
        let err = format!("{:#}", inv(&text).unwrap_err());
        assert!(
            err.starts_with("inv.yaml:12: group `rtxs` names `rtx2`"),
            "{err}"
        );
    }

    #[test]
    fn unknown_field_is_located() {
        let err = crate::ui::one_line(&inv("hosts:\n  a:\n    ssh: a\n    prio: 1\n").unwrap_err());
        assert!(err.starts_with("inv.yaml:4:"), "{err}");
        assert!(err.contains("prio"), "{err}");
    }

    #[test]
    fn legacy_list_still_reads() {
        let i = inv("- name: spark\n  url: http://10.0.0.2:8188\n").unwrap();
        assert_eq!(
            i.hosts["spark"].url.as_deref(),
            Some("http://10.0.0.2:8188")
        );
    }

    #[test]
    fn bad_input_never_panics() {
        for text in [
            "",
            "hosts: 3",
            "hosts:\n  a: {}\n",
            "groups: {g: [x]}\nhosts: {}\n",
            "[1, 2]",
            "hosts:\n  'a b':\n    ssh: x\n",
        ] {
            assert!(inv(text).is_err(), "{text}");
        }
    }
}
