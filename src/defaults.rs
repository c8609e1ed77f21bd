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
