//! Exec channels over a real OpenSSH server: both output streams are drained together, so a
//! command that fills one stream's window while the other is read never stalls the session.

mod support;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use lifeos_spark::host::{self, Command, SshOptions};
use support::*;

const MIB: usize = 1 << 20;

#[test]
fn four_mib_to_stderr_then_four_mib_to_stdout_arrive_intact() {
    let client = ClientHome::new();
    let Some(server) = SshServer::for_client(&client) else {
        return;
    };
    client.add_alias("box", &server);
    client.trust(&server);
    // Different random bytes per stream, so a mixed-up or truncated stream cannot pass.
    let err_file = server.home().join("err.bin");
    let out_file = server.home().join("out.bin");
    let err_bytes: Vec<u8> = (0..4 * MIB).map(|_| rand::random()).collect();
    let out_bytes: Vec<u8> = (0..4 * MIB).map(|_| rand::random()).collect();
    std::fs::write(&err_file, &err_bytes).unwrap();
    std::fs::write(&out_file, &out_bytes).unwrap();
    let opts = SshOptions {
        home: Some(PathBuf::from(client.path())),
        ..Default::default()
    };
    let host = host::connect("box", &opts).unwrap();
    let started = Instant::now();
    let line = format!(
        "cat '{}' >&2; cat '{}'; exit 3",
        err_file.display(),
        out_file.display()
    );
    let out = host.run(&Command::new("sh").args(["-c", &line])).unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(out.status, Some(3));
    assert_eq!(out.stderr.len(), err_bytes.len());
    assert!(out.stderr == err_bytes, "stderr bytes differ");
    assert_eq!(out.stdout.len(), out_bytes.len());
    assert!(out.stdout == out_bytes, "stdout bytes differ");
}
