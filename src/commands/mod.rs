//! Thin wiring from parsed arguments to operations (cargo's `commands` over `ops`).

mod connection_info;
mod docs;
mod doctor;
mod env;
mod fleet;
mod inspect;
mod migrate;
mod models;
mod nodes;
mod pool;
mod service;
mod setup;
mod workflows;

use std::process::ExitCode;

use anyhow::{bail, Result};

use crate::cli::{Cli, CommandName, GlobalArgs};
use crate::host::{self, Host, SshOptions};
use crate::inventory::{self, Selected};
use crate::ui::{Printer, UsageError, Verbosity};

/// What `models pull` and `setup` return after saving what a Ctrl-C interrupted; every other
/// command is ended with it by `crate::interrupt`.
const EXIT_INTERRUPTED: u8 = crate::interrupt::EXIT_INTERRUPTED;

/// What every command gets: how to print, and where to act.
pub struct Context {
    pub printer: Printer,
    pub global: GlobalArgs,
}

impl Context {
    pub fn new(global: GlobalArgs) -> Context {
        let verbosity = match (global.quiet, global.verbose) {
            (true, _) => Verbosity::Quiet,
            (_, true) => Verbosity::Verbose,
            _ => Verbosity::Normal,
        };
        crate::lock::set_no_wait(global.no_wait);
        crate::trace::set(verbosity == Verbosity::Verbose);
        let printer = Printer::new(verbosity, global.json, global.no_progress);
        printer.out.set_dry_run(global.dry_run);
        Context { printer, global }
    }

    /// The one host this command acts on (several `--host` are for `status` only).
    pub fn host(&self) -> Result<Box<dyn Host>> {
        let [target] = self.global.hosts.as_slice() else {
            bail!(UsageError(
                "this command acts on one host; give `--host` once".to_string()
            ));
        };
        self.printer.debug(format!("connecting to `{target}`"));
        let host = host::connect(target, &self.ssh_options())?;
        self.printer.out.set_host(host.name());
        Ok(host)
    }

    /// How steps may act: `--dry-run` checks only; `--yes` replaces files without asking.
    pub fn step_mode(&self) -> crate::step::Mode {
        crate::step::Mode {
            dry_run: self.global.dry_run,
            replace: if self.global.yes {
                crate::step::Replace::Yes
            } else {
                crate::step::Replace::Ask
            },
        }
    }

    /// Step reports as a table, or the document's `steps` with `--json`.
    pub fn print_steps(&self, reports: &[crate::step::StepReport]) -> Result<()> {
        self.printer.emit_field("steps", reports, |reports| {
            crate::step::render(reports, &self.printer)
        })
    }

    /// A failing exit code, and the `error` of the `--json` document that says why (the report
    /// itself was printed already).
    pub fn failure(&self, message: String) -> ExitCode {
        self.printer.out.set_failure(message, None);
        ExitCode::FAILURE
    }

    /// A run of steps fails when a plan has a blocked step (a real run stops on a failure).
    pub fn steps_exit(&self, reports: &[crate::step::StepReport]) -> ExitCode {
        let blocked: Vec<&str> = (reports.iter())
            .filter(|r| r.outcome == crate::step::Outcome::Blocked)
            .map(|r| r.name.as_str())
            .collect();
        match blocked.is_empty() {
            true => ExitCode::SUCCESS,
            false => self.failure(format!("blocked: {}", blocked.join(", "))),
        }
    }

    /// A host named by a command's own option (`--from`, `--to`), not `--host`.
    pub fn connect(&self, target: &str) -> Result<Box<dyn Host>> {
        self.printer.debug(format!("connecting to `{target}`"));
        host::connect(target, &self.ssh_options())
    }

    /// The inventory's hosts `--limit` selects, when this run is over the inventory: with
    /// `--inventory` or `--limit`, or always when `required` (`pool`).
    pub fn inventory_hosts(&self, required: bool) -> Result<Option<Vec<Selected>>> {
        let g = &self.global;
        if !(required || g.inventory.is_some() || !g.limit.is_empty()) {
            return Ok(None);
        }
        if g.hosts.as_slice() != ["local"] {
            bail!(UsageError(
                "`--host` and `--inventory`/`--limit` both name hosts; give one of them".into()
            ));
        }
        let Some(path) = inventory::resolve(g.inventory.as_deref(), true)? else {
            return Ok(None);
        };
        let inv = inventory::Inventory::load(&path)?;
        let hosts = inv.select(&g.limit)?;
        self.printer.debug(format!(
            "{} host(s) of `{}`, {} at once",
            hosts.len(),
            path.display(),
            g.forks
        ));
        Ok(Some(hosts))
    }

    pub fn ssh_options(&self) -> SshOptions {
        SshOptions {
            accept_new_host_key: self.global.accept_new_host_key,
            home: None,
        }
    }
}

/// Which phases failed and why, for the `--json` document's `error`.
fn failed_phases<P: serde::Serialize>(phases: &[crate::phase::PhaseReport<P>]) -> String {
    let failed: Vec<String> = phases
        .iter()
        .filter(|p| p.outcome == crate::step::Outcome::Failed)
        .map(|p| {
            let name = serde_json::to_value(&p.phase).unwrap_or_default();
            format!("{}: {}", name.as_str().unwrap_or("?"), p.detail)
        })
        .collect();
    format!("failed phases: {}", failed.join("; "))
}

/// Run the command `command` (its subcommand path, for the `--json` document).
pub fn run(cli: Cli, command: &str) -> (Printer, Result<ExitCode>) {
    let ctx = Context::new(cli.global);
    // A run that a signal ends (`crate::interrupt`) still prints its one `--json` document.
    let (printer, command) = (ctx.printer.clone(), command.to_string());
    crate::interrupt::on_interrupt(move || {
        printer.out.set_failure("interrupted".into(), None);
        printer.finish(&command, &Ok(ExitCode::from(EXIT_INTERRUPTED)));
    });
    let result = match cli.command {
        CommandName::Doctor(args) => doctor::run(&ctx, args),
        CommandName::Env(args) => env::run(&ctx, args),
        CommandName::ConnectionInfo(args) => connection_info::run(&ctx, args),
        CommandName::Workflows(args) => workflows::run(&ctx, args),
        CommandName::Compose(args) => service::compose(&ctx, args.service),
        CommandName::Up(args) => service::up(&ctx, args),
        CommandName::Down(args) => service::down(&ctx, args.service),
        CommandName::Status(args) => service::status(&ctx, args),
        CommandName::Nodes(cmd) => nodes::run(&ctx, cmd),
        CommandName::Models(args) => models::run(&ctx, args),
        CommandName::Setup(args) => setup::run(&ctx, args.setup),
        CommandName::Verify(args) => setup::verify(&ctx, args),
        CommandName::Migrate(args) => migrate::run(&ctx, *args),
        CommandName::Inspect(args) => inspect::run(&ctx, args),
        CommandName::Pool(args) => pool::run(&ctx, args),
        CommandName::Completions(args) => docs::completions(&ctx, args),
        CommandName::Man => docs::man(&ctx),
    };
    (ctx.printer, result)
}
