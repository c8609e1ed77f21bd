use std::process::ExitCode;

use anyhow::Result;

use super::Context;
use crate::cli::DoctorArgs;
use crate::doctor::{self, DoctorOptions};

pub fn run(ctx: &Context, args: DoctorArgs) -> Result<ExitCode> {
    if let Some(hosts) = ctx.inventory_hosts(false)? {
        return super::fleet::doctor(ctx, &args, &hosts);
    }
    let host = ctx.host()?;
    let needed_bytes = needed_bytes(&args)?;
    let opts = DoctorOptions {
        root: args.root,
        port: args.port,
        gpu_smoke: args.gpu_smoke,
        needed_bytes,
    };
    let report = doctor::run(host.as_ref(), &opts)?;
    ctx.printer
        .emit(&report, |report| doctor::render(report, &ctx.printer))?;
    let failed: Vec<&str> = report
        .checks
        .iter()
        .filter(|c| c.status == doctor::Status::Fail)
        .map(|c| c.name)
        .collect();
    Ok(match failed.is_empty() {
        true => ExitCode::SUCCESS,
        false => ctx.failure(format!("doctor checks failed: {}", failed.join(", "))),
    })
}

/// The disk `--manifest` needs; `None` (the default set's) without one.
pub(super) fn needed_bytes(args: &DoctorArgs) -> Result<Option<u64>> {
    let Some(path) = args.manifest.as_deref() else {
        return Ok(None);
    };
    Ok(Some(
        crate::models::manifest::Manifest::load(Some(path), true)?.disk_bytes(),
    ))
}
