//! ComfyUI in a Docker container: `docker inspect` tells its bind mounts, command line and
//! published ports; ComfyUI's folders are its base directory's subfolders mapped through the
//! mounts to host paths (the guide's `./basedir:/basedir` plus `./models:/basedir/models`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::Deserialize;

use super::{Layout, SourceKind};
use crate::host::Host;

/// ComfyUI's port inside a container.
const PORT: &str = "8188/tcp";

/// The part of `docker inspect`'s document discovery reads.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Inspect {
    id: String,
    name: String,
    #[serde(default)]
    path: String,
    #[serde(default)]
    args: Option<Vec<String>>,
    state: State,
    config: Config,
    host_config: HostConfig,
    #[serde(default)]
    mounts: Option<Vec<Mount>>,
}

impl Inspect {
    fn args(&self) -> &[String] {
        self.args.as_deref().unwrap_or_default()
    }

    fn mounts(&self) -> &[Mount] {
        self.mounts.as_deref().unwrap_or_default()
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct State {
    running: bool,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Config {
    #[serde(default)]
    image: String,
    #[serde(default)]
    working_dir: String,
    #[serde(default)]
    labels: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct HostConfig {
    #[serde(default)]
    port_bindings: Option<BTreeMap<String, Option<Vec<Binding>>>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Binding {
    #[serde(default)]
    host_port: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Mount {
    #[serde(rename = "Type", default)]
    kind: String,
    #[serde(default)]
    source: String,
    destination: String,
}

/// Containers that look like ComfyUI (named like it, running `main.py`, or publishing 8188),
/// or only `name` when given. No Docker on the host: none.
pub fn find(host: &dyn Host, name: Option<&str>) -> Result<Vec<Layout>> {
    let Ok(docker) = crate::service::ready_docker(host) else {
        return Ok(Vec::new());
    };
    let ids = match name {
        Some(n) => vec![n.to_string()],
        None => host
            .run_ok(&docker.command(&["ps", "-aq", "--no-trunc"]))?
            .stdout_text()
            .split_whitespace()
            .map(String::from)
            .collect(),
    };
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let args: Vec<&str> = ["inspect"]
        .into_iter()
        .chain(ids.iter().map(String::as_str))
        .collect();
    let out = host.run(&docker.command(&args))?;
    if !out.success() && name.is_some() {
        anyhow::bail!(
            "no container `{}` on {}: {}",
            name.unwrap_or_default(),
            host.name(),
            out.stderr_text().trim()
        );
    }
    // A container removed between `ps` and `inspect` is left out of an otherwise good list.
    let all: Vec<Inspect> = serde_json::from_slice(&out.stdout)
        .with_context(|| format!("`docker inspect` on {} printed no JSON list", host.name()))?;
    let mut layouts = Vec::new();
    for c in all
        .iter()
        .filter(|c| name.is_some() || looks_like_comfyui(c))
    {
        if let Some(l) = layout(host, c)? {
            layouts.push(l);
        }
    }
    Ok(layouts)
}

fn looks_like_comfyui(c: &Inspect) -> bool {
    let text = format!("{} {} {}", c.name, c.config.image, c.path).to_ascii_lowercase();
    text.contains("comfyui")
        || c.args().iter().any(|a| a.ends_with("main.py"))
        || published(c).is_some()
}

/// The host port bound to ComfyUI's 8188.
fn published(c: &Inspect) -> Option<u16> {
    let bindings = c.host_config.port_bindings.as_ref()?.get(PORT)?.as_ref()?;
    bindings.iter().find_map(|b| b.host_port.parse().ok())
}

/// `--base-directory DIR` (or `=DIR`) on the command line.
fn base_directory(args: &[String]) -> Option<String> {
    args.iter().enumerate().find_map(|(i, a)| {
        if a == "--base-directory" {
            args.get(i + 1).cloned()
        } else {
            a.strip_prefix("--base-directory=").map(String::from)
        }
    })
}

/// A container path as a host path, through the bind mount that covers it most closely.
fn to_host(mounts: &[Mount], inside: &Path) -> Option<PathBuf> {
    mounts
        .iter()
        .filter(|m| m.kind == "bind" && inside.starts_with(&m.destination))
        .max_by_key(|m| m.destination.len())
        .map(|m| {
            // `join("")` would add a trailing slash.
            match inside.strip_prefix(&m.destination) {
                Ok(rest) if !rest.as_os_str().is_empty() => Path::new(&m.source).join(rest),
                _ => PathBuf::from(&m.source),
            }
        })
}

fn layout(host: &dyn Host, c: &Inspect) -> Result<Option<Layout>> {
    let cmdline: Vec<String> = std::iter::once(c.path.clone())
        .chain(c.args().iter().cloned())
        .collect();
    // ComfyUI's base: the command line's, else the parent of the `models` mount, else the
    // image's working directory.
    let base_in = base_directory(&cmdline)
        .map(PathBuf::from)
        .or_else(|| {
            c.mounts()
                .iter()
                .find(|m| m.destination.ends_with("/models"))
                .and_then(|m| Path::new(&m.destination).parent().map(Path::to_path_buf))
        })
        .unwrap_or_else(|| PathBuf::from(&c.config.working_dir));
    let existing = |p: Option<PathBuf>| -> Result<Option<PathBuf>> {
        Ok(match p {
            Some(p) if host.stat(&p)?.is_some_and(|s| s.is_dir) => Some(p),
            _ => None,
        })
    };
    let folder = |name: &str| existing(to_host(c.mounts(), &base_in.join(name)));
    let models = folder("models")?;
    let compose_dir = c
        .config
        .labels
        .as_ref()
        .and_then(|l| l.get("com.docker.compose.project.working_dir"))
        .map(PathBuf::from);
    let workflows = match c
        .mounts()
        .iter()
        .find(|m| m.kind == "bind" && m.destination.ends_with("/workflows"))
    {
        Some(m) if !Path::new(&m.destination).starts_with(&base_in) => {
            existing(Some(PathBuf::from(&m.source)))?
        }
        _ => existing(compose_dir.as_ref().map(|d| d.join("workflows")))?,
    };
    let Some(base) = to_host(c.mounts(), &base_in).or(compose_dir).or_else(|| {
        models
            .as_ref()
            .and_then(|m| m.parent().map(Path::to_path_buf))
    }) else {
        // Nothing of ComfyUI's is on the host: a container with no bind mounts holds no
        // user data that `migrate` could carry.
        return Ok(None);
    };
    Ok(Some(Layout {
        kind: SourceKind::Container {
            name: c.name.trim_start_matches('/').to_string(),
            id: c.id.chars().take(12).collect(),
            running: c.state.running,
        },
        base,
        models,
        custom_nodes: folder("custom_nodes")?,
        user: folder("user")?,
        input: folder("input")?,
        output: folder("output")?,
        workflows,
        port: published(c),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mount(source: &str, destination: &str) -> Mount {
        Mount {
            kind: "bind".into(),
            source: source.into(),
            destination: destination.into(),
        }
    }

    #[test]
    fn the_closest_mount_wins() {
        let mounts = [
            mount("/home/u/comfyui/basedir", "/basedir"),
            mount("/home/u/comfyui/models", "/basedir/models"),
        ];
        assert_eq!(
            to_host(&mounts, Path::new("/basedir/models")),
            Some(PathBuf::from("/home/u/comfyui/models"))
        );
        assert_eq!(
            to_host(&mounts, Path::new("/basedir/user")),
            Some(PathBuf::from("/home/u/comfyui/basedir/user"))
        );
        assert_eq!(to_host(&mounts, Path::new("/opt/x")), None);
    }

    #[test]
    fn base_directory_in_either_spelling() {
        let args = |s: &str| s.split(' ').map(String::from).collect::<Vec<_>>();
        assert_eq!(
            base_directory(&args("python main.py --listen --base-directory /basedir")),
            Some("/basedir".into())
        );
        assert_eq!(
            base_directory(&args("python main.py --base-directory=/b")),
            Some("/b".into())
        );
        assert_eq!(base_directory(&args("python main.py")), None);
    }

    #[test]
    fn reads_a_real_inspect_document() {
        let doc = r#"[{"Id":"abc","Name":"/comfyui-server","Path":"python","Args":["main.py","--base-directory","/basedir"],
          "State":{"Running":false},"Config":{"Image":"x","WorkingDir":"/app","Labels":null},
          "HostConfig":{"PortBindings":{"8188/tcp":[{"HostIp":"","HostPort":"8188"}]}},
          "Mounts":[{"Type":"bind","Source":"/h/basedir","Destination":"/basedir","Mode":"","RW":true}]}]"#;
        let all: Vec<Inspect> = serde_json::from_str(doc).unwrap();
        assert!(looks_like_comfyui(&all[0]));
        assert_eq!(published(&all[0]), Some(8188));
    }
}
