//! `env set|get|show` run as the built binary against real files in temp folders, and over
//! SSH against a real sshd.

mod support;

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{Command, Output};

fn lifeos(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lifeos-spark"))
        .args(args)
        .current_dir(dir)
        .env("HOME", dir)
        .env_remove("LIFEOS_ENV_FILE")
        .env("NO_COLOR", "1")
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Everything a real `.env` may hold: a BOM-less UTF-8 file with comments, blank lines,
/// `export`, both quote styles, an inline comment, CRLF line ends, a duplicate key, unicode
/// and no final newline.
const FIXTURE: &str = "# Life-OS settings\r\n\r\nexport OPENAI_API_KEY='sk-live-123' # rotate monthly\r\nCOMFYUI_URL=http://192.168.1.100:8188  # RTX PC\r\nCOMFYUI_TIMEOUT=120\r\nGREETING=\"grüß dich\"\r\nCOMFYUI_TIMEOUT=300\r\n   # indented comment\r\nCOMFYUI_ENABLED=true";

fn fixture_dir(mode: u32) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let env = dir.path().join(".env");
    fs::write(&env, FIXTURE).unwrap();
    fs::set_permissions(&env, fs::Permissions::from_mode(mode)).unwrap();
    (dir, env)
}

fn backups(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut found: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with(".env.bak-")
        })
        .collect();
    found.sort();
    found
}

#[test]
fn set_changes_only_the_named_keys_byte_for_byte() {
    let (dir, env) = fixture_dir(0o600);
    let out = lifeos(
        dir.path(),
        &[
            "env",
            "set",
            "COMFYUI_URL=http://192.168.1.101:8188",
            "COMFYUI_TIMEOUT=600",
            "COMFYUI_DEVICE_TYPE=dgx_spark",
            "--file",
            ".env",
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let expected = "# Life-OS settings\r\n\r\nexport OPENAI_API_KEY='sk-live-123' # rotate monthly\r\nCOMFYUI_URL=http://192.168.1.101:8188  # RTX PC\r\nCOMFYUI_TIMEOUT=120\r\nGREETING=\"grüß dich\"\r\nCOMFYUI_TIMEOUT=600\r\n   # indented comment\r\nCOMFYUI_ENABLED=true\r\nCOMFYUI_DEVICE_TYPE=dgx_spark";
    assert_eq!(text(&fs::read(&env).unwrap()), expected);
    // Mode 0600 stays 0600, and the backup of the secrets is 0600 too.
    assert_eq!(fs::metadata(&env).unwrap().mode() & 0o777, 0o600);
    let baks = backups(dir.path());
    assert_eq!(baks.len(), 1);
    assert_eq!(text(&fs::read(&baks[0]).unwrap()), FIXTURE);
    assert_eq!(fs::metadata(&baks[0]).unwrap().mode() & 0o777, 0o600);
    // The diff is on stdout, with the secret masked; the status on stderr.
    let diff = text(&out.stdout);
    assert!(
        diff.contains("-COMFYUI_URL=http://192.168.1.100:8188  # RTX PC"),
        "{diff}"
    );
    assert!(diff.contains("+COMFYUI_DEVICE_TYPE=dgx_spark"), "{diff}");
    assert!(!diff.contains("sk-live-123"), "{diff}");
    assert!(text(&out.stderr).contains("changed:"));
}

#[test]
fn same_value_again_is_ok_and_writes_nothing() {
    let (dir, env) = fixture_dir(0o640);
    let out = lifeos(
        dir.path(),
        &["env", "set", "COMFYUI_ENABLED=true", "--file", ".env"],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).starts_with("ok:"),
        "{}",
        text(&out.stderr)
    );
    assert!(out.stdout.is_empty());
    assert_eq!(text(&fs::read(&env).unwrap()), FIXTURE);
    assert!(backups(dir.path()).is_empty());
    assert_eq!(fs::metadata(&env).unwrap().mode() & 0o777, 0o640);
}

#[test]
fn dry_run_prints_only_the_diff() {
    let (dir, env) = fixture_dir(0o600);
    let out = lifeos(
        dir.path(),
        &[
            "env",
            "set",
            "COMFYUI_URL=http://10.0.0.7:8188",
            "--file",
            ".env",
            "--dry-run",
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.starts_with("--- "), "{stdout}");
    assert!(stdout.contains("+COMFYUI_URL=http://10.0.0.7:8188  # RTX PC"));
    assert_eq!(text(&fs::read(&env).unwrap()), FIXTURE);
    assert!(backups(dir.path()).is_empty());
}

#[test]
fn refuses_line_breaks_nul_and_bad_values_and_leaves_the_file() {
    let (dir, env) = fixture_dir(0o600);
    let before = fs::read(&env).unwrap();
    for (arg, why) in [
        (
            "NOTE=two\nlines",
            "error: the value of `NOTE` contains a line break\n",
        ),
        (
            "COMFYUI_ENABLED=yes",
            "error: `COMFYUI_ENABLED` must be `true` or `false`, not `yes`\n",
        ),
        ("9LIVES=x", "error: `9LIVES` is not a valid variable name\n"),
        ("NOEQUALS", "error: `NOEQUALS` is not KEY=VALUE\n"),
    ] {
        let out = lifeos(dir.path(), &["env", "set", arg, "--file", ".env"]);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{arg}: a bad KEY=VALUE is a usage error"
        );
        // clap reports a bad value: `error: invalid value '<arg>' for '<KEY=VALUE>...': <why>`.
        let err = text(&out.stderr);
        let why = why.trim_start_matches("error: ").trim_end();
        assert!(
            err.starts_with("error: ") && err.contains(&format!("KEY=VALUE>...': {why}")),
            "{arg}: expected {why:?} in\n{err}"
        );
        assert_eq!(fs::read(&env).unwrap(), before, "{arg}: the file changed");
    }
    let out = lifeos(dir.path(), &["env", "set", "NOTE=a\rb", "--file", ".env"]);
    assert!(
        text(&out.stderr).contains("contains a line break"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(text(&fs::read(&env).unwrap()), FIXTURE);
    assert!(backups(dir.path()).is_empty());
}

#[test]
fn get_reads_the_last_duplicate_and_show_masks_secrets() {
    let (dir, _env) = fixture_dir(0o600);
    let get = lifeos(
        dir.path(),
        &["env", "get", "COMFYUI_TIMEOUT", "--file", ".env"],
    );
    assert_eq!(text(&get.stdout), "300\n");
    let get = lifeos(dir.path(), &["env", "get", "GREETING", "--file", ".env"]);
    assert_eq!(text(&get.stdout), "grüß dich\n");
    let missing = lifeos(dir.path(), &["env", "get", "NOPE", "--file", ".env"]);
    assert_eq!(missing.status.code(), Some(1));
    let show = lifeos(dir.path(), &["env", "show", "--file", ".env", "--json"]);
    let vars: serde_json::Value = serde_json::from_slice(&show.stdout).unwrap();
    let vars = vars["vars"].as_array().unwrap();
    let keys: Vec<_> = vars.iter().map(|v| v["key"].as_str().unwrap()).collect();
    assert_eq!(
        keys,
        [
            "OPENAI_API_KEY",
            "COMFYUI_URL",
            "COMFYUI_TIMEOUT",
            "GREETING",
            "COMFYUI_ENABLED"
        ]
    );
    assert_eq!(vars[0]["value"], "********");
    assert_eq!(vars[2]["value"], "300");
    let reveal = lifeos(
        dir.path(),
        &["env", "show", "--file", ".env", "--show-secrets"],
    );
    assert!(text(&reveal.stdout).contains("OPENAI_API_KEY=sk-live-123\n"));
}

#[test]
fn missing_file_needs_create_and_then_is_0600() {
    let dir = tempfile::tempdir().unwrap();
    let out = lifeos(
        dir.path(),
        &[
            "env",
            "set",
            "COMFYUI_ENABLED=true",
            "--file",
            "~/lifeos/.env",
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("--create"),
        "{}",
        text(&out.stderr)
    );
    fs::create_dir(dir.path().join("lifeos")).unwrap();
    let out = lifeos(
        dir.path(),
        &[
            "env",
            "set",
            "COMFYUI_ENABLED=true",
            "--file",
            "~/lifeos/.env",
            "--create",
            "--json",
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["status"], "changed");
    assert_eq!(report["changed_keys"][0], "COMFYUI_ENABLED");
    let env = dir.path().join("lifeos/.env");
    assert_eq!(fs::read_to_string(&env).unwrap(), "COMFYUI_ENABLED=true\n");
    assert_eq!(fs::metadata(&env).unwrap().mode() & 0o777, 0o600);
}

#[test]
fn env_var_names_the_file_and_usage_error_without_one() {
    let (dir, env) = fixture_dir(0o600);
    let out = lifeos(dir.path(), &["env", "show"]);
    assert_eq!(out.status.code(), Some(2));
    let out = Command::new(env!("CARGO_BIN_EXE_lifeos-spark"))
        .args(["env", "get", "COMFYUI_URL"])
        .env("LIFEOS_ENV_FILE", &env)
        .output()
        .unwrap();
    assert_eq!(text(&out.stdout), "http://192.168.1.100:8188\n");
}

/// Root editing a user's file must hand it back to that user. Needs root to create a file
/// owned by someone else: fails under CI without it, skips loudly elsewhere.
#[test]
fn owner_is_kept_when_root_edits() {
    let uid = text(&Command::new("id").arg("-u").output().unwrap().stdout);
    let Some(()) = support::require(uid.trim() == "0", "root (to chown a file to another user)")
    else {
        return;
    };
    let (dir, env) = fixture_dir(0o600);
    let chown = Command::new("chown")
        .arg("4321:4322")
        .arg(&env)
        .status()
        .unwrap();
    assert!(chown.success());
    let out = lifeos(
        dir.path(),
        &["env", "set", "COMFYUI_TIMEOUT=900", "--file", ".env"],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let meta = fs::metadata(&env).unwrap();
    assert_eq!(
        (meta.uid(), meta.gid(), meta.mode() & 0o777),
        (4321, 4322, 0o600)
    );
    let bak = fs::metadata(&backups(dir.path())[0]).unwrap();
    assert_eq!((bak.uid(), bak.gid()), (4321, 4322));
}

#[test]
fn two_quick_edits_keep_the_original_in_a_backup() {
    let (dir, _env) = fixture_dir(0o600);
    ok_set(dir.path(), "COMFYUI_TIMEOUT=901");
    ok_set(dir.path(), "COMFYUI_TIMEOUT=902");
    let baks = backups(dir.path());
    assert_eq!(baks.len(), 2, "{baks:?}");
    let contents: Vec<_> = baks.iter().map(|b| text(&fs::read(b).unwrap())).collect();
    assert!(
        contents.contains(&FIXTURE.to_string()),
        "the original is lost"
    );
}

#[test]
fn a_new_key_follows_the_line_ending_even_after_a_leading_blank_line() {
    // (before, after `set NEW=1`): the ending of the first line decides, blank or not.
    let cases = [
        ("\nA=1", "\nA=1\nNEW=1"),
        ("\nA=1\n", "\nA=1\nNEW=1\n"),
        ("\r\nA=1\r\n", "\r\nA=1\r\nNEW=1\r\n"),
        ("", "NEW=1\n"),
    ];
    for (before, after) in cases {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(".env"), before).unwrap();
        ok_set(dir.path(), "NEW=1");
        assert_eq!(
            text(&fs::read(dir.path().join(".env")).unwrap()),
            after,
            "{before:?}"
        );
    }
}

fn ok_set(dir: &Path, assignment: &str) {
    let out = lifeos(dir, &["env", "set", assignment, "--file", ".env"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
}

/// A real sshd whose `lifeos-box` alias the client trusts; `None` (skipped) without sshd.
fn ssh_box(client: &support::ClientHome) -> Option<support::SshServer> {
    let server = support::SshServer::start(support::SshServerConfig {
        gpu_profile: None,
        docker_host: None,
        authorized_keys: vec![client.public_key()],
    })?;
    client.add_alias("lifeos-box", &server);
    client.trust(&server);
    Some(server)
}

/// `env set --host`: the file is edited on the SSH host, through SFTP and `mv`, not locally.
#[test]
fn set_over_ssh_edits_the_remote_file_in_place() {
    use support::*;
    let client = ClientHome::new();
    let Some(server) = ssh_box(&client) else {
        return;
    };
    let remote = server.home().join(".env");
    fs::write(&remote, FIXTURE).unwrap();
    fs::set_permissions(&remote, fs::Permissions::from_mode(0o600)).unwrap();
    let out = client
        .lifeos()
        .args([
            "--host",
            "lifeos-box",
            "env",
            "set",
            "COMFYUI_URL=http://192.168.1.101:8188",
        ])
        .args(["--file", "~/.env"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        text(&fs::read(&remote).unwrap()),
        FIXTURE.replace("192.168.1.100", "192.168.1.101")
    );
    assert_eq!(fs::metadata(&remote).unwrap().mode() & 0o777, 0o600);
    let baks = backups(&server.home());
    assert_eq!(baks.len(), 1);
    assert_eq!(fs::metadata(&baks[0]).unwrap().mode() & 0o777, 0o600);
    assert!(!client.path().join(".env").exists());
    let get = client
        .lifeos()
        .args([
            "--host",
            "lifeos-box",
            "env",
            "get",
            "COMFYUI_URL",
            "--file",
            "~/.env",
        ])
        .output()
        .unwrap();
    assert_eq!(text(&get.stdout), "http://192.168.1.101:8188\n");
}

/// A dotfile manager's layout: `.env` is a relative symlink to the real file elsewhere.
fn linked_fixture(home: &Path, mode: u32) -> std::path::PathBuf {
    let real = home.join("dotfiles/lifeos.env");
    fs::create_dir_all(real.parent().unwrap()).unwrap();
    fs::write(&real, FIXTURE).unwrap();
    fs::set_permissions(&real, fs::Permissions::from_mode(mode)).unwrap();
    std::os::unix::fs::symlink("dotfiles/lifeos.env", home.join(".env")).unwrap();
    real
}

/// The link is still the same link, the real file has the new value and its mode, and the
/// backup sits beside the real file.
fn assert_edited_through_link(home: &Path, real: &Path, mode: u32) {
    let link = home.join(".env");
    assert!(fs::symlink_metadata(&link)
        .unwrap()
        .file_type()
        .is_symlink());
    assert_eq!(
        fs::read_link(&link).unwrap(),
        Path::new("dotfiles/lifeos.env")
    );
    assert_eq!(
        text(&fs::read(real).unwrap()),
        FIXTURE.replace("192.168.1.100", "192.168.1.101")
    );
    assert_eq!(fs::metadata(real).unwrap().mode() & 0o777, mode);
    let baks: Vec<_> = fs::read_dir(real.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().contains("lifeos.env.bak-"))
        .collect();
    assert_eq!(baks.len(), 1, "one backup beside the real file");
    assert_eq!(text(&fs::read(&baks[0]).unwrap()), FIXTURE);
}

#[test]
fn set_on_a_symlinked_env_edits_the_real_file_and_keeps_the_link() {
    let dir = tempfile::tempdir().unwrap();
    let real = linked_fixture(dir.path(), 0o640);
    ok_set(dir.path(), "COMFYUI_URL=http://192.168.1.101:8188");
    assert_edited_through_link(dir.path(), &real, 0o640);
    assert!(backups(dir.path()).is_empty(), "no backup beside the link");
}

#[test]
fn set_over_ssh_on_a_symlinked_env_edits_the_real_file() {
    use support::*;
    let client = ClientHome::new();
    let Some(server) = ssh_box(&client) else {
        return;
    };
    let real = linked_fixture(&server.home(), 0o600);
    let out = client
        .lifeos()
        .args(["--host", "lifeos-box", "env", "set"])
        .args(["COMFYUI_URL=http://192.168.1.101:8188", "--file", "~/.env"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_edited_through_link(&server.home(), &real, 0o600);
}

#[test]
fn a_fifo_is_refused_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join(".env");
    let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success());
    for args in [
        &["env", "set", "A=1", "--file", ".env"][..],
        &["env", "get", "A", "--file", ".env"],
        &["env", "show", "--file", ".env"],
    ] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_lifeos-spark"))
            .args(args)
            .current_dir(dir.path())
            .env("HOME", dir.path())
            .env("NO_COLOR", "1")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while child.try_wait().unwrap().is_none() {
            if std::time::Instant::now() > deadline {
                child.kill().unwrap();
                panic!("{args:?} hangs on a FIFO");
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let out = child.wait_with_output().unwrap();
        assert!(!out.status.success());
        let err = text(&out.stderr);
        assert!(err.contains("is a fifo, not a regular file"), "{err}");
        assert!(err.contains("hint:"), "{err}");
    }
    assert!(fs::symlink_metadata(&fifo).unwrap().file_type().is_fifo());
}

#[test]
fn a_hard_linked_env_is_refused_with_a_hint_and_left_alone() {
    let (dir, env) = fixture_dir(0o600);
    let other = dir.path().join("copy.env");
    fs::hard_link(&env, &other).unwrap();
    let out = lifeos(
        dir.path(),
        &["env", "set", "COMFYUI_URL=http://x:8188", "--file", ".env"],
    );
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains("has 2 hard links"), "{err}");
    assert!(err.contains("hint:"), "{err}");
    assert_eq!(text(&fs::read(&env).unwrap()), FIXTURE);
    assert_eq!(
        fs::metadata(&env).unwrap().ino(),
        fs::metadata(&other).unwrap().ino()
    );
    assert!(backups(dir.path()).is_empty());
    // With the other name gone, the same edit goes through.
    fs::remove_file(&other).unwrap();
    ok_set(dir.path(), "COMFYUI_URL=http://x:8188");
}

/// README: the `.env` is written atomically. The new content goes to a temporary file that is
/// renamed over the old one: a reader that opened the file before still reads the whole old
/// content through its handle (an in-place rewrite would show it the new or a truncated one),
/// the path shows the whole new content, and no temporary file is left beside it.
#[test]
fn set_replaces_the_file_atomically_by_rename() {
    use std::io::Read;
    let (dir, env) = fixture_dir(0o600);
    let mut reader = fs::File::open(&env).unwrap();
    let inode = fs::metadata(&env).unwrap().ino();
    ok_set(dir.path(), "COMFYUI_TIMEOUT=999");
    let mut old = String::new();
    reader.read_to_string(&mut old).unwrap();
    assert_eq!(old, FIXTURE, "the file was rewritten in place");
    assert_ne!(
        fs::metadata(&env).unwrap().ino(),
        inode,
        "not replaced by a rename"
    );
    let new = text(&fs::read(&env).unwrap());
    assert_eq!(
        new,
        FIXTURE.replace("COMFYUI_TIMEOUT=300", "COMFYUI_TIMEOUT=999")
    );
    let mut names: Vec<String> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with(".env.bak-"))
        .collect();
    names.sort();
    assert_eq!(names, [".env"], "a temporary file was left behind");
}
