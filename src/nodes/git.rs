//! A node's clone on the target, through the host's own `git`: where it is, whether it is
//! dirty, and moving it to the pinned commit.

use std::path::Path;

use anyhow::{anyhow, Context, Result};

use crate::host::{Command, Host};
use crate::ui::HintExt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CloneState {
    Missing,
    /// `head` is the checked-out commit; `dirty` when tracked files were changed or files added.
    Present {
        head: String,
        dirty: bool,
    },
}

fn git(dir: &Path, args: &[&str]) -> Result<Command> {
    let dir = dir.to_str().context("path is not UTF-8")?;
    // A clone made by a container's root (the guide clones nodes inside it) is "dubious
    // ownership" to git run as the login user; reading and moving it is what we are here for.
    Ok(Command::new("git")
        .args(["-c", "safe.directory=*", "-C", dir])
        .args(args.iter().copied()))
}

pub fn state(host: &dyn Host, dir: &Path) -> Result<CloneState> {
    if host.stat(&dir.join(".git"))?.is_none() {
        return Ok(CloneState::Missing);
    }
    let head = host
        .run_ok(&git(dir, &["rev-parse", "HEAD"])?)?
        .stdout_text()
        .trim()
        .to_string();
    let status = host.run_ok(&git(dir, &["status", "--porcelain"])?)?;
    Ok(CloneState::Present {
        head,
        dirty: !status.stdout.is_empty(),
    })
}

/// The `origin` remote's URL, `None` when the clone has none.
pub fn remote(host: &dyn Host, dir: &Path) -> Result<Option<String>> {
    if host.stat(&dir.join(".git"))?.is_none() {
        return Ok(None);
    }
    let out = host.run(&git(dir, &["remote", "get-url", "origin"])?)?;
    Ok(out
        .success()
        .then(|| out.stdout_text().trim().to_string())
        .filter(|u| !u.is_empty()))
}

pub fn clone_at(host: &dyn Host, repo: &str, commit: &str, dir: &Path) -> Result<()> {
    let path = dir.to_str().context("path is not UTF-8")?;
    let out = host.run(&Command::new("git").args(["clone", "--quiet", repo, path]))?;
    if !out.success() {
        return Err(anyhow!(
            "`git clone {repo}` failed on {}: {}",
            host.name(),
            out.stderr_text().trim()
        ))
        .hint("check the URL and that the host reaches it (`git ls-remote URL` there)");
    }
    checkout(host, dir, commit, false)
}

/// Check out `commit`, fetching first when the clone does not have it yet.
pub fn checkout(host: &dyn Host, dir: &Path, commit: &str, force: bool) -> Result<()> {
    let have = host
        .run(&git(
            dir,
            &["cat-file", "-e", &format!("{commit}^{{commit}}")],
        )?)?
        .success();
    if !have {
        let out = host.run(&git(dir, &["fetch", "--quiet", "origin"])?)?;
        if !out.success() {
            return Err(anyhow!(
                "`git fetch` in `{}` failed: {}",
                dir.display(),
                out.stderr_text().trim()
            ));
        }
    }
    let mut args = vec!["checkout", "--quiet", "--detach"];
    if force {
        args.push("--force");
    }
    args.push(commit);
    let out = host.run(&git(dir, &args)?)?;
    if !out.success() {
        return Err(anyhow!(
            "cannot check out {commit} in `{}`: {}",
            dir.display(),
            out.stderr_text().trim()
        ))
        .hint("is the commit in the repository? Compare with `git log` upstream");
    }
    Ok(())
}
