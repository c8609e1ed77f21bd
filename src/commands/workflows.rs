use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{anyhow, Result};

use super::Context;
use crate::cli::{WorkflowsAction, WorkflowsArgs};
use crate::host::{self, LocalHost};
use crate::ui::HintExt;
use crate::units::{count, size};
use crate::workflows::{self, BackupReport, RestoreReport};

pub fn run(ctx: &Context, args: WorkflowsArgs) -> Result<ExitCode> {
    let local = LocalHost::new();
    let dry_run = ctx.global.dry_run;
    match args.action {
        WorkflowsAction::Backup { root, out, .. } => {
            let host = ctx.host()?;
            let out = out.unwrap_or_else(|| default_archive_name(host.name()));
            let report = workflows::backup(host.as_ref(), &root, &local, &out, dry_run)?;
            print_backup(ctx, &report)?;
            Ok(ExitCode::SUCCESS)
        }
        WorkflowsAction::Restore {
            file, root, force, ..
        } => {
            let host = ctx.host()?;
            let report = workflows::restore(&local, &file, host.as_ref(), &root, force, dry_run)?;
            print_restore(ctx, &report)
        }
        WorkflowsAction::Transfer {
            from,
            to,
            from_root,
            to_root,
            force,
            ..
        } => {
            let from = host::connect(&from, &ctx.ssh_options())?;
            let to = host::connect(&to, &ctx.ssh_options())?;
            // The host that changes; the report's `from` names the source.
            ctx.printer.out.set_host(to.name());
            let report = workflows::transfer(
                from.as_ref(),
                &from_root,
                to.as_ref(),
                &to_root,
                force,
                dry_run,
            )?;
            print_restore(ctx, &report)
        }
    }
}

/// `workflows-<host>-<time>.tar.gz` in the current folder.
fn default_archive_name(host: &str) -> PathBuf {
    let host: String = host
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let stamp = chrono::Local::now().format("%Y%m%d-%H%M%S");
    PathBuf::from(format!("workflows-{host}-{stamp}.tar.gz"))
}

fn print_backup(ctx: &Context, report: &BackupReport) -> Result<()> {
    for s in &report.skipped {
        ctx.printer
            .warn(format!("skipped `{}`: {}", s.path, s.reason));
    }
    if ctx.printer.json {
        return ctx.printer.to_document(report);
    }
    let what = format!(
        "{} ({}) from {} on {}",
        count(report.files, "file"),
        size(report.bytes),
        report.folders.join(", "),
        report.host
    );
    // The archive's path is the data; the summary is for the operator.
    match &report.archive {
        Some(path) => {
            ctx.printer.status(format!(
                "backed up {what} into `{}` ({})",
                path.display(),
                size(report.archive_bytes)
            ));
            ctx.printer.data(&path.display().to_string());
        }
        None => ctx.printer.status(format!("would back up {what}")),
    }
    Ok(())
}

fn print_restore(ctx: &Context, report: &RestoreReport) -> Result<ExitCode> {
    for s in &report.skipped {
        ctx.printer
            .warn(format!("skipped on the source `{}`: {}", s.path, s.reason));
    }
    let o = &report.outcome;
    if ctx.printer.json {
        ctx.printer.to_document(report)?;
    } else {
        let lines: String = [
            (
                if report.dry_run {
                    "would restore"
                } else {
                    "restored"
                },
                &o.restored,
            ),
            ("unchanged", &o.unchanged),
            ("conflicting", &o.conflicting),
        ]
        .iter()
        .flat_map(|(label, paths)| paths.iter().map(move |p| format!("{label}: {p}\n")))
        .collect();
        ctx.printer.data(&lines);
        for b in &o.backups {
            ctx.printer
                .status(format!("kept the replaced file as `{}`", b.display()));
        }
        let restored = match report.dry_run {
            true => format!("{} would be restored", o.restored.len()),
            false => format!("{} restored", o.restored.len()),
        };
        let written = match report.dry_run {
            true => String::new(),
            false => format!(
                " ({} written, {} verified)",
                size(o.bytes_written),
                report.verified
            ),
        };
        ctx.printer.status(format!(
            "{restored}, {} unchanged, {} conflicting{written} under `{}` on {}",
            o.unchanged.len(),
            o.conflicting.len(),
            report.root.display(),
            report.host
        ));
    }
    if o.conflicting.is_empty() {
        return Ok(ExitCode::SUCCESS);
    }
    Err(anyhow!(
        "{} {} on {} and {} left alone",
        count(o.conflicting.len(), "file"),
        if o.conflicting.len() == 1 { "differs" } else { "differ" },
        report.host,
        if o.conflicting.len() == 1 { "was" } else { "were" }
    ))
    .hint("compare them, then re-run with `--force` to replace them (the old ones are kept as `<name>.bak-<time>`)")
}
