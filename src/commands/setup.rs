use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Result;

use super::Context;
use crate::cli::{GpuChoice, SetupArgs, VerifyArgs};
use crate::defaults;
use crate::host::Host;
use crate::models::fetch::{Connections, FetchOptions, RetryPolicy};
use crate::setup::{self, Phase, SetupOptions, PHASES};

pub fn run(ctx: &Context, args: SetupArgs) -> Result<ExitCode> {
    if let Some(hosts) = ctx.inventory_hosts(false)? {
        return super::fleet::setup(ctx, &args, &hosts);
    }
    let opts = options(ctx, args);
    run_phases(ctx, &opts)
}

/// `verify`: setup's verify phase alone; the generation only with `--generate`.
pub fn verify(ctx: &Context, args: VerifyArgs) -> Result<ExitCode> {
    let setup = SetupArgs {
        service: args.service,
        checks: args.checks,
        jobs: defaults::MODEL_JOBS,
        connections: None,
        only: vec![Phase::Verify],
        skip: Vec::new(),
        no_generate: !args.generate,
        plan: crate::cli::PlanArgs {
            dry_run: args.dry.dry_run,
            yes: false,
        },
        lock: args.lock,
    };
    run_phases(ctx, &options(ctx, setup))
}

fn run_phases(ctx: &Context, opts: &SetupOptions) -> Result<ExitCode> {
    let host: Arc<dyn Host> = Arc::from(ctx.host()?);
    let report = setup::setup(&host, opts, &ctx.printer)?;
    ctx.printer.emit(&report, setup::render)?;
    Ok(if report.interrupted {
        ctx.printer.out.set_failure("interrupted".into(), None);
        ExitCode::from(super::EXIT_INTERRUPTED)
    } else if report.failed() {
        ctx.failure(super::failed_phases(&report.phases))
    } else {
        ExitCode::SUCCESS
    })
}

/// Setup's options from its arguments (also `migrate`'s, for the destination).
pub(super) fn options(ctx: &Context, args: SetupArgs) -> SetupOptions {
    let phases = PHASES
        .into_iter()
        .filter(|p| args.only.is_empty() || args.only.contains(p))
        .filter(|p| !args.skip.contains(p))
        .collect();
    SetupOptions {
        playbook: args.service.playbook,
        root: args.service.root,
        gpu: args.service.gpu == GpuChoice::All,
        bind: args.service.bind,
        url: args.checks.url,
        manifest: args.checks.manifest,
        nodes: args.checks.nodes,
        jobs: args.jobs.into(),
        fetch: FetchOptions {
            connections: Connections::given(args.connections),
            piece_bytes: defaults::MODEL_PIECE_BYTES,
            retry: RetryPolicy::default(),
        },
        phases,
        generate: !args.no_generate,
        mode: ctx.step_mode(),
        models_from: None,
    }
}
