//! `migrate`: an RTX PC's ComfyUI moved to a Spark. The source's ComfyUI is found
//! (`source::discover`: a container, a checkout, or this tool's root), its workflows backed up,
//! everything it holds inventoried and planned (`source::inventory`), the destination set up
//! (each manifest file copied from the source when the source has its bytes, wherever they are,
//! else downloaded), the user's files and extra nodes carried over (`source::transfer`) and the
//! destination verified. Only then does Life-OS's `.env` point at the destination; a failure
//! anywhere before leaves it on the source, which keeps working. Every stage checks first, so
//! a re-run resumes.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{anyhow, Result};
use serde::Serialize;

use crate::doctor::{self, DoctorOptions, Status};
use crate::envfile::{self, SetOptions};
use crate::gpu::{self, Profile};
use crate::host::Host;
use crate::models::copy::ModelSource;
use crate::phase::{self, PhaseId, PhaseOutput, PhaseReport};
use crate::playbook::Playbook;
use crate::pool::{self, Device};
use crate::service::{self, Deployment};
use crate::setup::{self, Phase, SetupOptions, SetupReport};
use crate::source::inventory::{self, Action, Destination, Plan};
use crate::source::log::{self, EnvRecord, LoggedItem, MigrationLog};
use crate::source::transfer::{self, Moved, TransferOptions};
use crate::source::{self, Hints, Layout, SourceKind};
use crate::step::{Mode, Outcome, Replace, StepReport};
use crate::ui::{HintExt, Printer};
use crate::workflows;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum MigrateMode {
    /// The destination replaces the source (`--stop-source` stops the source's ComfyUI)
    Replace,
    /// Keep both and write the device pool for Life-OS's router, destination first
    Parallel,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ModelsFrom {
    /// Copy from the source host over SSH (the default when it has every file)
    Source,
    /// Download from the manifest's URLs
    Internet,
}

pub struct MigrateOptions {
    /// Setup of the destination (playbook, root, phases...).
    pub setup: SetupOptions,
    pub from_playbook: Option<String>,
    pub from_root: Option<String>,
    pub from_url: Option<String>,
    /// The source's container, when discovery finds several ComfyUIs.
    pub from_container: Option<String>,
    /// Replace the destination's files that differ (each kept as `<name>.before-migrate`).
    pub overwrite: bool,
    /// Life-OS's `.env` on this machine.
    pub env_file: Option<String>,
    pub mode: MigrateMode,
    pub models_from: Option<ModelsFrom>,
    pub stop_source: bool,
    /// Where the device pool goes (parallel mode), on this machine.
    pub pool_file: PathBuf,
    /// Where the workflow backup goes, on this machine.
    pub backup_dir: PathBuf,
}

/// `migrate`'s phases, in run order (on the shared phase runner, as `setup`'s).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum MigratePhase {
    /// Find the source's ComfyUI and check the source.
    Discover,
    /// The source's workflows archived on this machine.
    Backup,
    /// Inventory of the source against the destination; conflicts stop here.
    Plan,
    /// `setup` of the destination, models copied or downloaded.
    Destination,
    /// User files and extra nodes.
    Carry,
    /// Life-OS's `.env`, once the destination is verified.
    Env,
    /// Device pool (`--mode parallel`) or the source stopped (`--stop-source`).
    Finish,
}

pub const MIGRATE_PHASES: [MigratePhase; 7] = [
    MigratePhase::Discover,
    MigratePhase::Backup,
    MigratePhase::Plan,
    MigratePhase::Destination,
    MigratePhase::Carry,
    MigratePhase::Env,
    MigratePhase::Finish,
];

impl PhaseId for MigratePhase {
    fn name(self) -> &'static str {
        match self {
            MigratePhase::Discover => "discover",
            MigratePhase::Backup => "backup",
            MigratePhase::Plan => "plan",
            MigratePhase::Destination => "destination",
            MigratePhase::Carry => "carry",
            MigratePhase::Env => "env",
            MigratePhase::Finish => "finish",
        }
    }
}

#[derive(Debug, Serialize)]
pub struct MigrateReport {
    pub from: String,
    pub to: String,
    pub dry_run: bool,
    pub phases: Vec<PhaseReport<MigratePhase>>,
    /// What the source holds and what becomes of each item.
    pub plan: Option<Plan>,
    pub setup: Option<SetupReport>,
    /// The user files that moved, with their sha256.
    pub moved: Vec<Moved>,
    /// The migration's log on this machine.
    pub log: Option<PathBuf>,
    pub elapsed_ms: u128,
}

impl MigrateReport {
    pub fn failed(&self) -> bool {
        self.phases.iter().any(|p| p.outcome == Outcome::Failed)
            || self.setup.as_ref().is_some_and(|s| s.failed())
    }
}

fn profile_of(host: &dyn Host) -> Result<(Profile, Option<u64>)> {
    let gpus = gpu::gpus(host)?;
    let gb = gpus
        .first()
        .and_then(|g| g.usable_memory_mib)
        .map(|mib| (mib as f64 / 1024.0).round() as u64);
    Ok((gpu::profile_of(&gpus), gb))
}

struct Migration<'a> {
    from: &'a Arc<dyn Host>,
    to: &'a Arc<dyn Host>,
    local: &'a dyn Host,
    opts: &'a MigrateOptions,
    printer: &'a Printer,
    steps: Vec<StepReport>,
    plan: Option<Plan>,
    moved: Vec<Moved>,
    layout: Option<Layout>,
    env_record: Option<EnvRecord>,
    stopped: Option<String>,
    from_d: Option<Deployment<'a>>,
    to_d: Option<Deployment<'a>>,
    models_from: Option<ModelSource>,
    setup: Option<SetupReport>,
}

pub fn migrate(
    from: &Arc<dyn Host>,
    to: &Arc<dyn Host>,
    local: &dyn Host,
    opts: MigrateOptions,
    printer: &Printer,
) -> Result<MigrateReport> {
    let started = std::time::Instant::now();
    let mut m = Migration {
        from,
        to,
        local,
        opts: &opts,
        printer,
        steps: Vec::new(),
        plan: None,
        moved: Vec::new(),
        layout: None,
        env_record: None,
        stopped: None,
        from_d: None,
        to_d: None,
        models_from: None,
        setup: None,
    };
    let hosts = format!("{} -> {}", from.name(), to.name());
    let phases = phase::run(
        &MIGRATE_PHASES,
        &MIGRATE_PHASES,
        phase::Flow::StopAtFailure,
        &hosts,
        printer,
        &mut m,
        |m, p| m.phase(p),
    );
    let log = match opts.setup.mode.dry_run {
        true => None,
        false => m.write_log()?,
    };
    Ok(MigrateReport {
        from: from.name().into(),
        to: to.name().into(),
        dry_run: opts.setup.mode.dry_run,
        phases,
        plan: m.plan,
        setup: m.setup,
        moved: m.moved,
        log,
        elapsed_ms: started.elapsed().as_millis(),
    })
}

impl<'a> Migration<'a> {
    fn dry_run(&self) -> bool {
        self.opts.setup.mode.dry_run
    }

    /// One phase: its steps are the ones it pushed; `Some(why)` ends the run after it.
    fn phase(&mut self, p: MigratePhase) -> Result<PhaseOutput> {
        let start = self.steps.len();
        let stop = self.run_phase(p)?;
        let mut out = PhaseOutput::from(self.steps.split_off(start));
        if let Some(d) = out.steps.iter().find(|s| s.outcome != Outcome::Ok) {
            out.detail = format!("{}: {}", d.name, d.detail);
        }
        out.stop = stop;
        Ok(out)
    }

    fn run_phase(&mut self, p: MigratePhase) -> Result<Option<String>> {
        const CHOSEN: &str = "chosen by an earlier phase";
        match p {
            MigratePhase::Discover => {
                let from_d = self.source_deployment()?;
                self.layout = Some(self.discover(&from_d)?);
                self.check_source(&from_d)?;
                self.from_d = Some(from_d);
            }
            MigratePhase::Backup => {
                let layout = self.layout.clone().expect(CHOSEN);
                self.backup(&layout)?;
            }
            MigratePhase::Plan => {
                let layout = self.layout.clone().expect(CHOSEN);
                let (to_d, plan) = self.plan(&layout)?;
                let overwrite = self.opts.overwrite || self.dry_run();
                let chosen = transfer::refuse_conflicts(&plan, overwrite)
                    .and_then(|_| self.models_source(&plan));
                // Kept in the report even when conflicts stop the run: it lists them.
                self.plan = Some(plan);
                self.to_d = Some(to_d);
                self.models_from = chosen?;
            }
            MigratePhase::Destination => {
                let models_from = self.models_from.take();
                let setup = self.setup_destination(models_from)?;
                for p in &setup.phases {
                    self.steps.push(StepReport::new(
                        format!("setup {}", p.phase.name()),
                        p.outcome,
                        p.detail.clone(),
                    ));
                }
                let failed = setup.failed();
                self.setup = Some(setup);
                if failed {
                    return Ok(Some(
                        "the destination's setup failed; Life-OS's .env still points at the source"
                            .into(),
                    ));
                }
            }
            MigratePhase::Carry => {
                let to_d = self.to_d.take().expect(CHOSEN);
                let url = self.setup.as_ref().and_then(|s| s.url.clone());
                let r = self.carry(&to_d, &url.unwrap_or_default());
                self.to_d = Some(to_d);
                r?;
            }
            MigratePhase::Env => {
                let setup = self.setup.as_ref().expect(CHOSEN);
                // `.env` moves only to a destination whose verify phase ran and passed.
                if !self.dry_run() && setup.outcome(Phase::Verify) != Some(Outcome::Ok) {
                    let why = "the destination was not verified (its `verify` phase did not pass); Life-OS's .env still points at the source";
                    self.steps
                        .push(StepReport::new(".env", Outcome::Skipped, why));
                    return Ok(Some(why.into()));
                }
                let url =
                    (setup.url.clone()).ok_or_else(|| anyhow!("setup chose no deployment"))?;
                self.update_env(&url)?;
            }
            MigratePhase::Finish => {
                let from_d = self.from_d.take().expect(CHOSEN);
                let layout = self.layout.clone().expect(CHOSEN);
                let url = self
                    .setup
                    .as_ref()
                    .and_then(|s| s.url.clone())
                    .unwrap_or_default();
                let r = match self.opts.mode {
                    MigrateMode::Parallel => self.write_pool(&url, &from_d),
                    MigrateMode::Replace if self.opts.stop_source => {
                        self.stop_source(&layout, &from_d)
                    }
                    MigrateMode::Replace => Ok(()),
                };
                self.from_d = Some(from_d);
                r?;
            }
        }
        Ok(None)
    }

    fn source_deployment(&self) -> Result<Deployment<'a>> {
        let from: &'a Arc<dyn Host> = self.from;
        let playbook = match &self.opts.from_playbook {
            Some(p) => Playbook::load(p)?,
            None => Playbook::for_profile(profile_of(from.as_ref())?.0)
                .hint("name the source's playbook with `--from-playbook`")?,
        };
        Deployment::new(
            from.as_ref(),
            playbook,
            self.opts.from_root.as_deref(),
            false,
            None,
        )
    }

    /// The source only has to be readable (workflows, models); its problems are reported, not fatal.
    fn check_source(&mut self, from_d: &Deployment) -> Result<()> {
        let root = from_d.root.to_string_lossy().into_owned();
        let report = doctor::run(
            from_d.host,
            &DoctorOptions {
                root,
                port: from_d.playbook.port,
                gpu_smoke: None,
                needed_bytes: None,
            },
        )?;
        let failing: Vec<&str> = report
            .checks
            .iter()
            .filter(|c| c.status == Status::Fail)
            .map(|c| c.name)
            .collect();
        let detail = match failing.is_empty() {
            true => format!("profile {}, every check ok", report.profile.as_str()),
            false => format!(
                "profile {}, failing: {} (not needed to migrate)",
                report.profile.as_str(),
                failing.join(", ")
            ),
        };
        self.steps.push(StepReport::new(
            format!("source {}", self.from.name()),
            Outcome::Ok,
            detail,
        ));
        Ok(())
    }

    /// The source's ComfyUI and its folders: `--from-root`/`--from-container`, else found.
    fn discover(&mut self, from_d: &Deployment) -> Result<Layout> {
        let hints = Hints {
            root: self.opts.from_root.clone(),
            container: self.opts.from_container.clone(),
            tool_root: Some(from_d.root.to_string_lossy().into_owned()),
        };
        let layout = source::discover(self.from.as_ref(), &hints)?;
        self.steps
            .push(StepReport::new("discover", Outcome::Ok, layout.describe()));
        Ok(layout)
    }

    /// The source's workflow folders under ComfyUI's base, archived on this machine (kept: the
    /// operator's copy).
    fn backup(&mut self, layout: &Layout) -> Result<Option<PathBuf>> {
        let stamp = chrono::Local::now().format("%Y%m%d-%H%M%S");
        let name = self
            .from
            .name()
            .replace(|c: char| !c.is_ascii_alphanumeric() && c != '-', "_");
        let out = self
            .opts
            .backup_dir
            .join(format!("workflows-{name}-{stamp}.tar.gz"));
        if !self.dry_run() {
            self.local.mkdir_p(&self.opts.backup_dir)?;
        }
        let root = layout.base.to_string_lossy().into_owned();
        let r = workflows::backup(self.from.as_ref(), &root, self.local, &out, self.dry_run())?;
        let (outcome, detail) = match &r.archive {
            Some(a) => (
                Outcome::Changed,
                format!(
                    "{} ({}) in `{}`",
                    crate::units::count(r.files, "file"),
                    crate::units::size(r.bytes),
                    a.display()
                ),
            ),
            None => (
                Outcome::WouldChange,
                format!(
                    "would archive {} ({}) on this machine",
                    crate::units::count(r.files, "file"),
                    crate::units::size(r.bytes)
                ),
            ),
        };
        self.steps
            .push(StepReport::new("backup workflows", outcome, detail));
        Ok(r.archive)
    }

    /// The destination's deployment (as `setup` will choose it) and the plan against it.
    fn plan(&mut self, layout: &Layout) -> Result<(Deployment<'a>, Plan)> {
        let to: &'a Arc<dyn Host> = self.to;
        let setup = &self.opts.setup;
        let (to_d, _) = setup::deployment(to.as_ref(), setup, None)?;
        let manifest = setup::manifest_for(setup, &to_d.playbook)?;
        let nodes = setup::node_list_for(setup, &to_d.playbook)?;
        let dest = Destination {
            host: to.as_ref(),
            root: &to_d.root,
        };
        let plan = inventory::plan(
            self.from.as_ref(),
            layout,
            &dest,
            &manifest,
            &nodes,
            self.printer,
        )?;
        let t = &plan.totals;
        self.steps.push(StepReport::new(
            "plan",
            if t.conflicts > 0 {
                Outcome::Failed
            } else {
                Outcome::Ok
            },
            format!(
                "copy {} files ({}), download {} ({}), {} git clones, {} conflicts, {} not moved",
                t.copy_files,
                crate::units::size(t.copy_bytes),
                t.download_files,
                crate::units::size(t.download_bytes),
                t.clones,
                t.conflicts,
                t.not_moved
            ),
        ));
        Ok((to_d, plan))
    }

    /// Which manifest files come from the source: those it has the bytes of, unless
    /// `--models-from internet`.
    fn models_source(&mut self, plan: &Plan) -> Result<Option<ModelSource>> {
        let files = plan.model_sources();
        let missing = plan
            .items
            .iter()
            .filter(|i| i.kind == inventory::Kind::Model && i.action == Action::Download)
            .count();
        if self.opts.models_from == Some(ModelsFrom::Source) && missing > 0 {
            return Err(anyhow!(
                "{} lacks {missing} model files of the manifest",
                self.from.name()
            ))
            .hint(
                "use `--models-from internet`, or leave `--models-from` out to download only those",
            );
        }
        if self.opts.models_from == Some(ModelsFrom::Internet) {
            self.steps.push(StepReport::new(
                "models source",
                Outcome::Ok,
                "download from the manifest's URLs",
            ));
            return Ok(None);
        }
        let detail = format!(
            "copy from {} {} files, download {missing}",
            self.from.name(),
            files.len()
        );
        self.steps
            .push(StepReport::new("models source", Outcome::Ok, detail));
        Ok(Some(ModelSource {
            host: self.from.clone(),
            files,
        }))
    }

    /// The user's files and the nodes the node list does not pin, after `setup`.
    fn carry(&mut self, to_d: &Deployment, url: &str) -> Result<()> {
        let Some(plan) = self.plan.take() else {
            return Ok(());
        };
        let opts = TransferOptions {
            overwrite: self.opts.overwrite,
            dry_run: self.dry_run(),
        };
        let (steps, moved) = transfer::copy_user_files(
            self.from.as_ref(),
            self.to.as_ref(),
            &to_d.root,
            &plan,
            opts,
            self.printer,
        )?;
        self.steps.extend(steps);
        self.moved = moved;
        let nodes = transfer::clone_nodes(to_d, &plan, url, opts, self.printer)?;
        self.steps.extend(nodes);
        self.plan = Some(plan);
        Ok(())
    }

    fn setup_destination(&mut self, models_from: Option<ModelSource>) -> Result<SetupReport> {
        let opts = SetupOptions {
            models_from,
            ..self.opts.setup.clone()
        };
        setup::setup(self.to, &opts, self.printer)
    }

    /// Life-OS now talks to the destination. Reached only once it is set up and verified.
    fn update_env(&mut self, url: &str) -> Result<()> {
        let Some(file) = &self.opts.env_file else {
            self.steps.push(StepReport::new(
                ".env",
                Outcome::Skipped,
                format!("no `--env-file`: set COMFYUI_URL={url} in Life-OS yourself"),
            ));
            return Ok(());
        };
        let (profile, memory_gb) = profile_of(self.to.as_ref())?;
        let mut updates = vec![("COMFYUI_URL".to_string(), url.to_string())];
        if matches!(profile, Profile::DgxSpark | Profile::Rtx4090) {
            updates.push(("COMFYUI_DEVICE_TYPE".into(), profile.as_str().into()));
        }
        if let Some(gb) = memory_gb {
            updates.push(("COMFYUI_MEMORY_GB".into(), gb.to_string()));
        }
        let mut before = std::collections::BTreeMap::new();
        for (k, _) in &updates {
            let old = envfile::get(self.local, file, k).unwrap_or(None);
            before.insert(k.clone(), old.map(|v| log::mask(k, &v)));
        }
        let r = envfile::set(
            self.local,
            &SetOptions {
                file: file.clone(),
                updates: updates.clone(),
                create: false,
                dry_run: self.dry_run(),
            },
        )?;
        if r.status == Outcome::Changed {
            let after: std::collections::BTreeMap<String, String> = (updates.iter())
                .map(|(k, v)| (k.clone(), log::mask(k, v)))
                .collect();
            self.env_record = Some(EnvRecord {
                file: r.path.clone(),
                backup: r.backup.clone(),
                before,
                after,
            });
        }
        let mut step = StepReport::new(
            format!(".env {}", r.path.display()),
            r.status,
            format!("{} keys changed", r.changed_keys.len()),
        );
        step.diff = (!r.diff.is_empty()).then_some(r.diff);
        self.steps.push(step);
        Ok(())
    }

    /// `--stop-source`: the source's container stopped (kept, so `--rollback` can start it
    /// again); a deployment of this tool that is not running has nothing to stop; a bare-metal
    /// `main.py` is the operator's to stop.
    fn stop_source(&mut self, layout: &Layout, from_d: &Deployment) -> Result<()> {
        let mode = Mode {
            dry_run: self.dry_run(),
            replace: Replace::Yes,
        };
        let name = format!("source {}", self.from.name());
        let step = match &layout.kind {
            SourceKind::Container {
                name: c,
                running: false,
                ..
            } => StepReport::new(name, Outcome::Ok, format!("`{c}` is not running")),
            SourceKind::Container { name: c, .. } if mode.dry_run => {
                StepReport::new(name, Outcome::WouldChange, format!("would stop `{c}`"))
            }
            SourceKind::Container { name: c, .. } => {
                let docker = service::ready_docker(self.from.as_ref())?;
                self.from.run_ok(&docker.command(&["stop", c]))?;
                self.stopped = Some(c.clone());
                StepReport::new(
                    name,
                    Outcome::Changed,
                    format!("stopped `{c}` (kept for `--rollback`)"),
                )
            }
            SourceKind::Tool => {
                self.steps.extend(from_d.down(mode)?);
                return Ok(());
            }
            SourceKind::BareMetal { pid } => StepReport::new(
                name,
                Outcome::Skipped,
                format!(
                    "ComfyUI runs as `python main.py`{}: stop it yourself",
                    pid.map_or(String::new(), |p| format!(" (pid {p})"))
                ),
            ),
        };
        self.steps.push(step);
        Ok(())
    }

    /// The record beside the backups: what moved, the `.env` before and after, what stopped.
    fn write_log(&mut self) -> Result<Option<PathBuf>> {
        let Some(layout) = &self.layout else {
            return Ok(None);
        };
        let items = (self.plan.iter())
            .flat_map(|p| &p.items)
            .filter(|i| i.kind != inventory::Kind::UserFile)
            .map(|i| LoggedItem {
                kind: format!("{:?}", i.kind).to_lowercase(),
                name: i.name.clone(),
                action: i.action.label().to_string(),
                bytes: i.bytes,
                sha256: i.sha256.clone(),
                commit: i.commit.clone(),
            })
            .collect();
        let entry = MigrationLog {
            version: 1,
            at: chrono::Local::now().format("%Y%m%d-%H%M%S").to_string(),
            from: self.from.name().to_string(),
            to: self.to.name().to_string(),
            source: layout.describe(),
            env: self.env_record.clone(),
            stopped_container: self.stopped.clone(),
            items,
            files: self.moved.clone(),
        };
        log::write(self.local, &self.opts.backup_dir, &entry).map(Some)
    }

    /// The seed's gradual transition: both devices, the destination preferred.
    fn write_pool(&mut self, url: &str, from_d: &Deployment) -> Result<()> {
        let from_url = match &self.opts.from_url {
            Some(u) => u.clone(),
            None => service::default_url(self.from.name(), from_d.playbook.port, None)?,
        };
        let (to_profile, _) = profile_of(self.to.as_ref())?;
        let (from_profile, _) = profile_of(self.from.as_ref())?;
        let device = |name: Profile, url: String, priority| Device {
            name: name.as_str().into(),
            url,
            priority,
            capabilities: pool::capabilities(name),
            device_type: None,
            memory_gb: None,
            batch_size: Some(pool::batch_size(name)),
            seconds_per_image: None,
        };
        let devices = vec![
            device(to_profile, url.into(), 1),
            device(from_profile, from_url, 2),
        ];
        let path = self.opts.pool_file.clone();
        let report = pool::write(
            self.local,
            path,
            devices,
            "migrate",
            self.dry_run(),
            self.printer,
        )?;
        self.steps.push(report);
        Ok(())
    }
}

/// Each phase with all its steps, the plan (dry run), the destination's setup, the recap.
pub fn render(report: &MigrateReport) -> String {
    let mut out = format!(
        "migrate {} -> {}{}\n",
        report.from,
        report.to,
        if report.dry_run { " (dry run)" } else { "" }
    );
    for p in &report.phases {
        out += &format!(
            "{:12} {:13} {}\n",
            p.phase.name(),
            p.outcome.label(),
            p.detail
        );
        for s in &p.steps {
            out += &format!("  {:13} {}: {}\n", s.outcome.label(), s.name, s.detail);
            if let (Some(diff), true) = (&s.diff, report.dry_run) {
                out += diff;
            }
        }
    }
    if let (Some(plan), true) = (&report.plan, report.dry_run) {
        out += &format!("\nplan:\n{}", inventory::render(plan));
    }
    if let Some(setup) = &report.setup {
        out += &format!("\nsetup of {}:\n{}", report.to, setup::render(setup));
    }
    if let Some(log) = &report.log {
        out += &format!("\nlog: {}\n", log.display());
    }
    let moved = report.moved.iter().map(|m| m.bytes).sum::<u64>()
        + report.setup.as_ref().map_or(0, |s| s.downloaded_bytes);
    out + &phase::recap(
        &format!("{} -> {}", report.from, report.to),
        &report.phases,
        moved,
        report.elapsed_ms,
    )
}
