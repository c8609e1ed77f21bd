//! ComfyUI run from a checkout (`python main.py`): found by its running process, whose working
//! directory (or `main.py`'s own folder, or `--base-directory`) is the base.

use std::path::{Path, PathBuf};

use anyhow::Result;

use super::{Layout, SourceKind};
use crate::host::{Command, Host};

/// Every running `main.py` whose folder is a ComfyUI checkout. `ps` missing: none.
pub fn running(host: &dyn Host) -> Result<Vec<Layout>> {
    let out = host.run(&Command::new("ps").args(["-eo", "pid=,args="]))?;
    if !out.success() {
        return Ok(Vec::new());
    }
    let mut found = Vec::new();
    for line in out.stdout_text().lines() {
        let Some((pid, args)) = parse_line(line) else {
            continue;
        };
        if let Some(layout) = checkout(host, pid, &args)? {
            found.push(layout);
        }
    }
    Ok(found)
}

/// `(pid, argv)` of a process line that runs `main.py` under Python.
fn parse_line(line: &str) -> Option<(u32, Vec<String>)> {
    let mut words = line.split_whitespace();
    let pid = words.next()?.parse().ok()?;
    let args: Vec<String> = words.map(String::from).collect();
    let python = args.first()?.contains("python");
    let main = args
        .iter()
        .any(|a| a == "main.py" || a.ends_with("/main.py"));
    (python && main).then_some((pid, args))
}

fn checkout(host: &dyn Host, pid: u32, args: &[String]) -> Result<Option<Layout>> {
    let cwd = host.run(&Command::new("readlink").arg(format!("/proc/{pid}/cwd")))?;
    let cwd = PathBuf::from(cwd.stdout_text().trim());
    let main = args
        .iter()
        .find(|a| a.ends_with("main.py"))
        .map(|a| cwd.join(a))
        .unwrap_or_else(|| cwd.join("main.py"));
    let Some(dir) = main.parent().map(Path::to_path_buf) else {
        return Ok(None);
    };
    if host.stat(&dir.join("main.py"))?.is_none() {
        return Ok(None);
    }
    let base = args
        .iter()
        .position(|a| a == "--base-directory")
        .and_then(|i| args.get(i + 1))
        .map_or(dir, |b| cwd.join(b));
    Layout::flat(host, SourceKind::BareMetal { pid: Some(pid) }, &base).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_python_running_main_py() {
        assert_eq!(
            parse_line("  42 /venv/bin/python main.py --listen").map(|p| p.0),
            Some(42)
        );
        assert_eq!(parse_line("7 vim main.py"), None);
        assert_eq!(parse_line("8 python other.py"), None);
    }
}
