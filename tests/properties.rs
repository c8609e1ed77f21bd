//! Property tests (proptest) over every text format the tool reads: model manifests, playbooks,
//! custom-node lists and `.env` files. Inputs are the real embedded files mutated (a line's
//! value replaced, a line dropped or duplicated, random text spliced in) and plain random text.
//! Properties: nothing panics, and a refusal names the file, with a line where the text has one.
//! The case counts keep all of them together within a few seconds on 2 cores.

use lifeos_spark::envfile::dotenv;
use lifeos_spark::inventory::Inventory;
use lifeos_spark::models::manifest::{Manifest, DEFAULT_MANIFEST};
use lifeos_spark::nodes::manifest::{NodeList, DEFAULT_NODES};
use lifeos_spark::playbook::Playbook;
use proptest::prelude::*;

const CASES: u32 = 256;
const PLAYBOOK: &str = include_str!("../playbooks/rtx-4090.yaml");

/// What can happen to one line of a real file.
#[derive(Debug, Clone)]
enum Mutation {
    /// The text after the first `:` replaced.
    Value(usize, String),
    Drop(usize),
    Duplicate(usize),
    /// Random text inserted before the line.
    Insert(usize, String),
    /// The line cut at a character.
    Cut(usize, usize),
}

/// An inventory with every field, a secondary and a group.
const INVENTORY: &str = "hosts:\n  rtx:\n    ssh: me@192.168.1.100:22\n    url: http://192.168.1.100:8188\n    playbook: rtx-4090\n    role: secondary\n    priority: 2\n  spark:\n    ssh: spark\n    root: ~/comfyui\n    capabilities: [sdxl, flux]\n    batch_size: 8\n    seconds_per_image: 3.1\ngroups:\n  sparks: [spark]\n  all_boxes: [rtx, spark]\n";

fn mutation() -> impl Strategy<Value = Mutation> {
    let text = prop_oneof![
        "[ -~]{0,40}",
        "\\PC{0,20}",
        Just("\u{feff}".to_string()),
        Just("- ".to_string()),
        Just("{".to_string()),
        Just("x".repeat(70_000)),
        Just("-1".to_string()),
        Just("18446744073709551616".to_string()),
        Just("../../etc/passwd".to_string()),
        Just(".".to_string()),
        Just("models/a.part".to_string()),
    ];
    prop_oneof![
        (any::<usize>(), text.clone()).prop_map(|(l, t)| Mutation::Value(l, t)),
        any::<usize>().prop_map(Mutation::Drop),
        any::<usize>().prop_map(Mutation::Duplicate),
        (any::<usize>(), text).prop_map(|(l, t)| Mutation::Insert(l, t)),
        (any::<usize>(), any::<usize>()).prop_map(|(l, c)| Mutation::Cut(l, c)),
    ]
}

fn mutate(text: &str, mutations: &[Mutation]) -> String {
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    for m in mutations {
        if lines.is_empty() {
            break;
        }
        let n = lines.len();
        match m {
            Mutation::Value(l, v) => {
                let line = &mut lines[l % n];
                if let Some(i) = line.find(':') {
                    line.truncate(i + 1);
                    line.push(' ');
                    line.push_str(v);
                }
            }
            Mutation::Drop(l) => {
                lines.remove(l % n);
            }
            Mutation::Duplicate(l) => {
                let line = lines[l % n].clone();
                lines.insert(l % n, line);
            }
            Mutation::Insert(l, t) => lines.insert(l % n, t.clone()),
            Mutation::Cut(l, c) => {
                let line = &mut lines[l % n];
                let cut = line
                    .char_indices()
                    .nth(c % (line.len() + 1))
                    .map(|(i, _)| i);
                line.truncate(cut.unwrap_or(line.len()));
            }
        }
    }
    lines.join("\n") + "\n"
}

/// A mutated copy of `base`, or random text.
fn input(base: &'static str) -> impl Strategy<Value = String> {
    prop_oneof![
        4 => proptest::collection::vec(mutation(), 1..4).prop_map(move |m| mutate(base, &m)),
        1 => "\\PC{0,200}",
    ]
}

/// The whole error chain, as `error:`/`Caused by:` would print it.
fn chain(err: &anyhow::Error) -> String {
    format!("{err:#}")
}

/// A refusal names the file; when the text is not even YAML, it says where, as `file:line:`.
fn check_refusal(err: &anyhow::Error, text: &str, source: &str) -> Result<(), TestCaseError> {
    let shown = chain(err);
    prop_assert!(shown.contains(source), "no file named: {}", shown);
    if let Err(yaml) = serde_yaml::from_str::<serde_yaml::Value>(text) {
        if yaml.location().is_some() {
            let prefix = format!("{source}:");
            let located = shown
                .match_indices(&prefix)
                .any(|(i, _)| shown[i + prefix.len()..].starts_with(|c: char| c.is_ascii_digit()));
            prop_assert!(
                located || shown.contains(", line "),
                "no line in: {}",
                shown
            );
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: CASES, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn model_manifests_never_panic_and_errors_carry_file_and_line(text in input(DEFAULT_MANIFEST), unverified in any::<bool>()) {
        if let Err(err) = Manifest::parse(&text, "m.yaml", unverified) {
            check_refusal(&err, &text, "m.yaml")?;
            // A bad field of a block-style entry is located too.
            let shown = chain(&err);
            if shown.contains("`models[") && text.contains("\nmodels:\n") {
                prop_assert!(shown.contains("m.yaml:"), "{}", shown);
            }
        }
    }

    #[test]
    fn playbooks_never_panic_and_errors_name_the_file(text in input(PLAYBOOK)) {
        if let Err(err) = Playbook::parse(&text, "p.yaml") {
            check_refusal(&err, &text, "p.yaml")?;
        }
    }

    #[test]
    fn inventories_never_panic_and_errors_name_the_file(text in input(INVENTORY), limit in "[a-z,]{0,12}") {
        match Inventory::parse(&text, std::path::Path::new("i.yaml")) {
            Err(err) => check_refusal(&err, &text, "i.yaml")?,
            Ok(inv) => {
                let limit: Vec<String> = limit.split(',').map(String::from).collect();
                if let Ok(hosts) = inv.select(&limit) {
                    prop_assert!(hosts.iter().all(|h| inv.hosts.contains_key(&h.name)));
                }
            }
        }
    }

    #[test]
    fn node_lists_never_panic_and_errors_name_the_file(text in input(DEFAULT_NODES)) {
        if let Err(err) = NodeList::parse(&text, "n.yaml") {
            check_refusal(&err, &text, "n.yaml")?;
        }
    }

    /// `.env` text: reading never panics; a set either refuses or leaves a file whose value for
    /// the key is the one set, and whose other variables are unchanged.
    #[test]
    fn env_files_never_panic_and_set_is_read_back(
        text in prop_oneof!["\\PC{0,300}", "([A-Z_]{1,6}=[ -~]{0,12}\r?\n){0,8}"],
        key in prop_oneof!["[A-Z_][A-Z0-9_]{0,8}", "\\PC{0,6}"],
        value in prop_oneof!["[ -~]{0,20}", "\\PC{0,10}"],
    ) {
        let before = dotenv::parse(&text);
        for a in &before {
            let _ = dotenv::get(&text, &a.key);
        }
        match dotenv::set(&text, &[(key.clone(), value.clone())]) {
            Err(_) => {}
            Ok(after) => {
                prop_assert_eq!(dotenv::get(&after, &key), Some(value.clone()));
                for a in before.iter().filter(|a| a.key != key) {
                    prop_assert_eq!(dotenv::get(&after, &a.key), dotenv::get(&text, &a.key));
                }
            }
        }
    }
}
