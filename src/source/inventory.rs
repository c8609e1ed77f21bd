//! What the source holds and what becomes of each piece on the destination: manifest model
//! files (in place, or elsewhere matched by sha256, e.g. the guide's flattened antelopev2),
//! the user's own files (every other model, `input/`, `user/`, exported workflows), and custom
//! nodes (git remote, commit, local changes). Read-only on both hosts.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::Serialize;

use super::Layout;
use crate::host::{Command, Host};
use crate::models::manifest::{Manifest, ModelFile};
use crate::models::verify::{self, Presence};
use crate::nodes::git::{self, CloneState};
use crate::nodes::manifest::NodeList;
use crate::ui::Printer;

/// Files hashed at once on a host (each a `sha256sum` there).
const HASH_JOBS: usize = 4;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    Model,
    UserFile,
    Node,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    CopyFromSource,
    Download,
    OnDestination,
    /// The destination has other bytes there: stop unless `--overwrite`.
    Conflict,
    /// A node the source has as a clean git checkout: cloned at the same remote and commit.
    Clone,
    /// A node of the node list: `setup` installs it at its pinned commit.
    Pinned,
    NotMoved,
}

impl Action {
    pub fn label(self) -> &'static str {
        match self {
            Action::CopyFromSource => "copy",
            Action::Download => "download",
            Action::OnDestination => "on destination",
            Action::Conflict => "CONFLICT",
            Action::Clone => "git clone",
            Action::Pinned => "pinned",
            Action::NotMoved => "not moved",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Item {
    pub kind: Kind,
    /// Manifest id, node name, or the path relative to the destination root.
    pub name: String,
    /// On the source host.
    pub source: Option<PathBuf>,
    /// Relative to the destination root.
    pub dest: Option<String>,
    pub bytes: u64,
    pub sha256: Option<String>,
    pub action: Action,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remote: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
}

impl Item {
    fn new(kind: Kind, name: impl Into<String>, action: Action) -> Item {
        Item {
            kind,
            name: name.into(),
            source: None,
            dest: None,
            bytes: 0,
            sha256: None,
            action,
            note: None,
            remote: None,
            commit: None,
        }
    }
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Totals {
    pub copy_bytes: u64,
    pub download_bytes: u64,
    pub on_destination_bytes: u64,
    pub copy_files: usize,
    pub download_files: usize,
    pub clones: usize,
    pub conflicts: usize,
    pub not_moved: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub source: Layout,
    pub items: Vec<Item>,
    pub totals: Totals,
}

impl Plan {
    pub fn conflicts(&self) -> Vec<&Item> {
        self.items
            .iter()
            .filter(|i| i.action == Action::Conflict)
            .collect()
    }

    /// Manifest id -> the source file with its bytes (maybe at another place than its dest).
    pub fn model_sources(&self) -> BTreeMap<String, PathBuf> {
        self.items
            .iter()
            .filter(|i| i.kind == Kind::Model && i.action == Action::CopyFromSource)
            .filter_map(|i| Some((i.name.clone(), i.source.clone()?)))
            .collect()
    }
}

/// Where the plan puts things: the destination host and its deployment root.
pub struct Destination<'a> {
    pub host: &'a dyn Host,
    pub root: &'a Path,
}

pub fn plan(
    from: &dyn Host,
    layout: &Layout,
    to: &Destination,
    manifest: &Manifest,
    pinned: &NodeList,
    printer: &Printer,
) -> Result<Plan> {
    let mut items = Vec::new();
    let model_files = source_models(from, layout)?;
    let matched = match_manifest(from, layout, &model_files, manifest, printer)?;
    for file in &manifest.models {
        items.push(model_item(to, file, matched.get(&file.id))?);
    }
    let mut user = Vec::new();
    let used: Vec<&PathBuf> = matched.values().collect();
    let mut dests = std::collections::BTreeSet::new();
    for m in &model_files {
        let mut item = Item::new(Kind::UserFile, m.dest.clone(), Action::NotMoved);
        item.bytes = m.size;
        item.source = Some(m.path.clone());
        if used.contains(&&m.path) {
            item.note = Some("same bytes as a manifest file: copied to its place".into());
        } else if is_lfs_pointer(from, &m.path, m.size)? {
            item.note = Some("a git-lfs pointer, not a model".into());
        } else if !dests.insert(m.dest.clone()) {
            // ComfyUI finds the first folder's file under this name; so will the destination.
            item.note = Some(format!("an earlier model folder holds `{}` too", m.dest));
        } else {
            item.dest = Some(m.dest.clone());
        }
        user.push(item);
    }
    for (folder, dir) in [
        ("input", &layout.input),
        ("user", &layout.user),
        ("workflows", &layout.workflows),
    ] {
        let Some(dir) = dir else { continue };
        for (rel, size) in list_files(from, dir, &[])? {
            let mut item = Item::new(Kind::UserFile, format!("{folder}/{rel}"), Action::NotMoved);
            item.bytes = size;
            item.source = Some(dir.join(&rel));
            item.dest = Some(format!("{folder}/{rel}"));
            user.push(item);
        }
    }
    if let Some(dir) = &layout.custom_nodes {
        for node in list_nodes(from, dir)? {
            items.extend(node_items(from, to, dir, &node, pinned, &mut user)?);
        }
    }
    classify_user_files(from, to, &mut user, printer)?;
    items.extend(user);
    if let Some(dir) = &layout.output {
        let files = list_files(from, dir, &[])?;
        let mut item = Item::new(Kind::UserFile, "output/", Action::NotMoved);
        item.bytes = files.iter().map(|(_, s)| s).sum();
        item.source = Some(dir.clone());
        item.note = Some(format!(
            "{} generated images stay on the source (copy them with rsync if wanted)",
            files.len()
        ));
        items.push(item);
    }
    let totals = totals(&items);
    Ok(Plan {
        source: layout.clone(),
        items,
        totals,
    })
}

fn totals(items: &[Item]) -> Totals {
    let mut t = Totals::default();
    for i in items {
        match i.action {
            Action::CopyFromSource => {
                t.copy_bytes += i.bytes;
                t.copy_files += 1;
            }
            Action::Download => {
                t.download_bytes += i.bytes;
                t.download_files += 1;
            }
            Action::OnDestination => t.on_destination_bytes += i.bytes,
            Action::Conflict => t.conflicts += 1,
            Action::Clone => t.clones += 1,
            Action::Pinned => {}
            Action::NotMoved => t.not_moved += 1,
        }
    }
    t
}

/// Every regular file under `dir` as (path relative to `dir`, size), skipping folders named in
/// `skip`, this tool's own bookkeeping (`.part`, stamps) and symlinks.
pub fn list_files(host: &dyn Host, dir: &Path, skip: &[&str]) -> Result<Vec<(String, u64)>> {
    let dir_s = dir.to_str().context("path is not UTF-8")?;
    let out =
        host.run_ok(&Command::new("find").args([dir_s, "-type", "f", "-printf", "%s %P\\0"]))?;
    let mut files = Vec::new();
    for rec in out.stdout.split(|b| *b == 0).filter(|r| !r.is_empty()) {
        let rec = String::from_utf8_lossy(rec);
        let Some((size, rel)) = rec.split_once(' ') else {
            continue;
        };
        let name = rel.rsplit('/').next().unwrap_or(rel);
        let own = name.ends_with(".part")
            || name.ends_with(".part.json")
            || (name.starts_with('.') && name.ends_with(".verified"));
        let skipped = rel.split('/').any(|c| skip.contains(&c));
        if !own && !skipped {
            files.push((rel.to_string(), size.parse().unwrap_or(0)));
        }
    }
    files.sort();
    Ok(files)
}

/// A file in one of the source's model folders (`models/`, then the extra ones).
struct SourceModel {
    path: PathBuf,
    /// Where it goes on the destination: `models/<rel>`, or `models/<kind>/<rel>` for a file
    /// of an extra folder.
    dest: String,
    size: u64,
}

/// Every file of the source's model folders; a folder inside `models/` or named twice is
/// listed once.
fn source_models(from: &dyn Host, layout: &Layout) -> Result<Vec<SourceModel>> {
    let mut folders: Vec<(PathBuf, String)> = Vec::new();
    if let Some(dir) = &layout.models {
        folders.push((dir.clone(), "models".into()));
    }
    for extra in &layout.extra_models {
        if !folders.iter().any(|(dir, _)| extra.path.starts_with(dir)) {
            folders.push((extra.path.clone(), format!("models/{}", extra.kind)));
        }
    }
    let mut out = Vec::new();
    for (dir, dest) in folders {
        for (rel, size) in list_files(from, &dir, &[".git"])? {
            out.push(SourceModel {
                path: dir.join(&rel),
                dest: format!("{dest}/{rel}"),
                size,
            });
        }
    }
    Ok(out)
}

/// Manifest id -> a source file with its bytes: at the manifest's place (stamp or hash), else
/// any file of the same size whose sha256 matches (the guide's flattened antelopev2, a copy in
/// an extra model folder).
fn match_manifest(
    from: &dyn Host,
    layout: &Layout,
    files: &[SourceModel],
    manifest: &Manifest,
    printer: &Printer,
) -> Result<BTreeMap<String, PathBuf>> {
    let mut matched = BTreeMap::new();
    let mut to_hash = Vec::new();
    let in_place = |file: &ModelFile| {
        (layout.models.as_ref())
            .map(|dir| dir.join(file.dest.strip_prefix("models/").unwrap_or(&file.dest)))
    };
    for file in &manifest.models {
        if let Some(in_place) = in_place(file) {
            match verify::presence(from, file, &in_place)? {
                Presence::Verified => {
                    matched.insert(file.id.clone(), in_place);
                    continue;
                }
                Presence::Unverified => to_hash.push(in_place),
                Presence::Absent => {}
            }
        }
        for m in files.iter().filter(|m| m.size == file.size) {
            to_hash.push(m.path.clone());
        }
    }
    to_hash.sort();
    to_hash.dedup();
    let hashes = hash_all(from, &to_hash, printer)?;
    for file in &manifest.models {
        let Some(want) = file
            .sha256
            .as_ref()
            .filter(|_| !matched.contains_key(&file.id))
        else {
            continue;
        };
        let here = in_place(file);
        let found = (here.iter())
            .chain(to_hash.iter())
            .find(|p| hashes.get(*p) == Some(want));
        if let Some(p) = found {
            matched.insert(file.id.clone(), p.clone());
        }
    }
    Ok(matched)
}

/// sha256 of each path on `host`: `HASH_JOBS` `sha256sum` at once on the host itself (one SSH
/// command per batch: the bytes are never pulled over the network), a progress line per batch.
pub fn hash_all(
    host: &dyn Host,
    paths: &[PathBuf],
    printer: &Printer,
) -> Result<BTreeMap<PathBuf, String>> {
    let mut done = BTreeMap::new();
    let batch = HASH_JOBS * 4;
    for chunk in paths.chunks(batch) {
        let mut cmd = Command::new("sh").args([
            "-c",
            &format!("printf '%s\\0' \"$@\" | xargs -0 -P {HASH_JOBS} -n 1 sha256sum --"),
            "sh",
        ]);
        for p in chunk {
            cmd = cmd.arg(p.to_str().context("path is not UTF-8")?);
        }
        let out = host.run_ok(&cmd)?;
        let text = out.stdout_text();
        for line in text.lines() {
            // `HASH  PATH`; a name with a newline or backslash is printed escaped: hashed alone.
            if let Some((sha, path)) = line.split_once("  ").filter(|(s, _)| s.len() == 64) {
                done.insert(PathBuf::from(path), sha.to_ascii_lowercase());
            }
        }
        let left: Vec<&PathBuf> = chunk.iter().filter(|p| !done.contains_key(*p)).collect();
        for p in left {
            done.insert(p.clone(), verify::hash_file(host, p)?);
        }
        printer.status(format!(
            "hashed {}/{} files on {}",
            done.len(),
            paths.len(),
            host.name()
        ));
    }
    Ok(done)
}

fn model_item(to: &Destination, file: &ModelFile, source: Option<&PathBuf>) -> Result<Item> {
    let mut item = Item::new(Kind::Model, &file.id, Action::Download);
    item.dest = Some(file.dest.clone());
    item.bytes = file.size;
    item.sha256 = file.sha256.clone();
    item.source = source.cloned();
    let on_dest = verify::presence(to.host, file, &to.root.join(&file.dest))?;
    item.action = match (on_dest, source) {
        (Presence::Verified, _) => Action::OnDestination,
        (_, Some(_)) => Action::CopyFromSource,
        (_, None) => Action::Download,
    };
    if on_dest == Presence::Unverified {
        item.note = Some("the destination's file of this size is hashed first".into());
    } else if source
        .is_some_and(|s| !s.ends_with(file.dest.strip_prefix("models/").unwrap_or(&file.dest)))
    {
        item.note = Some("found elsewhere on the source by its sha256".into());
    }
    Ok(item)
}

/// A git-lfs pointer left where a model should be (`git clone` without git-lfs).
fn is_lfs_pointer(host: &dyn Host, path: &Path, size: u64) -> Result<bool> {
    if size > 1024 {
        return Ok(false);
    }
    let data = host.read_opt(path)?.unwrap_or_default();
    Ok(data.starts_with(b"version https://git-lfs"))
}

/// The folders directly under `custom_nodes`.
fn list_nodes(host: &dyn Host, dir: &Path) -> Result<Vec<String>> {
    let dir_s = dir.to_str().context("path is not UTF-8")?;
    let out = host.run_ok(&Command::new("find").args([
        dir_s,
        "-mindepth",
        "1",
        "-maxdepth",
        "1",
        "-type",
        "d",
        "-printf",
        "%f\\0",
    ]))?;
    let mut names: Vec<String> = out
        .stdout
        .split(|b| *b == 0)
        .filter(|r| !r.is_empty())
        .map(|r| String::from_utf8_lossy(r).into_owned())
        .filter(|n| n != "__pycache__")
        .collect();
    names.sort();
    Ok(names)
}

/// A node: pinned (setup installs it), a clean clone (cloned again), or files (local changes,
/// no remote, not git) added to `user` for copying.
fn node_items(
    from: &dyn Host,
    to: &Destination,
    dir: &Path,
    name: &str,
    pinned: &NodeList,
    user: &mut Vec<Item>,
) -> Result<Vec<Item>> {
    let path = dir.join(name);
    let mut item = Item::new(Kind::Node, name, Action::Pinned);
    item.source = Some(path.clone());
    item.dest = Some(format!("custom_nodes/{name}"));
    let state = git::state(from, &path)?;
    let remote = git::remote(from, &path)?;
    if let CloneState::Present { head, .. } = &state {
        item.commit = Some(head.clone());
    }
    item.remote = remote.clone();
    let pin = pinned
        .nodes
        .iter()
        .find(|n| n.id == name || Some(&n.repo) == remote.as_ref());
    if let Some(pin) = pin {
        item.note = Some(format!(
            "installed by setup at its pinned {}",
            &pin.commit[..12]
        ));
        return Ok(vec![item]);
    }
    match (&state, &remote) {
        (CloneState::Present { head, dirty: false }, Some(_)) => {
            let there = git::state(to.host, &to.root.join("custom_nodes").join(name))?;
            item.action = match there {
                CloneState::Present { head: h, .. } if &h == head => Action::OnDestination,
                CloneState::Present { .. } => Action::Conflict,
                CloneState::Missing => Action::Clone,
            };
            Ok(vec![item])
        }
        _ => {
            item.action = Action::CopyFromSource;
            item.note = Some(match state {
                CloneState::Present { .. } if remote.is_some() => {
                    "local changes: copied as files".into()
                }
                CloneState::Present { .. } => "no git remote: copied as files".into(),
                CloneState::Missing => "not a git checkout: copied as files".into(),
            });
            for (rel, size) in list_files(from, &path, &[".git", "__pycache__"])? {
                let mut f = Item::new(
                    Kind::UserFile,
                    format!("custom_nodes/{name}/{rel}"),
                    Action::NotMoved,
                );
                f.bytes = size;
                f.source = Some(path.join(&rel));
                f.dest = Some(format!("custom_nodes/{name}/{rel}"));
                item.bytes += size;
                user.push(f);
            }
            Ok(vec![item])
        }
    }
}

/// Each user file with a destination: copy (absent there), on destination (same sha256), or
/// conflict. Hashes every such file on the source (the copy checks the destination against it).
fn classify_user_files(
    from: &dyn Host,
    to: &Destination,
    items: &mut [Item],
    printer: &Printer,
) -> Result<()> {
    let paths: Vec<PathBuf> = items
        .iter()
        .filter(|i| i.dest.is_some())
        .filter_map(|i| i.source.clone())
        .collect();
    let hashes = hash_all(from, &paths, printer)?;
    for item in items.iter_mut() {
        let (Some(dest), Some(src)) = (&item.dest, &item.source) else {
            continue;
        };
        item.sha256 = hashes.get(src).cloned();
        let there = to.root.join(dest);
        item.action = match to.host.stat(&there)? {
            None => Action::CopyFromSource,
            Some(s) if s.is_dir || s.size != item.bytes => Action::Conflict,
            Some(_) => match Some(verify::hash_file(to.host, &there)?) == item.sha256 {
                true => Action::OnDestination,
                false => Action::Conflict,
            },
        };
    }
    Ok(())
}

/// The plan as a table: one line per item that moves or does not, then the totals.
pub fn render(plan: &Plan) -> String {
    let mut out = super::render(&plan.source);
    out += "\n";
    for i in &plan.items {
        out += &format!(
            "{:15} {:10} {:>10}  {}{}\n",
            i.action.label(),
            match i.kind {
                Kind::Model => "model",
                Kind::UserFile => "file",
                Kind::Node => "node",
            },
            crate::units::size(i.bytes).to_string(),
            i.name,
            i.note
                .as_ref()
                .map_or(String::new(), |n| format!("  ({n})"))
        );
    }
    let t = &plan.totals;
    out += &format!(
        "\ncopy {} files ({}), download {} files ({}), {} already on the destination, {} git clones, {} conflicts, {} not moved\n",
        t.copy_files,
        crate::units::size(t.copy_bytes),
        t.download_files,
        crate::units::size(t.download_bytes),
        crate::units::size(t.on_destination_bytes),
        t.clones,
        t.conflicts,
        t.not_moved
    );
    out
}
