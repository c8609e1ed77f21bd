//! Where the source's ComfyUI keeps its things: found on the host (a container's bind mounts, a
//! bare-metal checkout, or a deployment of this tool) and mapped to host paths, so `migrate`
//! and `inspect` read the user's real folders — the guide's `~/comfyui/basedir/user/...` as
//! much as this tool's own root.

mod args;
mod bare;
mod container;
pub mod extra_paths;
pub mod inventory;
pub mod log;
pub mod transfer;

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};
use serde::Serialize;

use crate::host::Host;
use crate::ui::HintExt;
use extra_paths::ExtraFolder;

/// How the source runs ComfyUI.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum SourceKind {
    /// A Docker container (running or stopped) whose bind mounts hold ComfyUI's folders.
    Container {
        name: String,
        id: String,
        running: bool,
    },
    /// A ComfyUI checkout run as `python main.py` (`pid` when found running).
    BareMetal { pid: Option<u32> },
    /// A root laid out by this tool (`setup`), found by its `docker-compose.yml`.
    Tool,
}

/// ComfyUI's folders as host paths. `None`: not on the host's file system (inside a
/// container's own layer, or absent).
#[derive(Debug, Clone, Serialize)]
pub struct Layout {
    pub kind: SourceKind,
    /// ComfyUI's base directory on the host (`--base-directory`, the checkout, or the root).
    pub base: PathBuf,
    pub models: Option<PathBuf>,
    pub custom_nodes: Option<PathBuf>,
    pub user: Option<PathBuf>,
    pub input: Option<PathBuf>,
    pub output: Option<PathBuf>,
    /// Exported workflows outside ComfyUI (the guide's `./workflows:/workflows`, this tool's
    /// `<root>/workflows`).
    pub workflows: Option<PathBuf>,
    /// The port ComfyUI answers on the host, when known (a container's published `--port`,
    /// a process's `--port`).
    pub port: Option<u16>,
    /// Extra model folders from ComfyUI's `extra_model_paths.yaml` configs.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub extra_models: Vec<ExtraFolder>,
}

/// The ComfyUI folders a layout maps, by name (`models`, `custom_nodes`, ...).
pub const FOLDERS: [&str; 5] = ["models", "custom_nodes", "user", "input", "output"];

impl Layout {
    /// The layout of a root set up by this tool or of a bare-metal checkout: every folder
    /// directly under `base`, the exported workflows in `base/workflows`.
    pub fn flat(host: &dyn Host, kind: SourceKind, base: &Path) -> Result<Layout> {
        let sub = |name: &str| -> Result<Option<PathBuf>> {
            let p = base.join(name);
            Ok(host.stat(&p)?.is_some_and(|s| s.is_dir).then_some(p))
        };
        Ok(Layout {
            kind,
            base: base.to_path_buf(),
            models: sub("models")?,
            custom_nodes: sub("custom_nodes")?,
            user: sub("user")?,
            input: sub("input")?,
            output: sub("output")?,
            workflows: sub("workflows")?,
            port: None,
            extra_models: Vec::new(),
        })
    }

    /// One line naming where this ComfyUI is, for lists of candidates.
    pub fn describe(&self) -> String {
        let what = match &self.kind {
            SourceKind::Container { name, running, .. } => format!(
                "container `{name}` ({})",
                if *running { "running" } else { "stopped" }
            ),
            SourceKind::BareMetal { pid: Some(pid) } => format!("`main.py` process {pid}"),
            SourceKind::BareMetal { pid: None } => "ComfyUI checkout".to_string(),
            SourceKind::Tool => "lifeos-spark deployment".to_string(),
        };
        format!("{what} at `{}`", self.base.display())
    }
}

/// What the operator told about the source (overriding discovery).
#[derive(Debug, Clone, Default)]
pub struct Hints {
    /// `--from-root`: a ComfyUI checkout or a root of this tool.
    pub root: Option<String>,
    /// `--from-container`: the container to take.
    pub container: Option<String>,
    /// The root this tool would use (the source's playbook's), tried last.
    pub tool_root: Option<String>,
}

/// Find the one ComfyUI on `host`: `--from-root`, else containers and running `main.py`
/// processes (those under the login user's home first), else this tool's root. Two candidates
/// are an error that lists both.
pub fn discover(host: &dyn Host, hints: &Hints) -> Result<Layout> {
    if let Some(root) = &hints.root {
        return from_root(host, &host.expand_home(root)?);
    }
    let mut found = container::find(host, hints.container.as_deref())?;
    if hints.container.is_none() {
        found.extend(bare::running(host)?);
    }
    let home = host.home()?;
    let mine: Vec<&Layout> = found.iter().filter(|l| l.base.starts_with(&home)).collect();
    let pool: Vec<&Layout> = if mine.is_empty() {
        found.iter().collect()
    } else {
        mine
    };
    match pool.as_slice() {
        [one] => return Ok((*one).clone()),
        [] => {}
        many => {
            let list: Vec<String> = many
                .iter()
                .map(|l| format!("  - {}", l.describe()))
                .collect();
            return Err(anyhow::anyhow!(
                "{} runs {} ComfyUIs:\n{}",
                host.name(),
                many.len(),
                list.join("\n")
            ))
            .hint("name one with `--from-container NAME` or `--from-root DIR`");
        }
    }
    if let Some(root) = &hints.tool_root {
        let root = host.expand_home(root)?;
        if host
            .stat(&root.join(crate::compose::COMPOSE_FILE))?
            .is_some()
        {
            return Layout::flat(host, SourceKind::Tool, &root);
        }
    }
    Err(anyhow::anyhow!("found no ComfyUI on {}", host.name())).hint(
        "no container publishes port 8188 or is named like `comfyui`, no `main.py` runs; name the folder with `--from-root DIR`",
    )
}

/// `--from-root DIR`: a checkout (`main.py` beside `models/`) or a root of this tool.
fn from_root(host: &dyn Host, root: &Path) -> Result<Layout> {
    let is = |name: &str| -> Result<bool> { Ok(host.stat(&root.join(name))?.is_some()) };
    if is("main.py")? {
        if !is("models")? {
            bail!("`{}` has main.py but no models/ folder", root.display());
        }
        let mut layout = Layout::flat(host, SourceKind::BareMetal { pid: None }, root)?;
        layout.extra_models = bare::extra_models(host, root, root, &[])?;
        return Ok(layout);
    }
    if is(crate::compose::COMPOSE_FILE)? || is("models")? {
        return Layout::flat(host, SourceKind::Tool, root);
    }
    Err(anyhow::anyhow!(
        "`{}` on {} is not a ComfyUI folder (no main.py, no models/)",
        root.display(),
        host.name()
    ))
    .hint("`--from-root` names a ComfyUI checkout or the root `setup` made")
}

/// The layout as a table: one row per folder.
pub fn render(layout: &Layout) -> String {
    let mut out = format!("{}\n", layout.describe());
    let row = |name: &str, p: &Option<PathBuf>| {
        format!(
            "  {:14} {}\n",
            name,
            p.as_ref()
                .map_or("-  (not on the host)".into(), |p| p.display().to_string())
        )
    };
    out += &row("models", &layout.models);
    out += &row("custom_nodes", &layout.custom_nodes);
    out += &row("user", &layout.user);
    out += &row("input", &layout.input);
    out += &row("output", &layout.output);
    out += &row("workflows", &layout.workflows);
    for extra in &layout.extra_models {
        out += &format!(
            "  {:14} {}  (from {})\n",
            extra.kind,
            extra.path.display(),
            extra.config.display()
        );
    }
    if let Some(port) = layout.port {
        out += &format!("  {:14} {port}\n", "port");
    }
    out
}
