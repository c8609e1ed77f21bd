//! `completions` and `man`: generated from the clap definition, so they never drift from it.

use std::process::ExitCode;

use anyhow::{Context as _, Result};
use clap::CommandFactory;

use super::Context;
use crate::cli::{Cli, CompletionsArgs};

pub fn completions(ctx: &Context, args: CompletionsArgs) -> Result<ExitCode> {
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut Cli::command(), "lifeos-spark", &mut script);
    let script = String::from_utf8(script)?;
    ctx.printer.emit_field("script", &script, String::clone)?;
    Ok(ExitCode::SUCCESS)
}

pub fn man(ctx: &Context) -> Result<ExitCode> {
    let mut page = Vec::new();
    clap_mangen::Man::new(Cli::command())
        .render(&mut page)
        .context("cannot render the man page")?;
    let page = String::from_utf8(page)?;
    ctx.printer.emit_field("page", &page, String::clone)?;
    Ok(ExitCode::SUCCESS)
}
