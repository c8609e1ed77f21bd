//! What `models pull|verify|list` report: typed for `--json`, rendered as tables otherwise.

use std::path::PathBuf;

use serde::Serialize;

use crate::step::{Finer, Outcome};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PullStatus {
    /// Already there and verified (stamp, or hashed now).
    Present,
    Fetched,
    /// Same bytes as another file: hard link (or copy) of it.
    Linked,
    WouldFetch,
    WouldLink,
    /// There with the right size but never verified: `--dry-run` does not hash.
    WouldVerify,
    Failed,
    /// Stopped by Ctrl-C / SIGTERM (or never started because of it).
    Interrupted,
}

#[derive(Debug, Serialize)]
pub struct PullEntry {
    pub id: String,
    /// Where the bytes come from (after `HF_ENDPOINT`, password masked), or `host:path` of
    /// a copy from another host.
    pub url: String,
    /// The bytes are copied from another host (`migrate`), not downloaded.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub copied: bool,
    pub dest: PathBuf,
    pub size: u64,
    /// `"status"` in the vocabulary, `"action"` the finer word.
    #[serde(flatten, serialize_with = "action")]
    pub status: PullStatus,
    pub fetched_bytes: u64,
    /// Bytes a previous run had already downloaded.
    pub reused_bytes: u64,
    /// For linked files: the id whose bytes they share.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub same_as: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
    #[serde(skip)]
    pub failure: Option<anyhow::Error>,
}

#[derive(Debug, Serialize)]
pub struct PullReport {
    pub manifest: String,
    pub host: String,
    pub root: PathBuf,
    pub dry_run: bool,
    /// Bytes still to download when the pull started.
    pub needed_bytes: u64,
    pub free_bytes: u64,
    pub fetched_bytes: u64,
    pub interrupted: bool,
    pub files: Vec<PullEntry>,
}

impl PullReport {
    /// Bytes of interrupted files that are on disk for the next run (kept or just received).
    pub fn kept_bytes(&self) -> u64 {
        self.files
            .iter()
            .filter(|f| f.status == PullStatus::Interrupted)
            .map(|f| f.reused_bytes + f.fetched_bytes)
            .sum()
    }

    /// What an interrupted pull leaves, true either way; `again` is the command to resume.
    pub fn interrupted_note(&self, again: &str) -> String {
        match self.kept_bytes() {
            0 => "interrupted before any byte arrived: nothing is kept, the next run starts from zero".to_string(),
            n => format!(
                "interrupted: {} kept beside the files (`.part`); run {again} again to resume",
                crate::units::size(n)
            ),
        }
    }
}

fn action<S: serde::Serializer>(s: &PullStatus, ser: S) -> Result<S::Ok, S::Error> {
    crate::step::status_and("action", s, ser)
}

impl Finer for PullStatus {
    fn outcome(&self) -> Outcome {
        match self {
            PullStatus::Present => Outcome::Ok,
            PullStatus::Fetched | PullStatus::Linked => Outcome::Changed,
            PullStatus::WouldFetch | PullStatus::WouldLink | PullStatus::WouldVerify => {
                Outcome::WouldChange
            }
            PullStatus::Failed | PullStatus::Interrupted => Outcome::Failed,
        }
    }
}

impl PullStatus {
    /// The kebab-case name, as in `--json` and the tables.
    pub fn label(self) -> &'static str {
        match self {
            PullStatus::Present => "present",
            PullStatus::Fetched => "fetched",
            PullStatus::Linked => "linked",
            PullStatus::WouldFetch => "would-fetch",
            PullStatus::WouldLink => "would-link",
            PullStatus::WouldVerify => "would-verify",
            PullStatus::Failed => "failed",
            PullStatus::Interrupted => "interrupted",
        }
    }
}

impl PullReport {
    pub fn failed(&self) -> bool {
        self.files.iter().any(|f| f.status == PullStatus::Failed)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum VerifyStatus {
    Ok,
    Missing,
    WrongSize,
    WrongHash,
    /// Right size, but the manifest has no sha256 (`--allow-unverified`).
    SizeOnly,
}

fn finding<S: serde::Serializer>(s: &VerifyStatus, ser: S) -> Result<S::Ok, S::Error> {
    crate::step::status_and("finding", s, ser)
}

impl Finer for VerifyStatus {
    fn outcome(&self) -> Outcome {
        match self.is_ok() {
            true => Outcome::Ok,
            false => Outcome::Failed,
        }
    }
}

impl VerifyStatus {
    /// The file matches what the manifest can tell (a size-only entry has no hash to check).
    pub fn is_ok(self) -> bool {
        matches!(self, VerifyStatus::Ok | VerifyStatus::SizeOnly)
    }

    /// The kebab-case name, as in `--json` and the tables.
    pub fn label(self) -> &'static str {
        match self {
            VerifyStatus::Ok => "ok",
            VerifyStatus::Missing => "missing",
            VerifyStatus::WrongSize => "wrong-size",
            VerifyStatus::WrongHash => "wrong-hash",
            VerifyStatus::SizeOnly => "size-only",
        }
    }
}

#[derive(Debug, Serialize)]
pub struct VerifyEntry {
    pub id: String,
    pub dest: PathBuf,
    /// `"status"` in the vocabulary, `"finding"` the finer word.
    #[serde(flatten, serialize_with = "finding")]
    pub status: VerifyStatus,
    pub size: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actual_size: Option<u64>,
    pub sha256: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actual_sha256: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct VerifyReport {
    pub manifest: String,
    pub host: String,
    pub root: PathBuf,
    pub ok: bool,
    pub files: Vec<VerifyEntry>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ListState {
    /// There, and verified since it last changed.
    Present,
    /// There with the right size, never verified (`models verify` will tell).
    Unverified,
    /// A resumable `.part`.
    Partial,
    Missing,
}

fn presence<S: serde::Serializer>(s: &ListState, ser: S) -> Result<S::Ok, S::Error> {
    crate::step::status_and("presence", s, ser)
}

/// What `models pull` would do about the file.
impl Finer for ListState {
    fn outcome(&self) -> Outcome {
        match self {
            ListState::Present => Outcome::Ok,
            ListState::Unverified | ListState::Partial | ListState::Missing => Outcome::WouldChange,
        }
    }
}

impl ListState {
    /// The kebab-case name, as in `--json` and the tables.
    pub fn label(self) -> &'static str {
        match self {
            ListState::Present => "present",
            ListState::Unverified => "unverified",
            ListState::Partial => "partial",
            ListState::Missing => "missing",
        }
    }
}

#[derive(Debug, Serialize)]
pub struct ListEntry {
    pub id: String,
    pub dest: PathBuf,
    pub url: String,
    pub size: u64,
    pub sha256: Option<String>,
    /// `"status"` in the vocabulary (what a pull would do), `"presence"` the finer word.
    #[serde(flatten, serialize_with = "presence")]
    pub state: ListState,
    pub partial_bytes: u64,
}

#[derive(Debug, Serialize)]
pub struct ListReport {
    pub manifest: String,
    pub description: String,
    pub host: String,
    pub root: PathBuf,
    pub total_bytes: u64,
    /// Bytes on disk once complete (identical files stored once).
    pub disk_bytes: u64,
    pub present_bytes: u64,
    pub files: Vec<ListEntry>,
}

/// The widest a table cell gets; longer values end in `…` (the JSON document has them whole).
/// Unbounded widths would also overflow `format!`'s width argument (at most 65,535).
const MAX_CELL: usize = 120;

/// `text` cut to `max` characters, the last one an ellipsis when anything was cut.
pub fn truncate_cell(text: &str, max: usize) -> String {
    match text.char_indices().nth(max.saturating_sub(1)) {
        Some((cut, _)) if text.chars().count() > max => format!("{}…", &text[..cut]),
        _ => text.to_string(),
    }
}

fn table(header: &[&str], rows: Vec<Vec<String>>) -> String {
    let rows: Vec<Vec<String>> = rows
        .into_iter()
        .map(|r| r.iter().map(|c| truncate_cell(c, MAX_CELL)).collect())
        .collect();
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        padded.join("  ").trim_end().to_string() + "\n"
    };
    let mut out = line(header.iter().map(|h| h.to_string()).collect());
    for row in rows {
        out += &line(row);
    }
    out
}

pub fn render_pull(r: &PullReport) -> String {
    let rows = r
        .files
        .iter()
        .map(|f| {
            let note = match (&f.same_as, f.reused_bytes) {
                (Some(other), _) => format!("same bytes as `{other}`"),
                (None, 0) => String::new(),
                (None, n) => format!("resumed at {}", crate::units::size(n)),
            };
            vec![
                f.status.label().to_string(),
                f.id.clone(),
                crate::units::size(f.size).to_string(),
                note,
            ]
        })
        .collect();
    let mut out = table(&["STATUS", "ID", "SIZE", "NOTE"], rows);
    let verb = if r.dry_run { "to fetch" } else { "fetched" };
    let bytes = if r.dry_run {
        r.needed_bytes
    } else {
        r.fetched_bytes
    };
    out += &format!(
        "{} {verb} into `{}` on {} ({} free)\n",
        crate::units::size(bytes),
        r.root.display(),
        r.host,
        crate::units::size(r.free_bytes)
    );
    out
}

pub fn render_verify(r: &VerifyReport) -> String {
    let rows = r
        .files
        .iter()
        .map(|f| {
            let detail = match f.status {
                VerifyStatus::WrongSize => {
                    format!("{} bytes, expected {}", f.actual_size.unwrap_or(0), f.size)
                }
                VerifyStatus::WrongHash => format!(
                    "sha256 {}, expected {}",
                    f.actual_sha256.as_deref().unwrap_or("?"),
                    f.sha256.as_deref().unwrap_or("?")
                ),
                _ => f.dest.display().to_string(),
            };
            vec![f.status.label().to_string(), f.id.clone(), detail]
        })
        .collect();
    table(&["STATUS", "ID", "DETAIL"], rows)
}

pub fn render_list(r: &ListReport) -> String {
    let rows = r
        .files
        .iter()
        .map(|f| {
            let state = match f.state {
                ListState::Partial => format!("partial ({})", crate::units::size(f.partial_bytes)),
                s => s.label().to_string(),
            };
            vec![
                f.id.clone(),
                crate::units::size(f.size).to_string(),
                state,
                f.dest.display().to_string(),
            ]
        })
        .collect();
    let mut out = table(&["ID", "SIZE", "STATE", "DEST"], rows);
    out += &format!(
        "{}: {} of {} present under `{}` on {} ({} on disk when complete)\n",
        r.manifest,
        crate::units::size(r.present_bytes),
        crate::units::size(r.total_bytes),
        r.root.display(),
        r.host,
        crate::units::size(r.disk_bytes)
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn serde_name(value: impl Serialize) -> String {
        serde_json::to_value(value)
            .unwrap()
            .as_str()
            .unwrap()
            .to_string()
    }

    #[test]
    fn long_cells_end_in_an_ellipsis() {
        assert_eq!(truncate_cell("abcdef", 4), "abc…");
        assert_eq!(truncate_cell("abcd", 4), "abcd");
        assert_eq!(truncate_cell("ééééé", 3), "éé…");
        let long = "x".repeat(70_000);
        let out = table(&["ID"], vec![vec![long]]);
        assert!(out.lines().all(|l| l.chars().count() <= MAX_CELL), "{out}");
    }

    #[test]
    fn labels_are_the_json_names() {
        let pull = [
            PullStatus::Present,
            PullStatus::Fetched,
            PullStatus::Linked,
            PullStatus::WouldFetch,
            PullStatus::WouldLink,
            PullStatus::WouldVerify,
            PullStatus::Failed,
            PullStatus::Interrupted,
        ];
        for s in pull {
            assert_eq!(s.label(), serde_name(s));
        }
        let verify = [
            VerifyStatus::Ok,
            VerifyStatus::Missing,
            VerifyStatus::WrongSize,
            VerifyStatus::WrongHash,
            VerifyStatus::SizeOnly,
        ];
        for s in verify {
            assert_eq!(s.label(), serde_name(s));
        }
        let list = [
            ListState::Present,
            ListState::Unverified,
            ListState::Partial,
            ListState::Missing,
        ];
        for s in list {
            assert_eq!(s.label(), serde_name(s));
        }
    }
}
