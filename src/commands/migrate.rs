use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Result;

use super::Context;
use crate::cli::MigrateArgs;
use crate::host::{Host, LocalHost};
use crate::migrate::{self, MigrateOptions};

pub fn run(ctx: &Context, args: MigrateArgs) -> Result<ExitCode> {
    let from: Arc<dyn Host> = Arc::from(ctx.connect(&args.from)?);
    let to: Arc<dyn Host> = Arc::from(ctx.connect(&args.to)?);
    let local = LocalHost::new();
    let opts = MigrateOptions {
        from_playbook: args.from_playbook,
        from_root: args.from_root,
        from_url: args.from_url,
        from_container: args.from_container,
        overwrite: args.overwrite,
        env_file: args.env_file,
        mode: args.mode,
        models_from: args.models_from,
        stop_source: args.stop_source,
        pool_file: args.pool_file,
        backup_dir: local.expand_home(&args.backup_dir)?,
        setup: super::setup::options(ctx, args.setup),
    };
    let report = migrate::migrate(&from, &to, &local, opts, &ctx.printer)?;
    ctx.printer.emit(&report, migrate::render)?;
    Ok(if report.failed() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
