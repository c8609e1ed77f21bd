//! What the plan moves besides the manifest's models (those go through `setup`'s model phase):
//! the user's files, copied with the sha256 the source computed and checked again on the
//! destination, and custom nodes the node list does not pin, cloned at the source's remote and
//! commit with their requirements installed like the pinned ones.

use std::io::Read;
use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::inventory::{Action, Item, Kind, Plan};
use crate::host::{temp_sibling, Host};
use crate::models::verify;
use crate::nodes::manifest::{Node, NodeList};
use crate::nodes::{self, InstallOptions};
use crate::service::Deployment;
use crate::step::{Mode, Outcome, StepReport};
use crate::ui::{HintExt, Printer};

#[derive(Debug, Clone, Copy)]
pub struct TransferOptions {
    /// Replace conflicting files on the destination (the old one kept beside it).
    pub overwrite: bool,
    pub dry_run: bool,
}

/// One file that moved, for the migration log.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct Moved {
    pub dest: String,
    pub bytes: u64,
    pub sha256: String,
    /// Where the destination's previous file went (`--overwrite`).
    pub backup: Option<String>,
}

/// The conflicts as an error listing each, unless `--overwrite`.
pub fn refuse_conflicts(plan: &Plan, overwrite: bool) -> Result<()> {
    let conflicts = plan.conflicts();
    if conflicts.is_empty() || overwrite {
        return Ok(());
    }
    let list: Vec<String> = conflicts
        .iter()
        .map(|i| format!("  - {}", i.dest.as_deref().unwrap_or(&i.name)))
        .collect();
    Err(anyhow!(
        "{} files differ on the destination; nothing was changed:\n{}",
        conflicts.len(),
        list.join("\n")
    ))
    .hint("compare them, then re-run with `--overwrite` (the destination's files are kept as `<name>.before-migrate`)")
}

fn moves(item: &Item, overwrite: bool) -> bool {
    item.action == Action::CopyFromSource || (overwrite && item.action == Action::Conflict)
}

/// Copy the user files the plan moves. One step per folder of the destination root.
pub fn copy_user_files(
    from: &dyn Host,
    to: &dyn Host,
    to_root: &Path,
    plan: &Plan,
    opts: TransferOptions,
    printer: &Printer,
) -> Result<(Vec<StepReport>, Vec<Moved>)> {
    let mut moved = Vec::new();
    let mut per_folder: std::collections::BTreeMap<String, (usize, u64, usize)> =
        Default::default();
    for item in plan.items.iter().filter(|i| i.kind == Kind::UserFile) {
        let (Some(dest), Some(src)) = (&item.dest, &item.source) else {
            continue;
        };
        let folder = dest.split('/').next().unwrap_or(dest).to_string();
        let entry = per_folder.entry(folder).or_default();
        if !moves(item, opts.overwrite) {
            entry.2 += 1;
            continue;
        }
        entry.0 += 1;
        entry.1 += item.bytes;
        if opts.dry_run {
            continue;
        }
        let want = item
            .sha256
            .clone()
            .with_context(|| format!("`{}` was not hashed on the source", src.display()))?;
        let path = to_root.join(dest);
        let backup = match item.action {
            Action::Conflict => Some(keep_old(to, &path)?),
            _ => None,
        };
        printer.status(format!("copying {dest} from {}", from.name()));
        copy_one(from, src, to, &path, &want)?;
        moved.push(Moved {
            dest: dest.clone(),
            bytes: item.bytes,
            sha256: want,
            backup,
        });
    }
    let steps = per_folder
        .into_iter()
        .map(|(folder, (n, bytes, same))| {
            let (outcome, verb) = match (n, opts.dry_run) {
                (0, _) => (Outcome::Ok, "nothing to copy"),
                (_, true) => (Outcome::WouldChange, "would copy"),
                (_, false) => (Outcome::Changed, "copied and verified"),
            };
            StepReport::new(
                format!("{folder}/"),
                outcome,
                format!(
                    "{verb} {n} files ({}), {same} already there",
                    crate::units::size(bytes)
                ),
            )
        })
        .collect();
    Ok((steps, moved))
}

/// Move the destination's file aside before it is replaced; returns where it went.
fn keep_old(to: &dyn Host, path: &Path) -> Result<String> {
    let mut name = path.as_os_str().to_owned();
    name.push(".before-migrate");
    let backup = std::path::PathBuf::from(name);
    to.rename(path, &backup)?;
    Ok(backup.display().to_string())
}

/// Stream `src` into a temp file beside `dest`, hashing on the way; the temp file takes the
/// name only when the bytes have the source's sha256, and the destination re-reads it.
fn copy_one(from: &dyn Host, src: &Path, to: &dyn Host, dest: &Path, want: &str) -> Result<()> {
    if let Some(dir) = dest.parent() {
        to.mkdir_p(dir)?;
    }
    let tmp = temp_sibling(dest)?;
    let mut writer = to.open_write(&tmp)?;
    let mut reader = from.open_read(src, 0)?;
    let mut sha = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut offset = 0u64;
    loop {
        let n = reader
            .read(&mut buf)
            .with_context(|| format!("reading `{}` on {} broke off", src.display(), from.name()))?;
        if n == 0 {
            break;
        }
        sha.update(&buf[..n]);
        writer.write_at(offset, &buf[..n])?;
        offset += n as u64;
    }
    writer.sync()?;
    drop(writer);
    let got = hex::encode(sha.finalize());
    if got != want {
        to.remove_file(&tmp)?;
        bail!(
            "`{}` changed on {} while it was copied (sha256 {got}, {want} before)",
            src.display(),
            from.name()
        );
    }
    to.rename(&tmp, dest)?;
    let there = verify::hash_file(to, dest)?;
    if there != want {
        bail!(
            "`{}` on {} has sha256 {there} after the copy, not {want}",
            dest.display(),
            to.name()
        );
    }
    Ok(())
}

/// Clone the nodes the plan clones, at the source's remote and commit; pip as for pinned ones.
pub fn clone_nodes(
    d: &Deployment,
    plan: &Plan,
    url: &str,
    opts: TransferOptions,
    printer: &Printer,
) -> Result<Vec<StepReport>> {
    let nodes: Vec<Node> = plan
        .items
        .iter()
        .filter(|i| i.kind == Kind::Node)
        .filter(|i| i.action == Action::Clone || (opts.overwrite && i.action == Action::Conflict))
        .filter_map(|i| {
            Some(Node {
                id: i.name.clone(),
                repo: i.remote.clone()?,
                commit: i.commit.clone()?,
                pip: Vec::new(),
                rewrite: Default::default(),
                proves: Vec::new(),
            })
        })
        .collect();
    if nodes.is_empty() {
        return Ok(Vec::new());
    }
    let mode = Mode {
        dry_run: opts.dry_run,
        replace: crate::step::Replace::Yes,
    };
    let list = NodeList { nodes };
    nodes::install(
        d,
        &list,
        url,
        InstallOptions {
            force: opts.overwrite,
            no_deps: false,
        },
        mode,
        printer,
    )
}
