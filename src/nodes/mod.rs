//! Custom nodes: cloned on the target at pinned commits, their Python requirements installed
//! inside the running ComfyUI container without ever changing its PyTorch, and proven loaded
//! through ComfyUI's `/object_info`.

pub mod git;
pub mod manifest;
pub mod pip;

use std::path::PathBuf;

use anyhow::{anyhow, bail, Result};
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

    /// A scratch file in the container's /tmp (not on the host, not in the image).
    fn put(&self, path: &str, text: &str) -> Result<()> {
        let out = self.exec(
            None,
            &["sh", "-c", &format!("mkdir -p /tmp/lifeos && cat > {path}")],
            Some(text),
        )?;
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

/// requirements.txt (rewritten for the architecture) and extras of one node, as pip arguments.
fn node_requirements(c: &Container, node: &Node) -> Result<(Option<String>, Vec<String>)> {
    let renames = node.renames(&c.d.opts.arch);
    let extras = pip::rename_all(&node.pip, &renames);
    let path = node_dir(c.d, node).join("requirements.txt");
    let requirements = match c.d.host.read_opt(&path)? {
        Some(text) => {
            let inside = format!("/tmp/lifeos/{}.requirements.txt", node.id);
            c.put(
                &inside,
                &pip::rewrite_requirements(&String::from_utf8_lossy(&text), &renames),
            )?;
            Some(inside)
        }
        None => None,
    };
    Ok((requirements, extras))
}

fn pip_step(c: &Container, node: &Node, cloned: bool, mode: Mode) -> Result<StepReport> {
    let name = format!("pip {}", node.id);
    let (requirements, extras) = node_requirements(c, node)?;
    let dir = format!("{COMFY_DIR}/custom_nodes/{}", node.id);
    let installer =
        c.d.host
            .stat(&node_dir(c.d, node).join("install.py"))?
            .is_some()
            && cloned;
    if requirements.is_none() && extras.is_empty() && !installer {
        return Ok(StepReport::new(name, Outcome::Ok, "no requirements"));
    }
    let mut wanted = Vec::new();
    if requirements.is_some() || !extras.is_empty() {
        let args = pip::install_args(CONSTRAINTS, requirements.as_deref(), &extras, true);
        let plan = run_pip(c, &args, node)?;
        wanted = pip::would_install(&plan);
    }
    if wanted.is_empty() && !installer {
        return Ok(StepReport::new(name, Outcome::Ok, "requirements satisfied"));
    }
    let what = if wanted.is_empty() {
        "install.py".to_string()
    } else {
        wanted.join(" ")
    };
    if mode.dry_run {
        return Ok(StepReport::new(
            name,
            Outcome::WouldChange,
            format!("would install {what}"),
        ));
    }
    if !wanted.is_empty() {
        run_pip(
            c,
            &pip::install_args(CONSTRAINTS, requirements.as_deref(), &extras, false),
            node,
        )?;
    }
    if installer {
        let out = c.exec(Some(&dir), &["python", "install.py"], None)?;
        if !out.success() {
            bail!(
                "`python install.py` of {} failed: {}",
                node.id,
                out.stderr_text().trim()
            );
        }
    }
    Ok(StepReport::new(
        name,
        Outcome::Changed,
        format!("installed {what}"),
    ))
}

fn run_pip(c: &Container, args: &[String], node: &Node) -> Result<String> {
    let mut argv = vec!["pip"];
    argv.extend(args.iter().map(String::as_str));
    let out = c.exec(None, &argv, None)?;
    if out.success() {
        return Ok(out.stdout_text());
    }
    let stderr = out.stderr_text();
    let tail: Vec<&str> = stderr
        .lines()
        .rev()
        .take(12)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    let err = anyhow!(
        "pip could not install the requirements of {}:\n{}",
        node.id,
        tail.join("\n")
    );
    match pip::explain_failure(&stderr) {
        Some(why) => Err(err.context(why)).hint(format!(
            "pin {} to a commit whose requirements accept the image's PyTorch, or drop the node",
            node.id
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
    let docker = service::ready_docker(d.host)?;
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
    let needs_pip = list.nodes.iter().any(|n| !n.pip.is_empty()) || has_requirements(d, list)?;
    let frozen = if needs_pip {
        let frozen = c.protected_versions()?;
        c.put(CONSTRAINTS, &frozen)?;
        Some(frozen)
    } else {
        None
    };
    for (node, git) in list.nodes.iter().zip(reports.clone()) {
        if git.outcome == Outcome::Skipped {
            continue;
        }
        reports.push(pip_step(&c, node, git.outcome == Outcome::Changed, mode)?);
    }
    if let Some(frozen) = frozen {
        // Belt and braces: the constraints must have held.
        if c.protected_versions()? != frozen {
            bail!("the container's PyTorch packages changed during the install; rebuild the image with `up --rebuild`");
        }
    }
    let changed = reports
        .iter()
        .any(|r| matches!(r.outcome, Outcome::Changed | Outcome::WouldChange));
    if changed {
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

fn has_requirements(d: &Deployment, list: &NodeList) -> Result<bool> {
    for node in &list.nodes {
        if d.host
            .stat(&node_dir(d, node).join("requirements.txt"))?
            .is_some()
        {
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
    if let Some(c) = &container {
        c.put(CONSTRAINTS, &c.protected_versions()?)?;
    }
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
                    false,
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
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let classes = rt.block_on(client.object_info_classes()).hint(
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
