//! `completions` and `man`: the generated files parse in the real shells and in groff, and name
//! the real subcommands and options.

mod support;

use std::process::{Command, Stdio};

use support::*;

fn generated(args: &[&str]) -> String {
    let out = Command::new(bin()).args(args).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    stdout(&out)
}

/// Run `program args` with `input` in a file named by the last argument's `{}`.
fn check_with(program: &str, args: &[&str], text: &str, what: &str) {
    require(
        Command::new("sh")
            .args(["-c", &format!("command -v {program}")])
            .stdout(Stdio::null())
            .status()
            .unwrap()
            .success(),
        &format!("`{program}` (to check the {what})"),
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("generated");
    std::fs::write(&file, text).unwrap();
    let out = Command::new(program)
        .args(args)
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "{program} rejects the {what}: {}",
        stderr(&out)
    );
}

#[test]
fn shell_completions_parse_and_complete_the_subcommands() {
    let bash = generated(&["completions", "bash"]);
    for word in ["setup", "migrate", "--host", "--accept-new-host-key"] {
        assert!(bash.contains(word), "bash completion lacks {word}");
    }
    check_with("bash", &["-n"], &bash, "bash completion");
    // The bash function really completes: ask it for the words after `lifeos-spark mo`.
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("c.bash");
    std::fs::write(&script, &bash).unwrap();
    let probe = format!(
        "source '{}'; COMP_WORDS=(lifeos-spark mo); COMP_CWORD=1; COMP_LINE='lifeos-spark mo'; COMP_POINT=15; f=$(complete -p lifeos-spark | sed 's/.*-F \\([^ ]*\\).*/\\1/'); \"$f\" lifeos-spark mo lifeos-spark; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
        script.display()
    );
    let out = Command::new("bash").args(["-c", &probe]).output().unwrap();
    assert_eq!(stdout(&out).trim(), "models", "{}", stderr(&out));

    let zsh = generated(&["completions", "zsh"]);
    assert!(zsh.starts_with("#compdef lifeos-spark"), "{zsh}");
    check_with("zsh", &["-n"], &zsh, "zsh completion");
    let fish = generated(&["completions", "fish"]);
    assert!(fish.contains("complete -c lifeos-spark"), "{fish}");
    check_with("fish", &["--no-execute"], &fish, "fish completion");
}

#[test]
fn man_page_renders_without_warnings() {
    let page = generated(&["man"]);
    assert!(page.contains(".TH lifeos-spark 1"), "{page}");
    for word in ["setup", "migrate", "\\-\\-host"] {
        assert!(page.contains(word), "man page lacks {word}");
    }
    check_with("groff", &["-man", "-Tutf8", "-ww", "-z"], &page, "man page");
}

#[test]
fn an_unknown_shell_is_a_usage_error() {
    let out = Command::new(bin())
        .args(["completions", "tcsh"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("tcsh"), "{}", stderr(&out));
}
