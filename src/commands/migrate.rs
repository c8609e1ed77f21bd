use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Result;

use super::Context;
use crate::cli::MigrateArgs;
use crate::host::{Host, LocalHost};
use crate::migrate::{self, MigrateOptions};

pub fn run(ctx: &Context, args: MigrateArgs) -> Result<ExitCode> {
    let local = LocalHost::new();
    if args.rollback {
        return rollback(ctx, &local, &args);
    }
    let (Some(from), Some(to)) = (&args.from, &args.to) else {
        anyhow::bail!(crate::ui::UsageError(
            "`migrate` needs `--from` and `--to` (or `--rollback`)".into()
        ));
    };
    let from: Arc<dyn Host> = Arc::from(ctx.connect(from)?);
    let to: Arc<dyn Host> = Arc::from(ctx.connect(to)?);
    // The host that changes; the report's `from` and `to` name both ends.
    ctx.printer.out.set_host(to.name());
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
    Ok(if report.interrupted() {
        ctx.printer.out.set_failure("interrupted".into(), None);
        ExitCode::from(super::EXIT_INTERRUPTED)
    } else if report.failed() {
        let setup = report.setup.as_ref().map(|s| s.phases.as_slice());
        let phases = match setup {
            Some(s) if s.iter().any(|p| p.outcome == crate::step::Outcome::Failed) => {
                super::failed_phases(s)
            }
            _ => super::failed_phases(&report.phases),
        };
        ctx.failure(phases)
    } else {
        ExitCode::SUCCESS
    })
}

fn rollback(ctx: &Context, local: &LocalHost, args: &MigrateArgs) -> Result<ExitCode> {
    let Some(env_file) = args.env_file.as_deref() else {
        anyhow::bail!(crate::ui::UsageError(
            "`--rollback` needs `--env-file`".into()
        ));
    };
    let steps = crate::source::log::rollback(
        local,
        &local.expand_home(&args.backup_dir)?,
        env_file,
        |target| ctx.connect(target),
        ctx.global.dry_run,
        &ctx.printer,
    )?;
    ctx.print_steps(&steps)?;
    Ok(ExitCode::SUCCESS)
}
