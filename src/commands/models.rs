use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Result;

use super::Context;
use crate::cli::{ModelSetArgs, ModelsArgs, ModelsCommand};
use crate::defaults;
use crate::host::Host;
use crate::models::fetch::{FetchOptions, RetryPolicy};
use crate::models::hub::Hub;
use crate::models::manifest::Manifest;
use crate::models::ops::{self, PullOptions, Target};
use crate::models::report;

pub fn run(ctx: &Context, args: ModelsArgs) -> Result<ExitCode> {
    match args.command {
        ModelsCommand::Pull(a) => {
            let (target, manifest) = open(ctx, &a.set)?;
            let opts = PullOptions {
                only: a.set.only,
                jobs: a.jobs.into(),
                fetch: FetchOptions {
                    connections: a.connections.into(),
                    piece_bytes: defaults::MODEL_PIECE_BYTES,
                    retry: RetryPolicy::default(),
                },
                dry_run: ctx.global.dry_run,
                hub: Hub::from_env()?,
                from: None,
            };
            let report = ops::pull(&target, &manifest, &opts, &ctx.printer)?;
            output(ctx, &report, report::render_pull)?;
            for failure in report.files.iter().filter_map(|f| f.failure.as_ref()) {
                ctx.printer.print_error(failure);
            }
            if report.interrupted {
                ctx.printer
                    .warn(report.interrupted_note("the same command"));
                return Ok(ExitCode::from(super::EXIT_INTERRUPTED));
            }
            Ok(exit(!report.failed()))
        }
        ModelsCommand::Verify(a) => {
            let (target, manifest) = open(ctx, &a.set)?;
            let report = ops::verify(&target, &manifest, &a.set.only, a.jobs.into(), &ctx.printer)?;
            output(ctx, &report, report::render_verify)?;
            Ok(exit(report.ok))
        }
        ModelsCommand::List(a) => {
            let (target, manifest) = open(ctx, &a)?;
            let report = ops::list(&target, &manifest, &a.only)?;
            output(ctx, &report, report::render_list)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn open(ctx: &Context, set: &ModelSetArgs) -> Result<(Target, Manifest)> {
    let mut manifest = Manifest::load(set.manifest.as_deref(), set.allow_unverified)?;
    // `list` shows, and `verify` reports, the URLs a pull would use.
    let hub = Hub::from_env()?;
    for m in &mut manifest.models {
        m.url = hub.rewrite(&m.url);
    }
    let host: Arc<dyn Host> = Arc::from(ctx.host()?);
    let target = Target {
        host,
        root: set.root.clone(),
    };
    Ok((target, manifest))
}

fn output<T: serde::Serialize>(ctx: &Context, report: &T, render: fn(&T) -> String) -> Result<()> {
    ctx.printer.emit(report, render)
}

fn exit(ok: bool) -> ExitCode {
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
