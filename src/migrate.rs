//! `migrate`: an RTX PC's ComfyUI moved to a Spark. Both hosts are checked, the source's
//! workflows backed up, the destination set up (models copied from the source when it has them,
//! else downloaded), the workflows restored and the destination verified. Only then does
//! Life-OS's `.env` point at the destination; a failure anywhere before leaves it on the
//! source, which keeps working. Every stage checks first, so a re-run resumes.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{anyhow, bail, Result};
use serde::Serialize;

use crate::doctor::{self, DoctorOptions, Status};
use crate::envfile::{self, SetOptions};
use crate::gpu::{self, Profile};
use crate::host::Host;
use crate::models::copy::{self, Source};
use crate::models::manifest::Manifest;
use crate::playbook::Playbook;
use crate::service::{self, Deployment};
use crate::setup::{self, Phase, SetupOptions, SetupReport};
use crate::step::{FileStep, Mode, Outcome, Replace, StepReport};
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

#[derive(Debug, Serialize)]
pub struct MigrateReport {
    pub from: String,
    pub to: String,
    pub dry_run: bool,
    pub steps: Vec<StepReport>,
    pub setup: Option<SetupReport>,
}

impl MigrateReport {
    pub fn failed(&self) -> bool {
        self.steps.iter().any(|s| s.outcome == Outcome::Failed)
            || self.setup.as_ref().is_some_and(|s| s.failed())
    }
}

/// One entry of the device pool Life-OS's router reads (the seed's `comfyui_devices`).
#[derive(Debug, Clone, Serialize)]
pub struct Device {
    pub name: String,
    pub url: String,
    pub priority: u32,
    pub capabilities: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct DevicePool {
    pub comfyui_devices: Vec<Device>,
}

fn capabilities(profile: Profile) -> Vec<String> {
    let mut caps = vec!["sdxl", "flux", "controlnet"];
    if profile == Profile::DgxSpark {
        // 128 GB of unified memory: large batches and several large models at once.
        caps.extend(["large_batch", "large_models"]);
    }
    caps.into_iter().map(String::from).collect()
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
}

pub fn migrate(
    from: &Arc<dyn Host>,
    to: &Arc<dyn Host>,
    local: &dyn Host,
    opts: MigrateOptions,
    printer: &Printer,
) -> Result<MigrateReport> {
    let mut m = Migration {
        from,
        to,
        local,
        opts: &opts,
        printer,
        steps: Vec::new(),
    };
    let setup = m.run();
    let (setup, error) = match setup {
        Ok(s) => (s, None),
        Err(e) => (None, Some(e)),
    };
    if let Some(e) = error {
        printer.print_error(&e);
        m.steps.push(StepReport::new(
            "migrate",
            Outcome::Failed,
            format!(
                "{}; Life-OS's .env still points at the source",
                crate::ui::one_line(&e)
            ),
        ));
    }
    Ok(MigrateReport {
        from: from.name().into(),
        to: to.name().into(),
        dry_run: opts.setup.mode.dry_run,
        steps: m.steps,
        setup,
    })
}

impl<'a> Migration<'a> {
    fn dry_run(&self) -> bool {
        self.opts.setup.mode.dry_run
    }

    fn run(&mut self) -> Result<Option<SetupReport>> {
        let from_d = self.source_deployment()?;
        self.check_source(&from_d)?;
        let archive = self.backup(&from_d)?;
        let models_from = self.models_source(&from_d)?;
        let setup = self.setup_destination(models_from)?;
        if setup.failed() {
            self.steps.push(StepReport::new(
                "destination",
                Outcome::Failed,
                "setup failed; see the phases",
            ));
            return Ok(Some(setup));
        }
        self.restore(archive.as_deref(), &from_d, &setup)?;
        // `.env` moves only to a destination whose verify phase ran and passed.
        if !self.dry_run() && setup.outcome(Phase::Verify) != Some(Outcome::Ok) {
            let why = "the destination was not verified (its `verify` phase did not pass); Life-OS's .env still points at the source";
            self.steps
                .push(StepReport::new(".env", Outcome::Skipped, why));
            return Ok(Some(setup));
        }
        let url = setup
            .url
            .clone()
            .ok_or_else(|| anyhow!("setup chose no deployment"))?;
        self.update_env(&url)?;
        match self.opts.mode {
            MigrateMode::Parallel => self.write_pool(&url, &from_d)?,
            MigrateMode::Replace if self.opts.stop_source => {
                let mode = Mode {
                    dry_run: self.dry_run(),
                    replace: Replace::Yes,
                };
                self.steps.extend(from_d.down(mode)?);
            }
            MigrateMode::Replace => {}
        }
        Ok(Some(setup))
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

    /// The source's workflows, archived on this machine (kept: the operator's copy).
    fn backup(&mut self, from_d: &Deployment) -> Result<Option<PathBuf>> {
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
        let root = from_d.root.to_string_lossy().into_owned();
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

    fn models_source(&mut self, from_d: &Deployment) -> Result<Option<(Arc<dyn Host>, PathBuf)>> {
        let manifest = Manifest::load(self.opts.setup.manifest.as_deref(), false)?;
        let source = Source {
            host: from_d.host,
            root: &from_d.root,
        };
        let has_all = copy::source_has_all(&source, &manifest)?;
        let choice = match (self.opts.models_from, has_all) {
            (Some(ModelsFrom::Source), false) => {
                return Err(anyhow!("{} does not hold every model file of the manifest", self.from.name()))
                    .hint("use `--models-from internet`, or run `lifeos-spark --host SOURCE models pull` first")
            }
            (Some(choice), _) => choice,
            (None, true) => ModelsFrom::Source,
            (None, false) => ModelsFrom::Internet,
        };
        let detail = match choice {
            ModelsFrom::Source => format!(
                "copy from {} (no second {} download)",
                self.from.name(),
                crate::units::size(manifest.total_bytes())
            ),
            ModelsFrom::Internet => "download from the manifest's URLs".to_string(),
        };
        self.steps
            .push(StepReport::new("models source", Outcome::Ok, detail));
        Ok((choice == ModelsFrom::Source).then(|| (self.from.clone(), from_d.root.clone())))
    }

    fn setup_destination(
        &mut self,
        models_from: Option<(Arc<dyn Host>, PathBuf)>,
    ) -> Result<SetupReport> {
        let opts = SetupOptions {
            models_from,
            ..self.opts.setup.clone()
        };
        setup::setup(self.to, &opts, self.printer)
    }

    fn restore(
        &mut self,
        archive: Option<&Path>,
        from_d: &Deployment,
        setup: &SetupReport,
    ) -> Result<()> {
        let root = match &setup.root {
            Some(r) => r.to_string_lossy().into_owned(),
            None => bail!("setup chose no deployment root on {}", self.to.name()),
        };
        let Some(archive) = archive else {
            // Dry run: no archive was written; plan the restore straight from the source.
            let from_root = from_d.root.to_string_lossy().into_owned();
            let r = workflows::transfer(
                self.from.as_ref(),
                &from_root,
                self.to.as_ref(),
                &root,
                false,
                true,
            )?;
            let detail = format!(
                "would restore {} files, {} unchanged, {} conflicting",
                r.outcome.restored.len(),
                r.outcome.unchanged.len(),
                r.outcome.conflicting.len()
            );
            self.steps.push(StepReport::new(
                "restore workflows",
                Outcome::WouldChange,
                detail,
            ));
            return Ok(());
        };
        let r = workflows::restore(self.local, archive, self.to.as_ref(), &root, false, false)?;
        if !r.outcome.conflicting.is_empty() {
            bail!(
                "{} workflows differ on {} and were left alone: {}",
                r.outcome.conflicting.len(),
                self.to.name(),
                r.outcome.conflicting.join(", ")
            );
        }
        let outcome = if r.outcome.restored.is_empty() {
            Outcome::Ok
        } else {
            Outcome::Changed
        };
        let detail = format!(
            "{} restored, {} unchanged, {} verified on {}",
            r.outcome.restored.len(),
            r.outcome.unchanged.len(),
            r.verified,
            self.to.name()
        );
        self.steps
            .push(StepReport::new("restore workflows", outcome, detail));
        Ok(())
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
        let r = envfile::set(
            self.local,
            &SetOptions {
                file: file.clone(),
                updates,
                create: false,
                dry_run: self.dry_run(),
            },
        )?;
        let mut step = StepReport::new(
            format!(".env {}", r.path.display()),
            r.status,
            format!("{} keys changed", r.changed_keys.len()),
        );
        step.diff = (!r.diff.is_empty()).then_some(r.diff);
        self.steps.push(step);
        Ok(())
    }

    /// The seed's gradual transition: both devices, the destination preferred.
    fn write_pool(&mut self, url: &str, from_d: &Deployment) -> Result<()> {
        let from_url = match &self.opts.from_url {
            Some(u) => u.clone(),
            None => service::default_url(self.from.name(), from_d.playbook.port, None)?,
        };
        let (to_profile, _) = profile_of(self.to.as_ref())?;
        let (from_profile, _) = profile_of(self.from.as_ref())?;
        let pool = DevicePool {
            comfyui_devices: vec![
                Device {
                    name: to_profile.as_str().into(),
                    url: url.into(),
                    priority: 1,
                    capabilities: capabilities(to_profile),
                },
                Device {
                    name: from_profile.as_str().into(),
                    url: from_url,
                    priority: 2,
                    capabilities: capabilities(from_profile),
                },
            ],
        };
        let text = format!("# Written by lifeos-spark migrate: ComfyUI devices for Life-OS's router, preferred first.\n{}", serde_yaml::to_string(&pool)?);
        let step = FileStep {
            path: self.opts.pool_file.clone(),
            content: &text,
            mode: Some(0o644),
        };
        // The pool is the tool's own output: replaced without asking, the old one kept.
        let mode = Mode {
            dry_run: self.dry_run(),
            replace: Replace::Yes,
        };
        let report = step.run(self.local, mode, self.printer)?;
        self.steps.push(report);
        Ok(())
    }
}

/// Migration stages, then the destination's setup recap.
pub fn render(report: &MigrateReport) -> String {
    let mut out = format!(
        "migrate {} -> {}{}\n",
        report.from,
        report.to,
        if report.dry_run { " (dry run)" } else { "" }
    );
    for s in &report.steps {
        out += &format!("{:13} {}: {}\n", s.outcome.label(), s.name, s.detail);
        if let (Some(diff), true) = (&s.diff, report.dry_run) {
            out += diff;
        }
    }
    if let Some(setup) = &report.setup {
        out += &format!("\nsetup of {}:\n{}", report.to, setup::render(setup));
    }
    out
}
