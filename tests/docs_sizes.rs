//! Sizes the docs quote for the default model set come from the manifest, in the units the
//! tool prints: a manifest change that moves the total fails here until the docs follow.

use lifeos_spark::models::manifest::Manifest;
use lifeos_spark::units;

#[test]
fn docs_quote_the_manifest_total() {
    let manifest = Manifest::load(None, false).unwrap();
    let total = units::size(manifest.total_bytes());
    let n = manifest.models.len();
    let root = env!("CARGO_MANIFEST_DIR");
    let readme = std::fs::read_to_string(format!("{root}/README.md")).unwrap();
    let models = std::fs::read_to_string(format!("{root}/docs/models.md")).unwrap();
    for phrase in [
        format!("default model set ({total})"),
        format!("the models need {total}"),
        format!("{n} files / {total} all present"),
    ] {
        assert!(readme.contains(&phrase), "README.md lacks `{phrase}`");
    }
    for phrase in [
        format!("The default set ({n} files, {total},"),
        format!("({n} files, {total}) all present"),
    ] {
        assert!(models.contains(&phrase), "docs/models.md lacks `{phrase}`");
    }
}
