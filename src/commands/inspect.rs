use std::process::ExitCode;

use anyhow::Result;

use super::Context;
use crate::cli::InspectArgs;
use crate::source::{self, Hints};

pub fn run(ctx: &Context, args: InspectArgs) -> Result<ExitCode> {
    let host = ctx.host()?;
    let hints = Hints {
        root: args.root,
        container: args.container,
        tool_root: Some(crate::defaults::ROOT.to_string()),
    };
    let layout = source::discover(host.as_ref(), &hints)?;
    ctx.printer.emit(&layout, source::render)?;
    Ok(ExitCode::SUCCESS)
}
