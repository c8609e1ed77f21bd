//! Model files: the manifest that names them (and, later, fetching and verifying them).

pub mod manifest;
