//! Every command that accepts `--json`, run once where it succeeds and once where it fails, prints
//! exactly one JSON object on stdout that docs/json-schema.json accepts (a real validator), whose
//! `ok` matches the exit code and whose `error` is null exactly when `ok`.
//!
//! The real parts: the local host with a fake `nvidia-smi` (captured output) and the private
//! Docker daemons (with and without an `nvidia` runtime), the mock ComfyUI as a process, real
//! files, and a closed loopback port for an SSH host or ComfyUI that does not answer.
//!
//! The commands run are compared with the subcommands clap accepts `--json` for: a new one
//! fails this test until a case runs it. `completions` and `man` have no failure case: no input
//! that clap accepts makes them fail.

mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Output;

use clap::CommandFactory;
use serde_json::Value;
use support::*;

/// Commands that cannot fail once clap accepted their arguments.
const NO_FAILURE_CASE: [&str; 2] = ["completions", "man"];

struct World {
    dir: tempfile::TempDir,
    path: String,
    docker: String,
    plain_docker: String,
    mock: MockComfyUi,
    closed_host: String,
    closed_url: String,
    validator: jsonschema::Validator,
    /// (command, ok) pairs validated so far.
    seen: BTreeSet<(String, bool)>,
}

impl World {
    fn new() -> Option<World> {
        let docker = docker_host(true)?;
        let plain_docker = docker_host(false)?;
        let dir = tempfile::tempdir().unwrap();
        let gpu = fake_gpu_bin(dir.path(), "rtx4090");
        let path = format!("{}:{}", gpu.display(), std::env::var("PATH").unwrap());
        let root = dir.path().join("root");
        let mock = MockComfyUi::start(&[("COMFY_ROOT", root.to_str().unwrap())]);
        // Bound and dropped: nothing listens there for the test's life (free_port holds it).
        let closed = free_port();
        let schema: Value = serde_json::from_str(
            &std::fs::read_to_string(
                Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/json-schema.json"),
            )
            .unwrap(),
        )
        .unwrap();
        let validator =
            jsonschema::validator_for(&schema).expect("docs/json-schema.json is a valid schema");
        Some(World {
            dir,
            path,
            docker,
            plain_docker,
            mock,
            closed_host: format!("root@127.0.0.1:{closed}"),
            closed_url: format!("http://127.0.0.1:{closed}"),
            validator,
            seen: BTreeSet::new(),
        })
    }

    fn p(&self, rel: &str) -> String {
        self.dir.path().join(rel).to_str().unwrap().to_string()
    }

    fn run_with(&self, docker: &str, args: &[&str]) -> Output {
        std::process::Command::new(bin())
            .current_dir(self.dir.path())
            .env("HOME", self.dir.path())
            .env("PATH", &self.path)
            .env("DOCKER_HOST", docker)
            .env("NO_COLOR", "1")
            .env_remove("SSH_AUTH_SOCK")
            .env_remove("HF_TOKEN")
            .env_remove("LIFEOS_ENV_FILE")
            .arg("--json")
            .args(args)
            .output()
            .unwrap()
    }

    /// Runs `args`, checks the document, and records that `command` was seen ending `ok`.
    fn case(&mut self, command: &str, ok: bool, args: &[&str]) -> Value {
        let docker = self.docker.clone();
        self.case_on(&docker, command, ok, args)
    }

    fn case_on(&mut self, docker: &str, command: &str, ok: bool, args: &[&str]) -> Value {
        let out = self.run_with(docker, args);
        let doc = self.check(&out, args);
        assert_eq!(doc["command"], command, "{args:?}: {doc}");
        assert_eq!(
            out.status.success(),
            ok,
            "{args:?} exit {:?}: {doc}\n{}",
            out.status.code(),
            stderr(&out)
        );
        self.seen.insert((command.to_string(), ok));
        doc
    }

    /// Exactly one JSON object on stdout, valid against the schema; `ok` and `error` agree with
    /// the exit code.
    fn check(&self, out: &Output, args: &[&str]) -> Value {
        let text = stdout(out);
        let mut values = serde_json::Deserializer::from_str(&text).into_iter::<Value>();
        let doc = match values.next() {
            Some(Ok(v)) => v,
            other => panic!(
                "{args:?}: stdout is not JSON ({other:?}):\n{text}\n{}",
                stderr(out)
            ),
        };
        assert!(
            values.next().is_none(),
            "{args:?}: more than one value on stdout:\n{text}"
        );
        assert!(doc.is_object(), "{args:?}: {doc}");
        let errors: Vec<String> = self
            .validator
            .iter_errors(&doc)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect();
        assert!(
            errors.is_empty(),
            "{args:?}: not valid against docs/json-schema.json:\n{}\n{doc}",
            errors.join("\n")
        );
        assert_eq!(doc["ok"], out.status.success(), "{args:?}: {doc}");
        assert_eq!(
            doc["error"].is_null(),
            out.status.success(),
            "{args:?}: {doc}"
        );
        if !out.status.success() {
            // The same error is on stderr for a person (the document is for a program).
            let message = doc["error"]["message"].as_str().unwrap();
            assert!(!message.is_empty());
        }
        doc
    }
}

/// Leaf subcommands (e.g. `models pull`) that accept `--json`.
fn json_commands() -> BTreeSet<String> {
    fn walk(cmd: &clap::Command, prefix: &str, out: &mut BTreeSet<String>) {
        for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
            let path = format!("{prefix}{}", sub.get_name()).trim().to_string();
            if sub.has_subcommands() {
                walk(sub, &format!("{path} "), out);
            } else if sub.get_arguments().any(|a| a.get_long() == Some("json")) {
                out.insert(path);
            }
        }
    }
    let mut cmd = lifeos_spark::cli::Cli::command();
    cmd.build();
    let mut out = BTreeSet::new();
    walk(&cmd, "", &mut out);
    out
}

/// A manifest of one 5-byte file under `root`, already in place with the right sha256.
fn one_file_manifest(w: &World) -> PathBuf {
    let root = w.dir.path().join("root");
    std::fs::create_dir_all(root.join("models/checkpoints")).unwrap();
    std::fs::write(root.join("models/checkpoints/a.bin"), b"hello").unwrap();
    let path = w.dir.path().join("m.yaml");
    std::fs::write(
        &path,
        format!(
            "name: one\ndescription: one file\nmodels:\n  - id: a\n    url: {}/a.bin\n    dest: models/checkpoints/a.bin\n    size: 5\n    sha256: {}\n",
            w.closed_url,
            "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
        ),
    )
    .unwrap();
    path
}

#[test]
fn every_json_command_prints_one_valid_document_on_success_and_on_failure() {
    let Some(mut w) = World::new() else {
        return;
    };
    let manifest = one_file_manifest(&w);
    let m = manifest.to_str().unwrap().to_string();
    let root = w.p("root");
    let closed_host = w.closed_host.clone();
    let closed_url = w.closed_url.clone();
    let url = w.mock.url();
    std::fs::write(w.dir.path().join("nodes.yaml"), "nodes: []\n").unwrap();
    let nodes = w.p("nodes.yaml");
    let pb = ["--root", &root];

    // doctor: ready (fake GPU, nvidia runtime) / a failed check (no nvidia runtime) / no host.
    // The disk check sizes the one-file manifest: the default set's 14 GB would tie the test to
    // the free space of the machine it runs on.
    let port = free_port().to_string();
    let doc = w.case(
        "doctor",
        true,
        &["doctor", "--root", &root, "--port", &port, "--manifest", &m],
    );
    assert_eq!(doc["host"], "local");
    let plain = w.plain_docker.clone();
    let doc = w.case_on(
        &plain,
        "doctor",
        false,
        &["doctor", "--root", &root, "--port", &port, "--manifest", &m],
    );
    assert!(
        doc["error"]["message"]
            .as_str()
            .unwrap()
            .contains("nvidia_runtime"),
        "{doc}"
    );
    w.case("doctor", false, &["--host", &closed_host, "doctor"]);

    // env: a dotenv file on the local host.
    let env = w.p(".env");
    std::fs::write(&env, "COMFYUI_URL=http://a:1\n").unwrap();
    let doc = w.case("env show", true, &["env", "show", "--file", &env]);
    assert_eq!(doc["vars"][0]["key"], "COMFYUI_URL");
    w.case(
        "env show",
        false,
        &["env", "show", "--file", &w.p("none.env")],
    );
    let doc = w.case(
        "env get",
        true,
        &["env", "get", "COMFYUI_URL", "--file", &env],
    );
    assert_eq!(doc["value"], "http://a:1");
    w.case("env get", false, &["env", "get", "NOPE", "--file", &env]);
    let doc = w.case(
        "env set",
        true,
        &["env", "set", "COMFYUI_URL=http://b:2", "--file", &env],
    );
    assert_eq!(doc["status"], "changed");
    assert_eq!(
        std::fs::read_to_string(&env).unwrap(),
        "COMFYUI_URL=http://b:2\n"
    );
    w.case(
        "env set",
        false,
        &["env", "set", "A=1", "--file", &w.p("none.env")],
    );
    assert!(!w.dir.path().join("none.env").exists());

    // connection-info: planned only, then an unreachable host.
    w.case("connection-info", true, &["connection-info", "--dry-run"]);
    w.case(
        "connection-info",
        false,
        &["--host", &closed_host, "connection-info"],
    );

    // workflows: a ComfyUI tree on the local host.
    let comfy = w.p("comfy");
    std::fs::create_dir_all(w.dir.path().join("comfy/user/default/workflows")).unwrap();
    std::fs::write(
        w.dir.path().join("comfy/user/default/workflows/a.json"),
        "{}",
    )
    .unwrap();
    let archive = w.p("wf.tar.gz");
    let doc = w.case(
        "workflows backup",
        true,
        &["workflows", "backup", "--root", &comfy, "--out", &archive],
    );
    assert_eq!(doc["bytes"], 2);
    assert!(Path::new(&archive).is_file());
    w.case(
        "workflows backup",
        false,
        &["--host", &closed_host, "workflows", "backup"],
    );
    let restored = w.p("comfy2");
    w.case(
        "workflows restore",
        true,
        &["workflows", "restore", &archive, "--root", &restored],
    );
    assert_eq!(
        std::fs::read(w.dir.path().join("comfy2/user/default/workflows/a.json")).unwrap(),
        b"{}"
    );
    w.case(
        "workflows restore",
        false,
        &[
            "workflows",
            "restore",
            &w.p("none.tar.gz"),
            "--root",
            &restored,
        ],
    );
    let to = w.p("comfy3");
    w.case(
        "workflows transfer",
        true,
        &[
            "workflows",
            "transfer",
            "--from",
            "local",
            "--to",
            "local",
            "--from-root",
            &comfy,
            "--to-root",
            &to,
        ],
    );
    w.case(
        "workflows transfer",
        false,
        &[
            "workflows",
            "transfer",
            "--from",
            &closed_host,
            "--to",
            "local",
        ],
    );

    // The service: planned against the private daemon; an unreachable host.
    for cmd in ["compose", "up", "down"] {
        let doc = w.case(cmd, true, &[cmd, "--dry-run", pb[0], pb[1]]);
        assert!(!doc["steps"].as_array().unwrap().is_empty(), "{doc}");
        w.case(cmd, false, &["--host", &closed_host, cmd]);
    }
    assert!(!w.dir.path().join("root/docker-compose.yml").exists());

    // status: the mock ComfyUI / a closed port.
    let doc = w.case("status", true, &["status", "--url", &url]);
    assert_eq!(doc["hosts"][0]["reachable"], true);
    let doc = w.case("status", false, &["status", "--url", &closed_url]);
    assert_eq!(doc["hosts"][0]["reachable"], false);

    // nodes: an empty node list; a bad one; the mock's /object_info.
    let bad_nodes = w.p("bad-nodes.yaml");
    std::fs::write(&bad_nodes, "nodes: 3\n").unwrap();
    w.case(
        "nodes list",
        true,
        &["nodes", "list", "--nodes", &nodes, "--root", &root],
    );
    w.case(
        "nodes list",
        false,
        &["nodes", "list", "--nodes", &bad_nodes, "--root", &root],
    );
    w.case(
        "nodes install",
        true,
        &[
            "nodes",
            "install",
            "--dry-run",
            "--nodes",
            &nodes,
            "--root",
            &root,
        ],
    );
    w.case(
        "nodes install",
        false,
        &["--host", &closed_host, "nodes", "install"],
    );
    w.case(
        "nodes verify",
        true,
        &[
            "nodes", "verify", "--nodes", &nodes, "--root", &root, "--url", &url,
        ],
    );
    w.case(
        "nodes verify",
        false,
        &[
            "nodes",
            "verify",
            "--nodes",
            &nodes,
            "--root",
            &root,
            "--url",
            &closed_url,
        ],
    );

    // models: the file in place; then changed, then gone with its server closed.
    w.case(
        "models list",
        true,
        &["models", "list", "--manifest", &m, "--root", &root],
    );
    let bad = w.p("bad.yaml");
    std::fs::write(&bad, "models: [1]\n").unwrap();
    let doc = w.case(
        "models list",
        false,
        &["models", "list", "--manifest", &bad],
    );
    assert!(doc["error"]["hint"].is_string(), "{doc}");
    w.case(
        "models verify",
        true,
        &["models", "verify", "--manifest", &m, "--root", &root],
    );
    w.case(
        "models pull",
        true,
        &["models", "pull", "--manifest", &m, "--root", &root],
    );
    let file = w.dir.path().join("root/models/checkpoints/a.bin");
    std::fs::write(&file, b"hellO").unwrap();
    w.case(
        "models verify",
        false,
        &["models", "verify", "--manifest", &m, "--root", &root],
    );
    std::fs::remove_file(&file).unwrap();
    let doc = w.case(
        "models pull",
        false,
        &["models", "pull", "--manifest", &m, "--root", &root],
    );
    assert!(!file.exists(), "{doc}");
    std::fs::write(&file, b"hello").unwrap();

    // setup and verify: planned in full / the mock ComfyUI; an unreachable host / ComfyUI.
    let doc = w.case(
        "setup",
        true,
        &[
            "setup",
            "--dry-run",
            "--root",
            &root,
            "--manifest",
            &m,
            "--nodes",
            &nodes,
        ],
    );
    assert_eq!(doc["phases"].as_array().unwrap().len(), 7, "{doc}");
    let models = support::phase(&doc, "models");
    assert_eq!(models["steps"][0]["outcome"], "would_change", "{models}");
    assert_eq!(models["steps"][0]["bytes"], 5, "{models}");
    w.case("setup", false, &["--host", &closed_host, "setup"]);
    w.case(
        "verify",
        true,
        &[
            "verify",
            "--root",
            &root,
            "--url",
            &url,
            "--manifest",
            &m,
            "--nodes",
            &nodes,
        ],
    );
    w.case(
        "verify",
        false,
        &[
            "verify",
            "--root",
            &root,
            "--url",
            &closed_url,
            "--manifest",
            &m,
            "--nodes",
            &nodes,
        ],
    );

    // migrate: a local ComfyUI to a local root, planned; a rollback without a log.
    let life_env = w.p("life.env");
    std::fs::write(&life_env, "COMFYUI_URL=http://a:1\n").unwrap();
    let backups = w.p("backups");
    let dest = w.p("dest");
    std::fs::write(w.dir.path().join("comfy/main.py"), "").unwrap();
    std::fs::create_dir_all(w.dir.path().join("comfy/models")).unwrap();
    let doc = w.case(
        "migrate",
        true,
        &[
            "migrate",
            "--dry-run",
            "--from",
            "local",
            "--to",
            "local",
            "--from-root",
            &comfy,
            "--root",
            &dest,
            "--env-file",
            &life_env,
            "--backup-dir",
            &backups,
            "--manifest",
            &m,
            "--nodes",
            &nodes,
            "--no-generate",
        ],
    );
    assert!(doc["host"] == "local" && doc["from"] == "local", "{doc}");
    w.case(
        "migrate",
        false,
        &[
            "migrate",
            "--rollback",
            "--env-file",
            &life_env,
            "--backup-dir",
            &backups,
        ],
    );

    // inspect: the ComfyUI tree / a folder that is none.
    let doc = w.case("inspect", true, &["inspect", "--root", &comfy]);
    assert!(doc["base"].as_str().unwrap().ends_with("comfy"), "{doc}");
    w.case("inspect", false, &["inspect", "--root", &w.p("backups")]);

    // pool, and doctor/setup/status over an inventory: one host (local, the mock's URL).
    let inv = w.p("inventory.yaml");
    std::fs::write(
        &inv,
        format!("hosts:\n  here:\n    ssh: local\n    url: {url}\n    root: {root}\n"),
    )
    .unwrap();
    let pool = w.p("pool.yaml");
    w.case("pool", true, &["pool", "--inventory", &inv, "--out", &pool]);
    assert!(Path::new(&pool).is_file());
    w.case("pool", false, &["pool", "--inventory", &w.p("none.yaml")]);
    let doc = w.case("status", true, &["status", "--inventory", &inv]);
    assert_eq!(doc["hosts"][0]["host"], "here");
    let doc = w.case(
        "doctor",
        true,
        &[
            "doctor",
            "--inventory",
            &inv,
            "--port",
            &port,
            "--manifest",
            &m,
        ],
    );
    assert_eq!(doc["hosts"][0]["host"], "here");
    let gone = w.p("gone.yaml");
    std::fs::write(&gone, format!("hosts:\n  gone:\n    ssh: {closed_host}\n")).unwrap();
    let doc = w.case("doctor", false, &["doctor", "--inventory", &gone]);
    assert!(
        doc["error"]["message"].as_str().unwrap().contains("gone"),
        "{doc}"
    );
    w.case(
        "setup",
        true,
        &[
            "setup",
            "--inventory",
            &inv,
            "--dry-run",
            "--only",
            "doctor",
        ],
    );

    // completions and man: text data in a field.
    let doc = w.case("completions", true, &["completions", "bash"]);
    assert!(doc["script"].as_str().unwrap().contains("lifeos-spark"));
    let doc = w.case("man", true, &["man"]);
    assert!(doc["page"].as_str().unwrap().contains(".TH"));

    // Usage errors, refused by clap (exit 2, its message on stderr) or by the command (two
    // `--host` for a one-host command): the same document, nothing touched.
    for (command, args) in [
        ("env set", &["env", "set", "NOEQ", "--file", &env][..]),
        ("doctor", &["--host", "u@h:abc", "doctor"][..]),
        ("doctor", &["--host", "a", "--host", "b", "doctor"][..]),
    ] {
        let out = w.run_with(&w.docker, args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        let doc = w.check(&out, args);
        assert_eq!(doc["command"], command, "{doc}");
        assert!(stderr(&out).contains("error:"), "{}", stderr(&out));
    }
    assert_eq!(
        std::fs::read_to_string(&env).unwrap(),
        "COMFYUI_URL=http://b:2\n"
    );

    // Every subcommand with `--json` ran both ways (bar those that cannot fail), and nothing else.
    let wanted: BTreeSet<(String, bool)> = json_commands()
        .into_iter()
        .flat_map(|c| {
            let fails = !NO_FAILURE_CASE.contains(&c.as_str());
            [Some((c.clone(), true)), fails.then_some((c, false))]
        })
        .flatten()
        .collect();
    assert_eq!(
        w.seen, wanted,
        "cases run vs. subcommands that accept --json"
    );
}
