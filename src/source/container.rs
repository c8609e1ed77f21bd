//! ComfyUI in a Docker container: `docker inspect` tells its bind mounts, command line and
//! published ports; ComfyUI's folders are its base directory's subfolders mapped through the
//! mounts to host paths (the guide's `./basedir:/basedir` plus `./models:/basedir/models`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::Deserialize;

use super::args::ComfyArgs;
use super::extra_paths::{self, View};
use super::{Layout, SourceKind};
use crate::host::Host;

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

    /// `Path` and `Args`: the command line ComfyUI runs with.
    fn cmdline(&self) -> Vec<String> {
        std::iter::once(self.path.clone())
            .chain(self.args().iter().cloned())
            .collect()
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
    #[serde(default)]
    network_mode: String,
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

/// The host port of ComfyUI's port (its `--port`, else 8188): the one bound to it, or the
/// port itself on the host's network.
fn published(c: &Inspect) -> Option<u16> {
    let inner = ComfyArgs::parse(&c.cmdline()).listen_port();
    if c.host_config.network_mode == "host" {
        return Some(inner);
    }
    let bindings = (c.host_config.port_bindings.as_ref())?
        .get(&format!("{inner}/tcp"))?
        .as_ref()?;
    bindings.iter().find_map(|b| b.host_port.parse().ok())
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
    let flags = ComfyArgs::parse(&c.cmdline());
    // ComfyUI's base: the command line's, else the parent of the `models` mount, else the
    // image's working directory.
    let base_in = (flags.base_directory.as_ref())
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
        extra_models: extra_models(host, c, &flags)?,
    }))
}

/// The extra model folders the container's ComfyUI reads, where configs and folders are bind
/// mounts (a config baked into the image is not on the host: left out).
fn extra_models(
    host: &dyn Host,
    c: &Inspect,
    flags: &ComfyArgs,
) -> Result<Vec<extra_paths::ExtraFolder>> {
    let cwd = PathBuf::from(match c.config.working_dir.as_str() {
        "" => "/",
        dir => dir,
    });
    let main = cwd.join(flags.main.as_deref().unwrap_or("main.py"));
    let configs: Vec<PathBuf> = (main.parent())
        .map(|d| d.join(extra_paths::DEFAULT_CONFIG))
        .into_iter()
        .chain(flags.extra_model_paths.iter().map(PathBuf::from))
        .collect();
    let view = View {
        cwd: &cwd,
        home: None,
        to_host: &|p: &Path| to_host(c.mounts(), p),
    };
    extra_paths::read(host, &configs, &view)
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
    fn reads_a_real_inspect_document() {
        let doc = r#"[{"Id":"abc","Name":"/comfyui-server","Path":"python","Args":["main.py","--base-directory","/basedir"],
          "State":{"Running":false},"Config":{"Image":"x","WorkingDir":"/app","Labels":null},
          "HostConfig":{"PortBindings":{"8188/tcp":[{"HostIp":"","HostPort":"8188"}]}},
          "Mounts":[{"Type":"bind","Source":"/h/basedir","Destination":"/basedir","Mode":"","RW":true}]}]"#;
        let all: Vec<Inspect> = serde_json::from_str(doc).unwrap();
        assert!(looks_like_comfyui(&all[0]));
        assert_eq!(published(&all[0]), Some(8188));
    }

    #[test]
    fn the_port_comes_from_comfyuis_own_port_flag() {
        let doc = |args: &str, network: &str| {
            format!(
                r#"[{{"Id":"abc","Name":"/c","Path":"python","Args":{args},"State":{{"Running":true}},
                "Config":{{"Image":"x","WorkingDir":"/app"}},
                "HostConfig":{{"NetworkMode":"{network}","PortBindings":{{"8188/tcp":[{{"HostPort":"8188"}}],"8190/tcp":[{{"HostPort":"9000"}}]}}}}}}]"#
            )
        };
        let port = |args: &str, network: &str| {
            let all: Vec<Inspect> = serde_json::from_str(&doc(args, network)).unwrap();
            published(&all[0])
        };
        assert_eq!(port(r#"["main.py","--port","8190"]"#, "bridge"), Some(9000));
        assert_eq!(port(r#"["main.py","--port=8190"]"#, "bridge"), Some(9000));
        assert_eq!(port(r#"["main.py"]"#, "bridge"), Some(8188));
        assert_eq!(port(r#"["main.py","--port","7000"]"#, "host"), Some(7000));
        assert_eq!(port(r#"["main.py","--port","7000"]"#, "bridge"), None);
    }
}
