//! Real parts for integration tests: an OpenSSH `sshd` on a random loopback port with its own
//! host key and HOME, a client `$HOME` with a ~/.ssh/config alias, a fake `nvidia-smi` that prints
//! captured output (the only fake: GPUs cannot be had here), and the private Docker daemons the
//! test command starts.
//!
//! A missing component fails the test under `CI=true` and is skipped loudly otherwise.

#![allow(dead_code)] // each test binary uses a different part of this module

pub mod formats;

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
    skip(&format!(
        "{what} is missing (run the suite with `bash scripts/test.sh`)"
    ));
    None
}

/// Says why a test checks nothing, on stderr (hidden when the test passes) and as one line in
/// `$LIFEOS_TEST_SKIP_DIR/skipped.txt`, which scripts/test.sh counts and prints after the run.
/// Every skip goes through here so none is silent.
pub fn skip(reason: &str) {
    use std::io::Write;
    let test = std::thread::current().name().unwrap_or("?").to_string();
    let binary = std::env::current_exe()
        .ok()
        .and_then(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .map(|s| {
            s.rsplit_once('-')
                .map_or(s.clone(), |(name, _hash)| name.to_string())
        })
        .unwrap_or_default();
    let line = format!("SKIPPED: {binary}::{test}: {reason}\n");
    eprint!("{line}");
    if let Some(dir) = std::env::var_os("LIFEOS_TEST_SKIP_DIR") {
        // One write of one line to an O_APPEND file: lines from parallel tests never interleave.
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(Path::new(&dir).join("skipped.txt"));
        file.and_then(|mut f| f.write_all(line.as_bytes()))
            .expect("cannot record a skipped test in $LIFEOS_TEST_SKIP_DIR");
    }
}

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_lifeos-spark")
}

pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// A port for a server that binds it later (sshd, a container published by Compose), held
/// for this test process until it exits.
///
/// A port the kernel hands out for `bind(:0)` is released at once and sits in the ephemeral
/// range, where every outgoing connection also takes its local port: minutes later, when
/// Docker publishes it, it may be taken. These come from below the ephemeral range instead,
/// where only explicit binds land, and each is claimed with an exclusive lock on
/// `$TMPDIR/lifeos-test-ports/<port>.lock` held while the process lives, so no two test
/// processes (nor two calls in one) pick the same one; a port something listens on is skipped.
pub fn free_port() -> u16 {
    static HELD: std::sync::Mutex<Vec<std::fs::File>> = std::sync::Mutex::new(Vec::new());
    let dir = std::env::temp_dir().join("lifeos-test-ports");
    std::fs::create_dir_all(&dir).unwrap();
    let mut held = HELD.lock().unwrap_or_else(|e| e.into_inner());
    let first = (std::process::id() % 80) as u16 * 150;
    for offset in 0..12000u16 {
        let port = 20000 + (first + offset) % 12000;
        let lock = std::fs::File::create(dir.join(format!("{port}.lock"))).unwrap();
        // flock: a second open file, even in this process, cannot take a held lock.
        if lock.try_lock().is_err() {
            continue;
        }
        if TcpListener::bind(("127.0.0.1", port)).is_ok()
            && TcpListener::bind(("0.0.0.0", port)).is_ok()
        {
            held.push(lock);
            return port;
        }
    }
    panic!("no free port in 20000..32000");
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
        // `LogLevel VERBOSE`: sshd logs each session it starts (`-v`'s test counts them).
        if let Some(docker) = &cfg.docker_host {
            setenv += &format!(" DOCKER_HOST={docker}");
        }
        let port = free_port();
        let config = format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {hk}\nAuthorizedKeysFile {d}/authorized_keys\n\
             PasswordAuthentication no\nKbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\n\
             StrictModes no\nUsePAM no\nPidFile {d}/sshd.pid\nSubsystem sftp internal-sftp\nSetEnv {setenv}\n\
             LogLevel VERBOSE\n",
            hk = host_key.display(),
            d = dir.path().display(),
        );
        std::fs::write(dir.path().join("sshd_config"), config).unwrap();
        std::fs::create_dir_all("/run/sshd").unwrap();
        let child = spawn_sshd(dir.path());
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
        self.stop();
        std::fs::remove_file(&self.host_key).unwrap();
        std::fs::remove_file(self.host_key.with_extension("pub")).unwrap();
        keygen(&self.host_key);
        self.restart();
    }

    /// Add `lines` to sshd_config and restart on the same port. sshd keeps the first value of a
    /// keyword, so a keyword the config already has cannot be changed this way.
    pub fn reconfigure(&mut self, lines: &str) {
        self.stop();
        let config = self.dir.path().join("sshd_config");
        let mut text = std::fs::read_to_string(&config).unwrap();
        text.push_str(lines);
        std::fs::write(&config, text).unwrap();
        self.restart();
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn restart(&mut self) {
        self.child = spawn_sshd(self.dir.path());
        self.wait_listening();
    }
}

/// sshd in the foreground, with the config and log in `dir`.
fn spawn_sshd(dir: &Path) -> Child {
    Command::new(SSHD)
        .arg("-D")
        .arg("-f")
        .arg(dir.join("sshd_config"))
        .arg("-E")
        .arg(dir.join("sshd.log"))
        .spawn()
        .unwrap()
}

impl Drop for SshServer {
    fn drop(&mut self) {
        self.stop();
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

impl Agent {
    /// Adds a passphrase-protected key the way an operator does, the passphrase answered by an
    /// askpass program (ssh-add reads no terminal here).
    pub fn add_with_passphrase(&self, key: &Path, passphrase: &str) {
        let askpass = self.dir.path().join("askpass");
        std::fs::write(&askpass, format!("#!/bin/sh\necho '{passphrase}'\n")).unwrap();
        sh(&format!("chmod 700 '{}'", askpass.display()));
        sh(&format!(
            "SSH_AUTH_SOCK='{}' SSH_ASKPASS='{}' SSH_ASKPASS_REQUIRE=force DISPLAY=:0 ssh-add '{}' </dev/null",
            self.sock.display(),
            askpass.display(),
            key.display()
        ));
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
    let source = mock_source();
    let tag = format!(
        "lifeos-test/comfyui-mock:{:012x}",
        fnv(&std::fs::read(&source).unwrap())
    );
    let docker = |args: &str| sh(&format!("DOCKER_HOST='{docker_host}' docker {args}"));
    if !image_present(docker_host, &tag) {
        let dir = tempfile::tempdir().unwrap();
        compile_mock(dir.path());
        std::fs::write(
            dir.path().join("Dockerfile"),
            "FROM scratch\nCOPY mock-comfyui /mock-comfyui\nEXPOSE 8188\nCMD [\"/mock-comfyui\"]\n",
        )
        .unwrap();
        docker(&format!("build -q -t '{tag}' '{}'", dir.path().display()));
    }
    tag
}

fn mock_source() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/mock_comfyui.rs")
}

/// FNV-1a, 48 bits: a tag that changes with the bytes.
fn fnv(bytes: &[u8]) -> u64 {
    let hash = bytes.iter().fold(0xcbf29ce484222325u64, |h, b| {
        (h ^ *b as u64).wrapping_mul(0x100000001b3)
    });
    hash & 0xffff_ffff_ffff
}

fn image_present(docker_host: &str, tag: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!(
            "DOCKER_HOST='{docker_host}' docker image inspect '{tag}' >/dev/null 2>&1"
        ))
        .status()
        .unwrap()
        .success()
}

/// The mock ComfyUI as a static binary `dir/mock-comfyui`.
fn compile_mock(dir: &Path) {
    sh(&format!(
        "rustc --edition 2021 -O -C target-feature=+crt-static '{}' -o '{}/mock-comfyui'",
        mock_source().display(),
        dir.display()
    ));
}

/// A playbook for tests: the RTX 4090 one with the test image, a free port, a project of its
/// own, and a fast healthcheck.
pub fn test_playbook(dir: &Path, image: &str) -> (PathBuf, u16, String) {
    test_playbook_named(dir, image, "playbook.yaml")
}

pub fn test_playbook_named(dir: &Path, image: &str, file: &str) -> (PathBuf, u16, String) {
    let port = free_port();
    let project = format!("lifeos-test-{port}");
    let mut doc: serde_yaml::Value =
        serde_yaml::from_str(include_str!("../../playbooks/rtx-4090.yaml")).unwrap();
    // Each field must already be in the RTX 4090 playbook: a renamed field fails here instead
    // of leaving the test on port 8188 and bind 0.0.0.0.
    for (key, value) in [
        ("project", serde_yaml::Value::from(project.as_str())),
        ("image", image.into()),
        ("port", port.into()),
        ("bind", "127.0.0.1".into()),
    ] {
        let slot = doc
            .get_mut(key)
            .unwrap_or_else(|| panic!("playbooks/rtx-4090.yaml has no `{key}`"));
        *slot = value;
    }
    // Not in the shipped playbook, added: the image is `FROM scratch` (no shell, no Python for
    // the product's own healthcheck), and this sandbox cannot raise RLIMIT_MEMLOCK above 8 MiB.
    let added: serde_yaml::Value = serde_yaml::from_str(
        "healthcheck:\n  test: [CMD, /mock-comfyui, --check, '127.0.0.1:8188']\n  interval: 1s\n\
         start_timeout: 60\nulimits:\n  memlock: 8388608\n  stack: 67108864\n",
    )
    .unwrap();
    for (key, value) in added.as_mapping().unwrap() {
        let map = doc.as_mapping_mut().unwrap();
        assert!(map.get(key).is_none(), "rtx-4090.yaml now sets {key:?}");
        map.insert(key.clone(), value.clone());
    }
    let path = dir.join(file);
    std::fs::write(&path, serde_yaml::to_string(&doc).unwrap()).unwrap();
    (path, port, project)
}

/// Sets `key` in a playbook file written by [`test_playbook`] (which must already have it).
pub fn set_playbook_field(path: &Path, key: &str, value: serde_yaml::Value) {
    let mut doc: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    *doc.get_mut(key)
        .unwrap_or_else(|| panic!("{} has no `{key}`", path.display())) = value;
    std::fs::write(path, serde_yaml::to_string(&doc).unwrap()).unwrap();
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

/// A Debian bookworm base with Python and venv, built locally from Debian's packages (no
/// registry is reachable here): `debootstrap --variant=minbase`, then `docker import`. Cached by
/// tag on each daemon, the root filesystem once per machine.
pub fn debian_python_image(docker_host: &str) -> Option<String> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let tag = "lifeos-test/debian-python:bookworm";
    if image_present(docker_host, tag) {
        return Some(tag.to_string());
    }
    require(
        Path::new("/usr/sbin/debootstrap").exists(),
        "debootstrap (apt-get install debootstrap)",
    )?;
    let rootfs = Path::new("/tmp/lifeos-spark-test/debian-python-rootfs");
    if !rootfs.join("usr/bin/python3").exists() {
        let _ = std::fs::remove_dir_all(rootfs);
        // The mirror apt itself uses (Debian's, in /etc/apt/sources.list.d/debian.sources).
        sh(&format!(
            "debootstrap --variant=minbase --include=python3,python3-venv bookworm '{}' http://deb.debian.org/debian >/dev/null",
            rootfs.display()
        ));
    }
    sh(&format!(
        "tar -C '{}' -c . | DOCKER_HOST='{docker_host}' docker import - '{tag}' >/dev/null",
        rootfs.display()
    ));
    Some(tag.to_string())
}

/// The mock ComfyUI on the Debian Python base, with the `ENV` lines the generated Dockerfile
/// sets (`env_lines`, taken from `compose::render_dockerfile`): a service container where pip
/// and virtualenvs are real.
pub fn python_test_image(docker_host: &str, env_lines: &str) -> Option<String> {
    let base = debian_python_image(docker_host)?;
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let mut text = std::fs::read(mock_source()).unwrap();
    text.extend(env_lines.as_bytes());
    let tag = format!("lifeos-test/comfyui-python:{:012x}", fnv(&text));
    if image_present(docker_host, &tag) {
        return Some(tag);
    }
    let dir = tempfile::tempdir().unwrap();
    compile_mock(dir.path());
    std::fs::write(
        dir.path().join("Dockerfile"),
        format!("FROM {base}\nCOPY mock-comfyui /mock-comfyui\n{env_lines}\nEXPOSE 8188\nCMD [\"/mock-comfyui\"]\n"),
    )
    .unwrap();
    sh(&format!(
        "DOCKER_HOST='{docker_host}' docker build -q -t '{tag}' '{}'",
        dir.path().display()
    ));
    Some(tag)
}

/// An SSH host posing as a GPU machine (`profile`, fake nvidia-smi) on the Docker daemon
/// `docker`, reachable from `client` as `alias`.
pub fn gpu_host(
    client: &ClientHome,
    profile: &str,
    alias: &str,
    docker: &str,
) -> Option<SshServer> {
    let server = SshServer::start(SshServerConfig {
        gpu_profile: Some(profile),
        docker_host: Some(docker.to_string()),
        authorized_keys: vec![client.public_key()],
    })?;
    client.add_alias(alias, &server);
    client.trust(&server);
    Some(server)
}

/// The model files the check generation loads besides the checkpoint, by their names in the
/// embedded manifest (the mock's FaceID loader looks for them as the real one does).
pub const FACEID_FILES: [(&str, &str); 4] = [
    ("vae", "models/vae/sdxl_vae.safetensors"),
    (
        "lora",
        "models/loras/ip-adapter-faceid-plusv2_sdxl_lora.safetensors",
    ),
    (
        "ipadapter",
        "models/ipadapter/ip-adapter-faceid-plusv2_sdxl.bin",
    ),
    (
        "clip",
        "models/clip_vision/CLIP-ViT-H-14-laion2B-s32B-b79K.safetensors",
    ),
];

/// Two SSH hosts on one Docker daemon, as `rtx` (an RTX 4090) and `spark` (a GB10) in
/// `client`'s ssh config, trusted: the two ends of a migration.
pub fn rtx_and_spark(client: &ClientHome, docker: &str) -> Option<(SshServer, SshServer)> {
    let rtx = gpu_host(client, "rtx4090", "rtx", docker)?;
    let spark = gpu_host(client, "gb10", "spark", docker)?;
    Some((rtx, spark))
}

/// The start of a migrate test: the private daemon with the test image, `rtx` and `spark`
/// (`rtx_and_spark`), and a test playbook for the spark in `dir`.
pub struct MigratePair {
    pub docker: String,
    pub image: String,
    pub dir: tempfile::TempDir,
    pub client: ClientHome,
    pub rtx: SshServer,
    pub spark: SshServer,
    pub spark_pb: PathBuf,
    pub spark_port: u16,
    pub spark_project: String,
}

pub fn migrate_pair() -> Option<MigratePair> {
    let docker = docker_host(true)?;
    let image = test_image(&docker);
    let dir = tempfile::tempdir().unwrap();
    let client = ClientHome::new();
    let (rtx, spark) = rtx_and_spark(&client, &docker)?;
    let (spark_pb, spark_port, spark_project) =
        test_playbook_named(dir.path(), &image, "spark.yaml");
    Some(MigratePair {
        docker,
        image,
        dir,
        client,
        rtx,
        spark,
        spark_pb,
        spark_port,
        spark_project,
    })
}

/// The mock ComfyUI (`tests/support/mock_comfyui.rs`) as a process on this machine, on
/// 127.0.0.1:`port`, with `env` (`MOCK_QUEUE_RUNNING`, `MOCK_QUEUE_PENDING`, `MOCK_DEVICE`);
/// killed on drop. Built once per test binary.
pub struct MockComfyUi {
    pub port: u16,
    child: Child,
}

impl MockComfyUi {
    pub fn start(env: &[(&str, &str)]) -> MockComfyUi {
        static BIN: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
        let bin = BIN.get_or_init(|| {
            let source =
                Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/mock_comfyui.rs");
            let out = Path::new(env!("CARGO_TARGET_TMPDIR"))
                .join(format!("mock-comfyui-{}", std::process::id()));
            sh(&format!(
                "rustc --edition 2021 '{}' -o '{}'",
                source.display(),
                out.display()
            ));
            out
        });
        let port = free_port();
        let child = Command::new(bin)
            .env("PORT", port.to_string())
            .env("COMFY_ROOT", "/nonexistent")
            .envs(env.iter().copied())
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "mock ComfyUI did not listen");
            std::thread::sleep(Duration::from_millis(20));
        }
        MockComfyUi { port, child }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for MockComfyUi {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `MemTotal` of this machine (the one the fake hosts share), in KiB.
pub fn meminfo_total_kib() -> u64 {
    let m = std::fs::read_to_string("/proc/meminfo").unwrap();
    m.lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("MemTotal in /proc/meminfo")
}

/// `MemTotal` in MiB.
pub fn meminfo_total_mib() -> u64 {
    meminfo_total_kib() / 1024
}

/// Every file under `dir` with its size and mtime (ns): what must not change when a re-run
/// changes nothing. Inside a `.git` folder only `HEAD`'s commit counts (git may refresh its
/// index on a status).
pub fn file_states(dir: &Path) -> Vec<(PathBuf, u64, i128)> {
    use std::os::unix::fs::MetadataExt;
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let m = std::fs::symlink_metadata(&p).unwrap();
            if p.file_name().unwrap() == ".git" {
                let head = stdout(&sh(&format!("git -C '{}' rev-parse HEAD", d.display())));
                out.push((p.join(head.trim()), 0, 0));
            } else if m.is_dir() {
                todo.push(p);
            } else if p.ends_with(".lifeos/lock.holder") {
                // Who holds the root's lock: rewritten by every run (pid, time), run metadata.
                continue;
            } else {
                let mtime = m.mtime() as i128 * 1_000_000_000 + m.mtime_nsec() as i128;
                out.push((p, m.len(), mtime));
            }
        }
    }
    out.sort();
    out
}

/// `<id> <StartedAt>` of each container of a Compose project: a recreated or restarted
/// container shows here whatever the tool reports.
pub fn containers_of(docker_host: &str, project: &str) -> Vec<String> {
    let ids = stdout(&sh(&format!(
        "DOCKER_HOST='{docker_host}' docker ps -aq --no-trunc --filter label=com.docker.compose.project={project}"
    )));
    ids.split_whitespace()
        .map(|id| {
            stdout(&sh(&format!(
                "DOCKER_HOST='{docker_host}' docker inspect -f '{{{{.Id}}}} {{{{.State.StartedAt}}}}' {id}"
            )))
            .trim()
            .to_string()
        })
        .collect()
}

/// The JSON document a `--json` run printed on stdout.
pub fn json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}\n{}", stdout(out), stderr(out)))
}

/// One phase of a `setup --json` report.
pub fn phase<'a>(doc: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    doc["phases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["phase"] == name)
        .unwrap_or_else(|| panic!("no phase {name}: {doc}"))
}
