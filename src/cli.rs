//! The command line: parsing only. `commands/*` wire these values to operations.

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "lifeos-spark",
    version,
    about = "Take a DGX Spark or an RTX Linux PC to a working ComfyUI server for Life-OS",
    propagate_version = true
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,

    #[command(subcommand)]
    pub command: CommandName,
}

#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Machine to act on: `local`, `[user@]host[:port]` or a ~/.ssh/config alias
    #[arg(
        long = "host",
        global = true,
        value_name = "TARGET",
        default_value = "local",
        value_parser = crate::arg_values::host_target
    )]
    pub hosts: Vec<String>,

    /// Print one JSON document on stdout instead of tables
    #[arg(long, global = true)]
    pub json: bool,

    /// Run the read-only checks and print the plan; change nothing
    #[arg(long, global = true)]
    pub dry_run: bool,

    /// Never prompt; answer yes
    #[arg(short = 'y', long, global = true)]
    pub yes: bool,

    /// Only errors and actionable warnings on stderr
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,

    /// Show what is done and why
    #[arg(short, long, global = true)]
    pub verbose: bool,

    /// No progress bars (one line per file instead)
    #[arg(long, global = true)]
    pub no_progress: bool,

    /// Record an unknown SSH host key in known_hosts instead of refusing (never a changed one)
    #[arg(long, global = true)]
    pub accept_new_host_key: bool,

    /// Fail at once when another run holds the deployment root's lock, instead of waiting
    #[arg(long, global = true)]
    pub no_wait: bool,

    /// Inventory of hosts (`doctor`, `setup`, `status`, `pool`) [default with `--limit` or
    /// `pool`: ~/.config/lifeos-spark/inventory.yaml]
    #[arg(long, global = true, value_name = "PATH")]
    pub inventory: Option<std::path::PathBuf>,

    /// Only these hosts or groups of the inventory (comma-separated; `all`: every host)
    #[arg(
        long,
        global = true,
        value_name = "NAME|GROUP,...",
        value_delimiter = ','
    )]
    pub limit: Vec<String>,

    /// Inventory hosts run at once
    #[arg(long, global = true, default_value_t = 5, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub forks: u16,
}

#[derive(Debug, Subcommand)]
pub enum CommandName {
    /// Check GPU, driver, Docker, Compose, NVIDIA runtime, disk and port
    Doctor(DoctorArgs),
    /// Write the Dockerfile and docker-compose.yml for the host's profile
    Compose(ServiceArgs),
    /// Build and start ComfyUI, then wait until it answers
    Up(UpArgs),
    /// Stop ComfyUI (models and data stay)
    Down(ServiceArgs),
    /// ComfyUI's version, device, memory and queue on each host
    Status(StatusArgs),
    /// Fetch, verify and list model files
    Models(ModelsArgs),
    /// Install, list and verify custom nodes at pinned commits
    #[command(subcommand)]
    Nodes(NodesCommand),
    /// Back up, restore and transfer workflows
    Workflows(WorkflowsArgs),
    /// Write ~/CONNECTION_INFO.txt on the host
    ConnectionInfo(ConnectionInfoArgs),
    /// Edit Life-OS's .env file
    Env(EnvArgs),
    /// Check through ComfyUI that every model file and custom node is loaded; with
    /// `--generate`, also run a text-to-image and a FaceID generation and time them
    Verify(VerifyArgs),
    /// Everything, in order, idempotent: doctor, compose, up, models, nodes, verify, connection-info
    Setup(SetupArgs),
    /// Move an RTX PC's setup to a Spark: workflows, models, .env, device pool
    Migrate(Box<MigrateArgs>),
    /// Find the host's ComfyUI (container, checkout or this tool's root) and its folders; read-only
    Inspect(InspectArgs),
    /// Write Life-OS's device pool (`comfyui_devices`) from the inventory and each ComfyUI
    Pool(PoolArgs),
    /// Print a shell completion script on stdout (see the README for where it goes)
    Completions(CompletionsArgs),
    /// Print the man page (roff) on stdout: `lifeos-spark man > lifeos-spark.1`
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
    Set {
        #[arg(required = true, value_name = "KEY=VALUE", value_parser = crate::arg_values::assignment)]
        assignments: Vec<(String, String)>,
        /// Create the file (mode 0600) when it does not exist
        #[arg(long)]
        create: bool,
    },
    /// Print the value in effect for KEY (the last one when the key repeats)
    Get { key: String },
    /// List the variables in effect (secret-looking values masked)
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
}

#[derive(Debug, Args)]
pub struct WorkflowsArgs {
    #[command(subcommand)]
    pub action: WorkflowsAction,
}

#[derive(Debug, Subcommand)]
pub enum WorkflowsAction {
    /// Write a .tar.gz of the host's workflows (with a manifest) on this machine
    Backup {
        /// Deployment root on the host
        #[arg(long, default_value = crate::defaults::ROOT)]
        root: String,
        /// Archive to write on this machine [default: workflows-<host>-<time>.tar.gz]
        #[arg(long, value_name = "FILE")]
        out: Option<std::path::PathBuf>,
    },
    /// Verify an archive on this machine, then extract it into the host's deployment root
    Restore {
        /// Archive written by `workflows backup`
        file: std::path::PathBuf,
        /// Deployment root on the host
        #[arg(long, default_value = crate::defaults::ROOT)]
        root: String,
        /// Replace files that differ (the old one is kept as `<name>.bak-<time>`)
        #[arg(long)]
        force: bool,
    },
    /// Stream the workflows of one host into another, then verify them there
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

#[derive(Debug, Args)]
pub struct UpArgs {
    #[command(flatten)]
    pub service: ServiceArgs,

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
}

#[derive(Debug, Subcommand)]
pub enum NodesCommand {
    /// Clone each node at its pinned commit, install its requirements in the container
    /// (PyTorch constrained), restart ComfyUI if anything changed
    Install(NodesInstallArgs),
    /// Pinned vs actual commit, local changes, requirements satisfied
    List(NodesArgs),
    /// Ask ComfyUI's /object_info whether each node's classes loaded
    Verify(NodesArgs),
}

#[derive(Debug, Args)]
pub struct NodesArgs {
    #[command(flatten)]
    pub service: ServiceArgs,

    /// Node list (default: the embedded manifests/custom-nodes.yaml)
    #[arg(long, value_name = "PATH")]
    pub nodes: Option<String>,

    /// ComfyUI's URL (default: http://<host address>:<playbook port>)
    #[arg(long, value_parser = crate::arg_values::http_url)]
    pub url: Option<String>,
}

#[derive(Debug, Args)]
pub struct NodesInstallArgs {
    #[command(flatten)]
    pub common: NodesArgs,

    /// Move clones that have local changes too (the changes are lost)
    #[arg(long)]
    pub force: bool,

    /// Only clone and check out; install no Python packages
    #[arg(long)]
    pub no_deps: bool,
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

    /// Parallel range connections per model file
    #[arg(long, default_value_t = crate::defaults::MODEL_CONNECTIONS, value_parser = clap::value_parser!(u16).range(1..=32))]
    pub connections: u16,

    /// Run only these phases (comma-separated)
    #[arg(long, value_enum, value_delimiter = ',', conflicts_with = "skip")]
    pub only: Vec<crate::setup::Phase>,

    /// Skip these phases (comma-separated)
    #[arg(long, value_enum, value_delimiter = ',')]
    pub skip: Vec<crate::setup::Phase>,

    /// End the verify phase without the check generation (text-to-image, then FaceID)
    #[arg(long)]
    pub no_generate: bool,
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
    Pull(ModelsPullArgs),
    /// Re-hash the files on the host: ok, missing, wrong-size or wrong-hash for each
    Verify(ModelsVerifyArgs),
    /// What the manifest holds, how big, and what is on the host
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

    /// Parallel range connections per file
    #[arg(long, default_value_t = crate::defaults::MODEL_CONNECTIONS, value_parser = clap::value_parser!(u16).range(1..=32))]
    pub connections: u16,
}

#[derive(Debug, Args)]
pub struct ModelsVerifyArgs {
    #[command(flatten)]
    pub set: ModelSetArgs,

    /// Files hashed at once
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub jobs: u16,
}
