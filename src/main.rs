use std::process::ExitCode;

use lifeos_spark::cli::Cli;
use lifeos_spark::envelope;
use lifeos_spark::ui::UsageError;

/// Exit codes (documented in the README): 0 ok, 1 failure, 2 usage error, 130 interrupted.
const EXIT_USAGE: u8 = 2;

fn main() -> ExitCode {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    // clap prints its own usage errors and exits with 2 (with `--json`, after the document).
    let (cli, command) = match Cli::try_parse_with_matches(args.iter().cloned()) {
        Ok((cli, matches)) => (cli, envelope::command_path(&matches)),
        Err(e) => {
            let words: Vec<String> = (args.iter())
                .map(|a| a.to_string_lossy().into_owned())
                .collect();
            if let Some(doc) = envelope::usage_error(&words, &e) {
                println!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
            }
            e.exit()
        }
    };
    if let Err(e) = lifeos_spark::interrupt::watch() {
        eprintln!("warning: Ctrl-C will end the run without exit code 130: {e:#}");
    }
    let (printer, result) = lifeos_spark::commands::run(cli, &command);
    printer.finish(&command, &result);
    match result {
        Ok(code) => code,
        Err(err) if err.downcast_ref::<UsageError>().is_some() => ExitCode::from(EXIT_USAGE),
        Err(_) => ExitCode::FAILURE,
    }
}
