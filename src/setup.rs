//! `setup`: the whole way from a fresh host to a verified ComfyUI, as phases run in order —
//! doctor, compose, up, models, nodes, verify, connection-info. Each phase is made of steps
//! that check first, so a second run changes nothing, an interrupted run continues where it
//! stopped (state comes from the host itself: files, hash stamps, containers), and `--dry-run`
//! prints the plan of every phase, even on a host that is not ready: a failed doctor check is a
//! blocker, and the changes it would stop are reported `blocked`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{anyhow, Result};
use serde::Serialize;

use crate::connection_info;
use crate::docker::Docker;
use crate::doctor::{self, DoctorOptions, Status};
use crate::generate;
use crate::gpu::Profile;
use crate::host::Host;
use crate::models::fetch::FetchOptions;
use crate::models::hub::Hub;
use crate::models::manifest::Manifest;
use crate::models::ops::{self as models, PullOptions, Target};
use crate::models::report::{PullReport, PullStatus};
use crate::nodes::{self, manifest::NodeList, InstallOptions};
use crate::phase::{Flow, PhaseId, PhaseOutput};
use crate::playbook::Playbook;
use crate::service::{self, Deployment};
use crate::step::{Mode, Outcome, StepReport};
use crate::ui::{HintExt, Printer};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    Doctor,
    Compose,
    Up,
    Models,
    Nodes,
    Verify,
    ConnectionInfo,
}

pub const PHASES: [Phase; 7] = [
    Phase::Doctor,
    Phase::Compose,
    Phase::Up,
    Phase::Models,
    Phase::Nodes,
    Phase::Verify,
    Phase::ConnectionInfo,
];

pub type PhaseReport = crate::phase::PhaseReport<Phase>;

impl PhaseId for Phase {
    fn name(self) -> &'static str {
        match self {
            Phase::Doctor => "doctor",
            Phase::Compose => "compose",
            Phase::Up => "up",
            Phase::Models => "models",
            Phase::Nodes => "nodes",
            Phase::Verify => "verify",
            Phase::ConnectionInfo => "connection-info",
        }
    }
}

#[derive(Clone)]
pub struct SetupOptions {
    pub playbook: Option<String>,
    pub root: Option<String>,
    pub gpu: bool,
    pub bind: Option<std::net::IpAddr>,
    pub url: Option<String>,
    pub manifest: Option<PathBuf>,
    pub nodes: Option<String>,
    pub jobs: usize,
    pub fetch: FetchOptions,
    /// Phases to run, in `PHASES` order.
    pub phases: Vec<Phase>,
    /// End the verify phase with the check generation (`--no-generate` turns it off).
    pub generate: bool,
    pub mode: Mode,
    /// Copy these manifest files from the source host (`migrate`) instead of downloading them;
    /// the rest is downloaded.
    pub models_from: Option<crate::models::copy::ModelSource>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SetupReport {
    pub host: String,
    pub playbook: Option<String>,
    /// Where ComfyUI answers (what Life-OS's `COMFYUI_URL` should be).
    pub url: Option<String>,
    /// The deployment root on the host.
    pub root: Option<PathBuf>,
    pub dry_run: bool,
    pub phases: Vec<PhaseReport>,
    pub downloaded_bytes: u64,
    pub elapsed_ms: u128,
    /// Ctrl-C / SIGTERM stopped the model downloads (finished parts kept).
    pub interrupted: bool,
    /// The doctor checks that stop a real run (a plan goes on past them).
    pub blockers: Vec<Blocker>,
}

/// A failed doctor check: a real run stops at it.
#[derive(Debug, Clone, Serialize)]
pub struct Blocker {
    pub check: String,
    pub detail: String,
    pub hint: Option<String>,
}

impl SetupReport {
    /// A phase failed, or (in a plan) a change is blocked.
    pub fn failed(&self) -> bool {
        (self.phases.iter()).any(|p| matches!(p.outcome, Outcome::Failed | Outcome::Blocked))
    }

    pub fn outcome(&self, phase: Phase) -> Option<Outcome> {
        self.phases
            .iter()
            .find(|p| p.phase == phase)
            .map(|p| p.outcome)
    }
}

struct Run<'a> {
    host: &'a Arc<dyn Host>,
    opts: &'a SetupOptions,
    printer: &'a Printer,
    deployment: Option<Deployment<'a>>,
    url: String,
    downloaded: u64,
    /// The deployment root's lock, held from the moment the root is known to the end.
    lock: Option<crate::lock::RootLock>,
    /// The check generation's seconds per image, for CONNECTION_INFO.
    seconds_per_image: Option<f64>,
    interrupted: bool,
    blockers: Vec<Blocker>,
}

pub fn setup(host: &Arc<dyn Host>, opts: &SetupOptions, printer: &Printer) -> Result<SetupReport> {
    let started = Instant::now();
    let host_ref: &dyn Host = host.as_ref();
    let mut run = Run {
        host,
        opts,
        printer,
        deployment: None,
        url: String::new(),
        downloaded: 0,
        lock: None,
        seconds_per_image: None,
        interrupted: false,
        blockers: Vec::new(),
    };
    let flow = match opts.mode.dry_run {
        true => Flow::PlanThrough,
        false => Flow::StopAtFailure,
    };
    let phases = crate::phase::run(
        &PHASES,
        &opts.phases,
        flow,
        host_ref.name(),
        printer,
        &mut run,
        |r, phase| r.phase(phase, host_ref),
    );
    Ok(SetupReport {
        host: host_ref.name().to_string(),
        playbook: run.deployment.as_ref().map(|d| d.playbook.name.clone()),
        url: run.deployment.as_ref().map(|_| run.url.clone()),
        root: run.deployment.as_ref().map(|d| d.root.clone()),
        dry_run: opts.mode.dry_run,
        phases,
        downloaded_bytes: run.downloaded,
        elapsed_ms: started.elapsed().as_millis(),
        interrupted: run.interrupted,
        blockers: run.blockers,
    })
}

/// Checks that `--gpu none` (a CPU-only service) does without.
const GPU_CHECKS: [&str; 3] = ["gpu", "driver", "nvidia_runtime"];

impl<'a> Run<'a> {
    fn phase(&mut self, phase: Phase, host: &'a dyn Host) -> Result<PhaseOutput> {
        if phase != Phase::Doctor {
            self.choose(host, None)?;
        }
        match phase {
            Phase::Doctor => self.doctor(host),
            Phase::Compose => {
                let (docker, blocked_by) = self.docker()?;
                let d = self.d();
                let steps = d.write_files(docker.as_ref(), self.opts.mode, self.printer)?;
                let mut out = PhaseOutput::from(steps);
                out.blocked_by = blocked_by;
                Ok(out)
            }
            Phase::Up => {
                let (docker, blocked_by) = self.docker()?;
                let d = self.d();
                let steps = match docker.filter(|d| d.reachable) {
                    Some(docker) => {
                        d.start(&docker, &self.url, false, self.opts.mode, self.printer)?
                    }
                    None => d.plan_start_unchecked(),
                };
                let mut out = PhaseOutput::from(steps);
                out.blocked_by = blocked_by;
                Ok(out)
            }
            Phase::Models => self.models(),
            Phase::Nodes => {
                let d = self.d();
                let list = self.node_list()?;
                Ok(nodes::install(
                    d,
                    &list,
                    &self.url,
                    InstallOptions::default(),
                    self.opts.mode,
                    self.printer,
                )?
                .into())
            }
            Phase::Verify => self.verify(host),
            Phase::ConnectionInfo => {
                let d = self.d();
                let opts = connection_info::Options {
                    port: d.playbook.port,
                    address: None,
                    batch_size: Some(d.playbook.batch_size),
                    seconds_per_image: self.seconds_per_image,
                    dry_run: self.opts.mode.dry_run,
                };
                let r = connection_info::run(host, &opts)?;
                let verb = match r.status {
                    Outcome::WouldChange => "would write ",
                    _ => "",
                };
                let mut step = StepReport::new(
                    r.path.display().to_string(),
                    r.status,
                    format!("{verb}COMFYUI_URL={}", r.info.comfyui_url),
                );
                step.diff = (!r.diff.is_empty()).then_some(r.diff);
                Ok(vec![step].into())
            }
        }
    }

    /// Make the deployment once: the named playbook, or the one for the profile doctor found
    /// (probed here when doctor did not run).
    fn choose(&mut self, host: &'a dyn Host, profile: Option<Profile>) -> Result<()> {
        if self.deployment.is_some() {
            return Ok(());
        }
        let (d, url) = match deployment(host, self.opts, profile) {
            // A plan on a host doctor blocked (no GPU to pick a playbook by): plan with the
            // default playbook; the blocker says what a real run needs first.
            Err(_) if self.opts.mode.dry_run && !self.blockers.is_empty() => {
                let playbook = Playbook::load(crate::playbook::DEFAULT)?;
                deployment_with(host, self.opts, playbook)?
            }
            chosen => chosen?,
        };
        self.url = url;
        if !self.opts.mode.dry_run {
            self.lock = Some(crate::lock::RootLock::acquire(host, &d.root, self.printer)?);
        }
        self.deployment = Some(d);
        Ok(())
    }

    /// The deployment; `phase` chose it before any phase but doctor.
    fn d(&self) -> &Deployment<'a> {
        self.deployment.as_ref().expect("chosen before the phase")
    }

    /// Docker for the service phases, and why a real run could not use it. A real run needs
    /// it usable (with the NVIDIA runtime for a GPU service); a plan goes on with what the
    /// host's `docker` answers (Compose can still validate) and names the blocker.
    fn docker(&self) -> Result<(Option<Docker>, Option<String>)> {
        match self.d().ready_for_gpu() {
            Ok(docker) => Ok((Some(docker), None)),
            Err(e) if self.opts.mode.dry_run => {
                let probed = crate::docker::probe(self.host.as_ref()).ok();
                Ok((probed, Some(crate::ui::one_line(&e))))
            }
            Err(e) => Err(e),
        }
    }

    fn doctor(&mut self, host: &'a dyn Host) -> Result<PhaseOutput> {
        // The checks follow the playbook that will be used (named, else the one for the GPU
        // found): its port, its root (or `--root`), its manifest's size, its image.
        let playbook = Playbook::choose(
            self.opts.playbook.as_deref(),
            crate::gpu::profile_of(&crate::gpu::gpus(host).unwrap_or_default()),
            self.opts.gpu,
        )
        .ok();
        let root = (self.opts.root.clone())
            .or(playbook.as_ref().map(|p| p.root.clone()))
            .unwrap_or_else(|| crate::defaults::ROOT.to_string());
        let needed_bytes = match &playbook {
            Some(p) => Some(manifest_for(self.opts, p)?.disk_bytes()),
            None => None,
        };
        let gpu_smoke = match (&playbook, self.opts.gpu) {
            (Some(p), true) => smoke_image(host, p),
            _ => None,
        };
        let report = doctor::run(
            host,
            &DoctorOptions {
                root,
                port: playbook.as_ref().map_or(crate::defaults::PORT, |p| p.port),
                gpu_smoke,
                needed_bytes,
            },
        )?;
        let steps: Vec<StepReport> = report
            .checks
            .iter()
            .map(|c| {
                let tolerated = !self.opts.gpu && GPU_CHECKS.contains(&c.name);
                let outcome = match c.status {
                    Status::Fail if !tolerated => Outcome::Failed,
                    _ => Outcome::Ok,
                };
                let hint = c
                    .hint
                    .as_deref()
                    .filter(|_| c.status != Status::Ok)
                    .map_or(String::new(), |h| format!(" (hint: {h})"));
                StepReport::new(
                    c.name,
                    outcome,
                    format!("{}: {}{hint}", c.status.as_str(), c.detail),
                )
            })
            .collect();
        self.blockers = (report.checks.iter())
            .zip(&steps)
            .filter(|(_, s)| s.outcome == Outcome::Failed)
            .map(|(c, _)| Blocker {
                check: c.name.to_string(),
                detail: c.detail.clone(),
                hint: c.hint.clone(),
            })
            .collect();
        if let (Some(b), false) = (self.blockers.first(), self.opts.mode.dry_run) {
            return Err(anyhow!("doctor: `{}` failed: {}", b.check, b.detail))
                .hint((b.hint.clone()).unwrap_or_else(|| "run `lifeos-spark doctor`".into()));
        }
        self.choose(host, Some(report.profile))?;
        let warnings = report
            .checks
            .iter()
            .filter(|c| c.status != Status::Ok)
            .count();
        let mut detail = format!(
            "profile {}, {} checks, {warnings} warnings{}",
            report.profile.as_str(),
            steps.len(),
            if self.opts.gpu {
                ""
            } else {
                " (GPU checks do not block `--gpu none`)"
            }
        );
        let mut out = PhaseOutput::new(steps, "");
        if !self.blockers.is_empty() {
            let names: Vec<String> = (self.blockers.iter())
                .map(|b| format!("`{}`", b.check))
                .collect();
            detail += &format!(
                "; a real run stops here ({} failed), the plan goes on with playbook `{}`",
                names.join(", "),
                self.d().playbook.name
            );
            out.blocked_by = Some(format!("doctor {}", names.join(", ")));
        }
        out.detail = detail;
        Ok(out)
    }

    fn models(&mut self) -> Result<PhaseOutput> {
        let d = self.d();
        let manifest = self.manifest()?;
        let mut copied_steps = Vec::new();
        let mut copied_bytes = 0;
        let mut only = Vec::new();
        if let Some(src) = &self.opts.models_from {
            let dry_run = self.opts.mode.dry_run;
            let (steps, copied) = crate::models::copy::copy_files(
                src.host.as_ref(),
                &src.files,
                d.host,
                &d.root,
                &manifest,
                dry_run,
                self.printer,
            )?;
            copied_bytes = copied;
            copied_steps = steps;
            only = (manifest.models.iter())
                .filter(|m| !src.files.contains_key(&m.id))
                .map(|m| m.id.clone())
                .collect();
            if only.is_empty() {
                self.downloaded += copied;
                let detail = format!(
                    "copied {} from {}",
                    crate::units::size(copied),
                    src.host.name()
                );
                return Ok(PhaseOutput::new(copied_steps, detail));
            }
        }
        let root = d
            .root
            .to_str()
            .map(String::from)
            .ok_or_else(|| anyhow!("root is not UTF-8"))?;
        let target = Target {
            host: self.host.clone(),
            root,
        };
        let opts = PullOptions {
            only,
            jobs: self.opts.jobs,
            fetch: self.opts.fetch,
            dry_run: self.opts.mode.dry_run,
            hub: Hub::from_env()?,
        };
        let report = models::pull(&target, &manifest, &opts, self.printer)?;
        self.downloaded += report.fetched_bytes + copied_bytes;
        self.interrupted |= report.interrupted;
        let mut out = pull_output(report)?;
        if !copied_steps.is_empty() {
            copied_steps.append(&mut out.steps);
            out.steps = copied_steps;
        }
        Ok(out)
    }

    fn verify(&mut self, host: &'a dyn Host) -> Result<PhaseOutput> {
        let d = self.d();
        let dry_run = self.opts.mode.dry_run;
        let client = crate::comfyui::Client::new(&self.url)?;
        if client.system_stats().is_err() {
            if dry_run {
                let why = format!(
                    "ComfyUI does not answer at {} yet: verified after a real run",
                    self.url
                );
                let steps = vec![StepReport::new("verify", Outcome::Skipped, why.clone())];
                return Ok(PhaseOutput::new(steps, why));
            }
            return Err(anyhow!("ComfyUI does not answer at {}", self.url));
        }
        let manifest = self.manifest()?;
        let list = self.node_list()?;
        let mut steps = Vec::new();
        for file in &manifest.models {
            steps.push(model_seen(&client, host, &d.root, file)?);
        }
        for proof in nodes::verify(d, &list, &self.url)? {
            let (outcome, detail) = match proof.loaded {
                true => (
                    Outcome::Ok,
                    format!("/object_info lists {}", proof.found.join(", ")),
                ),
                false => (
                    Outcome::Failed,
                    format!(
                        "/object_info lacks {}; log: {}",
                        proof.missing.join(", "),
                        proof.log.join(" | ")
                    ),
                ),
            };
            steps.push(StepReport::new(
                format!("node {}", proof.id),
                outcome,
                detail,
            ));
        }
        if dry_run {
            // A plan: what the phases before would bring is not there yet, and that is no failure.
            for s in steps.iter_mut().filter(|s| s.outcome == Outcome::Failed) {
                s.outcome = Outcome::WouldChange;
            }
        } else if let Some(bad) = steps.iter().find(|s| s.outcome == Outcome::Failed) {
            return Err(anyhow!("verify failed: {}: {}", bad.name, bad.detail));
        }
        let mut detail = format!(
            "{} model files and {} nodes checked through ComfyUI",
            manifest.models.len(),
            list.nodes.len()
        );
        if self.opts.generate {
            let (gen_steps, per_image) = self.generate(&client, &manifest)?;
            steps.extend(gen_steps);
            if let Some(s) = per_image {
                detail += &format!("; generation {s:.1} s per image");
            }
            self.seconds_per_image = per_image;
        }
        Ok(PhaseOutput::new(steps, detail))
    }

    /// The check generation: a check, so it runs on every run (never in a dry run: it would
    /// load the models and use the GPU).
    fn generate(
        &self,
        client: &crate::comfyui::Client,
        manifest: &Manifest,
    ) -> Result<(Vec<StepReport>, Option<f64>)> {
        let d = self.d();
        let settings = &d.playbook.generate;
        if self.opts.mode.dry_run {
            let why = format!(
                "would generate {}x{} in {} steps, then FaceID on it",
                settings.width, settings.height, settings.steps
            );
            return Ok((
                vec![StepReport::new("generate", Outcome::Skipped, why)],
                None,
            ));
        }
        let models = generate::Models::from_manifest(manifest)?;
        let docker = service::ready_docker(d.host).ok();
        let logs = || {
            docker
                .as_ref()
                .map(|docker| d.recent_logs(docker, 200))
                .unwrap_or_default()
        };
        let env = generate::Env {
            client,
            logs: &logs,
            printer: self.printer,
        };
        let report = generate::run(&env, &models, settings)?;
        let steps = report
            .steps
            .iter()
            .map(|s| {
                let comfy = s
                    .comfyui_seconds
                    .map_or(String::new(), |c| format!(", {c:.1} s in ComfyUI"));
                StepReport::new(
                    format!("generate {}", s.name),
                    Outcome::Ok,
                    format!(
                        "{}x{} PNG {} in {:.1} s{comfy}",
                        s.width, s.height, s.image.filename, s.seconds
                    ),
                )
            })
            .collect();
        Ok((steps, Some(report.seconds_per_image)))
    }

    fn manifest(&self) -> Result<Manifest> {
        manifest_for(self.opts, &self.d().playbook)
    }

    fn node_list(&self) -> Result<NodeList> {
        node_list_for(self.opts, &self.d().playbook)
    }
}

/// The deployment `setup` makes on `host` and the URL its ComfyUI answers at: the named
/// playbook, or the one for `profile` (probed when `None`). `migrate` plans against the same.
pub fn deployment<'a>(
    host: &'a dyn Host,
    opts: &SetupOptions,
    profile: Option<Profile>,
) -> Result<(Deployment<'a>, String)> {
    let profile = match profile {
        Some(p) => p,
        None => crate::gpu::profile_of(&crate::gpu::gpus(host)?),
    };
    let playbook = Playbook::choose(opts.playbook.as_deref(), profile, opts.gpu)?;
    deployment_with(host, opts, playbook)
}

/// The deployment of `playbook` on `host`, and the URL its ComfyUI answers at.
fn deployment_with<'a>(
    host: &'a dyn Host,
    opts: &SetupOptions,
    playbook: Playbook,
) -> Result<(Deployment<'a>, String)> {
    let d = Deployment::new(host, playbook, opts.root.as_deref(), opts.gpu, opts.bind)?;
    let url = match &opts.url {
        Some(u) => u.clone(),
        None => service::default_url(host.name(), d.playbook.port, None)?,
    };
    Ok((d, url))
}

/// `--manifest`, or the playbook's: the embedded default's name, or a path.
pub fn manifest_for(opts: &SetupOptions, playbook: &Playbook) -> Result<Manifest> {
    let named = &playbook.models;
    let path = match &opts.manifest {
        Some(p) => Some(p.clone()),
        None if named == crate::playbook::EMBEDDED_MODELS => None,
        None => Some(PathBuf::from(named)),
    };
    Manifest::load(path.as_deref(), false)
}

/// `--nodes`, or the playbook's: the embedded default's name, or a path.
pub fn node_list_for(opts: &SetupOptions, playbook: &Playbook) -> Result<NodeList> {
    let named = &playbook.nodes;
    match &opts.nodes {
        Some(p) => NodeList::load(Some(p)),
        None if named == crate::playbook::EMBEDDED_NODES => NodeList::load(None),
        None => NodeList::load(Some(named)),
    }
}

/// The image for the GPU smoke test, when one is on the host already (a first setup has none:
/// pulling 20 GB to run `nvidia-smi` is the `up` phase's job): the built image, else its base.
fn smoke_image(host: &dyn Host, playbook: &Playbook) -> Option<String> {
    let docker = crate::docker::probe(host).ok()?;
    [&playbook.image, &playbook.base_image]
        .into_iter()
        .find(|image| {
            host.run(&docker.command(&["image", "inspect", "--format", "{{.Id}}", image]))
                .is_ok_and(|o| o.success())
        })
        .cloned()
}

/// ComfyUI's `/models/<folder>` must list the file. For a folder ComfyUI does not register
/// (InsightFace's packs are read by the node itself), the file on disk must have its size.
fn model_seen(
    client: &crate::comfyui::Client,
    host: &dyn Host,
    root: &std::path::Path,
    model: &crate::models::manifest::ModelFile,
) -> Result<StepReport> {
    let (dest, size) = (model.dest.as_str(), model.size);
    let name = format!("model {}", model.id);
    let rel = dest.strip_prefix("models/").unwrap_or(dest);
    let (folder, file) = rel.split_once('/').unwrap_or((rel, ""));
    match client.models(folder) {
        Ok(listed) if listed.iter().any(|f| f == file) => Ok(StepReport::new(
            name,
            Outcome::Ok,
            format!("ComfyUI lists {folder}/{file}"),
        )),
        Ok(_) => Ok(StepReport::new(
            name,
            Outcome::Failed,
            format!("ComfyUI does not list {file} in /models/{folder}"),
        )),
        Err(_) => Ok(match host.stat(&root.join(dest))? {
            Some(s) if s.size == size => StepReport::new(
                name,
                Outcome::Ok,
                format!("{dest} in place (no /models/{folder} in ComfyUI)"),
            ),
            _ => StepReport::new(name, Outcome::Failed, format!("{dest} is missing")),
        }),
    }
}

fn pull_output(report: PullReport) -> Result<PhaseOutput> {
    if report.interrupted {
        return Err(anyhow!(report.interrupted_note("`setup`")));
    }
    if let Some(failure) = report.files.iter().find(|f| f.status == PullStatus::Failed) {
        return Err(anyhow!(
            "model {} failed: {}",
            failure.id,
            failure.error.clone().unwrap_or_default()
        ));
    }
    let steps: Vec<StepReport> = report
        .files
        .iter()
        .map(|f| {
            let outcome = match f.status {
                PullStatus::Present => Outcome::Ok,
                PullStatus::Fetched | PullStatus::Linked => Outcome::Changed,
                PullStatus::WouldFetch | PullStatus::WouldLink | PullStatus::WouldVerify => {
                    Outcome::WouldChange
                }
                PullStatus::Failed | PullStatus::Interrupted => Outcome::Failed,
            };
            let status = f.status.label();
            StepReport::new(
                format!("model {}", f.id),
                outcome,
                format!(
                    "{status} {} ({})",
                    f.dest.display(),
                    crate::units::size(f.size)
                ),
            )
        })
        .collect();
    let detail = match report.dry_run {
        true => format!(
            "{} to download, {} free",
            crate::units::size(report.needed_bytes),
            crate::units::size(report.free_bytes)
        ),
        false => format!("{} downloaded", crate::units::size(report.fetched_bytes)),
    };
    Ok(PhaseOutput::new(steps, detail))
}

/// In a plan, the blockers' names on top (doctor's lines below give each with its hint); per
/// phase a line, then Ansible's recap line and the blockers' names again.
pub fn render(report: &SetupReport) -> String {
    let mut out = String::new();
    let names: Vec<&str> = report.blockers.iter().map(|b| b.check.as_str()).collect();
    if !names.is_empty() && report.dry_run {
        out += &format!(
            "blocked: a real run stops at doctor ({} failed: see below); the plan goes on\n\n",
            names.join(", ")
        );
    }
    out += &crate::phase::render(&report.phases, report.dry_run);
    out += &crate::phase::recap(
        &report.host,
        &report.phases,
        report.downloaded_bytes,
        report.elapsed_ms,
    );
    if !names.is_empty() {
        out += &format!("blocked by: {}\n", names.join(", "));
    }
    out
}
