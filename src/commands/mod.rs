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

/// 128 + SIGINT, as shells report an interrupted command (`models pull`, `setup`).
const EXIT_INTERRUPTED: u8 = 130;

/// Exit status of a run of steps: a plan whose changes a real run would not reach (a step
/// `blocked`) fails.
fn steps_exit(reports: &[crate::step::StepReport]) -> ExitCode {
    match (reports.iter()).any(|r| r.outcome == crate::step::Outcome::Blocked) {
        true => ExitCode::FAILURE,
        false => ExitCode::SUCCESS,
    }
}

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
        Context {
            printer: Printer::new(verbosity, global.json, global.no_progress),
            global,
        }
    }

    /// The one host this command acts on (several `--host` are for `status` only).
    pub fn host(&self) -> Result<Box<dyn Host>> {
        let [target] = self.global.hosts.as_slice() else {
            bail!(UsageError(
                "this command acts on one host; give `--host` once".to_string()
            ));
        };
        self.printer.debug(format!("connecting to `{target}`"));
        host::connect(target, &self.ssh_options())
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

    /// Step reports as a table, or `{"host", "dry_run", "steps"}` with `--json`.
    pub fn print_steps(&self, host: &str, reports: &[crate::step::StepReport]) -> Result<()> {
        let doc =
            serde_json::json!({ "host": host, "dry_run": self.global.dry_run, "steps": reports });
        self.printer
            .emit(&doc, |_| crate::step::render(reports, &self.printer))
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

pub fn run(cli: Cli) -> (Printer, Result<ExitCode>) {
    let ctx = Context::new(cli.global);
    let result = match cli.command {
        CommandName::Doctor(args) => doctor::run(&ctx, args),
        CommandName::Env(args) => env::run(&ctx, args),
        CommandName::ConnectionInfo(args) => connection_info::run(&ctx, args),
        CommandName::Workflows(args) => workflows::run(&ctx, args),
        CommandName::Compose(args) => service::compose(&ctx, args),
        CommandName::Up(args) => service::up(&ctx, args),
        CommandName::Down(args) => service::down(&ctx, args),
        CommandName::Status(args) => service::status(&ctx, args),
        CommandName::Nodes(cmd) => nodes::run(&ctx, cmd),
        CommandName::Models(args) => models::run(&ctx, args),
        CommandName::Setup(args) => setup::run(&ctx, args),
        CommandName::Verify(args) => setup::verify(&ctx, args),
        CommandName::Migrate(args) => migrate::run(&ctx, *args),
        CommandName::Inspect(args) => inspect::run(&ctx, args),
        CommandName::Pool(args) => pool::run(&ctx, args),
        CommandName::Completions(args) => docs::completions(&ctx, args),
        CommandName::Man => docs::man(&ctx),
    };
    (ctx.printer, result)
}
