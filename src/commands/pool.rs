use std::process::ExitCode;

use anyhow::Result;

use super::Context;
use crate::cli::PoolArgs;
use crate::host::LocalHost;
use crate::pool;

/// The inventory's hosts as the router should see them: what each ComfyUI reports, the
/// inventory's priority and capabilities first.
pub fn run(ctx: &Context, args: PoolArgs) -> Result<ExitCode> {
    let hosts = ctx.inventory_hosts(true)?.unwrap_or_default();
    let rows = super::service::query_inventory(&hosts, args.port)?;
    for r in rows.iter().filter(|r| !r.reachable) {
        ctx.printer.warn(format!(
            "`{}` did not answer at {}: its entry has no device, memory or batch size",
            r.host, r.url
        ));
    }
    let devices = rows
        .iter()
        .zip(&hosts)
        .map(|(r, sel)| pool::from_status(r, &sel.entry))
        .collect();
    let report = pool::write(
        &LocalHost::new(),
        args.out,
        devices,
        "pool",
        ctx.global.dry_run,
        &ctx.printer,
    )?;
    ctx.print_steps(std::slice::from_ref(&report))?;
    Ok(ExitCode::SUCCESS)
}
