use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Result;

use super::Context;
use crate::cli::{GpuChoice, SetupArgs};
use crate::defaults;
use crate::host::Host;
use crate::models::fetch::{FetchOptions, RetryPolicy};
use crate::setup::{self, SetupOptions, PHASES};

pub fn run(ctx: &Context, args: SetupArgs) -> Result<ExitCode> {
    let host: Arc<dyn Host> = Arc::from(ctx.host()?);
    let opts = options(ctx, args);
    let report = setup::setup(&host, &opts, &ctx.printer)?;
    ctx.printer.emit(&report, setup::render)?;
    Ok(if report.interrupted {
        ExitCode::from(super::EXIT_INTERRUPTED)
    } else if report.failed() {
        ExitCode::FAILURE
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
        url: args.url,
        manifest: args.manifest,
        nodes: args.nodes,
        jobs: args.jobs.into(),
        fetch: FetchOptions {
            connections: args.connections.into(),
            piece_bytes: defaults::MODEL_PIECE_BYTES,
            retry: RetryPolicy::default(),
        },
        phases,
        mode: ctx.step_mode(),
        models_from: None,
    }
}
