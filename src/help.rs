//! What `--help` shows beyond the options: each command's examples, and the global options
//! listed once, in `lifeos-spark --help`, instead of again under every command.

use clap::{Command, CommandFactory};

use crate::cli::Cli;

/// Ends every command's help: the global options are not repeated there.
const GLOBAL_POINTER: &str =
    "Global options (--host, --json, -v/-q, --no-progress, ...): see `lifeos-spark --help`.";

pub const TOP: &str = "\
Each command's own options and examples: `lifeos-spark <COMMAND> --help`.
Exit codes: 0 ok, 1 failed, 2 usage error, 130 interrupted (Ctrl-C).";

pub const DOCTOR: &str = "\
Examples:
  lifeos-spark doctor
  lifeos-spark doctor --host ubuntu@spark.local --json
  lifeos-spark doctor --inventory hosts.yaml --limit sparks";

pub const COMPOSE: &str = "\
Examples:
  lifeos-spark compose --host spark --dry-run
  lifeos-spark compose --host spark --playbook dgx-spark --bind 127.0.0.1 --yes";

pub const UP: &str = "\
Examples:
  lifeos-spark up --host spark
  lifeos-spark up --host spark --rebuild --dry-run";

pub const DOWN: &str = "\
Examples:
  lifeos-spark down --host spark
  lifeos-spark down --host spark --dry-run";

pub const STATUS: &str = "\
Examples:
  lifeos-spark status --host spark --host rtx
  lifeos-spark status --url http://10.0.0.5:8188 --json
  lifeos-spark status --inventory hosts.yaml --limit all";

pub const MODELS: &str = "\
Examples:
  lifeos-spark models list
  lifeos-spark models pull --host spark
  lifeos-spark models verify --host spark --only sdxl-base";

pub const MODELS_PULL: &str = "\
Examples:
  lifeos-spark models pull --host spark
  lifeos-spark models pull --dry-run --json
  lifeos-spark models pull --only sdxl-base,sdxl-vae --jobs 2 --connections 8";

pub const MODELS_VERIFY: &str = "\
Examples:
  lifeos-spark models verify --host spark
  lifeos-spark models verify --root /srv/comfyui --only clip-vit-h";

pub const MODELS_LIST: &str = "\
Examples:
  lifeos-spark models list
  lifeos-spark models list --host spark --json";

pub const NODES: &str = "\
Examples:
  lifeos-spark nodes install --host spark
  lifeos-spark nodes list --host spark
  lifeos-spark nodes verify --host spark";

pub const NODES_INSTALL: &str = "\
Examples:
  lifeos-spark nodes install --host spark --dry-run
  lifeos-spark nodes install --host spark --no-deps --playbook dgx-spark";

pub const NODES_LIST: &str = "\
Examples:
  lifeos-spark nodes list --host spark
  lifeos-spark nodes list --root /srv/comfyui --json";

pub const NODES_VERIFY: &str = "\
Examples:
  lifeos-spark nodes verify --host spark
  lifeos-spark nodes verify --url http://127.0.0.1:8188";

pub const WORKFLOWS: &str = "\
Examples:
  lifeos-spark workflows backup --host rtx --out rtx-workflows.tar.gz
  lifeos-spark workflows restore rtx-workflows.tar.gz --host spark
  lifeos-spark workflows transfer --from rtx --to spark";

pub const WORKFLOWS_BACKUP: &str = "\
Examples:
  lifeos-spark workflows backup --host rtx --out rtx-workflows.tar.gz
  lifeos-spark workflows backup --host rtx --dry-run";

pub const WORKFLOWS_RESTORE: &str = "\
Examples:
  lifeos-spark workflows restore rtx-workflows.tar.gz --host spark --dry-run
  lifeos-spark workflows restore rtx-workflows.tar.gz --host spark --force";

pub const WORKFLOWS_TRANSFER: &str = "\
Examples:
  lifeos-spark workflows transfer --from rtx --to spark --dry-run
  lifeos-spark workflows transfer --from rtx --to spark --to-root /srv/comfyui";

pub const CONNECTION_INFO: &str = "\
Examples:
  lifeos-spark connection-info --host spark
  lifeos-spark connection-info --host spark --address 10.0.0.5 --dry-run";

pub const ENV: &str = "\
Examples:
  lifeos-spark env --file ~/life-os/.env set COMFYUI_URL=http://10.0.0.5:8188
  lifeos-spark env --file ~/life-os/.env get COMFYUI_URL
  lifeos-spark env --file ~/life-os/.env show";

pub const ENV_SET: &str = "\
Examples:
  lifeos-spark env --file ~/life-os/.env set COMFYUI_URL=http://10.0.0.5:8188 --dry-run
  lifeos-spark env --file ~/life-os/.env set COMFYUI_ENABLED=true --create";

pub const ENV_GET: &str = "\
Examples:
  lifeos-spark env --file ~/life-os/.env get COMFYUI_URL
  lifeos-spark env --host rtx --file ~/life-os/.env get COMFYUI_URL --json";

pub const ENV_SHOW: &str = "\
Examples:
  lifeos-spark env --file ~/life-os/.env show
  lifeos-spark env --file ~/life-os/.env show --show-secrets";

pub const VERIFY: &str = "\
Examples:
  lifeos-spark verify --host spark
  lifeos-spark verify --host spark --generate";

pub const SETUP: &str = "\
Examples:
  lifeos-spark setup --host spark --dry-run
  lifeos-spark setup --host spark --yes
  lifeos-spark setup --host spark --only models,nodes
  lifeos-spark setup --inventory hosts.yaml --limit all --forks 2";

pub const MIGRATE: &str = "\
Examples:
  lifeos-spark migrate --from rtx --to spark --env-file ~/life-os/.env --dry-run
  lifeos-spark migrate --from rtx --to spark --env-file ~/life-os/.env --mode parallel
  lifeos-spark migrate --rollback --env-file ~/life-os/.env";

pub const INSPECT: &str = "\
Examples:
  lifeos-spark inspect --host rtx
  lifeos-spark inspect --host rtx --container comfyui --json";

pub const POOL: &str = "\
Examples:
  lifeos-spark pool --inventory hosts.yaml --dry-run
  lifeos-spark pool --limit all --out ~/life-os/comfyui_devices.yaml";

pub const COMPLETIONS: &str = "\
Examples:
  lifeos-spark completions bash > ~/.local/share/bash-completion/completions/lifeos-spark
  lifeos-spark completions zsh > ~/.zfunc/_lifeos-spark";

pub const MAN: &str = "\
Examples:
  lifeos-spark man > ~/.local/share/man/man1/lifeos-spark.1";

/// The CLI as `--help` shows it: the global options under `lifeos-spark --help` only (still
/// accepted after every command), every command's help ending on where to find them.
/// Completions and the man page use `Cli::command()`, which lists them everywhere.
pub fn command() -> Command {
    let mut cmd = Cli::command();
    // Building copies the global options into every subcommand; only then can they be hidden there.
    cmd.build();
    cmd.mut_subcommands(hide_globals)
}

fn hide_globals(cmd: Command) -> Command {
    let after = match cmd.get_after_help() {
        Some(text) => format!("{text}\n\n{GLOBAL_POINTER}"),
        None => GLOBAL_POINTER.to_string(),
    };
    cmd.mut_args(|a| if a.is_global_set() { a.hide(true) } else { a })
        .after_help(after)
        .mut_subcommands(hide_globals)
}
