//! `completions` and `man`: generated from the clap definition, so they never drift from it.

use std::process::ExitCode;

use anyhow::{Context as _, Result};
use clap::CommandFactory;

use super::Context;
use crate::cli::{Cli, CompletionsArgs};

pub fn completions(ctx: &Context, args: CompletionsArgs) -> Result<ExitCode> {
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut Cli::command(), "lifeos-spark", &mut script);
    ctx.printer.data(&String::from_utf8(script)?);
    Ok(ExitCode::SUCCESS)
}

pub fn man(ctx: &Context) -> Result<ExitCode> {
    let mut page = Vec::new();
    clap_mangen::Man::new(Cli::command())
        .render(&mut page)
        .context("cannot render the man page")?;
    ctx.printer.data(&String::from_utf8(page)?);
    Ok(ExitCode::SUCCESS)
}
