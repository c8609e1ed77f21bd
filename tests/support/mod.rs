//! Real parts for integration tests: an OpenSSH `sshd` on a random loopback port with its own
//! host key and HOME, a client `$HOME` with a ~/.ssh/config alias, a fake `nvidia-smi` that prints
//! captured output (the only fake: GPUs cannot be had here), and the private Docker daemons the
//! test command starts.
//!
//! A missing component fails the test under `CI=true` and is skipped loudly otherwise.

#![allow(dead_code)] // each test binary uses a different part of this module

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

pub const SSHD: &str = "/usr/sbin/sshd";

pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// `Some(())` when `what` is available; otherwise fail under CI, or say why and skip.
pub fn require(available: bool, what: &str) -> Option<()> {
    if available {
        return Some(());
    }
    if in_ci() {
        panic!("{what} is missing: CI must provide it (see scripts/test.sh)");
    }
    eprintln!("SKIPPED: {what} is missing (run the suite with `bash scripts/test.sh`)");
    None
}

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_lifeos-spark")
}

pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn sh(cmd: &str) -> Output {
    let out = Command::new("sh").arg("-c").arg(cmd).output().unwrap();
    assert!(
        out.status.success(),
        "`{cmd}` failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn keygen(path: &Path) {
    sh(&format!(
        "ssh-keygen -q -t ed25519 -N '' -C test -f '{}'",
        path.display()
    ));
}

/// A folder holding a fake `nvidia-smi` that prints `tests/fixtures/nvidia-smi/<profile>/`.
pub fn fake_gpu_bin(dir: &Path, profile: &str) -> PathBuf {
    let bin = dir.join("fakebin");
    std::fs::create_dir_all(&bin).unwrap();
    let fixture = fixtures().join("nvidia-smi").join(profile);
    assert!(fixture.is_dir(), "no fixture {}", fixture.display());
    let script = format!(
        r#"#!/bin/sh
# Fake nvidia-smi: prints what a real one printed on a {profile} machine.
F='{f}'
case "$*" in
  "--query-gpu=name,memory.total,memory.used,memory.free,driver_version,compute_cap,uuid,pci.bus_id --format=csv,noheader,nounits") cat "$F/query.csv" ;;
  "") cat "$F/banner.txt" ;;
  *) echo "fake nvidia-smi: no capture for: $*" >&2; exit 2 ;;
esac
exit "$(cat "$F/exit")"
"#,
        f = fixture.display()
    );
    let path = bin.join("nvidia-smi");
    std::fs::write(&path, script).unwrap();
    sh(&format!("chmod 755 '{}'", path.display()));
    bin
}

/// The private Docker daemons started by scripts/test.sh: one with a runtime named `nvidia`
/// (pointing at runc), one without.
pub fn docker_host(with_nvidia_runtime: bool) -> Option<String> {
    let var = if with_nvidia_runtime {
        "LIFEOS_TEST_DOCKER_HOST"
    } else {
        "LIFEOS_TEST_DOCKER_HOST_NO_NVIDIA"
    };
    let value = std::env::var(var).ok().filter(|v| !v.is_empty());
    require(value.is_some(), &format!("a Docker daemon (${var})"))?;
    value
}

/// A real OpenSSH server on 127.0.0.1:<random port>, as root, whose sessions get `HOME`,
/// `PATH` (fake nvidia-smi first) and `DOCKER_HOST` through `SetEnv`.
pub struct SshServer {
    pub dir: tempfile::TempDir,
    pub port: u16,
    pub host_key: PathBuf,
    child: Child,
}

pub struct SshServerConfig<'a> {
    pub gpu_profile: Option<&'a str>,
    pub docker_host: Option<String>,
    pub authorized_keys: Vec<PathBuf>,
}

impl SshServer {
    /// A plain server (no fake GPU, no Docker) that lets `client` in.
    pub fn for_client(client: &ClientHome) -> Option<SshServer> {
        SshServer::start(SshServerConfig {
            gpu_profile: None,
            docker_host: None,
            authorized_keys: vec![client.public_key()],
        })
    }

    pub fn start(cfg: SshServerConfig) -> Option<SshServer> {
        require(Path::new(SSHD).exists(), "OpenSSH server (/usr/sbin/sshd)")?;
        let dir = tempfile::tempdir().unwrap();
        let host_key = dir.path().join("ssh_host_ed25519_key");
        keygen(&host_key);
        let home = dir.path().join("home");
        std::fs::create_dir_all(&home).unwrap();
        let mut path = String::new();
        if let Some(profile) = cfg.gpu_profile {
            path += &format!("{}:", fake_gpu_bin(dir.path(), profile).display());
        }
        path += "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
        let keys: String = cfg
            .authorized_keys
            .iter()
            .map(|k| std::fs::read_to_string(k).unwrap())
            .collect();
        std::fs::write(dir.path().join("authorized_keys"), keys).unwrap();
        let mut setenv = format!("PATH={path} HOME={}", home.display());
        if let Some(docker) = &cfg.docker_host {
            setenv += &format!(" DOCKER_HOST={docker}");
        }
        let port = free_port();
        let config = format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {hk}\nAuthorizedKeysFile {d}/authorized_keys\n\
             PasswordAuthentication no\nKbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\n\
             StrictModes no\nUsePAM no\nPidFile {d}/sshd.pid\nSubsystem sftp internal-sftp\nSetEnv {setenv}\n",
            hk = host_key.display(),
            d = dir.path().display(),
        );
        std::fs::write(dir.path().join("sshd_config"), config).unwrap();
        std::fs::create_dir_all("/run/sshd").unwrap();
        let child = Command::new(SSHD)
            .arg("-D")
            .arg("-f")
            .arg(dir.path().join("sshd_config"))
            .arg("-E")
            .arg(dir.path().join("sshd.log"))
            .spawn()
            .unwrap();
        let server = SshServer {
            dir,
            port,
            host_key,
            child,
        };
        server.wait_listening();
        Some(server)
    }

    fn wait_listening(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "sshd did not listen: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The remote user's home (sessions get it through `SetEnv HOME=`).
    pub fn home(&self) -> PathBuf {
        self.dir.path().join("home")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("sshd.log")).unwrap_or_default()
    }

    /// `127.0.0.1:<port> ssh-ed25519 <key>` line for a known_hosts file.
    pub fn known_hosts_line(&self) -> String {
        let public = std::fs::read_to_string(self.host_key.with_extension("pub")).unwrap();
        let mut f = public.split_whitespace();
        format!(
            "[127.0.0.1]:{} {} {}\n",
            self.port,
            f.next().unwrap(),
            f.next().unwrap()
        )
    }

    /// Replace the host key (as a reinstall would) and restart on the same port.
    pub fn change_host_key(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        std::fs::remove_file(&self.host_key).unwrap();
        std::fs::remove_file(self.host_key.with_extension("pub")).unwrap();
        keygen(&self.host_key);
        self.child = Command::new(SSHD)
            .arg("-D")
            .arg("-f")
            .arg(self.dir.path().join("sshd_config"))
            .arg("-E")
            .arg(self.dir.path().join("sshd.log"))
            .spawn()
            .unwrap();
        self.wait_listening();
    }
}

impl Drop for SshServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The operator's side: a temporary `$HOME` with a key, ~/.ssh/config aliases, known_hosts.
pub struct ClientHome {
    pub dir: tempfile::TempDir,
    pub key: PathBuf,
}

impl ClientHome {
    pub fn new() -> ClientHome {
        let dir = tempfile::tempdir().unwrap();
        let ssh = dir.path().join(".ssh");
        std::fs::create_dir_all(&ssh).unwrap();
        let key = ssh.join("id_ed25519");
        keygen(&key);
        ClientHome { dir, key }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn public_key(&self) -> PathBuf {
        self.key.with_extension("pub")
    }

    /// `Host <alias>` pointing at the server, as an operator would write it.
    pub fn add_alias(&self, alias: &str, server: &SshServer) {
        let entry = format!(
            "Host {alias}\n  HostName 127.0.0.1\n  Port {}\n  User root\n  IdentityFile ~/.ssh/id_ed25519\n\n",
            server.port
        );
        let path = self.dir.path().join(".ssh/config");
        let mut text = std::fs::read_to_string(&path).unwrap_or_default();
        text += &entry;
        std::fs::write(path, text).unwrap();
    }

    pub fn trust(&self, server: &SshServer) {
        let path = self.known_hosts();
        let mut text = std::fs::read_to_string(&path).unwrap_or_default();
        text += &server.known_hosts_line();
        std::fs::write(path, text).unwrap();
    }

    pub fn known_hosts(&self) -> PathBuf {
        self.dir.path().join(".ssh/known_hosts")
    }

    /// The tool, run as this operator: their `$HOME`, no agent, no colour.
    pub fn lifeos(&self) -> Command {
        let mut cmd = Command::new(bin());
        cmd.env("HOME", self.path())
            .env("NO_COLOR", "1")
            .env_remove("SSH_AUTH_SOCK");
        cmd
    }
}

/// An `ssh-agent` on its own socket, killed on drop.
pub struct Agent {
    pub dir: tempfile::TempDir,
    pub sock: PathBuf,
    pid: u32,
}

impl Agent {
    pub fn start(keys: &[&Path]) -> Agent {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("agent.sock");
        let out = sh(&format!("ssh-agent -a '{}' -s", sock.display()));
        let text = String::from_utf8_lossy(&out.stdout);
        let pid = text
            .split("SSH_AGENT_PID=")
            .nth(1)
            .and_then(|r| r.split(';').next())
            .and_then(|p| p.parse().ok())
            .expect("agent pid");
        for key in keys {
            sh(&format!(
                "SSH_AUTH_SOCK='{}' ssh-add -q '{}'",
                sock.display(),
                key.display()
            ));
        }
        Agent { dir, sock, pid }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = Command::new("kill").arg(self.pid.to_string()).status();
    }
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The test image, built once per daemon: `FROM scratch` plus the mock ComfyUI
/// (`tests/support/mock_comfyui.rs`) compiled as a static binary. The tag carries a hash of the
/// source so a changed mock is rebuilt.
pub fn test_image(docker_host: &str) -> String {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/mock_comfyui.rs");
    let text = std::fs::read(&source).unwrap();
    let hash = text.iter().fold(0xcbf29ce484222325u64, |h, b| {
        (h ^ *b as u64).wrapping_mul(0x100000001b3)
    });
    let tag = format!("lifeos-test/comfyui-mock:{:012x}", hash & 0xffff_ffff_ffff);
    let docker = |args: &str| sh(&format!("DOCKER_HOST='{docker_host}' docker {args}"));
    let present = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "DOCKER_HOST='{docker_host}' docker image inspect '{tag}' >/dev/null 2>&1"
        ))
        .status()
        .unwrap()
        .success();
    if !present {
        let dir = tempfile::tempdir().unwrap();
        sh(&format!(
            "rustc --edition 2021 -O -C target-feature=+crt-static '{}' -o '{}/mock-comfyui'",
            source.display(),
            dir.path().display()
        ));
        std::fs::write(
            dir.path().join("Dockerfile"),
            "FROM scratch\nCOPY mock-comfyui /mock-comfyui\nEXPOSE 8188\nCMD [\"/mock-comfyui\"]\n",
        )
        .unwrap();
        docker(&format!("build -q -t '{tag}' '{}'", dir.path().display()));
    }
    tag
}

/// A playbook for tests: the RTX 4090 one with the test image, a free port, a project of its
/// own, and a fast healthcheck.
pub fn test_playbook(dir: &Path, image: &str) -> (PathBuf, u16, String) {
    test_playbook_named(dir, image, "playbook.yaml")
}

pub fn test_playbook_named(dir: &Path, image: &str, file: &str) -> (PathBuf, u16, String) {
    let port = free_port();
    let project = format!("lifeos-test-{port}");
    let text = include_str!("../../playbooks/rtx-4090.yaml")
        .replace("project: lifeos-comfyui", &format!("project: {project}"))
        .replace("image: lifeos/comfyui:rtx-4090", &format!("image: {image}"))
        .replace("port: 8188", &format!("port: {port}"))
        .replace("bind: 0.0.0.0", "bind: 127.0.0.1")
        + "healthcheck:\n  test: [CMD, /mock-comfyui, --check, '127.0.0.1:8188']\n  interval: 1s\nstart_timeout: 60\n"
        // This sandbox cannot raise RLIMIT_MEMLOCK above 8 MiB, even as root.
        + "ulimits:\n  memlock: 8388608\n  stack: 67108864\n";
    let path = dir.join(file);
    std::fs::write(&path, text).unwrap();
    (path, port, project)
}

/// Removes a Compose project's containers when a test ends, passed or not.
pub struct ProjectGuard {
    pub docker_host: String,
    pub project: String,
}

impl Drop for ProjectGuard {
    fn drop(&mut self) {
        // Containers first, then the project's network: leaked networks use up Docker's
        // address pools (about thirty) and later projects fail to start.
        let label = format!("label=com.docker.compose.project={}", self.project);
        let script = format!(
            "export DOCKER_HOST='{}'; docker ps -aq --filter {label} | xargs -r docker rm -f; \
             docker network ls -q --filter {label} | xargs -r docker network rm",
            self.docker_host
        );
        let _ = Command::new("sh").arg("-c").arg(script).output();
    }
}

pub fn http_get(url: &str) -> Option<String> {
    let out = Command::new("curl")
        .args(["-fsS", "-m", "5", url])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}
