use std::process::ExitCode;

use anyhow::{bail, Result};
use serde::Serialize;

use super::Context;
use crate::cli::{EnvAction, EnvArgs};
use crate::envfile::{self, SetOptions};
use crate::ui::UsageError;

pub fn run(ctx: &Context, args: EnvArgs) -> Result<ExitCode> {
    let Some(file) = args.file else {
        bail!(UsageError(format!(
            "name the dotenv file with `--file PATH` (or ${})",
            crate::defaults::ENV_FILE_VAR
        )));
    };
    let host = ctx.host()?;
    match args.action {
        EnvAction::Set {
            assignments,
            create,
            ..
        } => {
            let opts = SetOptions {
                file,
                updates: assignments,
                create,
                dry_run: ctx.global.dry_run,
            };
            let report = envfile::set(host.as_ref(), &opts)?;
            print_set(ctx, &report)?;
        }
        EnvAction::Get { key } => {
            let Some(value) = envfile::get(host.as_ref(), &file, &key)? else {
                bail!("`{key}` is not set in `{file}` on {}", host.name());
            };
            match ctx.printer.json {
                true => ctx.printer.to_document(&Got { key, value })?,
                false => ctx.printer.data(&value),
            }
        }
        EnvAction::Show { show_secrets } => {
            let vars = envfile::show(host.as_ref(), &file, show_secrets)?;
            match ctx.printer.json {
                true => ctx.printer.emit_field("vars", &vars, |_| String::new())?,
                false => {
                    let lines: String = vars
                        .iter()
                        .map(|v| format!("{}={}\n", v.key, v.value))
                        .collect();
                    ctx.printer.data(&lines);
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Serialize)]
struct Got {
    key: String,
    value: String,
}

fn print_set(ctx: &Context, report: &envfile::SetReport) -> Result<()> {
    for w in &report.warnings {
        ctx.printer.warn(w);
    }
    if ctx.printer.json {
        return ctx.printer.to_document(report);
    }
    if !report.diff.is_empty() {
        ctx.printer.data(&report.diff);
    }
    let backup = report
        .backup
        .as_ref()
        .map(|b| format!(" (backup: `{}`)", b.display()))
        .unwrap_or_default();
    ctx.printer.status(format!(
        "{}: `{}` on {}{backup}",
        report.status.label(),
        report.path.display(),
        report.host
    ));
    Ok(())
}
