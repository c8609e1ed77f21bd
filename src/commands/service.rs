use std::process::ExitCode;

use anyhow::{bail, Result};

use super::Context;
use crate::cli::{GpuChoice, ServiceArgs, StatusArgs, UpArgs};
use crate::gpu;
use crate::host::Host;
use crate::inventory::Selected;
use crate::playbook::Playbook;
use crate::service::{self, Deployment};
use crate::status::HostStatus;
use crate::ui::UsageError;

/// Which playbook a command uses when none is named.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Pick {
    /// The one for the host's GPU (the image, its pip rules): `compose`, `up`.
    ByGpu,
    /// The default: the command needs no GPU (`nodes`, `down`), so it asks no `nvidia-smi`.
    Default,
}

/// The named playbook, or the one `pick` says.
fn playbook_for(host: &dyn Host, args: &ServiceArgs, pick: Pick) -> Result<Playbook> {
    let gpu = args.gpu == GpuChoice::All;
    match (&args.playbook, pick) {
        (Some(name), _) => Playbook::load(name),
        (None, Pick::Default) => Playbook::named_or_default(None),
        (None, Pick::ByGpu) => Playbook::choose(None, gpu::profile_of(&gpu::gpus(host)?), gpu),
    }
}

pub(super) fn deployment<'a>(
    ctx: &Context,
    host: &'a dyn Host,
    args: &ServiceArgs,
    pick: Pick,
) -> Result<Deployment<'a>> {
    let playbook = playbook_for(host, args, pick)?;
    ctx.printer.debug(format!("playbook `{}`", playbook.name));
    Deployment::new(
        host,
        playbook,
        args.root.as_deref(),
        args.gpu == GpuChoice::All,
        args.bind,
    )
}

fn warn_if_exposed(ctx: &Context, d: &Deployment) {
    let bind = crate::compose::bind_address(&d.playbook, &d.opts);
    if !bind.is_loopback() {
        ctx.printer.warn(format!(
            "ComfyUI will listen on {bind}:{} without authentication: anyone who reaches it can run graphs (`--bind 127.0.0.1` keeps it local)",
            d.playbook.port
        ));
    }
}

pub fn compose(ctx: &Context, args: ServiceArgs) -> Result<ExitCode> {
    let host = ctx.host()?;
    let d = deployment(ctx, host.as_ref(), &args, Pick::ByGpu)?;
    warn_if_exposed(ctx, &d);
    // Rendering and the diff need no daemon; Compose validates when the host has it.
    let docker = crate::docker::probe(host.as_ref())?;
    let reports = d.write_files(Some(&docker), ctx.step_mode(), &ctx.printer)?;
    ctx.print_steps(host.name(), &reports)?;
    Ok(ExitCode::SUCCESS)
}

/// `--url`, or the address of the host with the playbook's port.
pub(super) fn url_for(d: &Deployment, url: Option<String>) -> Result<String> {
    match url {
        Some(u) => Ok(u),
        None => service::default_url(d.host.name(), d.playbook.port, None),
    }
}

pub fn up(ctx: &Context, args: UpArgs) -> Result<ExitCode> {
    let host = ctx.host()?;
    let d = deployment(ctx, host.as_ref(), &args.service, Pick::ByGpu)?;
    warn_if_exposed(ctx, &d);
    let url = url_for(&d, args.url)?;
    let reports = d.up(&url, args.rebuild, ctx.step_mode(), &ctx.printer)?;
    ctx.print_steps(host.name(), &reports)?;
    Ok(super::steps_exit(&reports))
}

pub fn down(ctx: &Context, args: ServiceArgs) -> Result<ExitCode> {
    let host = ctx.host()?;
    // Stopping needs only the root and the Compose project, which every playbook shares.
    let d = deployment(ctx, host.as_ref(), &args, Pick::Default)?;
    let reports = d.down(ctx.step_mode())?;
    ctx.print_steps(host.name(), &reports)?;
    Ok(ExitCode::SUCCESS)
}

/// No SSH session is needed: only the hosts' addresses, and HTTP.
pub fn status(ctx: &Context, args: StatusArgs) -> Result<ExitCode> {
    let hosts = &ctx.global.hosts;
    let mut rows = match ctx.inventory_hosts(false)? {
        Some(selected) => {
            if args.url.is_some() {
                bail!(UsageError(
                    "`--url` names one ComfyUI; the inventory gives each host's `url`".into()
                ));
            }
            query_inventory(&selected, args.port)?
        }
        None => {
            if args.url.is_some() && hosts.len() > 1 {
                bail!(UsageError(
                    "`--url` names one ComfyUI; give `--host` once with it".into()
                ));
            }
            let mut targets = Vec::new();
            for h in hosts {
                let url = match &args.url {
                    Some(u) => u.clone(),
                    None => service::default_url(h, args.port, None)?,
                };
                targets.push((h.clone(), url));
            }
            crate::status::query_all(targets)
        }
    };
    crate::status::mark_next(&mut rows);
    ctx.printer
        .emit(&rows, |rows| crate::status::render(rows))?;
    for err in crate::status::errors(&rows) {
        ctx.printer.print_error(&err);
    }
    Ok(if rows.iter().all(|r| r.reachable) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Each selected host's ComfyUI: its `url`, or its SSH target's address and `port`.
pub(super) fn query_inventory(hosts: &[Selected], port: u16) -> Result<Vec<HostStatus>> {
    let mut targets = Vec::new();
    for sel in hosts {
        let url = match &sel.entry.url {
            Some(u) => u.clone(),
            None => service::default_url(&sel.entry.ssh, port, None)?,
        };
        targets.push((sel.name.clone(), url));
    }
    let mut rows = crate::status::query_all(targets);
    for (row, sel) in rows.iter_mut().zip(hosts) {
        row.priority = Some(sel.entry.priority());
    }
    Ok(rows)
}
