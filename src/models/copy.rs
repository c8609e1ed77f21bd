//! Model files copied host to host (`migrate`): each file streams from the source through this
//! machine into `<dest>.part` on the destination, hashed on the way, with the same
//! `<dest>.part.json` record a download keeps (`partial`): its finished prefix is recorded after
//! each sync, so a copy killed with `kill -9` resumes from the record — and a download may
//! finish what a copy started, or the other way round. The file gets its final name and stamp
//! only when size and sha256 match the manifest.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{anyhow, bail, Context, Result};
use sha2::{Digest, Sha256};

use super::manifest::{Manifest, ModelFile};
use super::partial::{self, PartState, Resume};
use super::progress::Progress;
use super::verify::{self, Presence, Stamp};
use crate::host::Host;
use crate::lock::{held, RootLock};
use crate::step::{Outcome, StepReport};
use crate::ui::{HintExt, Printer};

const CHUNK: usize = 1 << 20;

/// Bytes between two records of the finished prefix (each record follows an fsync).
const RECORD_EVERY: u64 = 8 << 20;

pub struct Source<'a> {
    pub host: &'a dyn Host,
    pub root: &'a Path,
}

/// Where `setup` copies manifest files from instead of downloading them: the source host and,
/// per manifest id, the file there with the manifest's bytes (maybe not at the manifest's own
/// place: `migrate` matches them by sha256). Ids not named are downloaded.
#[derive(Clone)]
pub struct ModelSource {
    pub host: Arc<dyn Host>,
    pub files: BTreeMap<String, PathBuf>,
}

/// Whether the source holds every file of the manifest with the manifest's bytes: at its size,
/// and with a current stamp or, failing that, hashing to the manifest's sha256 (`sha256sum` on
/// the source over SSH). Nothing is written on the source.
pub fn source_has_all(source: &Source, manifest: &Manifest) -> Result<bool> {
    for file in &manifest.models {
        let path = source.root.join(&file.dest);
        let ok = match verify::presence(source.host, file, &path)? {
            Presence::Verified => true,
            Presence::Unverified => Some(verify::hash_file(source.host, &path)?) == file.sha256,
            Presence::Absent => false,
        };
        if !ok {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Copy every file the destination lacks. Returns the steps and the bytes copied.
pub fn copy_all(
    source: &Source,
    to: &dyn Host,
    to_root: &Path,
    manifest: &Manifest,
    dry_run: bool,
    printer: &Printer,
) -> Result<(Vec<StepReport>, u64)> {
    let files = manifest
        .models
        .iter()
        .map(|f| (f.id.clone(), source.root.join(&f.dest)))
        .collect();
    copy_files(source.host, &files, to, to_root, manifest, dry_run, printer)
}

/// Copy the manifest files named in `files` (id -> path on `from`) that the destination lacks.
pub fn copy_files(
    from: &dyn Host,
    files: &BTreeMap<String, PathBuf>,
    to: &dyn Host,
    to_root: &Path,
    manifest: &Manifest,
    dry_run: bool,
    printer: &Printer,
) -> Result<(Vec<StepReport>, u64)> {
    let mut steps = Vec::new();
    let mut copied = 0;
    let lock = match dry_run {
        true => None,
        false => Some(RootLock::acquire(to, to_root, printer)?),
    };
    for file in &manifest.models {
        let Some(src) = files.get(&file.id) else {
            continue;
        };
        let dest = to_root.join(&file.dest);
        let name = format!("model {}", file.id);
        let in_place = match verify::presence(to, file, &dest)? {
            Presence::Verified => true,
            // A dry run hashes nothing and writes no stamp.
            Presence::Unverified if dry_run => {
                steps.push(StepReport::new(name, Outcome::WouldChange, "would verify"));
                continue;
            }
            Presence::Unverified => verify::verify_and_stamp(to, file, &dest, held(&lock)?)?,
            Presence::Absent => false,
        };
        if in_place {
            steps.push(StepReport::new(name, Outcome::Ok, "present, verified"));
            continue;
        }
        match from.stat(src)? {
            Some(s) if s.size == file.size => {}
            _ => {
                return Err(anyhow!(
                    "{} has no `{}` of {} bytes to copy",
                    from.name(),
                    src.display(),
                    file.size
                ))
                .hint("use `--models-from internet` to download it instead")
            }
        }
        if dry_run {
            steps.push(
                StepReport::new(
                    name,
                    Outcome::WouldChange,
                    format!(
                        "would copy from {} ({})",
                        from.name(),
                        crate::units::size(file.size)
                    ),
                )
                .with_bytes(file.size),
            );
            continue;
        }
        printer.status(format!(
            "copying {} from {} to {}",
            file.dest,
            from.name(),
            to.name()
        ));
        // The download's progress: bars on a terminal, a line per file otherwise.
        let progress = Progress::new(printer, file.size);
        let started = std::time::Instant::now();
        let result = copy_file(from, src, to, &dest, file, &progress, held(&lock)?);
        progress.finish();
        let n = result?;
        progress.finished(&file.id, n, started);
        copied += n;
        steps.push(
            StepReport::new(
                name,
                Outcome::Changed,
                format!("copied from {}", from.name()),
            )
            .with_bytes(file.size),
        );
    }
    Ok((steps, copied))
}

/// Bytes copied this time.
fn copy_file(
    from: &dyn Host,
    src: &Path,
    to: &dyn Host,
    dest: &Path,
    file: &ModelFile,
    progress: &Progress,
    lock: &RootLock,
) -> Result<u64> {
    let part = partial::part_path(dest);
    let start = match partial::inspect(to, file, dest)? {
        Resume::Prefix(n) => n,
        Resume::Fresh => 0,
        // A copy's record, or a segmented download's: the range from byte 0 is kept.
        Resume::Recorded(s) => s.done.first().filter(|r| r[0] == 0).map_or(0, |r| r[1]),
    };
    let mut sha = if start > 0 {
        hash_prefix(to, &part, start)?
    } else {
        Sha256::new()
    };
    if let Some(dir) = dest.parent() {
        to.mkdir_p(dir)?;
    }
    let mut record = PartState::new(file, file.size, None, vec![[0, start]]);
    // The record first, then the full-size `.part`: a `.part` is never without its record.
    write_record(to, dest, &record)?;
    let mut writer = to.open_write(&part)?;
    writer.set_len(file.size)?;
    let mut reader = from.open_read(src, start)?;
    let mut buf = vec![0u8; CHUNK];
    let mut offset = start;
    let bar = progress.start(&file.id, file.size, start);
    while offset < file.size {
        if offset - record.done[0][1] >= RECORD_EVERY {
            writer.sync()?;
            record.done = vec![[0, offset]];
            write_record(to, dest, &record)?;
        }
        let n = reader
            .read(&mut buf)
            .with_context(|| format!("reading `{}` on {} broke off", src.display(), from.name()))?;
        if n == 0 {
            bail!(
                "`{}` on {} ended at {offset} of {} bytes",
                src.display(),
                from.name(),
                file.size
            );
        }
        let n = n.min((file.size - offset) as usize);
        sha.update(&buf[..n]);
        writer
            .write_at(offset, &buf[..n])
            .with_context(|| format!("writing `{}` on {} broke off", part.display(), to.name()))?;
        offset += n as u64;
        bar.inc(n as u64);
    }
    writer.sync()?;
    drop(writer);
    bar.clear();
    let got = hex::encode(sha.finalize());
    let want = file.sha256.clone().unwrap_or_else(|| got.clone());
    if got != want {
        partial::discard(to, dest)?;
        return Err(anyhow!(
            "`{}` copied from {} has sha256 {got}, the manifest says {want}",
            file.dest,
            from.name()
        ))
        .hint("the source's copy is damaged: use `--models-from internet`");
    }
    to.rename(&part, dest)?;
    to.remove_file(&partial::state_path(dest))?;
    Stamp::record(to, dest, &got, lock)?;
    Ok(file.size - start)
}

fn write_record(to: &dyn Host, dest: &Path, record: &PartState) -> Result<()> {
    to.write_atomic(
        &partial::state_path(dest),
        &serde_json::to_vec(record)?,
        Some(0o644),
    )
}

/// Rebuild the hash state from the bytes an interrupted copy left.
fn hash_prefix(host: &dyn Host, part: &Path, len: u64) -> Result<Sha256> {
    let ctx = || format!("cannot read back `{}` on {}", part.display(), host.name());
    let (sha, read) = verify::hash_reader(host.open_read(part, 0)?, len).with_context(ctx)?;
    if read != len {
        bail!("{}: {read} of {len} bytes", ctx());
    }
    Ok(sha)
}
