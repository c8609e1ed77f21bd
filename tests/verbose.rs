//! `-v` shows each command run on an SSH host and each HTTP request (method, URL, Range,
//! status), never a secret: checked against what a real sshd and the fake hub saw.

mod fake_hub;
mod support;

use fake_hub::{bytes_of, sha256_hex, FakeHub};
use support::*;

const TOKEN: &str = "hf_verbose_SECRET_token_42";
const PASSWORD: &str = "pw-SECRET-9";

/// The `-> <status>` of a `debug: HTTP` line, and its method and Range.
fn http_line(line: &str) -> Option<(String, Option<String>, u16)> {
    let rest = line.strip_prefix("debug: HTTP ")?;
    let (method, rest) = rest.split_once(' ')?;
    let (request, status) = rest.rsplit_once(" -> ")?;
    let range = request
        .split_once(" Range: ")
        .map(|(_, r)| r.split(' ').next().unwrap().to_string());
    Some((
        method.to_string(),
        range,
        status.split(' ').next()?.parse().ok()?,
    ))
}

#[test]
fn verbose_pull_over_ssh_shows_commands_and_requests_but_no_secret() {
    let client = ClientHome::new();
    let Some(server) = SshServer::for_client(&client) else {
        return;
    };
    client.add_alias("spark", &server);
    client.trust(&server);
    let hub = FakeHub::start();
    let data = bytes_of(9 << 20, 7);
    hub.put("/m", data.clone(), "e1");
    // Credentials in the manifest's URL, and the hub token for the same origin.
    let url = hub
        .url("/m")
        .replacen("http://", &format!("http://alice:{PASSWORD}@"), 1);
    let manifest = client.path().join("m.yaml");
    std::fs::write(
        &manifest,
        format!(
            "name: t\nmodels:\n  - id: m\n    url: {url}\n    dest: models/checkpoints/m.safetensors\n    size: {}\n    sha256: {}\n",
            data.len(),
            sha256_hex(&data)
        ),
    )
    .unwrap();
    let out = client
        .lifeos()
        .env("HF_TOKEN", TOKEN)
        .env("HF_ENDPOINT", hub.url(""))
        .args([
            "-v",
            "--host",
            "spark",
            "models",
            "pull",
            "--connections",
            "2",
        ])
        .arg("--manifest")
        .arg(&manifest)
        .output()
        .unwrap();
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert_eq!(
        std::fs::read(
            server
                .home()
                .join("comfyui/models/checkpoints/m.safetensors")
        )
        .unwrap(),
        data
    );

    // The secrets were really in play: the hub got credentials with the requests.
    let seen = hub.seen();
    assert!(
        seen.iter().any(|s| s.authorization.is_some()),
        "no credentials sent: {seen:?}"
    );
    let all = format!("{}{err}", stdout(&out));
    for secret in [TOKEN, PASSWORD] {
        assert!(!all.contains(secret), "`{secret}` printed:\n{all}");
    }
    let masked = url.replace(PASSWORD, "***");
    assert!(err.contains(&masked), "no masked URL `{masked}`:\n{err}");

    // One line per request the hub answered: same method, Range and status.
    let mut printed: Vec<_> = err.lines().filter_map(http_line).collect();
    let mut served: Vec<_> = seen
        .iter()
        .map(|s| (s.method.clone(), s.range.clone(), s.status))
        .collect();
    printed.sort();
    served.sort();
    assert_eq!(printed, served, "{err}");
    assert!(
        served.iter().any(|(_, r, s)| r.is_some() && *s == 206),
        "{served:?}"
    );

    // One line per command sshd started (the SFTP subsystem is not a command).
    let commands = err
        .lines()
        .filter(|l| l.starts_with("debug: ssh `spark`: "))
        .count();
    let started = server.log().matches("Starting session: command").count();
    assert!(commands > 0, "{err}");
    assert_eq!(commands, started, "{err}\n{}", server.log());
}

/// Without `-v`, none of it.
#[test]
fn without_verbose_no_debug_lines() {
    let hub = FakeHub::start();
    let data = bytes_of(1 << 16, 3);
    hub.put("/m", data.clone(), "e1");
    let client = ClientHome::new();
    let manifest = client.path().join("m.yaml");
    std::fs::write(
        &manifest,
        format!(
            "name: t\nmodels:\n  - id: m\n    url: {}\n    dest: m.bin\n    size: {}\n    sha256: {}\n",
            hub.url("/m"),
            data.len(),
            sha256_hex(&data)
        ),
    )
    .unwrap();
    let root = client.path().join("root");
    let out = client
        .lifeos()
        .args(["models", "pull", "--root"])
        .arg(&root)
        .arg("--manifest")
        .arg(&manifest)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(std::fs::read(root.join("m.bin")).unwrap(), data);
    assert!(!stderr(&out).contains("debug:"), "{}", stderr(&out));
}
