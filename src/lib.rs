//! lifeos-spark: takes a DGX Spark or an RTX Linux PC to a working ComfyUI server for Life-OS.

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
pub mod gpu;
pub mod host;
pub mod migrate;
pub mod models;
pub mod nodes;
pub mod phase;
pub mod playbook;
pub mod service;
pub mod setup;
pub mod source;
pub mod status;
pub mod step;
pub mod system;
pub mod ui;
pub mod workflows;
