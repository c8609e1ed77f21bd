//! docs/guarantees.md names the test behind each claim as `tests/FILE.rs::function`: every such
//! reference must point at a file that has that function, so a renamed or deleted test cannot
//! leave a claim pointing at nothing.

use std::path::Path;

/// Every `tests/<file>.rs::<name>` in `text`.
fn references(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find("tests/") {
        rest = &rest[at + "tests/".len()..];
        let Some(end) = rest.find(".rs::") else { break };
        let file = &rest[..end];
        let after = &rest[end + ".rs::".len()..];
        let name: String = after
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        let is_path = file
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '/');
        if is_path && !name.is_empty() {
            out.push((format!("tests/{file}.rs"), name));
        }
    }
    out
}

#[test]
fn every_test_named_in_the_guarantees_exists() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let doc = std::fs::read_to_string(root.join("docs/guarantees.md")).unwrap();
    let refs = references(&doc);
    assert!(refs.len() >= 40, "only {} references found", refs.len());
    let mut missing = Vec::new();
    for (file, name) in &refs {
        let source = std::fs::read_to_string(root.join(file)).unwrap_or_default();
        if !source.contains(&format!("fn {name}(")) {
            missing.push(format!("{file}::{name}"));
        }
    }
    assert!(
        missing.is_empty(),
        "docs/guarantees.md names tests that do not exist: {missing:?}"
    );
}

#[test]
fn references_are_found_in_tables_and_lists() {
    let text = "| a | `tests/e2e.rs::one_test`, `tests/x_y.rs::two` |\nsee tests/e2e.rs::three.";
    assert_eq!(
        references(text),
        [
            ("tests/e2e.rs".to_string(), "one_test".to_string()),
            ("tests/x_y.rs".to_string(), "two".to_string()),
            ("tests/e2e.rs".to_string(), "three".to_string()),
        ]
    );
}
