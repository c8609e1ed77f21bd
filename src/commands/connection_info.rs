use std::process::ExitCode;

use anyhow::Result;

use super::Context;
use crate::cli::ConnectionInfoArgs;
use crate::connection_info::{self, Options};

pub fn run(ctx: &Context, args: ConnectionInfoArgs) -> Result<ExitCode> {
    let host = ctx.host()?;
    let opts = Options {
        port: args.port,
        address: args.address,
        batch_size: None,
        seconds_per_image: None,
        dry_run: ctx.global.dry_run,
    };
    let report = connection_info::run(host.as_ref(), &opts)?;
    if ctx.printer.json {
        ctx.printer.to_document(&report)?;
    } else if ctx.global.dry_run {
        if !report.diff.is_empty() {
            ctx.printer.data(&report.diff);
        }
    } else {
        ctx.printer.data(&report.text);
    }
    ctx.printer.status(format!(
        "{}: `{}` on {}",
        report.status.label(),
        report.path.display(),
        report.host
    ));
    Ok(ExitCode::SUCCESS)
}
