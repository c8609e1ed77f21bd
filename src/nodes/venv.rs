//! The custom nodes' durable Python environment. The design (issue 11, option b): a virtualenv
//! made with the image's own Python and `--system-site-packages`, on the deployment root's
//! `venv/` folder mounted at `/opt/venv`. It sees the image's CUDA PyTorch (never reinstalled:
//! pip still runs under the constraints from the image's `pip list`), its own packages live on
//! the host, so they outlive `down`/`up`, `up --rebuild` and reboots. The generated Dockerfile
//! puts `/opt/venv/bin` first on PATH, so ComfyUI runs with the venv's python when it exists.
//!
//! A new base image with another Python leaves the venv pointing at an interpreter that is
//! gone or different: `up` notices (the venv's python does not run, or its version is not the
//! one in `pyvenv.cfg`), recreates the venv and reinstalls what the pip markers record.

use anyhow::{anyhow, Result};

use super::{Container, CONSTRAINTS};
use crate::compose::VENV_DIR;
use crate::service::Deployment;
use crate::step::{Mode, Outcome, StepReport};
use crate::ui::{HintExt, Printer};

/// The venv's interpreter: pip runs as `PYTHON -m pip`, so packages land in the venv.
pub const PYTHON: &str = "/opt/venv/bin/python";

#[derive(Debug, PartialEq)]
pub enum EnvState {
    Ready { version: String },
    Missing,
    Stale(String),
}

/// The `version` a venv's `pyvenv.cfg` records.
pub fn cfg_version(cfg: &str) -> Option<String> {
    cfg.lines().find_map(|l| {
        let (k, v) = l.split_once('=')?;
        (k.trim() == "version" || k.trim() == "version_info").then(|| v.trim().to_string())
    })
}

pub(super) fn state(c: &Container) -> Result<EnvState> {
    let cfg = c.d.host.read_opt(&c.d.root.join("venv/pyvenv.cfg"))?;
    let Some(cfg) = cfg else {
        return Ok(EnvState::Missing);
    };
    let made_with = cfg_version(&String::from_utf8_lossy(&cfg)).unwrap_or_default();
    let probe = "import platform; print(platform.python_version())";
    let out = c.exec(None, &[PYTHON, "-c", probe], None)?;
    if !out.success() {
        return Ok(EnvState::Stale(format!(
            "its python (made with {made_with}) does not run in this image"
        )));
    }
    let now = out.stdout_text().trim().to_string();
    Ok(match now == made_with {
        true => EnvState::Ready { version: now },
        false => EnvState::Stale(format!("made with Python {made_with}, the image has {now}")),
    })
}

/// `python3 -m venv --clear --system-site-packages /opt/venv`, with the image's python (the
/// venv's own bin is taken off PATH: it may be the broken one). Ubuntu-based images (NGC) may
/// lack ensurepip: then the venv is made `--without-pip`, and the image's own pip, visible
/// through the system site-packages, installs into the venv when run by its python.
fn create(c: &Container) -> Result<()> {
    let venv = format!("python3 -m venv --clear --system-site-packages {VENV_DIR}");
    let script = format!(
        "PATH=$(printf %s \"$PATH\" | sed 's#{VENV_DIR}/bin:##'); {venv} || {venv} --without-pip"
    );
    let out = c.exec(None, &["sh", "-c", &script], None)?;
    if !out.success() {
        return Err(anyhow!(
            "cannot create the nodes' virtualenv {VENV_DIR} in the ComfyUI container: {}",
            out.stderr_tail(8)
        ))
        .hint("the image's Python needs its venv module (Debian/Ubuntu: python3-venv)");
    }
    Ok(())
}

/// The `node env` step: make the venv when missing or stale.
pub(super) fn env_step(c: &Container, mode: Mode) -> Result<StepReport> {
    let name = "node env";
    let why = match state(c)? {
        EnvState::Ready { version } => {
            return Ok(StepReport::new(
                name,
                Outcome::Ok,
                format!("{VENV_DIR} (Python {version})"),
            ))
        }
        EnvState::Missing => "missing".to_string(),
        EnvState::Stale(why) => format!("stale: {why}"),
    };
    if mode.dry_run {
        return Ok(StepReport::new(
            name,
            Outcome::WouldChange,
            format!("would create {VENV_DIR} ({why})"),
        ));
    }
    create(c)?;
    Ok(StepReport::new(
        name,
        Outcome::Changed,
        format!("created {VENV_DIR} ({why})"),
    ))
}

/// For `up`: when nodes have installed packages (pip markers), the venv must be there and
/// whole; a missing or stale one is recreated, the recorded requirements reinstalled under the
/// constraints, and ComfyUI restarted to import them. Nothing when no node uses pip.
pub fn repair(
    d: &Deployment,
    docker: &crate::docker::Docker,
    url: &str,
    mode: Mode,
    printer: &Printer,
) -> Result<Vec<StepReport>> {
    let markers = super::pip_markers(d)?;
    if markers.is_empty() {
        return Ok(Vec::new());
    }
    let Some(id) = d.running_container(docker)? else {
        return Ok(Vec::new());
    };
    let c = Container {
        d,
        docker: docker.clone(),
        id,
    };
    let step = env_step(&c, mode)?;
    if step.outcome != Outcome::Changed {
        return Ok(vec![step]);
    }
    let frozen = c.protected_versions()?;
    c.put(CONSTRAINTS, &frozen)?;
    for (node, requirements) in &markers {
        let file = format!("/tmp/lifeos/{node}.requirements.txt");
        c.put(&file, requirements)?;
        super::pip_install(&c, node, &file)?;
    }
    let mut step = step;
    step.detail += &format!(
        "; reinstalled the packages of {}",
        markers
            .iter()
            .map(|(n, _)| n.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(vec![step, d.restart(&c.docker, url, printer)?])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pyvenv_cfg_version() {
        let cfg = "home = /usr/bin\ninclude-system-site-packages = true\nversion = 3.11.2\nexecutable = /usr/bin/python3.11\n";
        assert_eq!(cfg_version(cfg).as_deref(), Some("3.11.2"));
        assert_eq!(cfg_version("home = /usr/bin\n"), None);
    }
}
