//! `doctor` over SSH against a real OpenSSH server, and the host-key / authentication policy.

mod support;

use support::*;

fn doctor_json(client: &ClientHome, alias: &str) -> (serde_json::Value, std::process::Output) {
    let out = client
        .lifeos()
        .args(["--host", alias, "doctor", "--json"])
        .output()
        .unwrap();
    let doc = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): stdout={} stderr={}",
            stdout(&out),
            stderr(&out)
        )
    });
    (doc, out)
}

fn server_for(client: &ClientHome, profile: &str, docker: Option<String>) -> Option<SshServer> {
    SshServer::start(SshServerConfig {
        gpu_profile: Some(profile),
        docker_host: docker,
        authorized_keys: vec![client.public_key()],
    })
}

/// `server_for`, reached as `alias` in `client`'s ssh config, its host key trusted.
fn trusted_server(
    client: &ClientHome,
    profile: &str,
    docker: Option<String>,
    alias: &str,
) -> Option<SshServer> {
    let server = server_for(client, profile, docker)?;
    client.add_alias(alias, &server);
    client.trust(&server);
    Some(server)
}

fn check<'a>(doc: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    doc["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no check {name} in {doc}"))
}

#[test]
fn gb10_host_over_alias_reports_dgx_spark_with_unified_memory() {
    let Some(docker) = docker_host(true) else {
        return;
    };
    let client = ClientHome::new();
    let Some(server) = trusted_server(&client, "gb10", Some(docker), "spark") else {
        return;
    };
    let (doc, out) = doctor_json(&client, "spark");
    assert_eq!(doc["host"], "spark");
    assert_eq!(doc["profile"], "dgx_spark", "{doc}");
    let gpu = &doc["gpus"][0];
    assert_eq!(gpu["name"], "NVIDIA GB10");
    assert_eq!(gpu["memory_total_mib"], serde_json::Value::Null);
    assert_eq!(gpu["memory_unified"], true);
    assert_eq!(gpu["usable_memory_mib"], meminfo_total_mib());
    assert_eq!(gpu["driver_version"], "580.126.09");
    assert_eq!(gpu["cuda_version"], "13.0");
    assert_eq!(gpu["compute_cap"], "12.1");
    assert_eq!(doc["docker"]["reachable"], true);
    assert_eq!(doc["docker"]["nvidia_runtime"], true);
    assert!(check(&doc, "gpu")["detail"]
        .as_str()
        .unwrap()
        .contains("unified memory"));
    // The remote HOME decides where ~/comfyui is.
    let root = server.home().join("comfyui");
    assert_eq!(doc["disk"]["root"], root.to_str().unwrap());
    assert!(doc["disk"]["free_bytes"].as_u64().unwrap() > 0);
    // This test machine is x86_64, so `os` warns; nothing fails.
    assert_eq!(check(&doc, "os")["level"], "warn");
    assert_eq!(check(&doc, "os")["status"], "ok");
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn rtx_4090_h100_and_no_driver_profiles_over_ssh() {
    let client = ClientHome::new();
    for (profile, expected, gpus) in [
        ("rtx4090", "rtx_4090", 1),
        ("h100", "generic_nvidia", 1),
        ("multi-gpu", "rtx_4090", 2),
        ("driver610", "generic_nvidia", 1),
        ("no-driver", "no_gpu", 0),
    ] {
        let Some(server) = server_for(&client, profile, None) else {
            return;
        };
        let alias = format!("box-{profile}");
        client.add_alias(&alias, &server);
        client.trust(&server);
        let (doc, out) = doctor_json(&client, &alias);
        assert_eq!(doc["profile"], expected, "{profile}: {doc}");
        assert_eq!(doc["gpus"].as_array().unwrap().len(), gpus, "{profile}");
        // No Docker daemon on these hosts: doctor fails, and says so.
        assert_eq!(out.status.code(), Some(1), "{profile}");
        assert_eq!(check(&doc, "docker")["status"], "failed");
        if profile == "no-driver" {
            let gpu = check(&doc, "gpu");
            assert!(
                gpu["detail"]
                    .as_str()
                    .unwrap()
                    .contains("driver is not loaded"),
                "{gpu}"
            );
        }
        if profile == "h100" {
            // The fake prints the real capture; the expected reading was written by hand from
            // that capture (tests/fixtures/nvidia-smi/README.md says which column is which).
            let expected: serde_json::Value = serde_json::from_str(
                &std::fs::read_to_string(fixtures().join("nvidia-smi/h100/expected-gpus.json"))
                    .unwrap(),
            )
            .unwrap();
            assert_eq!(doc["gpus"], expected);
        }
        if profile == "driver610" {
            assert_eq!(doc["gpus"][0]["cuda_version"], "13.2");
        }
    }
}

#[test]
fn unknown_host_key_is_refused_with_its_fingerprint() {
    let client = ClientHome::new();
    let Some(server) = server_for(&client, "h100", None) else {
        return;
    };
    client.add_alias("box", &server);
    let out = client
        .lifeos()
        .args(["--host", "box", "doctor"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let fp = stdout(&sh(&format!(
        "ssh-keygen -lf '{}' | cut -d' ' -f2",
        server.host_key.with_extension("pub").display()
    )));
    let err = stderr(&out);
    assert!(err.contains("is not known"), "{err}");
    assert!(
        err.contains(fp.trim()),
        "fingerprint {fp} missing in: {err}"
    );
    assert!(err.contains("--accept-new-host-key"), "{err}");
    assert!(!client.known_hosts().exists());
}

#[test]
fn accept_new_host_key_records_it_then_plain_runs_work() {
    let client = ClientHome::new();
    let Some(server) = server_for(&client, "h100", None) else {
        return;
    };
    client.add_alias("box", &server);
    let out = client
        .lifeos()
        .args(["--host", "box", "--accept-new-host-key", "doctor", "--json"])
        .output()
        .unwrap();
    assert!(
        stderr(&out).contains("recorded new host key"),
        "{}",
        stderr(&out)
    );
    let recorded = std::fs::read_to_string(client.known_hosts()).unwrap();
    assert_eq!(recorded, server.known_hosts_line());
    // OpenSSH itself accepts what we recorded.
    sh(&format!(
        "ssh -F none -i '{}' -o UserKnownHostsFile='{}' -o StrictHostKeyChecking=yes -o BatchMode=yes -p {} root@127.0.0.1 true",
        client.key.display(),
        client.known_hosts().display(),
        server.port
    ));
    let (doc, _) = doctor_json(&client, "box");
    assert_eq!(doc["profile"], "generic_nvidia");
}

/// README: host keys follow OpenSSH's policy against `~/.ssh/known_hosts`, which OpenSSH may
/// store hashed (`HashKnownHosts yes`, `ssh-keygen -H`). A hashed entry for the server's key is
/// accepted; the same file with another key under that hashed name is refused as changed.
#[test]
fn a_hashed_known_hosts_entry_is_honoured() {
    let client = ClientHome::new();
    let Some(_server) = trusted_server(&client, "h100", None, "box") else {
        return;
    };
    sh(&format!(
        "ssh-keygen -q -H -f '{}'",
        client.known_hosts().display()
    ));
    let hashed = std::fs::read_to_string(client.known_hosts()).unwrap();
    assert!(hashed.starts_with("|1|"), "{hashed}");
    let (doc, out) = doctor_json(&client, "box");
    assert_eq!(doc["profile"], "generic_nvidia", "{}", stderr(&out));
    assert_eq!(
        std::fs::read_to_string(client.known_hosts()).unwrap(),
        hashed
    );

    // The hashed name now with a stranger's key: a changed key, refused.
    let stranger = tempfile::tempdir().unwrap();
    let key = stranger.path().join("k");
    sh(&format!(
        "ssh-keygen -q -t ed25519 -N '' -f '{}'",
        key.display()
    ));
    let other = std::fs::read_to_string(key.with_extension("pub")).unwrap();
    let mut fields = other.split_whitespace();
    let name = hashed.split_whitespace().next().unwrap();
    let forged = format!(
        "{name} {} {}\n",
        fields.next().unwrap(),
        fields.next().unwrap()
    );
    std::fs::write(client.known_hosts(), &forged).unwrap();
    let out = client
        .lifeos()
        .args(["--host", "box", "doctor"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("HAS CHANGED"), "{}", stderr(&out));
    assert_eq!(
        std::fs::read_to_string(client.known_hosts()).unwrap(),
        forged
    );
}

#[test]
fn changed_host_key_is_always_refused() {
    let client = ClientHome::new();
    let Some(mut server) = trusted_server(&client, "h100", None, "box") else {
        return;
    };
    let trusted = std::fs::read_to_string(client.known_hosts()).unwrap();
    server.change_host_key();
    let out = client
        .lifeos()
        .args(["--host", "box", "--accept-new-host-key", "doctor"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("HAS CHANGED"), "{err}");
    assert!(err.contains("ssh-keygen -R"), "{err}");
    // The recorded key was not replaced, nor the new one added: the file is byte for byte
    // what the operator trusted.
    assert_eq!(
        std::fs::read_to_string(client.known_hosts()).unwrap(),
        trusted
    );
}

#[test]
fn wrong_key_gives_a_clear_authentication_error() {
    let client = ClientHome::new();
    let stranger = ClientHome::new();
    let Some(server) = server_for(&stranger, "h100", None) else {
        return;
    };
    client.add_alias("box", &server);
    client.trust(&server);
    let out = client
        .lifeos()
        .args(["--host", "box", "doctor"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("error: authentication as `root` on `box` failed"),
        "{err}"
    );
    assert!(err.contains("id_ed25519"), "{err}");
    assert!(err.contains("hint:"), "{err}");
}

#[test]
fn agent_identities_are_all_tried() {
    let client = ClientHome::new();
    let wrong = ClientHome::new();
    let Some(server) = server_for(&client, "gb10", None) else {
        return;
    };
    // The agent offers a key the server does not know first, then the right one.
    let agent = Agent::start(&[&wrong.key, &client.key]);
    let agent_only = ClientHome::new();
    std::fs::remove_file(&agent_only.key).unwrap();
    agent_only.add_alias("spark", &server);
    agent_only.trust(&server);
    let out = agent_only
        .lifeos()
        .env("SSH_AUTH_SOCK", &agent.sock)
        .args(["--host", "spark", "doctor", "--json"])
        .output()
        .unwrap();
    let doc: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|_| panic!("{}", stderr(&out)));
    assert_eq!(doc["profile"], "dgx_spark");
}

#[test]
fn user_at_host_port_without_config() {
    let client = ClientHome::new();
    let Some(server) = server_for(&client, "rtx4090", None) else {
        return;
    };
    client.trust(&server);
    let dest = format!("root@127.0.0.1:{}", server.port);
    let (doc, _) = doctor_json(&client, &dest);
    assert_eq!(doc["profile"], "rtx_4090");
    assert_eq!(doc["host"], dest);
}

#[test]
fn a_passphrase_protected_key_works_through_the_agent_only() {
    let client = ClientHome::new();
    let Some(server) = trusted_server(&client, "gb10", None, "spark") else {
        return;
    };
    // The operator's only key, protected by a passphrase (re-encrypted by the real ssh-keygen).
    sh(&format!(
        "ssh-keygen -q -p -P '' -N 'correct horse' -f '{}'",
        client.key.display()
    ));
    let key_bytes = std::fs::read(&client.key).unwrap();
    let fingerprint = stdout(&sh(&format!(
        "ssh-keygen -lf '{}'",
        client.public_key().display()
    )))
    .split_whitespace()
    .nth(1)
    .unwrap()
    .to_string();
    let accepted = |log: &str| {
        log.lines()
            .filter(|l| l.contains("Accepted publickey") && l.contains(&fingerprint))
            .count()
    };

    // Without an agent the key file cannot be used: refused, naming the key that was tried.
    let out = client
        .lifeos()
        .args(["--host", "spark", "doctor", "--json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let err = stderr(&out);
    assert!(
        err.contains("authentication as `root` on `spark` failed")
            && err.contains(&client.key.display().to_string()),
        "{err}"
    );
    assert_eq!(accepted(&server.log()), 0, "{}", server.log());

    // The same key unlocked in a real ssh-agent: the session is the key's, accepted by sshd.
    let agent = Agent::start(&[]);
    agent.add_with_passphrase(&client.key, "correct horse");
    let out = client
        .lifeos()
        .env("SSH_AUTH_SOCK", &agent.sock)
        .args(["--host", "spark", "doctor", "--json"])
        .output()
        .unwrap();
    let doc: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|_| panic!("{}", stderr(&out)));
    assert_eq!(doc["profile"], "dgx_spark");
    assert!(accepted(&server.log()) >= 1, "{}", server.log());
    assert_eq!(
        std::fs::read(&client.key).unwrap(),
        key_bytes,
        "key file changed"
    );
}

#[test]
fn an_ssh_config_that_cannot_be_read_is_an_error_naming_it() {
    // A config that exists but cannot be opened (a symlink to itself: ELOOP) is not the same as
    // no config: the operator's aliases would silently vanish.
    let client = ClientHome::new();
    let config = client.path().join(".ssh/config");
    std::os::unix::fs::symlink(&config, &config).unwrap();
    let out = client
        .lifeos()
        .args(["--host", "box", "doctor"])
        .output()
        .unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!("cannot read `{}`", config.display())),
        "{err}"
    );
}
