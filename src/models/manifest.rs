//! The model manifest (`manifests/*.yaml`): which files, from where, to where, how big, which hash.
//!
//! Parsing is serde (typed, unknown fields refused); validation then checks what serde cannot
//! (hex, duplicates, where `dest` points, URL schemes) and names the file, line, column and field
//! of the offending value, found again in the text because serde_yaml keeps no spans.

use std::collections::HashMap;
use std::path::{Component, Path};

use anyhow::{anyhow, Context, Result};
use serde::{Deserialize, Serialize};

use crate::ui::HintExt;

/// The default manifest, embedded so the binary works on its own.
pub const DEFAULT_MANIFEST: &str = include_str!("../../manifests/sdxl-faceid.yaml");
pub const DEFAULT_MANIFEST_NAME: &str = "manifests/sdxl-faceid.yaml";

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub models: Vec<ModelFile>,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ModelFile {
    pub id: String,
    pub url: String,
    /// Relative to the deployment root.
    pub dest: String,
    pub size: u64,
    /// Lowercase hex once validated; `None` only with `--allow-unverified`.
    pub sha256: Option<String>,
}

/// A validation failure: where it is and what to do about it.
struct Problem {
    index: usize,
    field: &'static str,
    message: String,
    hint: String,
    /// The entry it collides with (named in the message with its own location).
    other: Option<usize>,
}

/// Suffixes of the downloader's own files beside a model file: a `dest` ending in one of them
/// would be overwritten (or deleted) by another entry's download.
const RESERVED_SUFFIXES: [&str; 3] = [".part", ".part.json", ".verified"];

/// The files the downloader keeps beside `dest` (normalized, relative to the root).
fn internal_files(dest: &str) -> [(String, &'static str); 3] {
    let (dir, name) = match dest.rsplit_once('/') {
        Some((d, n)) => (format!("{d}/"), n),
        None => (String::new(), dest),
    };
    [
        (format!("{dest}.part"), "partial download"),
        (format!("{dest}.part.json"), "partial download record"),
        (format!("{dir}.{name}.verified"), "verification stamp"),
    ]
}

impl Manifest {
    /// Parse and validate. `source` names the file in messages.
    pub fn parse(text: &str, source: &str, allow_unverified: bool) -> Result<Manifest> {
        // A byte-order mark (Windows editors write one) is not YAML content.
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let mut manifest: Manifest =
            serde_yaml::from_str(text).map_err(|e| syntax_error(e, source))?;
        if let Some(p) = manifest.problems(allow_unverified).into_iter().next() {
            let model = &manifest.models[p.index];
            let at = |index, field| match locate(text, index, field) {
                Some((line, col)) => format!("{source}:{line}:{col}"),
                None => source.to_string(),
            };
            let other = p.other.map_or(String::new(), |o| {
                format!(
                    " (`models[{o}]`, id `{}`, at {})",
                    manifest.models[o].id,
                    at(o, "dest")
                )
            });
            return Err(anyhow!(
                "{}: `models[{}].{}` (id `{}`): {}{other}",
                at(p.index, p.field),
                p.index,
                p.field,
                model.id,
                p.message
            ))
            .hint(p.hint)
            .with_context(|| format!("invalid manifest `{source}`"));
        }
        for m in &mut manifest.models {
            m.sha256 = m.sha256.as_ref().map(|h| h.to_ascii_lowercase());
        }
        Ok(manifest)
    }

    /// Bytes of every file it names: what a download of the whole set moves.
    pub fn total_bytes(&self) -> u64 {
        self.models.iter().map(|m| m.size).sum()
    }

    /// The manifest at `path` on this machine, or the embedded default.
    pub fn load(path: Option<&Path>, allow_unverified: bool) -> Result<Manifest> {
        match path {
            None => Manifest::parse(DEFAULT_MANIFEST, DEFAULT_MANIFEST_NAME, allow_unverified),
            Some(p) => {
                let text = std::fs::read_to_string(p)
                    .with_context(|| format!("cannot read manifest `{}`", p.display()))?;
                Manifest::parse(&text, &p.display().to_string(), allow_unverified)
            }
        }
    }

    pub fn default_set() -> Manifest {
        Manifest::parse(DEFAULT_MANIFEST, DEFAULT_MANIFEST_NAME, false)
            .expect("the embedded manifest is valid (checked by a test)")
    }

    /// Bytes on disk once everything is in place. Files with the same sha256 are stored once
    /// and hard-linked, so they count once.
    pub fn disk_bytes(&self) -> u64 {
        let mut seen = std::collections::HashSet::new();
        self.models
            .iter()
            .filter(|m| m.sha256.as_ref().is_none_or(|h| seen.insert(h.clone())))
            .map(|m| m.size)
            .sum()
    }

    /// The files named by `--only` (all when empty), in manifest order.
    pub fn select(&self, only: &[String]) -> Result<Vec<ModelFile>> {
        if let Some(unknown) = only
            .iter()
            .find(|id| !self.models.iter().any(|m| &m.id == *id))
        {
            let ids: Vec<&str> = self.models.iter().map(|m| m.id.as_str()).collect();
            return Err(anyhow!(crate::ui::UsageError(format!(
                "`{unknown}` is not an id in manifest `{}`",
                self.name
            ))))
            .hint(format!("known ids: {}", ids.join(", ")));
        }
        Ok(self
            .models
            .iter()
            .filter(|m| only.is_empty() || only.contains(&m.id))
            .cloned()
            .collect())
    }

    fn problems(&self, allow_unverified: bool) -> Vec<Problem> {
        let mut out = Vec::new();
        let mut ids = HashMap::new();
        let mut dests = HashMap::new();
        let taken = self.taken_names();
        for (i, m) in self.models.iter().enumerate() {
            let mut problem = |field, message: String, hint: &str, other: Option<usize>| {
                out.push(Problem {
                    index: i,
                    field,
                    message,
                    hint: hint.to_string(),
                    other,
                })
            };
            if let Some(first) = ids.insert(m.id.as_str(), i) {
                problem(
                    "id",
                    format!("duplicate id, first used by `models[{first}]`"),
                    "give every file its own id",
                    None,
                );
            }
            let norm = normalize_dest(&m.dest);
            if let Some(first) = dests.insert(norm.clone(), i) {
                problem(
                    "dest",
                    format!("`{}` is also the dest of `models[{first}]`", m.dest),
                    "give every file its own dest",
                    Some(first),
                );
            }
            if let Some((other, what)) = taken.get(&norm).filter(|(o, _)| *o != i) {
                problem(
                    "dest",
                    format!("`{}` is the {what} of another entry's dest", m.dest),
                    "the downloader keeps `<dest>.part`, `<dest>.part.json` and `.<name>.verified` beside each file: choose another dest",
                    Some(*other),
                );
            }
            if let Some((other, _)) =
                self.models.iter().enumerate().find(|(o, f)| {
                    *o != i && normalize_dest(&f.dest).starts_with(&format!("{norm}/"))
                })
            {
                problem(
                    "dest",
                    format!("`{}` is a folder of another entry's dest", m.dest),
                    "a dest names a file: choose another dest",
                    Some(other),
                );
            }
            if let Err(why) = check_dest(&m.dest) {
                problem("dest", why, "write dest relative to the deployment root, e.g. `models/checkpoints/x.safetensors`", None);
            }
            if let Err(why) = check_url(&m.url) {
                problem("url", why, "use the file's `https://` download URL (on Hugging Face: `.../resolve/<revision>/<file>`)", None);
            }
            match &m.sha256 {
                None if !allow_unverified => problem(
                    "sha256",
                    "missing: a file without a sha256 cannot be verified".to_string(),
                    "add the sha256 (on Hugging Face: the file's page shows it as `SHA256`), or pass `--allow-unverified`",
                    None,
                ),
                Some(h) if h.len() != 64 || !h.bytes().all(|b| b.is_ascii_hexdigit()) => problem(
                    "sha256",
                    format!("`{h}` is not a sha256 (64 hex digits)"),
                    "copy the full sha256 of the file, e.g. from `sha256sum FILE`",
                    None,
                ),
                _ => {}
            }
        }
        out
    }
}

impl Manifest {
    /// Every internal file name (normalized) with the entry that owns it and what it is.
    fn taken_names(&self) -> HashMap<String, (usize, &'static str)> {
        let mut taken = HashMap::new();
        for (i, m) in self.models.iter().enumerate() {
            for (name, what) in internal_files(&normalize_dest(&m.dest)) {
                taken.entry(name).or_insert((i, what));
            }
        }
        taken
    }
}

fn syntax_error(err: serde_yaml::Error, source: &str) -> anyhow::Error {
    anyhow!(crate::yaml::located(&err, source))
        .context(format!("invalid manifest `{source}`"))
        .context(crate::ui::Hint(
            "fields are name, description, models (id, url, dest, size, sha256); see `manifests/sdxl-faceid.yaml`".to_string(),
        ))
}

fn normalize_dest(dest: &str) -> String {
    Path::new(dest)
        .components()
        .filter(|c| !matches!(c, Component::CurDir))
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join("/")
}

fn check_dest(dest: &str) -> std::result::Result<(), String> {
    let path = Path::new(dest);
    if dest.trim().is_empty() {
        return Err("empty".to_string());
    }
    if path.is_absolute() || dest.starts_with('~') {
        return Err(format!(
            "`{dest}` is absolute; it must stay inside the deployment root"
        ));
    }
    if path.components().any(|c| matches!(c, Component::ParentDir)) {
        return Err(format!(
            "`{dest}` contains `..` and could leave the deployment root"
        ));
    }
    if dest.ends_with('/') || normalize_dest(dest).is_empty() {
        return Err(format!("`{dest}` names a folder, not a file"));
    }
    let name = normalize_dest(dest);
    let name = name.rsplit('/').next().unwrap_or_default();
    if let Some(suffix) = RESERVED_SUFFIXES.iter().find(|s| name.ends_with(*s)) {
        return Err(format!(
            "`{dest}` ends in `{suffix}`, a name the downloader uses for its own files"
        ));
    }
    if name.starts_with('.') && name.contains(".tmp-") {
        return Err(format!(
            "`{dest}` looks like a temp file of an atomic write (`.<name>.tmp-…`)"
        ));
    }
    if normalize_dest(dest).split('/').next() == Some(crate::lock::LOCK_DIR) {
        return Err(format!(
            "`{dest}` is under `{}/`, where the tool keeps its lock",
            crate::lock::LOCK_DIR
        ));
    }
    Ok(())
}

fn check_url(url: &str) -> std::result::Result<(), String> {
    let shown = super::redact::url(url);
    let url = shown.as_str();
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("`{url}` is not a URL ({e})"))?;
    match parsed.scheme() {
        "http" | "https" if parsed.host_str().is_some() => Ok(()),
        "http" | "https" => Err(format!("`{url}` has no host")),
        other => Err(format!(
            "`{url}` uses `{other}:`; only http and https are fetched"
        )),
    }
}

/// Line and column (1-based) of `field` in the `index`-th entry of the block-style `models:`
/// list, or of the entry itself when the field is absent. `None` for layouts it cannot follow
/// (flow style); the message then names the file and field only.
fn locate(text: &str, index: usize, field: &str) -> Option<(usize, usize)> {
    let lines: Vec<&str> = text.lines().collect();
    let list = lines.iter().position(|l| l.trim_end() == "models:")?;
    let mut entries = Vec::new();
    let mut item_indent = None;
    for (n, line) in lines.iter().enumerate().skip(list + 1) {
        let content = line.trim_start();
        let indent = line.len() - content.len();
        if content.is_empty() || content.starts_with('#') {
            continue;
        }
        if indent == 0 && !content.starts_with('-') {
            break;
        }
        if content.starts_with("- ") && *item_indent.get_or_insert(indent) == indent {
            entries.push(n);
        }
    }
    let start = *entries.get(index)?;
    let end = entries.get(index + 1).copied().unwrap_or(lines.len());
    let key = format!("{field}:");
    for (n, line) in lines.iter().enumerate().take(end).skip(start) {
        let content = line.trim_start().trim_start_matches("- ");
        if let Some(rest) = content.strip_prefix(&key) {
            let value_col = line.len() - rest.trim_start().len() + 1;
            return Some((n + 1, value_col));
        }
    }
    let first = lines[start];
    Some((start + 1, first.len() - first.trim_start().len() + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_manifest_parses_and_counts_shared_files_once() {
        let m = Manifest::default_set();
        assert_eq!(m.models.len(), 17);
        let all: u64 = m.models.iter().map(|f| f.size).sum();
        assert_eq!(all, 13_872_302_586);
        // det_10g == scrfd_10g_bnkps and four more files are shared by buffalo_l and antelopev2.
        assert!(m.disk_bytes() < all);
    }

    const GOOD: &str = "name: t
models:
  - id: a
    url: https://example.com/a.bin
    dest: models/a.bin
    size: 3
    sha256: BA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410FF61F20015AD
  - id: b
    url: https://example.com/b.bin
    dest: models/b.bin
    size: 3
    sha256: ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad
";

    fn error_of(text: &str, allow_unverified: bool) -> String {
        let err = Manifest::parse(text, "m.yaml", allow_unverified).unwrap_err();
        crate::ui::Printer::plain(crate::ui::Verbosity::Normal).render_error(&err)
    }

    #[test]
    fn valid_manifest_lowercases_hashes() {
        let m = Manifest::parse(GOOD, "m.yaml", false).unwrap();
        assert!(m.models[0].sha256.as_ref().unwrap().starts_with("ba7816"));
    }

    #[test]
    fn unknown_field_names_line_and_column() {
        let text = GOOD.replace("    size: 3\n    sha256: ba", "    size: 3\n    sah256: ba");
        let e = error_of(&text, false);
        assert!(
            e.contains("m.yaml:12:5: models[1]: unknown field `sah256`"),
            "{e}"
        );
        assert!(e.contains("hint:"), "{e}");
    }

    #[test]
    fn semantic_errors_name_line_column_field_and_fix() {
        let cases = [
            (
                GOOD.replace("size: 3\n    sha256: ba", "size: 3\n    sha256: zz"),
                "m.yaml:12:13: `models[1].sha256` (id `b`): `zz7816bf",
            ),
            (
                GOOD.replace("id: b", "id: a"),
                "m.yaml:8:9: `models[1].id` (id `a`): duplicate id",
            ),
            (
                GOOD.replace("dest: models/b.bin", "dest: ./models/a.bin"),
                "m.yaml:10:11: `models[1].dest` (id `b`): `./models/a.bin` is also the dest",
            ),
            (
                GOOD.replace("dest: models/b.bin", "dest: /etc/b.bin"),
                "m.yaml:10:11: `models[1].dest` (id `b`): `/etc/b.bin` is absolute",
            ),
            (
                GOOD.replace("dest: models/b.bin", "dest: models/../../b.bin"),
                "`models[1].dest` (id `b`): `models/../../b.bin` contains `..`",
            ),
            (
                GOOD.replace(
                    "url: https://example.com/b.bin",
                    "url: ftp://example.com/b.bin",
                ),
                "m.yaml:9:10: `models[1].url` (id `b`): `ftp://example.com/b.bin` uses `ftp:`",
            ),
        ];
        for (text, want) in cases {
            let e = error_of(&text, false);
            assert!(e.starts_with("error: invalid manifest `m.yaml`"), "{e}");
            assert!(e.contains(want), "want {want:?} in\n{e}");
            assert!(e.contains("\nhint: "), "{e}");
        }
    }

    #[test]
    fn a_dest_on_another_entrys_internal_files_names_both_entries() {
        let cases = [
            (
                "models/a.bin.part",
                "partial download of another entry's dest",
            ),
            ("models/a.bin.part.json", "partial download record"),
            ("models/.a.bin.verified", "verification stamp"),
            ("./models/.a.bin.verified", "verification stamp"),
        ];
        for (dest, what) in cases {
            let text = GOOD.replace("dest: models/b.bin", &format!("dest: {dest}"));
            let e = error_of(&text, false);
            assert!(
                e.contains(&format!(
                    "m.yaml:10:11: `models[1].dest` (id `b`): `{dest}` is the {what}"
                )),
                "{e}"
            );
            assert!(e.contains("(`models[0]`, id `a`, at m.yaml:5:11)"), "{e}");
        }
        // The same dest twice names both as well.
        let e = error_of(
            &GOOD.replace("dest: models/b.bin", "dest: models/a.bin"),
            false,
        );
        assert!(
            e.contains("is also the dest of `models[0]` (`models[0]`, id `a`, at m.yaml:5:11)"),
            "{e}"
        );
        let e = error_of(&GOOD.replace("dest: models/b.bin", "dest: models"), false);
        assert!(
            e.contains("`models` is a folder of another entry's dest"),
            "{e}"
        );
    }

    #[test]
    fn reserved_dest_forms_are_refused() {
        let cases = [
            (".", "names a folder"),
            ("./", "names a folder"),
            ("\"\"", "empty"),
            ("models/x.part", "ends in `.part`"),
            ("models/x.part.json", "ends in `.part.json`"),
            ("models/.x.verified", "ends in `.verified`"),
            ("models/x.verified", "ends in `.verified`"),
            ("models/.x.tmp-12-abcd", "temp file"),
            (".lifeos/lock", "where the tool keeps its lock"),
        ];
        for (dest, want) in cases {
            let text = GOOD.replace("dest: models/b.bin", &format!("dest: {dest}"));
            let e = error_of(&text, false);
            assert!(e.contains("`models[1].dest` (id `b`)"), "{dest}: {e}");
            assert!(e.contains(want), "{dest}: want {want:?} in\n{e}");
            assert!(e.contains("m.yaml:10:11"), "{dest}: {e}");
        }
    }

    #[test]
    fn a_byte_order_mark_is_skipped() {
        let m = Manifest::parse(&format!("\u{feff}{GOOD}"), "m.yaml", false).unwrap();
        assert_eq!(m.models.len(), 2);
        // Locations still count from the first line.
        let text = format!("\u{feff}{}", GOOD.replace("dest: models/b.bin", "dest: ."));
        assert!(error_of(&text, false).contains("m.yaml:10:11"));
    }

    #[test]
    fn missing_sha256_needs_allow_unverified() {
        let text = GOOD.replace(
            "    sha256: ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad\n",
            "",
        );
        let e = error_of(&text, false);
        assert!(
            e.contains("m.yaml:8:3: `models[1].sha256` (id `b`): missing"),
            "{e}"
        );
        assert!(e.contains("--allow-unverified"), "{e}");
        let m = Manifest::parse(&text, "m.yaml", true).unwrap();
        assert_eq!(m.models[1].sha256, None);
    }

    #[test]
    fn select_refuses_unknown_ids() {
        let m = Manifest::parse(GOOD, "m.yaml", false).unwrap();
        assert_eq!(m.select(&["b".into()]).unwrap()[0].id, "b");
        assert_eq!(m.select(&[]).unwrap().len(), 2);
        let e = m.select(&["c".into()]).unwrap_err();
        assert!(e.downcast_ref::<crate::ui::UsageError>().is_some());
    }
}
