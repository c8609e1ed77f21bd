use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches};

use lifeos_spark::cli::Cli;
use lifeos_spark::ui::UsageError;

/// Exit codes (documented in the README): 0 ok, 1 failure, 2 usage error, 130 interrupted.
const EXIT_USAGE: u8 = 2;

fn main() -> ExitCode {
    // clap prints its own usage errors and exits with 2.
    let matches = Cli::command().get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    let command = lifeos_spark::envelope::command_path(&matches);
    let (printer, result) = lifeos_spark::commands::run(cli);
    printer.finish(&command, &result);
    match result {
        Ok(code) => code,
        Err(err) if err.downcast_ref::<UsageError>().is_some() => ExitCode::from(EXIT_USAGE),
        Err(_) => ExitCode::FAILURE,
    }
}
