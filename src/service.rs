//! The ComfyUI service on a host: write its files (`compose`), build and start it (`up`), stop
//! it (`down`). Every action is a step that checks first; `--dry-run` stops after the checks.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};

use crate::comfyui;
use crate::compose::{self, ServiceOptions, COMPOSE_FILE, FOLDERS, SERVICE};
use crate::docker::{self, Docker};
use crate::host::{Command, Host};
use crate::playbook::Playbook;
use crate::step::{FileStep, Mode, Outcome, StepReport};
use crate::ui::{HintExt, Printer};

/// The image label that records which Dockerfile an image was built from: a changed
/// Dockerfile (another base image or ComfyUI ref) means a rebuild, not a stale image.
const DOCKERFILE_LABEL: &str = "org.lifeos-spark.dockerfile-sha256";

fn dockerfile_hash(dockerfile: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(dockerfile.as_bytes()))
}

/// One deployment: a playbook applied to a root on a host.
pub struct Deployment<'a> {
    pub host: &'a dyn Host,
    pub playbook: Playbook,
    pub root: PathBuf,
    pub opts: ServiceOptions,
}

impl<'a> Deployment<'a> {
    pub fn new(
        host: &'a dyn Host,
        playbook: Playbook,
        root: Option<&str>,
        gpu: bool,
        bind: Option<std::net::IpAddr>,
    ) -> Result<Self> {
        let root = host.expand_home(root.unwrap_or(&playbook.root))?;
        // Probed once per run, with doctor's platform checks.
        let arch = crate::system::probe_platform(host)?.arch;
        Ok(Deployment {
            host,
            playbook,
            root,
            opts: ServiceOptions { bind, gpu, arch },
        })
    }

    fn compose_path(&self) -> PathBuf {
        self.root.join(COMPOSE_FILE)
    }

    /// `docker compose -p P -f FILE ARGS` (or `docker-compose ...`), with `sudo -n` when the
    /// daemon needs it.
    fn compose_cmd(&self, docker: &Docker, args: &[&str]) -> Result<Command> {
        self.compose_cmd_for(docker, &self.compose_path(), args)
    }

    fn compose_cmd_for(&self, docker: &Docker, path: &Path, args: &[&str]) -> Result<Command> {
        let file = path.to_str().context("root is not UTF-8")?;
        let argv = [&["-p", self.playbook.project.as_str(), "-f", file], args].concat();
        docker
            .compose_command(&argv)
            .ok_or_else(|| {
                anyhow!(
                    "neither `docker compose` nor `docker-compose` is installed on {}",
                    self.host.name()
                )
            })
            .hint("install the Compose v2 plugin (`sudo apt-get install docker-compose-plugin`)")
    }

    /// Folders, Dockerfile, .dockerignore and docker-compose.yml, validated by the host's
    /// Compose when it has one (a daemon is not needed for that); without one, a warning.
    pub fn write_files(
        &self,
        docker: Option<&Docker>,
        mode: Mode,
        printer: &Printer,
    ) -> Result<Vec<StepReport>> {
        let mut reports = vec![self.folders(mode)?];
        let dockerfile = compose::render_dockerfile(&self.playbook, &self.opts);
        let yaml = compose::render_compose(&self.playbook, &self.opts);
        match docker.filter(|d| d.compose_command(&[]).is_some()) {
            Some(docker) => self.validate_compose(docker, &yaml)?,
            None => printer.warn(format!(
                "{COMPOSE_FILE} not validated: {} has no `docker compose` or `docker-compose`",
                self.host.name()
            )),
        }
        for (name, content) in [
            ("Dockerfile", dockerfile.as_str()),
            (".dockerignore", compose::DOCKERIGNORE),
            (COMPOSE_FILE, &yaml),
        ] {
            let step = FileStep {
                path: self.root.join(name),
                content,
                mode: None,
            };
            reports.push(step.run(self.host, mode, printer)?);
        }
        Ok(reports)
    }

    fn folders(&self, mode: Mode) -> Result<StepReport> {
        let mut missing = Vec::new();
        for folder in FOLDERS {
            if self.host.stat(&self.root.join(folder))?.is_none() {
                missing.push(folder);
            }
        }
        let name = format!("{}/{{{}}}", self.root.display(), FOLDERS.join(","));
        if missing.is_empty() {
            return Ok(StepReport::new(name, Outcome::Ok, "all present"));
        }
        if mode.dry_run {
            return Ok(StepReport::new(
                name,
                Outcome::WouldChange,
                format!("would create {}", missing.join(", ")),
            ));
        }
        for folder in &missing {
            self.host.mkdir_p(&self.root.join(folder))?;
        }
        Ok(StepReport::new(
            name,
            Outcome::Changed,
            format!("created {}", missing.join(", ")),
        ))
    }

    /// Ask the host's Compose to parse the file before it replaces anything. The file goes in
    /// on stdin (`-f -`), so a dry run writes nothing; `config` needs no daemon.
    fn validate_compose(&self, docker: &Docker, yaml: &str) -> Result<()> {
        let cmd = self
            .compose_cmd_for(docker, Path::new("-"), &["config", "-q"])?
            .stdin(yaml);
        let out = self.host.run(&cmd)?;
        if !out.success() {
            bail!(
                "`{}` rejects the compose file lifeos-spark wrote: {}",
                cmd.program,
                out.stderr_text().trim()
            );
        }
        Ok(())
    }

    fn image_step(
        &self,
        docker: &Docker,
        rebuild: bool,
        mode: Mode,
        printer: &Printer,
    ) -> Result<StepReport> {
        let tag = &self.playbook.image;
        let name = format!("image {tag}");
        let wanted = dockerfile_hash(&compose::render_dockerfile(&self.playbook, &self.opts));
        let format = format!("{{{{index .Config.Labels \"{DOCKERFILE_LABEL}\"}}}}");
        let inspect = self
            .host
            .run(&docker.command(&["image", "inspect", "--format", &format, tag]))?;
        let label = inspect.stdout_text().trim().to_string();
        let why = match (inspect.success(), label.as_str()) {
            (false, _) => "missing",
            _ if rebuild => "rebuild asked",
            (true, l) if l == wanted => {
                return Ok(StepReport::new(
                    name,
                    Outcome::Ok,
                    "present, built from this Dockerfile",
                ))
            }
            // Built by someone else (or pulled): used as it is.
            (true, "" | "<no value>") => {
                return Ok(StepReport::new(
                    name,
                    Outcome::Ok,
                    "present (not built by lifeos-spark; used as is)",
                ))
            }
            (true, _) => "the Dockerfile changed",
        };
        if mode.dry_run {
            return Ok(StepReport::new(
                name,
                Outcome::WouldChange,
                format!("would build from {} ({why})", self.playbook.base_image),
            ));
        }
        printer.status(format!(
            "building {tag} from {} on {} (this takes a while the first time)",
            self.playbook.base_image,
            self.host.name()
        ));
        let root = self.root.to_str().context("root is not UTF-8")?;
        let label = format!("{DOCKERFILE_LABEL}={wanted}");
        let out = self
            .host
            .run(&docker.command(&["build", "--label", &label, "-t", tag, root]))?;
        if !out.success() {
            return Err(anyhow!("building {tag} failed:\n{}", out.stderr_tail(15)))
                .hint("fix the cause above (network to nvcr.io and github.com, disk space), then run `up` again");
        }
        Ok(StepReport::new(
            name,
            Outcome::Changed,
            format!("built ({why})"),
        ))
    }

    /// The running ComfyUI container's id, if any.
    pub fn running_container(&self, docker: &Docker) -> Result<Option<String>> {
        if self.host.stat(&self.compose_path())?.is_none() {
            return Ok(None);
        }
        Ok(self
            .container(docker)?
            .filter(|(_, running)| *running)
            .map(|(id, _)| id))
    }

    /// `docker exec -i [-w DIR] ID ARGS...` on the host.
    pub fn exec_cmd(
        &self,
        docker: &Docker,
        id: &str,
        workdir: Option<&str>,
        args: &[String],
    ) -> Command {
        let mut argv = vec!["exec".to_string(), "-i".to_string()];
        if let Some(dir) = workdir {
            argv.extend(["-w".to_string(), dir.to_string()]);
        }
        argv.push(id.to_string());
        argv.extend(args.iter().cloned());
        let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
        docker.command(&argv)
    }

    /// Restart ComfyUI (it loads custom nodes only at start) and wait until it answers.
    pub fn restart(&self, docker: &Docker, url: &str, printer: &Printer) -> Result<StepReport> {
        self.host
            .run_ok(&self.compose_cmd(docker, &["restart", SERVICE])?)?;
        let health = self.wait_healthy(docker, url, printer)?;
        Ok(StepReport::new(
            "restart",
            Outcome::Changed,
            format!("restarted; {}", health.detail),
        ))
    }

    /// The container's log lines that mention `needle` (import errors of a custom node).
    pub fn log_lines(&self, docker: &Docker, needle: &str) -> Vec<String> {
        self.compose_cmd(docker, &["logs", "--no-color", SERVICE])
            .and_then(|c| self.host.run(&c))
            .map(|o| {
                format!("{}{}", o.stdout_text(), o.stderr_text())
                    .lines()
                    .filter(|l| l.contains(needle))
                    .map(|l| l.trim().to_string())
                    .collect()
            })
            .unwrap_or_default()
    }

    fn container(&self, docker: &Docker) -> Result<Option<(String, bool)>> {
        let out = self
            .host
            .run_ok(&self.compose_cmd(docker, &["ps", "-q", SERVICE])?)?;
        let Some(id) = out
            .stdout_text()
            .lines()
            .next()
            .map(|l| l.trim().to_string())
            .filter(|l| !l.is_empty())
        else {
            return Ok(None);
        };
        let state =
            self.host
                .run(&docker.command(&["inspect", "--format", "{{.State.Running}}", &id]))?;
        Ok(Some((id, state.stdout_text().trim() == "true")))
    }

    fn start_step(&self, docker: &Docker, mode: Mode) -> Result<StepReport> {
        let name = format!("service {SERVICE}");
        let before = if self.host.stat(&self.compose_path())?.is_some() {
            self.container(docker)?
        } else {
            None
        };
        if mode.dry_run {
            return Ok(match before {
                Some((_, true)) => StepReport::new(name, Outcome::Ok, "running"),
                _ => StepReport::new(name, Outcome::WouldChange, "would start"),
            });
        }
        let out = self
            .host
            .run(&self.compose_cmd(docker, &["up", "-d", "--no-build"])?)?;
        if !out.success() {
            return Err(anyhow!("starting ComfyUI failed: {}", out.stderr_text().trim()))
                .hint("see `docker compose logs` in the deployment root; `--gpu none` runs a CPU-only service for testing");
        }
        let after = self.container(docker)?;
        Ok(match (before, after) {
            (Some((a, true)), Some((b, true))) if a == b => {
                StepReport::new(name, Outcome::Ok, "running")
            }
            (_, Some((_, true))) => StepReport::new(name, Outcome::Changed, "started"),
            _ => bail!(
                "ComfyUI's container is not running after `up`: {}",
                self.logs_tail(docker)
            ),
        })
    }

    fn logs_tail(&self, docker: &Docker) -> String {
        self.recent_logs(docker, 20)
    }

    /// The container's last `lines` log lines (stdout and stderr).
    pub fn recent_logs(&self, docker: &Docker, lines: usize) -> String {
        let tail = lines.to_string();
        self.compose_cmd(docker, &["logs", "--no-color", "--tail", &tail, SERVICE])
            .and_then(|c| self.host.run(&c))
            .map(|o| format!("{}{}", o.stdout_text(), o.stderr_text()))
            .unwrap_or_default()
    }

    /// Build if missing, start, wait for `/system_stats`.
    pub fn up(
        &self,
        url: &str,
        rebuild: bool,
        mode: Mode,
        printer: &Printer,
    ) -> Result<Vec<StepReport>> {
        let docker = match self.ready_for_gpu() {
            Ok(docker) => docker,
            Err(e) if mode.dry_run => {
                let why = "Docker is not usable for this service (see above)";
                return self.plan_up_blocked(&e, why, (url, rebuild, mode), printer);
            }
            Err(e) => return Err(e),
        };
        let mut reports = self.write_files(Some(&docker), mode, printer)?;
        reports.extend(self.start(&docker, url, rebuild, mode, printer)?);
        Ok(reports)
    }

    /// Docker, refusing a GPU service when it has no NVIDIA runtime.
    pub fn ready_for_gpu(&self) -> Result<Docker> {
        let docker = ready_docker(self.host)?;
        if self.opts.gpu && !docker.nvidia_runtime {
            return Err(anyhow!("{} has no NVIDIA runtime in Docker, and the service asks for a GPU", self.host.name()))
                .hint("install the NVIDIA Container Toolkit (`sudo nvidia-ctk runtime configure --runtime=docker && sudo systemctl restart docker`), or use `--gpu none` for a CPU-only test service");
        }
        Ok(docker)
    }

    /// With the files in place: build the image if missing, start, wait for `/system_stats`.
    pub fn start(
        &self,
        docker: &Docker,
        url: &str,
        rebuild: bool,
        mode: Mode,
        printer: &Printer,
    ) -> Result<Vec<StepReport>> {
        let mut reports = vec![
            self.image_step(docker, rebuild, mode, printer)?,
            self.start_step(docker, mode)?,
        ];
        if !mode.dry_run {
            reports.push(self.wait_healthy(docker, url, printer)?);
        }
        // The nodes' packages: a venv lost or made stale by a new image is repaired here.
        reports.extend(crate::nodes::venv::repair(
            self, docker, url, mode, printer,
        )?);
        Ok(reports)
    }

    /// `up`'s plan when a real `up` would stop before its first change (no GPU to pick the
    /// playbook by, Docker not usable for the service): the files (Compose still validates
    /// when the host has it), then the start (checked when the daemon answers), all blocked
    /// by `err` (said once, on stderr, with its hint; `why` in each step).
    pub fn plan_up_blocked(
        &self,
        err: &anyhow::Error,
        why: &str,
        plan: (&str, bool, Mode),
        printer: &Printer,
    ) -> Result<Vec<StepReport>> {
        let (url, rebuild, mode) = plan;
        announce_blocker(printer, err, "up");
        let probed = docker::probe(self.host).ok();
        let mut reports = self.write_files(probed.as_ref(), mode, printer)?;
        match probed.filter(|d| d.reachable) {
            Some(docker) => reports.extend(self.start(&docker, url, rebuild, mode, printer)?),
            None => reports.extend(self.plan_start_unchecked()),
        }
        crate::step::block(&mut reports, why);
        Ok(reports)
    }

    /// `start`'s plan when Docker cannot be asked (no client, no daemon): what a real run would
    /// do, unchecked.
    pub fn plan_start_unchecked(&self) -> Vec<StepReport> {
        vec![
            StepReport::new(
                format!("image {}", self.playbook.image),
                Outcome::WouldChange,
                format!(
                    "would build from {} unless present (not checked: no usable Docker)",
                    self.playbook.base_image
                ),
            ),
            StepReport::new(
                format!("service {SERVICE}"),
                Outcome::WouldChange,
                "would start",
            ),
        ]
    }

    pub fn wait_healthy(
        &self,
        docker: &Docker,
        url: &str,
        printer: &Printer,
    ) -> Result<StepReport> {
        let client = comfyui::Client::new(url)?;
        let timeout = Duration::from_secs(self.playbook.start_timeout);
        let spinner = printer.spinner(format!("waiting for ComfyUI at {url}"));
        let started = Instant::now();
        let stats = loop {
            match client.system_stats() {
                Ok(stats) => break stats,
                Err(_) if started.elapsed() < timeout => {
                    std::thread::sleep(Duration::from_millis(500))
                }
                Err(e) => {
                    spinner.finish_and_clear();
                    return Err(e.context(format!(
                        "ComfyUI did not answer at {url} within {}s; its last log lines:\n{}",
                        timeout.as_secs(),
                        self.logs_tail(docker)
                    )))
                    .hint("if the log shows no error, the address may not be reachable from here: pass `--url`");
                }
            }
        };
        spinner.finish_and_clear();
        let version = stats
            .system
            .comfyui_version
            .unwrap_or_else(|| "unknown version".into());
        let device = stats
            .devices
            .first()
            .map(|d| d.name.clone())
            .unwrap_or_default();
        Ok(StepReport::new(
            "health",
            Outcome::Ok,
            format!("{url}/system_stats answers: ComfyUI {version}, {device}"),
        ))
    }

    pub fn down(&self, mode: Mode) -> Result<Vec<StepReport>> {
        let name = format!("service {SERVICE}");
        if self.host.stat(&self.compose_path())?.is_none() {
            return Ok(vec![StepReport::new(
                name,
                Outcome::Ok,
                format!(
                    "no {COMPOSE_FILE} under {}: nothing to stop",
                    self.root.display()
                ),
            )]);
        }
        let docker = ready_docker(self.host)?;
        if self.container(&docker)?.is_none() {
            return Ok(vec![StepReport::new(name, Outcome::Ok, "not running")]);
        }
        if mode.dry_run {
            return Ok(vec![StepReport::new(
                name,
                Outcome::WouldChange,
                "would stop and remove the container (models and data stay)",
            )]);
        }
        self.host.run_ok(&self.compose_cmd(&docker, &["down"])?)?;
        Ok(vec![StepReport::new(
            name,
            Outcome::Changed,
            "stopped and removed the container (models and data stay)",
        )])
    }
}

/// A plan's blocker, said once (stderr, with its hint): a real `command` stops there.
pub fn announce_blocker(printer: &Printer, err: &anyhow::Error, command: &str) {
    printer.print_error(err);
    printer.status(format!("a real `{command}` stops there; the plan goes on"));
}

/// Docker as the host has it, or an error saying why it cannot be used.
pub fn ready_docker(host: &dyn Host) -> Result<Docker> {
    let docker = docker::probe(host)?;
    if !docker.reachable {
        return Err(anyhow!(
            "Docker on {} is not usable: {}",
            host.name(),
            docker
                .error
                .clone()
                .unwrap_or_else(|| "the `docker` client is missing".into())
        ))
        .hint("run `lifeos-spark doctor` on that host for the fix");
    }
    Ok(docker)
}

/// `http://<address>:<port>`: 127.0.0.1 for the local host, the SSH target's address otherwise.
pub fn default_url(host_arg: &str, port: u16, home: Option<&Path>) -> Result<String> {
    if host_arg == "local" {
        return Ok(format!("http://127.0.0.1:{port}"));
    }
    let target = crate::host::SshTarget::resolve(host_arg, home)?;
    let addr = match target.host_name.parse::<std::net::Ipv6Addr>() {
        Ok(v6) => format!("[{v6}]"),
        Err(_) => target.host_name,
    };
    Ok(format!("http://{addr}:{port}"))
}
