//! lifeos-spark: takes a DGX Spark or an RTX Linux PC to a working ComfyUI server for Life-OS.

// The controller is a Unix program (Linux: the Spark and the RTX PC themselves; macOS: the
// operator's Mac): it uses Unix file modes, process groups and SIGTERM. Say so up front rather
// than fail somewhere in `std::os::unix`.
#[cfg(not(unix))]
compile_error!("lifeos-spark builds for Linux and macOS only (it relies on Unix file modes, process groups and signals)");

pub mod arg_values;
pub mod cli;
pub mod comfyui;
pub mod commands;
pub mod compose;
pub mod connection_info;
pub mod defaults;
pub mod docker;
pub mod doctor;
pub mod envfile;
pub mod file_change;
pub mod fleet;
pub mod generate;
pub mod gpu;
pub mod host;
pub mod interrupt;
pub mod inventory;
pub mod lock;
pub mod migrate;
pub mod models;
pub mod nodes;
pub mod phase;
pub mod playbook;
pub mod pool;
pub mod service;
pub mod setup;
pub mod source;
pub mod status;
pub mod step;
pub mod system;
pub mod ui;
pub mod units;
pub mod workflows;
pub mod yaml;
