//! ComfyUI's extra model folders: `extra_model_paths.yaml` beside `main.py` and every file
//! named by `--extra-model-paths-config`, read the way ComfyUI's `utils/extra_config.py` reads
//! them: a mapping of sections (`a1111:`, `comfyui:`, ...), each with an optional `base_path`
//! (`~` expanded), an optional `is_default`, and per model kind (`checkpoints`, `loras`, ...)
//! one path or several, one per line. A path is joined to `base_path` when there is one, else
//! taken as it is when absolute, else relative to the config file's folder.

use std::path::{Component, Path, PathBuf};

use anyhow::{anyhow, Context, Result};
use serde::Serialize;
use serde_yaml::Value;

use crate::host::Host;
use crate::ui::HintExt;

/// ComfyUI's default config, read when it sits beside `main.py`.
pub const DEFAULT_CONFIG: &str = "extra_model_paths.yaml";

/// One extra folder ComfyUI searches for one kind of model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExtraFolder {
    /// The model kind (`loras`, `checkpoints`, ...): on the destination its files go to
    /// `models/<kind>/`, where this tool's ComfyUI looks.
    pub kind: String,
    /// The folder on the host.
    pub path: PathBuf,
    /// The config that names it, on the host.
    pub config: PathBuf,
}

/// How the ComfyUI process sees paths, and how they map to the host's.
pub struct View<'a> {
    /// The process's working directory (a relative `base_path` is relative to it).
    pub cwd: &'a Path,
    /// For `~` in `base_path`; `None` leaves it as written (a container's home is unknown).
    pub home: Option<&'a Path>,
    /// The process's path as a host path (`None`: not on the host, e.g. in an image layer).
    pub to_host: &'a dyn Fn(&Path) -> Option<PathBuf>,
}

/// The extra folders of every config in `configs` (paths as the process sees them) that is
/// on the host; a missing config counts as none, as ComfyUI skips a missing default one.
/// Folders that are not on the host are left out: nothing there to carry.
pub fn read(host: &dyn Host, configs: &[PathBuf], view: &View) -> Result<Vec<ExtraFolder>> {
    let mut out: Vec<ExtraFolder> = Vec::new();
    for config in configs {
        let config = normalize(&view.cwd.join(config));
        let Some(on_host) = (view.to_host)(&config) else {
            continue;
        };
        let Some(data) = host.read_opt(&on_host)? else {
            continue;
        };
        let text = String::from_utf8_lossy(&data);
        for (kind, path) in parse(&text, &config, view)
            .with_context(|| format!("cannot read `{}` on {}", on_host.display(), host.name()))
            .hint("ComfyUI reads this file at start (`--extra-model-paths-config`); fix it, or name the folder with `--from-root`")?
        {
            let Some(path) = (view.to_host)(&path) else {
                continue;
            };
            let folder = ExtraFolder {
                kind,
                path,
                config: on_host.clone(),
            };
            let is_dir = host.stat(&folder.path)?.is_some_and(|s| s.is_dir);
            if is_dir && !out.contains(&folder) {
                out.push(folder);
            }
        }
    }
    Ok(out)
}

/// `(kind, path as the process sees it)` for each folder `text` names. `config`: the file's
/// absolute path as the process sees it.
fn parse(text: &str, config: &Path, view: &View) -> Result<Vec<(String, PathBuf)>> {
    let doc: Value = serde_yaml::from_str(text)?;
    let sections = match doc {
        Value::Mapping(m) => m,
        Value::Null => return Ok(Vec::new()),
        _ => return Err(anyhow!("the top level is not a mapping of sections")),
    };
    let config_dir = config.parent().unwrap_or(Path::new("/"));
    let mut out = Vec::new();
    for (name, section) in sections {
        let name = key(&name);
        let section = match section {
            Value::Mapping(m) => m,
            Value::Null => continue,
            _ => return Err(anyhow!("section `{name}` is not a mapping")),
        };
        let base = match section.get("base_path") {
            None | Some(Value::Null) => None,
            Some(Value::String(b)) => Some(view.cwd.join(expand_home(b, view.home))),
            Some(_) => return Err(anyhow!("`{name}.base_path` is not a path")),
        };
        for (kind, paths) in &section {
            let kind = key(kind);
            if kind == "base_path" || kind == "is_default" {
                continue;
            }
            let Value::String(paths) = paths else {
                return Err(anyhow!(
                    "`{name}.{kind}` is not a path or a block of paths, one per line"
                ));
            };
            for line in paths.split('\n').filter(|l| !l.is_empty()) {
                let path = match &base {
                    Some(b) => b.join(line),
                    None => config_dir.join(line),
                };
                out.push((kind.clone(), normalize(&path)));
            }
        }
    }
    Ok(out)
}

fn key(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => serde_yaml::to_string(other)
            .unwrap_or_default()
            .trim()
            .to_string(),
    }
}

fn expand_home(path: &str, home: Option<&Path>) -> PathBuf {
    match (path.strip_prefix('~'), home) {
        (Some(rest), Some(home)) if rest.is_empty() || rest.starts_with('/') => {
            home.join(rest.trim_start_matches('/'))
        }
        _ => PathBuf::from(path),
    }
}

/// `a/./b/../c` as `a/c`, without touching the file system (the path may be a container's).
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view<'a>(cwd: &'a Path, map: &'a dyn Fn(&Path) -> Option<PathBuf>) -> View<'a> {
        View {
            cwd,
            home: Some(Path::new("/home/u")),
            to_host: map,
        }
    }

    #[test]
    fn reads_comfyuis_example_format() {
        let text = "a1111:\n    base_path: ~/sd/\n\n    checkpoints: models/Stable-diffusion\n    loras: |\n         models/Lora\n         models/LyCORIS\n    is_default: true\nmine:\n    loras: ../shared/loras\n    vae: /abs/vae\nempty:\n";
        let id = |p: &Path| Some(p.to_path_buf());
        let got = parse(
            text,
            Path::new("/c/ComfyUI/extra.yaml"),
            &view(Path::new("/w"), &id),
        )
        .unwrap();
        let want: Vec<(String, PathBuf)> = [
            ("checkpoints", "/home/u/sd/models/Stable-diffusion"),
            ("loras", "/home/u/sd/models/Lora"),
            ("loras", "/home/u/sd/models/LyCORIS"),
            ("loras", "/c/shared/loras"),
            ("vae", "/abs/vae"),
        ]
        .iter()
        .map(|(k, p)| (k.to_string(), PathBuf::from(p)))
        .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn a_relative_base_path_is_the_processs_and_bad_shapes_are_named() {
        let id = |p: &Path| Some(p.to_path_buf());
        let v = view(Path::new("/w"), &id);
        let got = parse(
            "x:\n  base_path: rel\n  loras: l\n",
            Path::new("/c/e.yaml"),
            &v,
        )
        .unwrap();
        assert_eq!(got, [("loras".to_string(), PathBuf::from("/w/rel/l"))]);
        let err = parse("x:\n  loras: [a, b]\n", Path::new("/c/e.yaml"), &v).unwrap_err();
        assert!(err.to_string().contains("`x.loras`"), "{err}");
        let err = parse("x: [\n", Path::new("/c/e.yaml"), &v).unwrap_err();
        assert!(err.to_string().contains("line"), "{err}");
    }
}
