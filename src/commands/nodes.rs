use std::process::ExitCode;

use anyhow::Result;

use super::service::{deployment, url_for, Pick};
use super::Context;
use crate::cli::NodesCommand;
use crate::nodes::{self, manifest::NodeList, InstallOptions};

pub fn run(ctx: &Context, cmd: NodesCommand) -> Result<ExitCode> {
    let host = ctx.host()?;
    match cmd {
        NodesCommand::Install(args) => {
            let d = deployment(ctx, host.as_ref(), &args.common.service, Pick::Default)?;
            let list = NodeList::load(args.common.nodes.as_deref())?;
            let url = url_for(&d, args.common.url)?;
            let opts = InstallOptions {
                force: args.force,
                no_deps: args.no_deps,
            };
            let reports = nodes::install(&d, &list, &url, opts, ctx.step_mode(), &ctx.printer)?;
            ctx.print_steps(host.name(), &reports)?;
            Ok(super::steps_exit(&reports))
        }
        NodesCommand::List(args) => {
            let d = deployment(ctx, host.as_ref(), &args.service, Pick::Default)?;
            let rows = nodes::list(&d, &NodeList::load(args.nodes.as_deref())?)?;
            ctx.printer.emit(&rows, |rows| render_list(rows))?;
            Ok(ExitCode::SUCCESS)
        }
        NodesCommand::Verify(args) => {
            let d = deployment(ctx, host.as_ref(), &args.service, Pick::Default)?;
            let url = url_for(&d, args.url)?;
            let proofs = nodes::verify(&d, &NodeList::load(args.nodes.as_deref())?, &url)?;
            ctx.printer.emit(&proofs, |proofs| render_verify(proofs))?;
            Ok(if proofs.iter().all(|p| p.loaded) {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
    }
}

fn render_list(rows: &[nodes::NodeStatus]) -> String {
    let short = |s: &str| s[..s.len().min(12)].to_string();
    rows.iter()
        .map(|r| {
            let actual = r.actual.as_deref().map_or("not cloned".to_string(), short);
            let state = match (&r.actual, r.dirty) {
                (None, _) => "",
                (Some(a), _) if *a != r.pinned => "  MOVED",
                _ => "",
            };
            let dirty = if r.dirty { "  local changes" } else { "" };
            let reqs = match r.requirements_satisfied {
                Some(true) => "requirements ok",
                Some(false) => "requirements missing",
                None => "requirements unknown (ComfyUI not running)",
            };
            format!(
                "{:28} pinned {}  actual {actual}{state}{dirty}  {reqs}\n",
                r.id,
                short(&r.pinned)
            )
        })
        .collect()
}

fn render_verify(proofs: &[nodes::NodeProof]) -> String {
    let mut out = String::new();
    for p in proofs {
        if p.loaded {
            out += &format!("ok      {}: {}\n", p.id, p.found.join(", "));
        } else {
            out += &format!(
                "MISSING {}: {} not in /object_info\n",
                p.id,
                p.missing.join(", ")
            );
            for line in &p.log {
                out += &format!("        {line}\n");
            }
        }
    }
    out
}
