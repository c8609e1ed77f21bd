//! Help and flags: global options listed once, every command's help with examples that parse,
//! options a command does not use refused (exit 2), `--host` refused where other options name
//! the machines.

mod support;

use std::process::Output;

use clap::CommandFactory;
use lifeos_spark::cli::Cli;
use support::*;

/// The options every command takes, as `lifeos-spark --help` lists them.
const GLOBAL: [&str; 7] = [
    "--host",
    "--json",
    "--quiet",
    "--verbose",
    "--no-progress",
    "--accept-new-host-key",
    "--help",
];

/// How many option lines of `help` list `option`.
fn listed(help: &str, option: &str) -> usize {
    help.lines()
        .map(str::trim_start)
        .filter(|l| l.starts_with('-') && l.split([',', ' ']).any(|w| w == option))
        .count()
}

fn run(args: &[&str]) -> Output {
    ClientHome::new().lifeos().args(args).output().unwrap()
}

/// Every command path, parents (`models`) and leaves (`models pull`), from the clap definition.
fn command_paths() -> Vec<Vec<String>> {
    fn walk(cmd: &clap::Command, prefix: &[String], out: &mut Vec<Vec<String>>) {
        for sub in cmd.get_subcommands() {
            let mut path = prefix.to_vec();
            path.push(sub.get_name().to_string());
            out.push(path.clone());
            walk(sub, &path, out);
        }
    }
    let mut out = Vec::new();
    walk(&Cli::command(), &[], &mut out);
    out
}

/// The `lifeos-spark …` lines under `Examples:`, without a shell redirection.
fn examples(help: &str) -> Vec<Vec<String>> {
    help.split("Examples:\n")
        .nth(1)
        .unwrap_or_default()
        .lines()
        .map_while(|l| l.strip_prefix("  lifeos-spark "))
        .map(|l| {
            let l = l.split(" > ").next().unwrap();
            l.split_whitespace().map(str::to_string).collect()
        })
        .collect()
}

#[test]
fn top_level_help_lists_every_global_option_once() {
    let out = run(&["--help"]);
    assert_eq!(out.status.code(), Some(0));
    let help = stdout(&out);
    for option in GLOBAL {
        assert_eq!(listed(&help, option), 1, "{option} in:\n{help}");
    }
    // Options of some commands only are not global.
    for option in [
        "--dry-run",
        "--yes",
        "--no-wait",
        "--inventory",
        "--limit",
        "--forks",
    ] {
        assert_eq!(listed(&help, option), 0, "{option} in:\n{help}");
    }
}

#[test]
fn every_command_help_has_parsing_examples_and_no_global_options() {
    let paths = command_paths();
    // 17 commands, 3+3+3+3 subcommands of nodes, models, workflows, env, and `help`.
    assert!(paths.len() >= 29, "{paths:?}");
    for path in paths.iter().filter(|p| p[0] != "help") {
        let out = run(&[
            &path.iter().map(String::as_str).collect::<Vec<_>>()[..],
            &["--help"],
        ]
        .concat());
        let name = path.join(" ");
        assert_eq!(out.status.code(), Some(0), "{name}: {}", stderr(&out));
        let help = stdout(&out);
        let found = examples(&help);
        assert!(
            !found.is_empty(),
            "`{name} --help` has no examples:\n{help}"
        );
        for args in &found {
            // Each example parses as written, and runs the command it documents.
            let argv = std::iter::once("lifeos-spark".to_string()).chain(args.clone());
            if let Err(e) = Cli::try_parse_args(argv.clone()) {
                panic!("`{name}` example {args:?} does not parse: {e}");
            }
            let matches = lifeos_spark::help::command().get_matches_from(argv);
            let mut ran = Vec::new();
            let mut m = &matches;
            while let Some((sub, next)) = m.subcommand() {
                ran.push(sub.to_string());
                m = next;
            }
            assert!(
                ran.starts_with(path),
                "`{name}` example runs {ran:?}: {args:?}"
            );
        }
        assert!(
            help.contains("see `lifeos-spark --help`"),
            "{name}:\n{help}"
        );
        for option in &GLOBAL[..6] {
            assert_eq!(
                listed(&help, option),
                0,
                "`{name} --help` repeats {option}:\n{help}"
            );
        }
    }
}

/// The global options are listed once but still accepted after any command.
#[test]
fn global_options_are_accepted_after_the_command() {
    let cli =
        Cli::try_parse_args(["lifeos-spark", "doctor", "--host", "spark", "--json", "-v"]).unwrap();
    assert_eq!(cli.global.hosts, ["spark"]);
    assert!(cli.global.json && cli.global.verbose);
    let cli = Cli::try_parse_args(["lifeos-spark", "doctor"]).unwrap();
    assert_eq!(cli.global.hosts, ["local"], "the default target");
    // A command's own options reach the code that reads them.
    let cli = Cli::try_parse_args([
        "lifeos-spark",
        "setup",
        "--dry-run",
        "--yes",
        "--no-wait",
        "--limit",
        "a,b",
        "--forks",
        "2",
    ])
    .unwrap();
    let g = &cli.global;
    assert!(g.dry_run && g.yes && g.no_wait);
    assert_eq!(
        (g.limit.as_slice(), g.forks),
        (&["a".to_string(), "b".to_string()][..], 2)
    );
    let cli = Cli::try_parse_args(["lifeos-spark", "models", "pull", "--dry-run"]).unwrap();
    assert!(cli.global.dry_run && !cli.global.yes);
}

/// An option a command would ignore is a usage error: exit 2, clap's message naming it, no data,
/// and the command did not run (the .env file named is untouched, no root is created).
#[test]
fn options_a_command_does_not_use_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let env = dir.path().join(".env");
    std::fs::write(&env, "A=1\n").unwrap();
    let env_s = env.to_str().unwrap();
    let root = dir.path().join("root");
    let root_s = root.to_str().unwrap();
    let cases: &[&[&str]] = &[
        // read-only commands take no --dry-run / --yes
        &["doctor", "--dry-run", "--root", root_s],
        &["status", "--dry-run"],
        &["inspect", "--yes"],
        &["env", "--file", env_s, "get", "A", "--dry-run"],
        &["env", "--file", env_s, "show", "--yes"],
        &["models", "list", "--dry-run", "--root", root_s],
        &["models", "list", "--no-wait", "--root", root_s],
        // no prompt to answer
        &["env", "--file", env_s, "set", "A=2", "--yes"],
        &["workflows", "backup", "--yes", "--root", root_s],
        // service shape on commands that write no service
        &["nodes", "list", "--gpu", "none", "--root", root_s],
        &["nodes", "list", "--bind", "127.0.0.1", "--root", root_s],
        &["nodes", "verify", "--gpu", "none", "--root", root_s],
        // the inventory where it is not read
        &["compose", "--inventory", "x.yaml", "--root", root_s],
        &["migrate", "--from", "a", "--to", "b", "--limit", "all"],
        &["status", "--forks", "2"],
        // the old global position
        &["--dry-run", "compose", "--root", root_s],
    ];
    for args in cases {
        let out = run(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert_eq!(stdout(&out), "", "{args:?}");
        assert!(
            stderr(&out).contains("error: unexpected argument '-"),
            "{args:?}: {}",
            stderr(&out)
        );
    }
    assert_eq!(std::fs::read(&env).unwrap(), b"A=1\n");
    assert!(!root.exists());
    // The tip says where such an option goes.
    let err = stderr(&run(&["doctor", "--dry-run"]));
    assert!(
        err.contains("tip: `--dry-run` goes after a command that takes it"),
        "{err}"
    );
    let err = stderr(&run(&["--dry-run", "compose"]));
    assert!(err.contains("'compose --dry-run' exists"), "{err}");
}

/// `--host` where other options name the machines: exit 2 before any connection, naming them.
#[test]
fn host_where_it_cannot_apply_names_the_options_to_use() {
    // An alias that resolves nowhere: had the command connected, it would fail differently.
    let cases: &[(&[&str], &str)] = &[
        (&["migrate", "--from", "rtx", "--to", "spark"], "`--from`"),
        (
            &[
                "--host",
                "nowhere.invalid",
                "workflows",
                "transfer",
                "--from",
                "local",
                "--to",
                "local",
            ],
            "`--to`",
        ),
        (&["pool"], "`--inventory`"),
        (&["completions", "bash"], "this machine"),
        (&["man"], "this machine"),
    ];
    for (args, hint) in cases {
        let mut args = args.to_vec();
        if args[0] != "--host" {
            args.extend(["--host", "nowhere.invalid"]);
        }
        let out = run(&args);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert_eq!(stdout(&out), "", "{args:?}");
        assert!(
            err.starts_with("error: `--host` does not apply to `"),
            "{args:?}: {err}"
        );
        assert!(
            err.contains("hint: ") && err.contains(hint),
            "{args:?}: {err}"
        );
        assert!(
            !err.contains("nowhere.invalid"),
            "it tried to connect: {err}"
        );
    }
    // The same commands without `--host` get past the check (`man` prints its page).
    let out = run(&["man"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).starts_with(".ie") || stdout(&out).contains(".TH lifeos-spark 1"));
}
