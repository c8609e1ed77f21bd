use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches};

use lifeos_spark::cli::Cli;
use lifeos_spark::envelope;
use lifeos_spark::ui::UsageError;

/// Exit codes (documented in the README): 0 ok, 1 failure, 2 usage error, 130 interrupted.
const EXIT_USAGE: u8 = 2;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    // clap prints its own usage errors and exits with 2 (with `--json`, after the document).
    let matches = Cli::command()
        .try_get_matches_from(&args)
        .and_then(|m| Cli::from_arg_matches(&m).map(|cli| (m, cli)));
    let (matches, cli) = matches.unwrap_or_else(|e| {
        if let Some(doc) = envelope::usage_error(&args, &e) {
            println!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
        }
        e.exit()
    });
    let command = envelope::command_path(&matches);
    let (printer, result) = lifeos_spark::commands::run(cli);
    printer.finish(&command, &result);
    match result {
        Ok(code) => code,
        Err(err) if err.downcast_ref::<UsageError>().is_some() => ExitCode::from(EXIT_USAGE),
        Err(_) => ExitCode::FAILURE,
    }
}
