use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Result;

use super::Context;
use crate::cli::{ModelSetArgs, ModelsArgs, ModelsCommand};
use crate::defaults;
use crate::host::Host;
use crate::models::fetch::{Connections, FetchOptions, RetryPolicy};
use crate::models::hub::Hub;
use crate::models::manifest::Manifest;
use crate::models::ops::{self, PullOptions, Target};
use crate::models::report;
use crate::units;

pub fn run(ctx: &Context, args: ModelsArgs) -> Result<ExitCode> {
    match args.command {
        ModelsCommand::Pull(a) => {
            let (target, manifest) = open(ctx, &a.set)?;
            let opts = PullOptions {
                only: a.set.only,
                jobs: a.jobs.into(),
                fetch: FetchOptions {
                    connections: Connections::given(a.connections),
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
                let note = report.interrupted_note("the same command");
                ctx.printer.warn(&note);
                ctx.printer.out.set_failure(note, None);
                return Ok(ExitCode::from(super::EXIT_INTERRUPTED));
            }
            let failed = report
                .files
                .iter()
                .filter(|f| f.status == report::PullStatus::Failed)
                .count();
            Ok(exit(ctx, !report.failed(), || {
                format!(
                    "{failed} of {} failed",
                    units::count(report.files.len(), "file")
                )
            }))
        }
        ModelsCommand::Verify(a) => {
            let (target, manifest) = open(ctx, &a.set)?;
            let report = ops::verify(&target, &manifest, &a.set.only, a.jobs.into(), &ctx.printer)?;
            output(ctx, &report, report::render_verify)?;
            let bad = report.files.iter().filter(|f| !f.status.is_ok()).count();
            Ok(exit(ctx, report.ok, || {
                let verb = if bad == 1 { "does" } else { "do" };
                format!(
                    "{bad} of {} {verb} not match the manifest",
                    units::count(report.files.len(), "file")
                )
            }))
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

fn exit(ctx: &Context, ok: bool, why: impl FnOnce() -> String) -> ExitCode {
    match ok {
        true => ExitCode::SUCCESS,
        false => ctx.failure(why()),
    }
}
