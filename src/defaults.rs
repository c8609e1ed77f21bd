//! Every default and environment variable the tool reads, in one place.

/// Deployment root on the target (`~` is the target user's home).
pub const ROOT: &str = "~/comfyui";

/// ComfyUI's default port.
pub const PORT: u16 = 8188;
