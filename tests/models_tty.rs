//! `models pull` on a real pseudo-terminal 80 columns wide (util-linux `script`): the bars are
//! drawn, and no line of what reaches the terminal is wider than the window.

mod fake_hub;
mod support;

use std::process::Command;

use fake_hub::{bytes_of, sha256_hex, CliEnv};

const MIB: usize = 1 << 20;

/// What the terminal shows: escape sequences removed, split at `\r` and `\n`.
fn screen_lines(raw: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(raw);
    let mut plain = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // CSI: ESC [ params final-byte
            if chars.peek() == Some(&'[') {
                chars.next();
                for c in chars.by_ref() {
                    if c.is_ascii_alphabetic() {
                        break;
                    }
                }
            }
            continue;
        }
        plain.push(c);
    }
    plain.split(['\r', '\n']).map(str::to_string).collect()
}

#[test]
fn pull_at_80_columns_never_wraps() {
    if support::require(
        Command::new("script").arg("--version").output().is_ok(),
        "util-linux `script`",
    )
    .is_none()
    {
        return;
    }
    let env = CliEnv::new();
    let data = bytes_of(12 * MIB, 7);
    env.hub
        .put("/a-model-with-a-very-long-identifier", data.clone(), "e1");
    env.hub.rate_limit(Some(8 * MIB as u64));
    let manifest = env.dir.path().join("m.yaml");
    std::fs::write(
        &manifest,
        format!(
            "name: test\nmodels:\n  - id: a-model-with-a-very-long-identifier\n    url: {}\n    dest: models/checkpoints/m.safetensors\n    size: {}\n    sha256: {}\n",
            env.hub.url("/a-model-with-a-very-long-identifier"),
            data.len(),
            sha256_hex(&data)
        ),
    )
    .unwrap();
    let cmd = env.cmd(&manifest, &["pull", "--connections", "2"]);
    let line: Vec<String> = std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|a| format!("'{}'", a.to_str().unwrap().replace('\'', "'\\''")))
        .collect();
    let out = Command::new("script")
        .args([
            "-qfec",
            &format!("stty cols 80 rows 24; exec {}", line.join(" ")),
            "/dev/null",
        ])
        .envs(cmd.get_envs().filter_map(|(k, v)| Some((k, v?))))
        .env_remove("HF_TOKEN")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", fake_hub::output_text(&out));
    let dest = env.root().join("models/checkpoints/m.safetensors");
    assert_eq!(std::fs::read(dest).unwrap(), data);
    let lines = screen_lines(&out.stdout);
    assert!(
        lines
            .iter()
            .any(|l| l.contains("ETA") && l.contains("MB/s")),
        "no bar was drawn: {lines:#?}"
    );
    let wide: Vec<_> = lines.iter().filter(|l| l.chars().count() > 80).collect();
    assert!(wide.is_empty(), "lines over 80 columns: {wide:#?}");
}
