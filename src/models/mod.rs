//! Model files: the manifest that names them, and the resumable, verified, parallel downloader
//! that puts them on a host (rustup's split: transport, sink, verification and progress meet
//! at narrow interfaces; `ops` holds the commands' logic).

pub mod copy;
pub mod fetch;
pub mod http;
pub mod hub;
pub mod manifest;
pub mod ops;
pub mod partial;
pub mod progress;
pub mod redact;
pub mod report;
pub mod sink;
pub mod verify;
