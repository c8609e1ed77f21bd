//! `doctor`: is this host ready for ComfyUI? Each check is ok / warn / fail with a one-line
//! detail and a hint. Read-only: it never changes the host.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;
use serde::Serialize;

use crate::docker::{self, ComposeFlavor, Docker};
use crate::gpu::{self, Gpu, Probe, Profile};
use crate::host::{Command, Host};
use crate::models::manifest::Manifest;
use crate::system::{self, Platform};

/// Room for the ComfyUI image (NGC PyTorch base, about 20 GB) on top of the models.
const IMAGE_HEADROOM_BYTES: u64 = 25_000_000_000;

#[derive(Debug, Clone)]
pub struct DoctorOptions {
    /// The deployment root as given (`~` allowed).
    pub root: String,
    pub port: u16,
    /// Run `nvidia-smi` in this image with `--gpus all`.
    pub gpu_smoke: Option<String>,
    /// Disk the chosen model manifest needs; `None`: the default set's.
    pub needed_bytes: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    Warn,
    Fail,
}

fn level<S: serde::Serializer>(s: &Status, ser: S) -> Result<S::Ok, S::Error> {
    crate::step::status_and("level", s, ser)
}

impl crate::step::Finer for Status {
    fn outcome(&self) -> crate::step::Outcome {
        match self {
            Status::Ok | Status::Warn => crate::step::Outcome::Ok,
            Status::Fail => crate::step::Outcome::Failed,
        }
    }
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Warn => "warn",
            Status::Fail => "fail",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: &'static str,
    /// `"status"` in the vocabulary (a warning is `ok`), `"level"` the finer word.
    #[serde(flatten, serialize_with = "level")]
    pub status: Status,
    pub detail: String,
    pub hint: Option<String>,
}

impl Check {
    fn ok(name: &'static str, detail: impl Into<String>) -> Check {
        Check {
            name,
            status: Status::Ok,
            detail: detail.into(),
            hint: None,
        }
    }
    fn warn(name: &'static str, detail: impl Into<String>, hint: impl Into<String>) -> Check {
        Check {
            name,
            status: Status::Warn,
            detail: detail.into(),
            hint: Some(hint.into()),
        }
    }
    fn fail(name: &'static str, detail: impl Into<String>, hint: impl Into<String>) -> Check {
        Check {
            name,
            status: Status::Fail,
            detail: detail.into(),
            hint: Some(hint.into()),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Disk {
    pub root: PathBuf,
    pub free_bytes: u64,
    pub needed_bytes: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Port {
    pub port: u16,
    /// `None` when the host could not tell (no `ss`).
    pub in_use: Option<bool>,
    pub comfyui: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub host: String,
    pub arch: String,
    pub os: String,
    pub dgx_os: bool,
    pub profile: Profile,
    pub memory_total_mib: Option<u64>,
    pub gpus: Vec<Gpu>,
    pub docker: Docker,
    pub disk: Disk,
    pub port: Port,
    pub checks: Vec<Check>,
}

impl Report {
    pub fn failed(&self) -> bool {
        self.checks.iter().any(|c| c.status == Status::Fail)
    }
}

pub fn run(host: &dyn Host, opts: &DoctorOptions) -> Result<Report> {
    // Independent read-only probes, each a few round trips over SSH (or a slow `docker`
    // client): side by side, doctor takes as long as the slowest, not their sum.
    let (platform, probe, docker, disk, port) = std::thread::scope(|s| {
        let platform = s.spawn(|| system::probe_platform(host));
        let probe = s.spawn(|| gpu::probe(host));
        let docker = s.spawn(|| docker::probe(host));
        let port = s.spawn(|| probe_port(host, opts.port));
        let disk = probe_disk(host, opts);
        (
            joined(platform),
            joined(probe),
            joined(docker),
            disk,
            joined(port),
        )
    });
    let (platform, probe, docker, disk, port) = (platform?, probe?, docker?, disk?, port?);
    let gpus = match &probe {
        Probe::Gpus(g) => g.clone(),
        _ => Vec::new(),
    };
    let profile = gpu::profile_of(&gpus);
    let mut checks = vec![
        check_platform(&platform, profile),
        check_gpu(&probe),
        check_driver(&gpus),
        check_docker(&docker),
        check_compose(&docker),
        check_runtime(&docker, profile),
        check_disk(&disk),
        check_port(&port),
    ];
    if let Some(image) = &opts.gpu_smoke {
        checks.push(gpu_smoke(host, &docker, image)?);
    }
    Ok(Report {
        host: host.name().to_string(),
        arch: platform.arch,
        os: platform.os,
        dgx_os: platform.dgx_os,
        profile,
        memory_total_mib: platform.memory_total_mib,
        gpus,
        docker,
        disk,
        port,
        checks,
    })
}

/// A probe thread's answer; its panic goes on in the caller, as if it had run there.
fn joined<T>(handle: std::thread::ScopedJoinHandle<'_, T>) -> T {
    handle
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

fn probe_disk(host: &dyn Host, opts: &DoctorOptions) -> Result<Disk> {
    let root = host.expand_home(&opts.root)?;
    Ok(Disk {
        free_bytes: system::free_bytes(host, &root)?,
        needed_bytes: opts
            .needed_bytes
            .unwrap_or_else(|| Manifest::default_set().disk_bytes()),
        root,
    })
}

fn check_platform(p: &Platform, profile: Profile) -> Check {
    let detail = format!(
        "{}{}, {}",
        p.os,
        if p.dgx_os { " (DGX OS)" } else { "" },
        p.arch
    );
    match (profile, p.arch.as_str()) {
        (Profile::DgxSpark, arch) if arch != "aarch64" => Check::warn(
            "os",
            detail,
            "a DGX Spark runs aarch64; images built here for another architecture fail with `exec format error`",
        ),
        (_, "aarch64" | "x86_64") => Check::ok("os", detail),
        _ => Check::warn("os", detail, "only aarch64 and x86_64 hosts are supported"),
    }
}

fn check_gpu(probe: &Probe) -> Check {
    match probe {
        Probe::NoBinary => Check::fail(
            "gpu",
            "`nvidia-smi` not found: no NVIDIA driver installed",
            "install the NVIDIA driver (DGX OS ships it; on Ubuntu: `sudo ubuntu-drivers install`), then reboot",
        ),
        Probe::Failed { status, message } if gpu::is_no_driver(*status) => Check::fail(
            "gpu",
            format!("the NVIDIA driver is not loaded: {message}"),
            "reboot after a driver install, or check `lsmod | grep nvidia` and `dmesg | grep -i nvrm`",
        ),
        Probe::Failed { status, message } => Check::fail(
            "gpu",
            format!("`nvidia-smi` failed (exit {}): {message}", status.map_or("signal".into(), |s| s.to_string())),
            "run `nvidia-smi` on the host to see the whole message",
        ),
        Probe::Gpus(gpus) if gpus.is_empty() => Check::fail(
            "gpu",
            "`nvidia-smi` lists no GPU",
            "check that the GPU is seated and visible in `lspci | grep -i nvidia`",
        ),
        Probe::Gpus(gpus) => {
            let described: Vec<String> = gpus.iter().map(describe_gpu).collect();
            Check::ok("gpu", described.join("; "))
        }
    }
}

fn describe_gpu(g: &Gpu) -> String {
    let mib = |m: Option<u64>| m.map_or("unknown".to_string(), |m| format!("{m} MiB"));
    if g.memory_unified {
        format!(
            "{}: {} unified memory (MemTotal from /proc/meminfo; nvidia-smi reports none)",
            g.name,
            mib(g.usable_memory_mib)
        )
    } else {
        format!("{}: {}", g.name, mib(g.memory_total_mib))
    }
}

fn check_driver(gpus: &[Gpu]) -> Check {
    let Some(g) = gpus.first() else {
        return Check::fail(
            "driver",
            "no GPU, so no driver version",
            "see the `gpu` check",
        );
    };
    let cap = g
        .compute_cap
        .as_deref()
        .map_or(String::new(), |c| format!(", compute capability {c}"));
    match (&g.driver_version, &g.cuda_version) {
        (Some(d), Some(c)) => Check::ok("driver", format!("driver {d}, CUDA {c}{cap}")),
        (d, c) => Check::warn(
            "driver",
            format!(
                "driver {}, CUDA {}{cap}",
                d.as_deref().unwrap_or("unknown"),
                c.as_deref().unwrap_or("unknown")
            ),
            "run `nvidia-smi` on the host and check its header",
        ),
    }
}

fn check_docker(d: &Docker) -> Check {
    let Some(client) = &d.client_version else {
        return Check::fail(
            "docker",
            "the `docker` client is not installed",
            "install Docker Engine (DGX OS ships it; Debian/Ubuntu: `sudo apt-get install docker.io`)",
        );
    };
    match (&d.engine_version, d.needs_sudo) {
        (Some(e), false) => Check::ok("docker", format!("client {client}, engine {e}")),
        (Some(e), true) => Check::warn(
            "docker",
            format!("client {client}, engine {e}, reachable only through `sudo`"),
            "add yourself to group `docker` (`sudo usermod -aG docker $USER`) and log in again",
        ),
        (None, _) => Check::fail(
            "docker",
            format!(
                "client {client}, daemon not reachable: {}",
                d.error.as_deref().unwrap_or("no answer")
            ),
            "start it with `sudo systemctl start docker`; if permission is denied, join group `docker`",
        ),
    }
}

fn check_compose(d: &Docker) -> Check {
    match (d.compose.flavor, &d.compose.version) {
        (Some(ComposeFlavor::V2), Some(v)) => Check::ok("compose", format!("`docker compose` v2 {v}")),
        (Some(ComposeFlavor::V1), Some(v)) if version_at_least(v, 1, 28) => Check::ok(
            "compose",
            format!("`docker-compose` v1 {v} (GPU device reservations need 1.28+: fine)"),
        ),
        (Some(ComposeFlavor::V1), Some(v)) => Check::fail(
            "compose",
            format!("`docker-compose` v1 {v} is older than 1.28 and cannot reserve GPUs"),
            "install the Compose v2 plugin (`sudo apt-get install docker-compose-plugin`)",
        ),
        _ => Check::fail(
            "compose",
            "neither `docker compose` nor `docker-compose` found",
            "install the Compose v2 plugin (`sudo apt-get install docker-compose-plugin`) or `docker-compose`",
        ),
    }
}

fn version_at_least(version: &str, major: u64, minor: u64) -> bool {
    let mut parts = version.split('.').map(|p| p.parse::<u64>().unwrap_or(0));
    (parts.next().unwrap_or(0), parts.next().unwrap_or(0)) >= (major, minor)
}

fn check_runtime(d: &Docker, profile: Profile) -> Check {
    const HINT: &str = "install the NVIDIA Container Toolkit, then `sudo nvidia-ctk runtime configure --runtime=docker && sudo systemctl restart docker`";
    if !d.reachable {
        return Check::fail(
            "nvidia_runtime",
            "unknown: the Docker daemon is not reachable",
            "see the `docker` check",
        );
    }
    let runtimes = d.runtimes.join(" ");
    match (d.nvidia_runtime, profile) {
        (true, _) => Check::ok(
            "nvidia_runtime",
            format!("`nvidia` runtime registered ({runtimes})"),
        ),
        (false, Profile::NoGpu) => Check::warn(
            "nvidia_runtime",
            format!("no `nvidia` runtime ({runtimes}); no GPU either"),
            "only a CPU-only service (`--gpu none`) can run here",
        ),
        (false, _) => Check::fail(
            "nvidia_runtime",
            format!("no `nvidia` runtime in `docker info` ({runtimes})"),
            HINT,
        ),
    }
}

fn check_disk(disk: &Disk) -> Check {
    let detail = format!(
        "{} free under `{}`; the models need {}",
        crate::units::size(disk.free_bytes),
        disk.root.display(),
        crate::units::size(disk.needed_bytes)
    );
    if disk.free_bytes < disk.needed_bytes {
        Check::fail(
            "disk",
            detail,
            "free space, or choose a root on a larger disk with `--root`",
        )
    } else if disk.free_bytes < disk.needed_bytes + IMAGE_HEADROOM_BYTES {
        Check::warn(
            "disk",
            detail,
            format!(
                "the ComfyUI image needs about {} more on Docker's disk",
                crate::units::size(IMAGE_HEADROOM_BYTES)
            ),
        )
    } else {
        Check::ok("disk", detail)
    }
}

fn probe_port(host: &dyn Host, port: u16) -> Result<Port> {
    let in_use = system::port_listening(host, port)?;
    let comfyui = in_use == Some(true) && {
        let url = format!("http://127.0.0.1:{port}/system_stats");
        let cmd = Command::new("curl")
            .args(["-fsS", "-m", "3", &url])
            .timeout(Duration::from_secs(10));
        let out = host.run(&cmd)?;
        out.success()
            && serde_json::from_slice::<serde_json::Value>(&out.stdout)
                .is_ok_and(|v| v.get("system").is_some())
    };
    Ok(Port {
        port,
        in_use,
        comfyui,
    })
}

fn check_port(p: &Port) -> Check {
    match (p.in_use, p.comfyui) {
        (Some(false), _) => Check::ok("port", format!("port {} is free", p.port)),
        (_, true) => Check::ok("port", format!("port {} already serves ComfyUI", p.port)),
        (Some(true), false) => Check::warn(
            "port",
            format!("port {} is taken by something that is not ComfyUI", p.port),
            format!("find it with `sudo ss -ltnp 'sport = :{}'`, or choose another port in the playbook", p.port),
        ),
        (None, _) => Check::warn("port", format!("cannot tell whether port {} is free (no `ss`)", p.port), "install iproute2"),
    }
}

fn gpu_smoke(host: &dyn Host, d: &Docker, image: &str) -> Result<Check> {
    let cmd = d
        .command(&[
            "run",
            "--rm",
            "--runtime=nvidia",
            "--gpus",
            "all",
            image,
            "nvidia-smi",
        ])
        .timeout(Duration::from_secs(600));
    let out = host.run(&cmd)?;
    Ok(if out.success() {
        Check::ok(
            "gpu_smoke",
            format!("`nvidia-smi` ran in `{image}` with `--gpus all`"),
        )
    } else {
        let err = out.stderr_text();
        // Docker's own error line, not its closing "Run 'docker run --help'" advice.
        let why = err
            .lines()
            .find(|l| l.to_lowercase().contains("error"))
            .or_else(|| err.lines().rfind(|l| !l.trim().is_empty()))
            .unwrap_or("")
            .trim();
        Check::fail(
            "gpu_smoke",
            format!("`{}` failed: {why}", cmd.shell_line()),
            "install and register the NVIDIA Container Toolkit: `sudo apt-get install -y nvidia-container-toolkit && sudo nvidia-ctk runtime configure --runtime=docker && sudo systemctl restart docker`; check that the image exists for this architecture",
        )
    })
}

/// The aligned table for people: a header line, then one row per check, hints under the
/// rows that need them.
pub fn render(report: &Report, printer: &crate::ui::Printer) -> String {
    use console::Style;
    let mut out = format!(
        "host: {}   arch: {}   profile: {}\n\n",
        report.host,
        report.arch,
        report.profile.as_str()
    );
    let width = report
        .checks
        .iter()
        .map(|c| c.name.len())
        .max()
        .unwrap_or(0);
    for c in &report.checks {
        let (label, style) = match c.status {
            Status::Ok => ("ok  ", Style::new().green()),
            Status::Warn => ("warn", Style::new().yellow()),
            Status::Fail => ("FAIL", Style::new().red().bold()),
        };
        out += &format!(
            "{}  {:width$}  {}\n",
            printer.style(style, label),
            c.name,
            c.detail
        );
        if let (Some(hint), false) = (&c.hint, c.status == Status::Ok) {
            out += &format!(
                "      {:width$}  {} {hint}\n",
                "",
                printer.style(Style::new().cyan(), "hint:")
            );
        }
    }
    out
}
