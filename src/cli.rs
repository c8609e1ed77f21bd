//! The command line: parsing only. `commands/*` wire these values to operations.

use clap::{Args, FromArgMatches, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "lifeos-spark",
    version,
    about = "Take a DGX Spark or an RTX Linux PC to a working ComfyUI server for Life-OS",
    propagate_version = true,
    after_help = crate::help::TOP
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,

    #[command(subcommand)]
    pub command: CommandName,
}

/// The options every command takes (`lifeos-spark --help` lists them once), and, filled after
/// parsing from the command's own options (`Cli::try_parse_args`), the ones only some commands take:
/// the rest of the code reads them all here.
#[derive(Debug, Args)]
#[command(next_help_heading = "Global options")]
pub struct GlobalArgs {
    /// Machine to act on: `local`, `[user@]host[:port]` or a ~/.ssh/config alias [default: local]
    #[arg(
        long = "host",
        global = true,
        value_name = "TARGET",
        value_parser = crate::arg_values::host_target
    )]
    pub hosts: Vec<String>,

    /// Print one JSON document on stdout instead of tables
    #[arg(long, global = true)]
    pub json: bool,

    /// Only errors and actionable warnings on stderr
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,

    /// Show what is done and why: each remote command and HTTP request too (never a secret)
    #[arg(short, long, global = true)]
    pub verbose: bool,

    /// No progress bars (one line per file instead)
    #[arg(long, global = true)]
    pub no_progress: bool,

    /// Record an unknown SSH host key in known_hosts instead of refusing (never a changed one)
    #[arg(long, global = true)]
    pub accept_new_host_key: bool,

    /// `--dry-run` of the commands that change a host (`PlanArgs`, `DryRunArgs`).
    #[arg(skip)]
    pub dry_run: bool,

    /// `--yes` of the commands that may replace a file (`PlanArgs`).
    #[arg(skip)]
    pub yes: bool,

    /// `--no-wait` of the commands that take the deployment root's lock (`LockArgs`).
    #[arg(skip)]
    pub no_wait: bool,

    /// `--inventory` of `doctor`, `setup`, `status`, `pool` (`InventoryArgs`).
    #[arg(skip)]
    pub inventory: Option<std::path::PathBuf>,

    /// `--limit` of the same commands (`InventoryArgs`).
    #[arg(skip)]
    pub limit: Vec<String>,

    /// `--forks` of `doctor` and `setup` (`FleetArgs`).
    #[arg(skip = crate::defaults::FORKS)]
    pub forks: u16,
}

/// For commands that change a host and may replace a file that differs.
#[derive(Debug, Clone, Default, Args)]
pub struct PlanArgs {
    /// Run the read-only checks and print the plan; change nothing
    #[arg(long)]
    pub dry_run: bool,

    /// Never prompt; replace files that differ (the old one is kept as a backup)
    #[arg(short = 'y', long)]
    pub yes: bool,
}

/// For commands that change a host without prompting.
#[derive(Debug, Clone, Default, Args)]
pub struct DryRunArgs {
    /// Run the read-only checks and print the plan; change nothing
    #[arg(long)]
    pub dry_run: bool,
}

/// For commands that take the deployment root's lock.
#[derive(Debug, Clone, Default, Args)]
pub struct LockArgs {
    /// Fail at once when another run holds the deployment root's lock, instead of waiting
    #[arg(long)]
    pub no_wait: bool,
}

/// For commands that can run over the inventory's hosts.
#[derive(Debug, Clone, Default, Args)]
pub struct InventoryArgs {
    /// Inventory of hosts [default with `--limit`, or for `pool`: ~/.config/lifeos-spark/inventory.yaml]
    #[arg(long, value_name = "PATH")]
    pub inventory: Option<std::path::PathBuf>,

    /// Only these hosts or groups of the inventory (comma-separated; `all`: every host)
    #[arg(long, value_name = "NAME|GROUP,...", value_delimiter = ',')]
    pub limit: Vec<String>,
}

/// For commands that run on the inventory's hosts in parallel.
#[derive(Debug, Clone, Args)]
pub struct FleetArgs {
    #[command(flatten)]
    pub inventory: InventoryArgs,

    /// Inventory hosts run at once
    #[arg(long, default_value_t = crate::defaults::FORKS, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub forks: u16,
}

#[derive(Debug, Subcommand)]
pub enum CommandName {
    /// Check GPU, driver, Docker, Compose, NVIDIA runtime, disk and port
    #[command(after_help = crate::help::DOCTOR)]
    Doctor(DoctorArgs),
    /// Write the Dockerfile and docker-compose.yml for the host's profile
    #[command(after_help = crate::help::COMPOSE)]
    Compose(ChangeArgs),
    /// Build and start ComfyUI, then wait until it answers
    #[command(after_help = crate::help::UP)]
    Up(UpArgs),
    /// Stop ComfyUI (models and data stay)
    #[command(after_help = crate::help::DOWN)]
    Down(ChangeArgs),
    /// ComfyUI's version, device, memory and queue on each host
    #[command(after_help = crate::help::STATUS)]
    Status(StatusArgs),
    /// Fetch, verify and list model files
    #[command(after_help = crate::help::MODELS)]
    Models(ModelsArgs),
    /// Install, list and verify custom nodes at pinned commits
    #[command(subcommand, after_help = crate::help::NODES)]
    Nodes(NodesCommand),
    /// Back up, restore and transfer workflows
    #[command(after_help = crate::help::WORKFLOWS)]
    Workflows(WorkflowsArgs),
    /// Write ~/CONNECTION_INFO.txt on the host
    #[command(after_help = crate::help::CONNECTION_INFO)]
    ConnectionInfo(ConnectionInfoArgs),
    /// Edit Life-OS's .env file
    #[command(after_help = crate::help::ENV)]
    Env(EnvArgs),
    /// Check through ComfyUI that every model file and custom node is loaded; with
    /// `--generate`, also run a text-to-image and a FaceID generation and time them
    #[command(after_help = crate::help::VERIFY)]
    Verify(VerifyArgs),
    /// Everything, in order, idempotent: doctor, compose, up, models, nodes, verify, connection-info
    #[command(after_help = crate::help::SETUP)]
    Setup(SetupCommandArgs),
    /// Move an RTX PC's setup to a Spark: workflows, models, .env, device pool
    #[command(after_help = crate::help::MIGRATE)]
    Migrate(Box<MigrateArgs>),
    /// Find the host's ComfyUI (container, checkout or this tool's root) and its folders; read-only
    #[command(after_help = crate::help::INSPECT)]
    Inspect(InspectArgs),
    /// Write Life-OS's device pool (`comfyui_devices`) from the inventory and each ComfyUI
    #[command(after_help = crate::help::POOL)]
    Pool(PoolArgs),
    /// Print a shell completion script on stdout (see the README for where it goes)
    #[command(after_help = crate::help::COMPLETIONS)]
    Completions(CompletionsArgs),
    /// Print the man page (roff) on stdout: `lifeos-spark man > lifeos-spark.1`
    #[command(after_help = crate::help::MAN)]
    Man,
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// A ComfyUI checkout (`main.py`, `models/`) or a root `setup` made, instead of searching
    #[arg(long, value_name = "DIR")]
    pub root: Option<String>,

    /// The ComfyUI container, when the host runs several
    #[arg(long, value_name = "NAME")]
    pub container: Option<String>,
}

#[derive(Debug, Args)]
pub struct PoolArgs {
    /// The pool file, on this machine
    #[arg(long, value_name = "PATH", default_value = "comfyui_devices.yaml")]
    pub out: std::path::PathBuf,

    /// Port ComfyUI is published on, for hosts without a `url`
    #[arg(long, default_value_t = crate::defaults::PORT)]
    pub port: u16,

    #[command(flatten)]
    pub inventory: InventoryArgs,

    #[command(flatten)]
    pub dry: DryRunArgs,
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to complete for
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// Deployment root on the host
    #[arg(long, default_value = crate::defaults::ROOT)]
    pub root: String,

    /// Port ComfyUI will listen on
    #[arg(long, default_value_t = crate::defaults::PORT)]
    pub port: u16,

    /// Also run `nvidia-smi` in IMAGE with `docker run --rm --gpus all`
    #[arg(long, value_name = "IMAGE")]
    pub gpu_smoke: Option<String>,

    /// Model manifest the disk check sizes [default: the embedded manifests/sdxl-faceid.yaml]
    #[arg(long, value_name = "FILE")]
    pub manifest: Option<std::path::PathBuf>,

    #[command(flatten)]
    pub fleet: FleetArgs,
}

#[derive(Debug, Args)]
pub struct EnvArgs {
    /// The dotenv file on the host (Life-OS's `.env`; `~` is the host user's home)
    #[arg(long, global = true, value_name = "PATH", env = crate::defaults::ENV_FILE_VAR)]
    pub file: Option<String>,

    #[command(subcommand)]
    pub action: EnvAction,
}

#[derive(Debug, Subcommand)]
pub enum EnvAction {
    /// Set variables; only the named keys change, the rest of the file stays byte for byte
    #[command(after_help = crate::help::ENV_SET)]
    Set {
        #[arg(required = true, value_name = "KEY=VALUE", value_parser = crate::arg_values::assignment)]
        assignments: Vec<(String, String)>,
        /// Create the file (mode 0600) when it does not exist
        #[arg(long)]
        create: bool,
        #[command(flatten)]
        dry: DryRunArgs,
    },
    /// Print the value in effect for KEY (the last one when the key repeats)
    #[command(after_help = crate::help::ENV_GET)]
    Get { key: String },
    /// List the variables in effect (secret-looking values masked)
    #[command(after_help = crate::help::ENV_SHOW)]
    Show {
        /// Print secret-looking values (tokens, passwords, API keys) too
        #[arg(long)]
        show_secrets: bool,
    },
}

#[derive(Debug, Args)]
pub struct ConnectionInfoArgs {
    /// Port ComfyUI listens on
    #[arg(long, default_value_t = crate::defaults::PORT)]
    pub port: u16,

    /// Address to publish instead of the one of the interface holding the default route
    #[arg(long, value_name = "IP")]
    pub address: Option<String>,

    #[command(flatten)]
    pub dry: DryRunArgs,
}

#[derive(Debug, Args)]
pub struct WorkflowsArgs {
    #[command(subcommand)]
    pub action: WorkflowsAction,
}

#[derive(Debug, Subcommand)]
pub enum WorkflowsAction {
    /// Write a .tar.gz of the host's workflows (with a manifest) on this machine
    #[command(after_help = crate::help::WORKFLOWS_BACKUP)]
    Backup {
        /// Deployment root on the host
        #[arg(long, default_value = crate::defaults::ROOT)]
        root: String,
        /// Archive to write on this machine [default: workflows-<host>-<time>.tar.gz]
        #[arg(long, value_name = "FILE")]
        out: Option<std::path::PathBuf>,
        #[command(flatten)]
        dry: DryRunArgs,
    },
    /// Verify an archive on this machine, then extract it into the host's deployment root
    #[command(after_help = crate::help::WORKFLOWS_RESTORE)]
    Restore {
        /// Archive written by `workflows backup`
        file: std::path::PathBuf,
        /// Deployment root on the host
        #[arg(long, default_value = crate::defaults::ROOT)]
        root: String,
        /// Replace files that differ (the old one is kept as `<name>.bak-<time>`)
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        dry: DryRunArgs,
    },
    /// Stream the workflows of one host into another, then verify them there
    #[command(after_help = crate::help::WORKFLOWS_TRANSFER)]
    Transfer {
        /// Source: `local`, `[user@]host[:port]` or a ~/.ssh/config alias
        #[arg(long, value_name = "TARGET", value_parser = crate::arg_values::host_target)]
        from: String,
        /// Destination, same forms as `--from`
        #[arg(long, value_name = "TARGET", value_parser = crate::arg_values::host_target)]
        to: String,
        /// Deployment root on the source
        #[arg(long, default_value = crate::defaults::ROOT)]
        from_root: String,
        /// Deployment root on the destination
        #[arg(long, default_value = crate::defaults::ROOT)]
        to_root: String,
        /// Replace files that differ (the old one is kept as `<name>.bak-<time>`)
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        dry: DryRunArgs,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum GpuChoice {
    /// Reserve every NVIDIA GPU for the container
    All,
    /// A CPU-only service (for tests and machines without a GPU)
    None,
}

#[derive(Debug, Clone, Args)]
pub struct ServiceArgs {
    /// Playbook: an embedded name (dgx-spark, rtx-4090, generic-nvidia; `dgx_spark` too) or a YAML file;
    /// default: the one for the GPU `doctor` finds
    #[arg(long, value_name = "NAME|PATH", value_parser = crate::arg_values::playbook)]
    pub playbook: Option<String>,

    /// Deployment root on the host (default: the playbook's, `~/comfyui`)
    #[arg(long)]
    pub root: Option<String>,

    /// Address the port is published on (default: the playbook's, 0.0.0.0)
    #[arg(long, value_name = "ADDR")]
    pub bind: Option<std::net::IpAddr>,

    /// GPU reservation for the container
    #[arg(long, value_enum, default_value = "all")]
    pub gpu: GpuChoice,
}

/// `compose` and `down`: where the service is, and how to change it.
#[derive(Debug, Args)]
pub struct ChangeArgs {
    #[command(flatten)]
    pub service: ServiceArgs,

    #[command(flatten)]
    pub plan: PlanArgs,
}

#[derive(Debug, Args)]
pub struct UpArgs {
    #[command(flatten)]
    pub service: ServiceArgs,

    #[command(flatten)]
    pub plan: PlanArgs,

    /// Build the image even if it exists
    #[arg(long)]
    pub rebuild: bool,

    /// ComfyUI's URL (default: http://<host address>:<playbook port>)
    #[arg(long, value_parser = crate::arg_values::http_url)]
    pub url: Option<String>,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// ComfyUI's URL; overrides the one derived from `--host` (one host only)
    #[arg(long, value_parser = crate::arg_values::http_url)]
    pub url: Option<String>,

    /// Port ComfyUI is published on
    #[arg(long, default_value_t = crate::defaults::PORT)]
    pub port: u16,

    #[command(flatten)]
    pub inventory: InventoryArgs,
}

#[derive(Debug, Subcommand)]
pub enum NodesCommand {
    /// Clone each node at its pinned commit, install its requirements in the container
    /// (PyTorch constrained), restart ComfyUI if anything changed
    #[command(after_help = crate::help::NODES_INSTALL)]
    Install(NodesInstallArgs),
    /// Pinned vs actual commit, local changes, requirements satisfied
    #[command(after_help = crate::help::NODES_LIST)]
    List(NodesListArgs),
    /// Ask ComfyUI's /object_info whether each node's classes loaded
    #[command(after_help = crate::help::NODES_VERIFY)]
    Verify(NodesVerifyArgs),
}

/// Which deployment and node list `nodes list` and `nodes verify` read: no `--gpu` or `--bind`,
/// which only shape a service being written.
#[derive(Debug, Args)]
pub struct NodesListArgs {
    /// Playbook: an embedded name (dgx-spark, rtx-4090, generic-nvidia; `dgx_spark` too) or a YAML file;
    /// default: the one for the GPU `doctor` finds
    #[arg(long, value_name = "NAME|PATH", value_parser = crate::arg_values::playbook)]
    pub playbook: Option<String>,

    /// Deployment root on the host (default: the playbook's, `~/comfyui`)
    #[arg(long)]
    pub root: Option<String>,

    /// Node list (default: the embedded manifests/custom-nodes.yaml)
    #[arg(long, value_name = "PATH")]
    pub nodes: Option<String>,
}

impl NodesListArgs {
    /// The deployment these options name, as the service commands take it.
    pub fn service(&self) -> ServiceArgs {
        ServiceArgs {
            playbook: self.playbook.clone(),
            root: self.root.clone(),
            bind: None,
            gpu: GpuChoice::All,
        }
    }
}

#[derive(Debug, Args)]
pub struct NodesVerifyArgs {
    #[command(flatten)]
    pub list: NodesListArgs,

    /// ComfyUI's URL (default: http://<host address>:<playbook port>)
    #[arg(long, value_parser = crate::arg_values::http_url)]
    pub url: Option<String>,
}

#[derive(Debug, Args)]
pub struct NodesInstallArgs {
    #[command(flatten)]
    pub service: ServiceArgs,

    /// Node list (default: the embedded manifests/custom-nodes.yaml)
    #[arg(long, value_name = "PATH")]
    pub nodes: Option<String>,

    /// ComfyUI's URL (default: http://<host address>:<playbook port>)
    #[arg(long, value_parser = crate::arg_values::http_url)]
    pub url: Option<String>,

    /// Move clones that have local changes too (the changes are lost)
    #[arg(long)]
    pub force: bool,

    /// Only clone and check out; install no Python packages
    #[arg(long)]
    pub no_deps: bool,

    #[command(flatten)]
    pub plan: PlanArgs,
}

#[derive(Debug, Clone, Args)]
pub struct SetupArgs {
    #[command(flatten)]
    pub service: ServiceArgs,

    #[command(flatten)]
    pub checks: CheckArgs,

    /// Model files downloaded at once
    #[arg(long, default_value_t = crate::defaults::MODEL_JOBS, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub jobs: u16,

    /// Parallel range connections per model file [default: 8; 1 to an SSH host]
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=32))]
    pub connections: Option<u16>,

    /// Run only these phases (comma-separated)
    #[arg(long, value_enum, value_delimiter = ',', conflicts_with = "skip")]
    pub only: Vec<crate::setup::Phase>,

    /// Skip these phases (comma-separated)
    #[arg(long, value_enum, value_delimiter = ',')]
    pub skip: Vec<crate::setup::Phase>,

    /// End the verify phase without the check generation (text-to-image, then FaceID)
    #[arg(long)]
    pub no_generate: bool,

    #[command(flatten)]
    pub plan: PlanArgs,

    #[command(flatten)]
    pub lock: LockArgs,
}

/// `setup` itself: on one host, or on the inventory's (which `migrate`'s setup has not).
#[derive(Debug, Args)]
pub struct SetupCommandArgs {
    #[command(flatten)]
    pub setup: SetupArgs,

    #[command(flatten)]
    pub fleet: FleetArgs,
}

/// Which ComfyUI, model manifest and node list `setup` and `verify` work with.
#[derive(Debug, Clone, Args)]
pub struct CheckArgs {
    /// ComfyUI's URL (default: http://<host address>:<playbook port>)
    #[arg(long, value_parser = crate::arg_values::http_url)]
    pub url: Option<String>,

    /// Model manifest (default: the embedded manifests/sdxl-faceid.yaml)
    #[arg(long, value_name = "PATH")]
    pub manifest: Option<std::path::PathBuf>,

    /// Node list (default: the embedded manifests/custom-nodes.yaml)
    #[arg(long, value_name = "PATH")]
    pub nodes: Option<String>,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    #[command(flatten)]
    pub service: ServiceArgs,

    #[command(flatten)]
    pub checks: CheckArgs,

    /// Also generate: SDXL text-to-image, then IP-Adapter FaceID on that face; check each PNG
    /// and report the seconds per image
    #[arg(long)]
    pub generate: bool,

    #[command(flatten)]
    pub dry: DryRunArgs,

    #[command(flatten)]
    pub lock: LockArgs,
}

#[derive(Debug, Args)]
pub struct MigrateArgs {
    /// The source (the RTX PC): `[user@]host[:port]` or a ~/.ssh/config alias
    #[arg(long, value_name = "TARGET", required_unless_present = "rollback", value_parser = crate::arg_values::host_target)]
    pub from: Option<String>,

    /// The destination (the Spark)
    #[arg(long, value_name = "TARGET", required_unless_present = "rollback", value_parser = crate::arg_values::host_target)]
    pub to: Option<String>,

    /// Undo the newest migration of `--env-file`: its .env from the backup, the source's
    /// container started again if `--stop-source` stopped it
    #[arg(long, requires = "env_file")]
    pub rollback: bool,

    /// Life-OS's .env on this machine: COMFYUI_URL and friends move to the destination last
    #[arg(long, value_name = "PATH")]
    pub env_file: Option<String>,

    /// `replace` the source, or run both in `parallel`
    #[arg(long, value_enum, default_value = "replace")]
    pub mode: crate::migrate::MigrateMode,

    /// Where the destination's models come from (default: the source when it has them all)
    #[arg(long, value_enum)]
    pub models_from: Option<crate::migrate::ModelsFrom>,

    /// With `--mode replace`: stop the source's ComfyUI at the end
    #[arg(long)]
    pub stop_source: bool,

    /// Device pool for Life-OS's router (`--mode parallel`), on this machine
    #[arg(long, value_name = "PATH", default_value = "comfyui_devices.yaml")]
    pub pool_file: std::path::PathBuf,

    /// Where the source's workflow backup is kept, on this machine
    #[arg(long, value_name = "DIR", default_value = "~/.lifeos-spark/backups")]
    pub backup_dir: String,

    /// The source's playbook (default: the one for its GPU)
    #[arg(long, value_name = "NAME|PATH", value_parser = crate::arg_values::playbook)]
    pub from_playbook: Option<String>,

    /// The source's deployment root (default: its playbook's)
    #[arg(long)]
    pub from_root: Option<String>,

    /// The source's ComfyUI URL, for the device pool
    #[arg(long, value_parser = crate::arg_values::http_url)]
    pub from_url: Option<String>,

    /// The source's ComfyUI container, when it runs several
    #[arg(long, value_name = "NAME")]
    pub from_container: Option<String>,

    /// Replace the destination's files that differ from the source's (each kept as `.before-migrate`)
    #[arg(long)]
    pub overwrite: bool,

    /// How the destination is set up
    #[command(flatten)]
    pub setup: SetupArgs,
}

#[derive(Debug, Args)]
pub struct ModelsArgs {
    #[command(subcommand)]
    pub command: ModelsCommand,
}

#[derive(Debug, Subcommand)]
pub enum ModelsCommand {
    /// Download what is missing: resumable, verified, several files and connections at once
    #[command(after_help = crate::help::MODELS_PULL)]
    Pull(ModelsPullArgs),
    /// Re-hash the files on the host: ok, missing, wrong-size or wrong-hash for each
    #[command(after_help = crate::help::MODELS_VERIFY)]
    Verify(ModelsVerifyArgs),
    /// What the manifest holds, how big, and what is on the host
    #[command(after_help = crate::help::MODELS_LIST)]
    List(ModelSetArgs),
}

/// Which manifest, which files of it, and where they go.
#[derive(Debug, Args)]
pub struct ModelSetArgs {
    /// Manifest on this machine [default: the embedded `manifests/sdxl-faceid.yaml`]
    #[arg(long, value_name = "PATH")]
    pub manifest: Option<std::path::PathBuf>,

    /// Deployment root on the host; `dest` in the manifest is relative to it
    #[arg(long, default_value = crate::defaults::ROOT)]
    pub root: String,

    /// Only these ids of the manifest
    #[arg(long, value_name = "ID,...", value_delimiter = ',')]
    pub only: Vec<String>,

    /// Accept manifest entries without a sha256 (checked by size only)
    #[arg(long)]
    pub allow_unverified: bool,
}

#[derive(Debug, Args)]
pub struct ModelsPullArgs {
    #[command(flatten)]
    pub set: ModelSetArgs,

    /// Files downloaded at once
    #[arg(long, default_value_t = crate::defaults::MODEL_JOBS, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub jobs: u16,

    /// Parallel range connections per file [default: 8; 1 to an SSH host]
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=32))]
    pub connections: Option<u16>,

    #[command(flatten)]
    pub dry: DryRunArgs,

    #[command(flatten)]
    pub lock: LockArgs,
}

#[derive(Debug, Args)]
pub struct ModelsVerifyArgs {
    #[command(flatten)]
    pub set: ModelSetArgs,

    /// Files hashed at once
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub jobs: u16,

    #[command(flatten)]
    pub lock: LockArgs,
}

impl Cli {
    /// Parse with the help `crate::help::command` shapes, then what clap cannot say: `--host`
    /// where another option names the machines, and the command's own options in `GlobalArgs`.
    pub fn try_parse_args<I, T>(args: I) -> Result<Cli, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        Self::try_parse_with_matches(args).map(|(cli, _)| cli)
    }

    /// `try_parse_args`, with clap's matches (they name the subcommand path for `--json`).
    pub fn try_parse_with_matches<I, T>(args: I) -> Result<(Cli, clap::ArgMatches), clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        let mut cmd = crate::help::command();
        let matches = cmd.try_get_matches_from_mut(args).map_err(own_option_tip)?;
        let mut cli = Cli::from_arg_matches(&matches).map_err(|e| e.format(&mut cmd))?;
        if let Some((path, instead)) = cli.command.host_instead() {
            if !cli.global.hosts.is_empty() {
                let name = path.join(" ");
                let sub = path.iter().fold(&mut cmd, |c, name| {
                    c.find_subcommand_mut(name)
                        .expect("a subcommand of the CLI")
                });
                return Err(sub.error(
                    clap::error::ErrorKind::ArgumentConflict,
                    format!("`--host` does not apply to `{name}`\n\nhint: {instead}"),
                ));
            }
        }
        if cli.global.hosts.is_empty() {
            cli.global.hosts.push("local".to_string());
        }
        cli.command.fill(&mut cli.global);
        Ok((cli, matches))
    }
}

/// Options that were global before each command got its own set: their "unexpected argument"
/// error says where they go now.
const COMMAND_OPTIONS: [&str; 7] = [
    "--dry-run",
    "--yes",
    "-y",
    "--no-wait",
    "--inventory",
    "--limit",
    "--forks",
];

fn own_option_tip(mut err: clap::Error) -> clap::Error {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    let Some(ContextValue::String(arg)) = err.get(ContextKind::InvalidArg) else {
        return err;
    };
    let flag = arg.split('=').next().unwrap_or_default().to_string();
    if err.kind() == ErrorKind::UnknownArgument
        && COMMAND_OPTIONS.contains(&flag.as_str())
        && err.get(ContextKind::Suggested).is_none()
    {
        let tip = format!(
            "`{flag}` goes after a command that takes it; `lifeos-spark <COMMAND> --help` lists a command's options"
        );
        err.insert(
            ContextKind::Suggested,
            ContextValue::StyledStrs(vec![tip.into()]),
        );
    }
    err
}

impl CommandName {
    /// For a command `--host` cannot apply to: its path and what to give instead.
    fn host_instead(&self) -> Option<(&'static [&'static str], &'static str)> {
        match self {
            CommandName::Migrate(_) => Some((
                &["migrate"],
                "name the machines with `--from` (the RTX PC) and `--to` (the Spark)",
            )),
            CommandName::Workflows(WorkflowsArgs {
                action: WorkflowsAction::Transfer { .. },
            }) => Some((
                &["workflows", "transfer"],
                "name the machines with `--from` and `--to`",
            )),
            CommandName::Pool(_) => Some((
                &["pool"],
                "`pool` asks the inventory's hosts: choose them with `--inventory` and `--limit`",
            )),
            CommandName::Completions(_) => Some((
                &["completions"],
                "the script is printed on this machine; copy it where the shell of that host reads it",
            )),
            CommandName::Man => Some((
                &["man"],
                "the page is printed on this machine; copy it to the other host's man path",
            )),
            _ => None,
        }
    }

    /// Copy the options only some commands take into `GlobalArgs`, where the code reads them.
    fn fill(&self, g: &mut GlobalArgs) {
        let dry = |d: &DryRunArgs| PlanArgs {
            dry_run: d.dry_run,
            yes: false,
        };
        let (plan, lock, inventory, forks) = match self {
            CommandName::Doctor(a) => (None, None, Some(&a.fleet.inventory), Some(a.fleet.forks)),
            CommandName::Compose(a) | CommandName::Down(a) => {
                (Some(a.plan.clone()), None, None, None)
            }
            CommandName::Up(a) => (Some(a.plan.clone()), None, None, None),
            CommandName::Status(a) => (None, None, Some(&a.inventory), None),
            CommandName::Models(a) => match &a.command {
                ModelsCommand::Pull(p) => (Some(dry(&p.dry)), Some(&p.lock), None, None),
                ModelsCommand::Verify(v) => (None, Some(&v.lock), None, None),
                ModelsCommand::List(_) => (None, None, None, None),
            },
            CommandName::Nodes(NodesCommand::Install(a)) => {
                (Some(a.plan.clone()), None, None, None)
            }
            CommandName::Workflows(a) => match &a.action {
                WorkflowsAction::Backup { dry: d, .. }
                | WorkflowsAction::Restore { dry: d, .. }
                | WorkflowsAction::Transfer { dry: d, .. } => (Some(dry(d)), None, None, None),
            },
            CommandName::ConnectionInfo(a) => (Some(dry(&a.dry)), None, None, None),
            CommandName::Env(EnvArgs {
                action: EnvAction::Set { dry: d, .. },
                ..
            }) => (Some(dry(d)), None, None, None),
            CommandName::Verify(a) => (Some(dry(&a.dry)), Some(&a.lock), None, None),
            CommandName::Setup(a) => (
                Some(a.setup.plan.clone()),
                Some(&a.setup.lock),
                Some(&a.fleet.inventory),
                Some(a.fleet.forks),
            ),
            CommandName::Migrate(a) => {
                (Some(a.setup.plan.clone()), Some(&a.setup.lock), None, None)
            }
            CommandName::Pool(a) => (Some(dry(&a.dry)), None, Some(&a.inventory), None),
            CommandName::Nodes(_)
            | CommandName::Env(_)
            | CommandName::Inspect(_)
            | CommandName::Completions(_)
            | CommandName::Man => (None, None, None, None),
        };
        let plan = plan.unwrap_or_default();
        g.dry_run = plan.dry_run;
        g.yes = plan.yes;
        g.no_wait = lock.is_some_and(|l| l.no_wait);
        if let Some(inv) = inventory {
            g.inventory = inv.inventory.clone();
            g.limit = inv.limit.clone();
        }
        g.forks = forks.unwrap_or(crate::defaults::FORKS);
    }
}
