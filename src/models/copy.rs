//! Model files copied host to host (`migrate --models-from source`): each file streams from the
//! source through this machine into `<dest>.part` on the destination, hashed on the way;
//! an interrupted copy resumes from the bytes the `.part` holds (hashed once again first), and
//! the file gets its final name and stamp only when size and sha256 match the manifest.

use std::io::Read;
use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use sha2::{Digest, Sha256};

use super::manifest::{Manifest, ModelFile};
use super::partial::{self, Resume};
use super::verify::{self, Presence, Stamp};
use crate::host::Host;
use crate::lock::{held, RootLock};
use crate::step::{Outcome, StepReport};
use crate::ui::{HintExt, Printer};

const CHUNK: usize = 1 << 20;

pub struct Source<'a> {
    pub host: &'a dyn Host,
    pub root: &'a Path,
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
    let mut steps = Vec::new();
    let mut copied = 0;
    let lock = match dry_run {
        true => None,
        false => Some(RootLock::acquire(to, to_root, printer)?),
    };
    for file in &manifest.models {
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
        let src = source.root.join(&file.dest);
        match source.host.stat(&src)? {
            Some(s) if s.size == file.size => {}
            _ => {
                return Err(anyhow!(
                    "{} has no `{}` of {} bytes to copy",
                    source.host.name(),
                    src.display(),
                    file.size
                ))
                .hint("use `--models-from internet` to download it instead")
            }
        }
        if dry_run {
            steps.push(StepReport::new(
                name,
                Outcome::WouldChange,
                format!(
                    "would copy from {} ({})",
                    source.host.name(),
                    crate::units::size(file.size)
                ),
            ));
            continue;
        }
        printer.status(format!(
            "copying {} from {} to {}",
            file.dest,
            source.host.name(),
            to.name()
        ));
        copied += copy_file(source.host, &src, to, &dest, file, held(&lock)?)?;
        steps.push(StepReport::new(
            name,
            Outcome::Changed,
            format!("copied from {}", source.host.name()),
        ));
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
    lock: &RootLock,
) -> Result<u64> {
    let part = partial::part_path(dest);
    let start = match partial::inspect(to, file, dest)? {
        Resume::Prefix(n) => n,
        Resume::Fresh => 0,
        // Ranges recorded by a segmented download: not a prefix; start over.
        Resume::Recorded(_) => {
            partial::discard(to, dest)?;
            0
        }
    };
    let mut sha = if start > 0 {
        hash_prefix(to, &part, start)?
    } else {
        Sha256::new()
    };
    if let Some(dir) = dest.parent() {
        to.mkdir_p(dir)?;
    }
    let mut writer = to.open_write(&part)?;
    let mut reader = from.open_read(src, start)?;
    let mut buf = vec![0u8; CHUNK];
    let mut offset = start;
    while offset < file.size {
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
    }
    writer.sync()?;
    drop(writer);
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
    Stamp::record(to, dest, &got, lock)?;
    Ok(file.size - start)
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
