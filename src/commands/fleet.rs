//! `doctor` and `setup` over the inventory: the same operations as for one `--host`, run by
//! `fleet::run` on each selected host with a buffered, bar-less printer.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{bail, Result};

use super::Context;
use crate::cli::{DoctorArgs, SetupArgs};
use crate::doctor::{self, DoctorOptions};
use crate::fleet::{self, Counts, HostResult, HostState};
use crate::host::{self, Host};
use crate::inventory::Selected;
use crate::setup;
use crate::step::Replace;
use crate::ui::{Printer, UsageError, Verbosity};

/// A host's printer: no live bars or status lines (they would interleave with the other
/// hosts'); the host's report is printed as one block when it is done. Nor prompts: a file
/// that differs is refused (its step fails with the diff and a `--yes` hint), as off a terminal.
fn host_printer(ctx: &Context) -> Printer {
    Printer {
        verbosity: Verbosity::Quiet,
        json: false,
        progress_bars: false,
        ..ctx.printer.clone()
    }
}

/// The host's session, or its result as unreachable.
fn connect(ctx: &Context, sel: &Selected) -> Result<Box<dyn Host>, Box<HostResult>> {
    host::connect(&sel.entry.ssh, &ctx.ssh_options()).map_err(|e| {
        Box::new(HostResult::error(
            &sel.name,
            HostState::Unreachable,
            &e,
            &ctx.printer,
        ))
    })
}

/// Every host's block as it finishes, then the recap (or one JSON document); exit 1 if any
/// host failed.
fn finish(
    ctx: &Context,
    hosts: &[Selected],
    job: impl Fn(&Selected) -> HostResult + Sync,
) -> Result<ExitCode> {
    let json = ctx.printer.json;
    let results = fleet::run(hosts, ctx.global.forks.into(), job, |r| {
        if !json {
            ctx.printer.data(&fleet::block(r));
        }
    });
    if json {
        ctx.printer
            .emit_field("hosts", &results, |_| String::new())?;
    } else {
        ctx.printer.data(&fleet::recap(&results));
    }
    if !fleet::any_failed(&results) {
        return Ok(ExitCode::SUCCESS);
    }
    let failed: Vec<&str> = results
        .iter()
        .filter(|r| r.state != HostState::Ok)
        .map(|r| r.host.as_str())
        .collect();
    Ok(ctx.failure(format!("failed on {}", failed.join(", "))))
}

pub fn doctor(ctx: &Context, args: &DoctorArgs, hosts: &[Selected]) -> Result<ExitCode> {
    let needed_bytes = super::doctor::needed_bytes(args)?;
    finish(ctx, hosts, |sel| {
        let host = match connect(ctx, sel) {
            Ok(h) => h,
            Err(r) => return *r,
        };
        let opts = DoctorOptions {
            root: sel.entry.root.clone().unwrap_or_else(|| args.root.clone()),
            port: args.port,
            gpu_smoke: args.gpu_smoke.clone(),
            needed_bytes,
        };
        match doctor::run(host.as_ref(), &opts) {
            Ok(report) => {
                let counts = Counts {
                    ok: report
                        .checks
                        .iter()
                        .filter(|c| c.status != doctor::Status::Fail)
                        .count(),
                    failed: report
                        .checks
                        .iter()
                        .filter(|c| c.status == doctor::Status::Fail)
                        .count(),
                    ..Counts::default()
                };
                HostResult {
                    host: sel.name.clone(),
                    state: if report.failed() {
                        HostState::Failed
                    } else {
                        HostState::Ok
                    },
                    counts,
                    elapsed_ms: 0,
                    error: None,
                    text: doctor::render(&report, &host_printer(ctx)),
                    result: serde_json::to_value(&report).unwrap_or_default(),
                }
            }
            Err(e) => HostResult::error(&sel.name, HostState::Failed, &e, &ctx.printer),
        }
    })
}

pub fn setup(ctx: &Context, args: &SetupArgs, hosts: &[Selected]) -> Result<ExitCode> {
    if args.checks.url.is_some() && hosts.len() > 1 {
        bail!(UsageError(
            "`--url` names one ComfyUI; give each host its `url` in the inventory".into()
        ));
    }
    finish(ctx, hosts, |sel| {
        let host: Arc<dyn Host> = match connect(ctx, sel) {
            Ok(h) => Arc::from(h),
            Err(r) => return *r,
        };
        // The inventory's values for this host win over the command line's defaults.
        let mut args = args.clone();
        let e = &sel.entry;
        args.service.playbook = e.playbook.clone().or(args.service.playbook);
        args.service.root = e.root.clone().or(args.service.root);
        args.checks.url = e.url.clone().or(args.checks.url);
        let mut opts = super::setup::options(ctx, args);
        if opts.mode.replace == Replace::Ask {
            opts.mode.replace = Replace::Refuse;
        }
        match setup::setup(&host, &opts, &host_printer(ctx)) {
            Ok(report) => HostResult {
                host: sel.name.clone(),
                state: if report.failed() {
                    HostState::Failed
                } else {
                    HostState::Ok
                },
                counts: Counts::of(report.phases.iter().map(|p| p.outcome)),
                elapsed_ms: 0,
                error: None,
                text: setup::render(&report),
                result: serde_json::to_value(&report).unwrap_or_default(),
            },
            Err(e) => HostResult::error(&sel.name, HostState::Failed, &e, &ctx.printer),
        }
    })
}
