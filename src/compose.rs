//! The files that define the ComfyUI service, rendered from typed data: `Dockerfile`,
//! `.dockerignore` and `docker-compose.yml`. Pure functions of the playbook, the host's
//! architecture and the operator's options.

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::Serialize;

use crate::playbook::{PipRules, Playbook, Ulimits};

/// Where ComfyUI lives inside the image.
pub const COMFY_DIR: &str = "/opt/ComfyUI";
/// The port ComfyUI listens on inside the container.
pub const CONTAINER_PORT: u16 = 8188;
pub const SERVICE: &str = "comfyui";
pub const COMPOSE_FILE: &str = "docker-compose.yml";
/// The custom nodes' Python environment inside the container: a virtualenv with
/// `--system-site-packages` (so it sees the image's CUDA PyTorch) on the deployment root's
/// `venv/` folder, so the nodes' packages survive the container, `up --rebuild` and reboots.
pub const VENV_DIR: &str = "/opt/venv";

/// Folders under the deployment root: the seed's (`basedir`, `workflows`, `models`, `output`)
/// plus what ComfyUI writes (`custom_nodes`, `input`, `user`).
pub const FOLDERS: [&str; 8] = [
    "basedir",
    "workflows",
    "models",
    "output",
    "custom_nodes",
    "input",
    "user",
    "venv",
];

#[derive(Debug, Clone)]
pub struct ServiceOptions {
    /// Override of the playbook's bind address (`--bind`).
    pub bind: Option<IpAddr>,
    /// Reserve NVIDIA GPUs (`--gpu all`, the default) or not (`--gpu none`, CPU-only tests).
    pub gpu: bool,
    /// `uname -m` of the host; decides the pip rules.
    pub arch: String,
}

#[derive(Debug, Serialize, PartialEq)]
pub struct ComposeFile {
    pub services: BTreeMap<String, Service>,
}

#[derive(Debug, Serialize, PartialEq)]
pub struct Service {
    pub build: Build,
    pub image: String,
    pub ports: Vec<String>,
    pub volumes: Vec<String>,
    pub ipc: String,
    pub ulimits: Ulimits,
    pub restart: String,
    pub healthcheck: Healthcheck,
    /// The launch command with the playbook's `comfyui_args`; absent without them (the
    /// image's CMD, the same command, runs).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deploy: Option<Deploy>,
}

/// How ComfyUI starts in the container (the Dockerfile's CMD); `python` is the venv's when it
/// exists (PATH).
pub fn launch_command() -> Vec<String> {
    let port = CONTAINER_PORT.to_string();
    ["python", "main.py", "--listen", "0.0.0.0", "--port", &port]
        .map(String::from)
        .to_vec()
}

#[derive(Debug, Serialize, PartialEq)]
pub struct Build {
    pub context: String,
    pub dockerfile: String,
}

#[derive(Debug, Serialize, PartialEq)]
pub struct Healthcheck {
    pub test: Vec<String>,
    pub interval: String,
    pub timeout: String,
    pub retries: u32,
    pub start_period: String,
}

#[derive(Debug, Serialize, PartialEq)]
pub struct Deploy {
    pub resources: Resources,
}

#[derive(Debug, Serialize, PartialEq)]
pub struct Resources {
    pub reservations: Reservations,
}

#[derive(Debug, Serialize, PartialEq)]
pub struct Reservations {
    pub devices: Vec<DeviceRequest>,
}

#[derive(Debug, Serialize, PartialEq)]
pub struct DeviceRequest {
    pub driver: String,
    pub count: String,
    pub capabilities: Vec<String>,
}

pub fn bind_address(playbook: &Playbook, opts: &ServiceOptions) -> IpAddr {
    opts.bind.unwrap_or(playbook.bind)
}

pub fn compose_file(playbook: &Playbook, opts: &ServiceOptions) -> ComposeFile {
    let bind = bind_address(playbook, opts);
    // `[::]:8188:8188` is how Compose spells an IPv6 bind.
    let bind = match bind {
        IpAddr::V6(v6) => format!("[{v6}]"),
        IpAddr::V4(v4) => v4.to_string(),
    };
    let volumes = ["models", "custom_nodes", "output", "input", "user"]
        .iter()
        .map(|d| format!("./{d}:{COMFY_DIR}/{d}"))
        .chain(std::iter::once("./workflows:/workflows".to_string()))
        .chain(std::iter::once(format!("./venv:{VENV_DIR}")))
        .collect();
    let default_test = vec![
        "CMD".to_string(),
        "python".to_string(),
        "-c".to_string(),
        format!("import urllib.request; urllib.request.urlopen('http://127.0.0.1:{CONTAINER_PORT}/system_stats', timeout=5)"),
    ];
    let over = playbook.healthcheck.as_ref();
    let service = Service {
        build: Build {
            context: ".".into(),
            dockerfile: "Dockerfile".into(),
        },
        image: playbook.image.clone(),
        ports: vec![format!("{bind}:{}:{CONTAINER_PORT}", playbook.port)],
        volumes,
        ipc: "host".into(),
        ulimits: playbook.ulimits.clone(),
        restart: "unless-stopped".into(),
        healthcheck: Healthcheck {
            test: over.and_then(|h| h.test.clone()).unwrap_or(default_test),
            interval: over
                .and_then(|h| h.interval.clone())
                .unwrap_or_else(|| "15s".into()),
            timeout: "10s".into(),
            retries: 5,
            start_period: "120s".into(),
        },
        command: (!playbook.comfyui_args.is_empty())
            .then(|| [launch_command(), playbook.comfyui_args.clone()].concat()),
        deploy: opts.gpu.then(|| Deploy {
            resources: Resources {
                reservations: Reservations {
                    devices: vec![DeviceRequest {
                        driver: "nvidia".into(),
                        count: "all".into(),
                        capabilities: vec!["gpu".into()],
                    }],
                },
            },
        }),
    };
    ComposeFile {
        services: BTreeMap::from([(SERVICE.to_string(), service)]),
    }
}

/// The YAML text written to disk. No `version:` key: Compose v2 warns that it is obsolete,
/// and docker-compose 1.27+ reads files without it as the Compose Specification.
pub fn render_compose(playbook: &Playbook, opts: &ServiceOptions) -> String {
    let yaml =
        serde_yaml::to_string(&compose_file(playbook, opts)).expect("compose structs serialize");
    let exposed = if bind_address(playbook, opts).is_loopback() {
        String::new()
    } else {
        "# ComfyUI has NO authentication: anyone who reaches this port can run graphs.\n"
            .to_string()
    };
    format!("# Written by lifeos-spark from playbook `{}`. Change the playbook, not this file.\n{exposed}{yaml}", playbook.name)
}

/// Everything but the Dockerfile stays out of the build context (the models alone are 14 GB).
pub const DOCKERIGNORE: &str =
    "# Written by lifeos-spark: the image needs nothing from this folder.\n*\n";

/// A `RUN` line of shell, joined with ` \\\n && `.
fn run(steps: &[String]) -> String {
    format!("RUN {}\n", steps.join(" \\\n && "))
}

/// A pip name pattern (`nvidia-*`) as an extended regex on a requirements line.
fn name_pattern(name: &str) -> String {
    let (stem, prefix) = match name.strip_suffix('*') {
        Some(stem) => (stem, true),
        None => (name, false),
    };
    let escaped: String = stem
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c.to_string()
            } else {
                format!("\\{c}")
            }
        })
        .collect();
    if prefix {
        format!("{escaped}[a-z0-9_.-]*")
    } else {
        escaped
    }
}

/// Shell that writes `requirements.lifeos.txt` from `requirements.txt`: dropped packages
/// removed, rewritten ones renamed. Matching is by whole package name, case-insensitive, so
/// `torch` goes and `torchsde` stays.
pub fn requirements_filter(rules: &PipRules) -> Vec<String> {
    const END: &str = "([^a-z0-9_.-]|$)";
    let mut steps = Vec::new();
    let drop: Vec<String> = rules.drop.iter().map(|n| name_pattern(n)).collect();
    steps.push(if drop.is_empty() {
        "cp requirements.txt requirements.lifeos.txt".to_string()
    } else {
        format!(
            "grep -viE '^[[:space:]]*({}){END}' requirements.txt > requirements.lifeos.txt",
            drop.join("|")
        )
    });
    for (from, to) in &rules.rewrite {
        steps.push(format!(
            "sed -i -E 's/^[[:space:]]*{}{END}/{}\\1/I' requirements.lifeos.txt",
            name_pattern(from),
            to
        ));
    }
    steps
}

pub fn render_dockerfile(playbook: &Playbook, opts: &ServiceOptions) -> String {
    let rules = playbook.pip.for_arch(&opts.arch);
    let mut install = requirements_filter(&rules);
    install.push("pip install --no-cache-dir -r requirements.lifeos.txt".into());
    let kept: Vec<&str> = rules.drop.iter().map(String::as_str).collect();
    let cmd: Vec<String> = launch_command()
        .iter()
        .map(|a| serde_json::Value::from(a.as_str()).to_string())
        .collect();
    let cmd = format!("[{}]", cmd.join(", "));
    format!(
        "# Written by lifeos-spark from playbook `{name}` for {arch}. Change the playbook, not this file.\n\
         FROM {base}\n\
         {clone}\
         WORKDIR {COMFY_DIR}\n\
         # Keep the base image's CUDA build of PyTorch: requirements never install {kept}.\n\
         {install}\
         # The nodes' packages live in {VENV_DIR} (mounted from the root): its python first when\n\
         # it exists; an empty folder falls through to the image's.\n\
         ENV PATH={VENV_DIR}/bin:$PATH\n\
         EXPOSE {CONTAINER_PORT}\n\
         CMD {cmd}\n",
        name = playbook.name,
        arch = opts.arch,
        base = playbook.base_image,
        clone = run(&[
            format!("git clone {} {COMFY_DIR}", playbook.comfyui.repo),
            format!("git -C {COMFY_DIR} checkout --detach {}", playbook.comfyui.git_ref),
        ]),
        kept = kept.join(", "),
        install = run(&install),
        cmd = cmd,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(arch: &str, gpu: bool) -> ServiceOptions {
        ServiceOptions {
            bind: None,
            gpu,
            arch: arch.into(),
        }
    }

    #[test]
    fn spark_dockerfile_on_aarch64_rewrites_onnxruntime_and_drops_xformers() {
        let pb = Playbook::load("dgx-spark").unwrap();
        let df = render_dockerfile(&pb, &opts("aarch64", true));
        assert!(df.contains("FROM nvcr.io/nvidia/pytorch:25.09-py3\n"));
        assert!(df.contains("checkout --detach v0.3.60"));
        assert!(
            df.contains("onnxruntime-gpu") && df.contains("/onnxruntime\\1/I"),
            "{df}"
        );
        assert!(df.ends_with(
            "CMD [\"python\", \"main.py\", \"--listen\", \"0.0.0.0\", \"--port\", \"8188\"]\n"
        ));
        assert!(df.contains("ENV PATH=/opt/venv/bin:$PATH\n"), "{df}");
        // What the image's RUN line does to a requirements file, run in a real shell.
        let reqs = "torch\nxformers\nspandrel\nonnxruntime-gpu==1.19\n";
        assert_eq!(
            run_requirements_line(&df, reqs),
            "spandrel\nonnxruntime==1.19\n"
        );
        let x86 = render_dockerfile(&Playbook::load("rtx-4090").unwrap(), &opts("x86_64", true));
        assert!(!x86.contains("sed -i"), "{x86}");
        assert_eq!(
            run_requirements_line(&x86, reqs),
            "xformers\nspandrel\nonnxruntime-gpu==1.19\n",
            "x86_64 keeps xformers (it has wheels there)"
        );
    }

    /// The Dockerfile's `RUN` line that writes requirements.lifeos.txt, without its `pip
    /// install`, run by `sh` over `requirements`; returns what it kept.
    fn run_requirements_line(dockerfile: &str, requirements: &str) -> String {
        let joined = dockerfile.replace(" \\\n", " ");
        let line = joined
            .lines()
            .find(|l| l.starts_with("RUN ") && l.contains("requirements.lifeos.txt"))
            .unwrap_or_else(|| panic!("no requirements RUN line in {dockerfile}"));
        let script: Vec<&str> = line["RUN ".len()..]
            .split(" && ")
            .filter(|step| !step.trim_start().starts_with("pip "))
            .collect();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("requirements.txt"), requirements).unwrap();
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(script.join(" && "))
            .current_dir(dir.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::fs::read_to_string(dir.path().join("requirements.lifeos.txt")).unwrap()
    }

    #[test]
    fn launch_flags_and_node_env_in_the_compose_file() {
        let spark = compose_file(
            &Playbook::load("dgx-spark").unwrap(),
            &opts("aarch64", true),
        );
        let service = &spark.services[SERVICE];
        let cmd = service.command.as_ref().expect("spark has launch flags");
        assert_eq!(&cmd[..2], ["python", "main.py"]);
        assert!(cmd.ends_with(&["--disable-mmap".into(), "--highvram".into()]));
        assert!(service.volumes.contains(&"./venv:/opt/venv".to_string()));
        let rtx = compose_file(&Playbook::load("rtx-4090").unwrap(), &opts("x86_64", true));
        assert_eq!(rtx.services[SERVICE].command, None);
    }

    #[test]
    fn requirements_filter_runs_in_a_real_shell() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("requirements.txt"),
            "torch\ntorchsde\ntorchvision>=0.20\nTorchaudio ; python_version>'3'\nnvidia-cublas-cu12==12.4\nnumpy>=1.25.0\nonnxruntime-gpu==1.19\nxformers\nspandrel\n",
        )
        .unwrap();
        let rules = Playbook::load("dgx-spark").unwrap().pip.for_arch("aarch64");
        let script = requirements_filter(&rules).join(" && ");
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(&script)
            .current_dir(dir.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let kept = std::fs::read_to_string(dir.path().join("requirements.lifeos.txt")).unwrap();
        assert_eq!(
            kept,
            "torchsde\nnumpy>=1.25.0\nonnxruntime==1.19\nspandrel\n"
        );
    }

    #[test]
    fn compose_has_gpu_reservation_limits_and_healthcheck() {
        let pb = Playbook::load("dgx-spark").unwrap();
        let file = compose_file(&pb, &opts("aarch64", true));
        let svc = &file.services["comfyui"];
        assert_eq!(svc.ports, ["0.0.0.0:8188:8188"]);
        assert_eq!(svc.ipc, "host");
        assert_eq!(
            svc.ulimits,
            Ulimits {
                memlock: -1,
                stack: 67_108_864
            }
        );
        assert_eq!(svc.restart, "unless-stopped");
        assert!(svc
            .healthcheck
            .test
            .iter()
            .any(|t| t.contains("/system_stats")));
        assert_eq!(
            svc.deploy.as_ref().unwrap().resources.reservations.devices[0].driver,
            "nvidia"
        );
        assert!(svc
            .volumes
            .contains(&"./models:/opt/ComfyUI/models".to_string()));
        let yaml = render_compose(&pb, &opts("aarch64", true));
        assert!(
            yaml.contains("NO authentication") && !yaml.contains("version:"),
            "{yaml}"
        );
        let cpu = compose_file(
            &pb,
            &ServiceOptions {
                bind: Some("127.0.0.1".parse().unwrap()),
                gpu: false,
                arch: "x86_64".into(),
            },
        );
        assert!(cpu.services["comfyui"].deploy.is_none());
        assert_eq!(cpu.services["comfyui"].ports, ["127.0.0.1:8188:8188"]);
        assert!(!render_compose(
            &pb,
            &ServiceOptions {
                bind: Some("127.0.0.1".parse().unwrap()),
                gpu: false,
                arch: "x86_64".into()
            }
        )
        .contains("NO authentication"));
    }
}
