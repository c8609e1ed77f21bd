//! Every default and environment variable the tool reads, in one place.

/// Deployment root on the target (`~` is the target user's home).
pub const ROOT: &str = "~/comfyui";

/// ComfyUI's default port.
pub const PORT: u16 = 8188;

/// Environment variable that names Life-OS's `.env` for `env` (instead of `--file`).
pub const ENV_FILE_VAR: &str = "LIFEOS_ENV_FILE";

/// Where `connection-info` writes, on the target.
pub const CONNECTION_INFO: &str = "~/CONNECTION_INFO.txt";

/// Workflow folders under the deployment root: the seed's own folder, and the one ComfyUI's
/// UI saves into (`user/default/workflows`; `user/` is mounted at /opt/ComfyUI/user).
pub const WORKFLOW_FOLDERS: [&str; 2] = ["workflows", "user/default/workflows"];

/// Hugging Face token (huggingface_hub's convention); read on the machine the tool runs on.
pub const ENV_HF_TOKEN: &str = "HF_TOKEN";

/// Where `huggingface-cli login` keeps the token: `$HF_HOME/token`, `$HF_HOME` defaulting to
/// `~/.cache/huggingface`.
pub const ENV_HF_HOME: &str = "HF_HOME";
pub const HF_HOME: &str = "~/.cache/huggingface";

/// A Hugging Face mirror; the token goes to this host instead of huggingface.co.
pub const ENV_HF_ENDPOINT: &str = "HF_ENDPOINT";
pub const HF_ENDPOINT: &str = "https://huggingface.co";

/// Files downloaded at once by `models pull`. Each holds up to `connections` pieces in memory
/// (bench/download.sh: 60 MiB peak for one file at 8 connections), and one file over 8
/// connections already fills a link capped per connection; the second job keeps small files
/// moving beside a big one.
pub const MODEL_JOBS: u16 = 2;

/// Parallel range connections per file: beats per-connection CDN caps (aria2's `-x8`).
pub const MODEL_CONNECTIONS: u16 = 8;

/// Bytes per range request of a segmented download. With the hash-order window of one piece
/// per connection, a file holds at most `connections * piece` bytes in memory.
pub const MODEL_PIECE_BYTES: u64 = 4 << 20;

/// Inventory hosts `doctor` and `setup` run at once (`--forks`).
pub const FORKS: u16 = 5;
