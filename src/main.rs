use std::process::ExitCode;

use lifeos_spark::cli::Cli;
use lifeos_spark::ui::UsageError;

/// Exit codes (documented in the README): 0 ok, 1 failure, 2 usage error, 130 interrupted.
const EXIT_USAGE: u8 = 2;

fn main() -> ExitCode {
    // clap prints its own usage errors and exits with 2.
    let cli = Cli::parse_args();
    if let Err(e) = lifeos_spark::interrupt::watch() {
        eprintln!("warning: Ctrl-C will end the run without exit code 130: {e:#}");
    }
    let (printer, result) = lifeos_spark::commands::run(cli);
    match result {
        Ok(code) => code,
        Err(err) => {
            printer.print_error(&err);
            if err.downcast_ref::<UsageError>().is_some() {
                ExitCode::from(EXIT_USAGE)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}
