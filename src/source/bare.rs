//! ComfyUI run from a checkout (`python main.py`): found by its running process, whose working
//! directory (or `main.py`'s own folder, or `--base-directory`) is the base.

use std::path::{Path, PathBuf};

use anyhow::Result;

use super::args::ComfyArgs;
use super::extra_paths::{self, ExtraFolder, View};
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
    let flags = ComfyArgs::parse(args);
    let main = cwd.join(flags.main.as_deref().unwrap_or("main.py"));
    let Some(dir) = main.parent().map(Path::to_path_buf) else {
        return Ok(None);
    };
    if host.stat(&dir.join("main.py"))?.is_none() {
        return Ok(None);
    }
    let base = flags
        .base_directory
        .as_ref()
        .map_or(dir.clone(), |b| cwd.join(b));
    let mut layout = Layout::flat(host, SourceKind::BareMetal { pid: Some(pid) }, &base)?;
    layout.extra_models = extra_models(host, &dir, &cwd, &flags.extra_model_paths)?;
    layout.port = Some(flags.listen_port());
    Ok(Some(layout))
}

/// The extra model folders of a checkout at `dir` run from `cwd`: its default config and the
/// ones named on the command line.
pub fn extra_models(
    host: &dyn Host,
    dir: &Path,
    cwd: &Path,
    configs: &[String],
) -> Result<Vec<ExtraFolder>> {
    let configs: Vec<PathBuf> = std::iter::once(dir.join(extra_paths::DEFAULT_CONFIG))
        .chain(configs.iter().map(|c| cwd.join(c)))
        .collect();
    let home = host.home().ok();
    let view = View {
        cwd,
        home: home.as_deref(),
        to_host: &|p: &Path| Some(p.to_path_buf()),
    };
    extra_paths::read(host, &configs, &view)
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
