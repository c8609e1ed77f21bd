//! Custom nodes: cloned on the target at pinned commits, their Python requirements installed
//! inside the running ComfyUI container without ever changing its PyTorch, and proven loaded
//! through ComfyUI's `/object_info`.

pub mod git;
pub mod manifest;
pub mod pip;
pub mod venv;

use std::path::PathBuf;

use anyhow::{anyhow, bail, Context, Result};
use serde::Serialize;

use crate::compose::COMFY_DIR;
use crate::docker::Docker;
use crate::service::{self, Deployment};
use crate::step::{Mode, Outcome, StepReport};
use crate::ui::{HintExt, Printer};
use git::CloneState;
use manifest::{Node, NodeList};

#[derive(Debug, Clone, Copy, Default)]
pub struct InstallOptions {
    /// Move a clone with local changes anyway (they are lost).
    pub force: bool,
    /// Only the git part (usable before the container exists).
    pub no_deps: bool,
}

fn node_dir(d: &Deployment, node: &Node) -> PathBuf {
    d.root.join("custom_nodes").join(&node.id)
}

/// Clone or move one node to its pinned commit.
fn git_step(
    d: &Deployment,
    node: &Node,
    opts: InstallOptions,
    mode: Mode,
    printer: &Printer,
) -> Result<StepReport> {
    let dir = node_dir(d, node);
    let name = format!("node {}", node.id);
    let short = &node.commit[..12];
    match git::state(d.host, &dir)? {
        CloneState::Present { head, .. } if head == node.commit => {
            Ok(StepReport::new(name, Outcome::Ok, format!("at {short}")))
        }
        CloneState::Present { head, dirty: true } if !opts.force => {
            printer.warn(format!(
                "`{}` has local changes; left at {} instead of {short} (`--force` discards them)",
                dir.display(),
                &head[..head.len().min(12)]
            ));
            Ok(StepReport::new(
                name,
                Outcome::Skipped,
                "local changes: left alone",
            ))
        }
        CloneState::Present { head, .. } if mode.dry_run => Ok(StepReport::new(
            name,
            Outcome::WouldChange,
            format!("would move from {} to {short}", &head[..head.len().min(12)]),
        )),
        CloneState::Present { head, .. } => {
            git::checkout(d.host, &dir, &node.commit, opts.force)?;
            Ok(StepReport::new(
                name,
                Outcome::Changed,
                format!("moved from {} to {short}", &head[..head.len().min(12)]),
            ))
        }
        CloneState::Missing if mode.dry_run => Ok(StepReport::new(
            name,
            Outcome::WouldChange,
            format!("would clone {} at {short}", node.repo),
        )),
        CloneState::Missing => {
            d.host.mkdir_p(&d.root.join("custom_nodes"))?;
            git::clone_at(d.host, &node.repo, &node.commit, &dir)?;
            Ok(StepReport::new(
                name,
                Outcome::Changed,
                format!("cloned at {short}"),
            ))
        }
    }
}

/// The container side: where files and pip run.
struct Container<'a> {
    d: &'a Deployment<'a>,
    docker: Docker,
    id: String,
}

impl Container<'_> {
    fn exec(
        &self,
        workdir: Option<&str>,
        args: &[&str],
        stdin: Option<&str>,
    ) -> Result<crate::host::Output> {
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        let mut cmd = self.d.exec_cmd(&self.docker, &self.id, workdir, &args);
        if let Some(data) = stdin {
            cmd = cmd.stdin(data);
        }
        self.d.host.run(&cmd)
    }

    /// A scratch file in the container's /tmp (not on the host, not in the image); a real
    /// install only, never a plan.
    fn put(&self, path: &str, text: &str) -> Result<()> {
        let script = "mkdir -p \"$(dirname \"$1\")\" && cat > \"$1\"";
        let out = self.exec(None, &["sh", "-c", script, "sh", path], Some(text))?;
        if !out.success() {
            bail!(
                "cannot write {path} in the ComfyUI container: {}",
                out.stderr_text().trim()
            );
        }
        Ok(())
    }

    fn protected_versions(&self) -> Result<String> {
        let out = self.exec(
            None,
            &[
                venv::PYTHON,
                "-m",
                "pip",
                "list",
                "--format=freeze",
                "--disable-pip-version-check",
            ],
            None,
        )?;
        if !out.success() {
            return Err(anyhow!(
                "`pip list` failed in the ComfyUI container: {}",
                out.stderr_text().trim()
            ))
            .hint("the container must have Python and pip (the NGC PyTorch base has both)");
        }
        Ok(pip::constraints_from_freeze(&out.stdout_text()))
    }
}

const CONSTRAINTS: &str = "/tmp/lifeos/constraints.txt";

/// What pip must satisfy for one node: its requirements.txt (packages renamed for the
/// architecture) and its extras, as one requirements text; `None` when there is nothing.
fn node_requirements(c: &Container, node: &Node) -> Result<Option<String>> {
    let renames = node.renames(&c.d.opts.arch);
    let mut text = match c
        .d
        .host
        .read_opt(&node_dir(c.d, node).join("requirements.txt"))?
    {
        Some(req) => pip::rewrite_requirements(&String::from_utf8_lossy(&req), &renames),
        None => String::new(),
    };
    for extra in pip::rename_all(&node.pip, &renames) {
        text += &format!("{extra}\n");
    }
    Ok((!text.trim().is_empty()).then_some(text))
}

/// Packages pip would install, asked read-only: the requirements and the protected packages
/// pinned to their installed versions go in on stdin, nothing is written anywhere.
fn plan_pip(
    c: &Container,
    node: &Node,
    requirements: &str,
    protected: &str,
) -> Result<Vec<String>> {
    let args = pip::install_args("/dev/null", Some("/dev/stdin"), &[], true);
    let out = run_pip(
        c,
        &args,
        &node.id,
        Some(&format!("{protected}{requirements}")),
    )?;
    Ok(pip::would_install(&out))
}

/// The marker of a node whose `install.py` ran at its pinned commit: the deployment's own
/// folder, outside `custom_nodes/` (which ComfyUI imports) and outside the clone (which must
/// stay clean).
fn installed_marker(d: &Deployment, node: &Node) -> PathBuf {
    d.root.join(".lifeos").join("installed").join(&node.id)
}

/// Touched when pip installed a node's requirements (its time is what matters).
fn pip_marker(d: &Deployment, node: &Node) -> PathBuf {
    d.root.join(".lifeos").join("pip").join(&node.id)
}

fn installer_pending(d: &Deployment, node: &Node) -> Result<bool> {
    if d.host
        .stat(&node_dir(d, node).join("install.py"))?
        .is_none()
    {
        return Ok(false);
    }
    let done = d.host.read_opt(&installed_marker(d, node))?;
    Ok(done.as_deref() != Some(node.commit.as_bytes()))
}

fn mark(d: &Deployment, marker: &std::path::Path, content: &str) -> Result<()> {
    d.host
        .mkdir_p(marker.parent().expect("a marker lives in a folder"))?;
    d.host.write_atomic(marker, content.as_bytes(), None)
}

fn pip_step(c: &Container, node: &Node, protected: &str, mode: Mode) -> Result<StepReport> {
    let name = format!("pip {}", node.id);
    let requirements = node_requirements(c, node)?;
    let installer = installer_pending(c.d, node)?;
    let wanted = match &requirements {
        Some(req) => plan_pip(c, node, req, protected)?,
        None => Vec::new(),
    };
    if wanted.is_empty() && !installer {
        let detail = if requirements.is_some() {
            "requirements satisfied"
        } else {
            "no requirements"
        };
        return Ok(StepReport::new(name, Outcome::Ok, detail));
    }
    let what = [
        wanted.join(" "),
        if installer {
            "install.py".into()
        } else {
            String::new()
        },
    ]
    .join(" ");
    let what = what.trim();
    if mode.dry_run {
        return Ok(StepReport::new(
            name,
            Outcome::WouldChange,
            format!("would install {what}"),
        ));
    }
    if let (Some(req), false) = (&requirements, wanted.is_empty()) {
        let file = format!("/tmp/lifeos/{}.requirements.txt", node.id);
        c.put(&file, req)?;
        pip_install(c, &node.id, &file)?;
        mark(c.d, &pip_marker(c.d, node), req)?;
    }
    if installer {
        let dir = format!("{COMFY_DIR}/custom_nodes/{}", node.id);
        let out = c.exec(Some(&dir), &[venv::PYTHON, "install.py"], None)?;
        if !out.success() {
            bail!(
                "`python install.py` of {} failed: {}",
                node.id,
                out.stderr_tail(12)
            );
        }
        mark(c.d, &installed_marker(c.d, node), &node.commit)?;
    }
    Ok(StepReport::new(
        name,
        Outcome::Changed,
        format!("installed {what}"),
    ))
}

/// Install a requirements file (in the container) under the constraints.
fn pip_install(c: &Container, node: &str, file: &str) -> Result<()> {
    let args = pip::install_args(CONSTRAINTS, Some(file), &[], false);
    run_pip(c, &args, node, None).map(|_| ())
}

/// Every node's recorded requirements (the pip markers): what the venv must hold.
fn pip_markers(d: &Deployment) -> Result<Vec<(String, String)>> {
    let dir = d.root.join(".lifeos").join("pip");
    if d.host.stat(&dir)?.is_none() {
        return Ok(Vec::new());
    }
    let dir_text = dir.to_str().context("root is not UTF-8")?;
    let names = d
        .host
        .run_ok(&crate::host::Command::new("ls").args(["-1A", dir_text]))?;
    let mut markers = Vec::new();
    for name in names.stdout_text().lines().filter(|n| !n.is_empty()) {
        if let Some(text) = d.host.read_opt(&dir.join(name))? {
            markers.push((
                name.to_string(),
                String::from_utf8_lossy(&text).into_owned(),
            ));
        }
    }
    Ok(markers)
}

fn run_pip(c: &Container, args: &[String], node: &str, stdin: Option<&str>) -> Result<String> {
    let mut argv = vec![venv::PYTHON, "-m", "pip"];
    argv.extend(args.iter().map(String::as_str));
    let out = c.exec(None, &argv, stdin)?;
    if out.success() {
        return Ok(out.stdout_text());
    }
    let stderr = out.stderr_text();
    let err = anyhow!(
        "pip could not install the requirements of {node}:
{}",
        out.stderr_tail(12)
    );
    match pip::explain_failure(&stderr) {
        Some(why) => Err(err.context(why)).hint(format!(
            "pin {node} to a commit whose requirements accept the image's PyTorch, or drop the node"
        )),
        None => Err(err).hint("read pip's message above; the node's requirements may need a package this architecture lacks"),
    }
}

/// Clone/move every node, install their requirements in the container, restart once if
/// anything changed.
pub fn install(
    d: &Deployment,
    list: &NodeList,
    url: &str,
    opts: InstallOptions,
    mode: Mode,
    printer: &Printer,
) -> Result<Vec<StepReport>> {
    let mut reports = Vec::new();
    for node in &list.nodes {
        reports.push(git_step(d, node, opts, mode, printer)?);
    }
    if opts.no_deps {
        return Ok(reports);
    }
    let docker = match service::ready_docker(d.host) {
        Ok(docker) => docker,
        // A plan on a host without a usable Docker: the git part above is the plan; pip needs
        // the container, so a real run would stop there.
        Err(e) if mode.dry_run => {
            reports.push(StepReport::new(
                "pip",
                Outcome::Blocked,
                format!(
                    "would install the nodes' requirements in the container — blocked: {}",
                    crate::ui::one_line(&e)
                ),
            ));
            return Ok(reports);
        }
        Err(e) => return Err(e),
    };
    let Some(id) = d.running_container(&docker)? else {
        if mode.dry_run {
            reports.push(StepReport::new(
                "pip",
                Outcome::Skipped,
                "ComfyUI is not running: requirements are checked once it is",
            ));
            return Ok(reports);
        }
        return Err(anyhow!(
            "ComfyUI is not running on {}, so node requirements cannot be installed",
            d.host.name()
        ))
        .hint("run `lifeos-spark up` first, or `nodes install --no-deps` for the git part only");
    };
    let c = Container { d, docker, id };
    let needed = needs_pip(&c, list)?;
    if needed {
        let env = venv::env_step(&c, mode)?;
        let pending = env.outcome == Outcome::WouldChange;
        reports.push(env);
        if pending {
            // A plan: pip cannot be asked before the venv exists.
            reports.push(StepReport::new(
                "pip",
                Outcome::WouldChange,
                "would install the nodes' requirements into the new node env",
            ));
            return Ok(reports);
        }
    }
    let frozen = if needed {
        Some(c.protected_versions()?)
    } else {
        None
    };
    if let (Some(frozen), false) = (&frozen, mode.dry_run) {
        c.put(CONSTRAINTS, frozen)?;
    }
    for (node, git) in list.nodes.iter().zip(reports.clone()) {
        if git.outcome != Outcome::Skipped {
            reports.push(pip_step(&c, node, frozen.as_deref().unwrap_or(""), mode)?);
        }
    }
    if let (Some(frozen), false) = (frozen, mode.dry_run) {
        // Belt and braces: the constraints must have held.
        if c.protected_versions()? != frozen {
            bail!("the container's PyTorch packages changed during the install; rebuild the image with `up --rebuild`");
        }
    }
    // A node changed now, or one changed by a run that was stopped before its restart: either
    // way ComfyUI has not loaded it yet.
    let changed = reports
        .iter()
        .any(|r| matches!(r.outcome, Outcome::Changed | Outcome::WouldChange));
    if changed || changed_since_start(&c, list)? {
        reports.push(match mode.dry_run {
            true => StepReport::new(
                "restart",
                Outcome::WouldChange,
                "would restart ComfyUI to load the nodes",
            ),
            false => d.restart(&c.docker, url, printer)?,
        });
    }
    Ok(reports)
}

/// Whether a node's checkout or install is newer than the container's start. State from the
/// host itself: the clone's `.git/HEAD` (rewritten by every checkout) and the install markers.
fn changed_since_start(c: &Container, list: &NodeList) -> Result<bool> {
    let out = c.d.host.run_ok(&c.docker.command(&[
        "inspect",
        "--format",
        "{{.State.StartedAt}}",
        &c.id,
    ]))?;
    let Ok(started) = chrono::DateTime::parse_from_rfc3339(out.stdout_text().trim()) else {
        return Ok(false);
    };
    for node in &list.nodes {
        for path in [
            node_dir(c.d, node).join(".git/HEAD"),
            installed_marker(c.d, node),
            pip_marker(c.d, node),
        ] {
            if c.d
                .host
                .stat(&path)?
                .is_some_and(|s| s.mtime > started.timestamp())
            {
                return Ok(true);
            }
        }
    }
    Ok(false)
}

/// Whether any node has something for pip or an install.py still to run.
fn needs_pip(c: &Container, list: &NodeList) -> Result<bool> {
    for node in &list.nodes {
        if node_requirements(c, node)?.is_some() || installer_pending(c.d, node)? {
            return Ok(true);
        }
    }
    Ok(false)
}

#[derive(Debug, Clone, Serialize)]
pub struct NodeStatus {
    pub id: String,
    pub pinned: String,
    /// `None` when not cloned.
    pub actual: Option<String>,
    pub dirty: bool,
    /// `None` when the container is not running (cannot tell).
    pub requirements_satisfied: Option<bool>,
}

pub fn list(d: &Deployment, list: &NodeList) -> Result<Vec<NodeStatus>> {
    let docker = service::ready_docker(d.host).ok();
    let container = match &docker {
        Some(docker) => d.running_container(docker)?.map(|id| Container {
            d,
            docker: docker.clone(),
            id,
        }),
        None => None,
    };
    // Read-only: the protected versions are pinned on pip's stdin, nothing is written.
    let protected = match &container {
        Some(c) if needs_pip(c, list)? => c.protected_versions()?,
        _ => String::new(),
    };
    let mut rows = Vec::new();
    for node in &list.nodes {
        let (actual, dirty) = match git::state(d.host, &node_dir(d, node))? {
            CloneState::Missing => (None, false),
            CloneState::Present { head, dirty } => (Some(head), dirty),
        };
        let requirements_satisfied = match (&container, &actual) {
            (Some(c), Some(_)) => Some(
                pip_step(
                    c,
                    node,
                    &protected,
                    Mode {
                        dry_run: true,
                        replace: crate::step::Replace::Ask,
                    },
                )?
                .outcome
                    == Outcome::Ok,
            ),
            _ => None,
        };
        rows.push(NodeStatus {
            id: node.id.clone(),
            pinned: node.commit.clone(),
            actual,
            dirty,
            requirements_satisfied,
        });
    }
    Ok(rows)
}

#[derive(Debug, Clone, Serialize)]
pub struct NodeProof {
    pub id: String,
    pub loaded: bool,
    pub found: Vec<String>,
    pub missing: Vec<String>,
    /// Container log lines about this node when it did not load (import errors).
    pub log: Vec<String>,
}

/// Which nodes' proof classes ComfyUI's `/object_info` lists.
pub fn verify(d: &Deployment, list: &NodeList, url: &str) -> Result<Vec<NodeProof>> {
    let client = crate::comfyui::Client::new(url)?;
    let classes = client.object_info_classes().hint(
        "is ComfyUI up? `lifeos-spark up`, or `--url` when it is reached at another address",
    )?;
    let docker = service::ready_docker(d.host).ok();
    Ok(list
        .nodes
        .iter()
        .map(|node| {
            let (found, missing): (Vec<String>, Vec<String>) = node
                .proves
                .iter()
                .cloned()
                .partition(|c| classes.contains(c));
            let log = match (&docker, missing.is_empty()) {
                (Some(docker), false) => d.log_lines(docker, &node.id),
                _ => Vec::new(),
            };
            NodeProof {
                id: node.id.clone(),
                loaded: missing.is_empty(),
                found,
                missing,
                log,
            }
        })
        .collect())
}
