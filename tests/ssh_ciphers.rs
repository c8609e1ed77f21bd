//! Bytes cross the SSH link intact whichever cipher the target insists on. The libssh2 in
//! `vendor/libssh2-sys` en/decrypts an AES-GCM packet in one call instead of one per 16-byte
//! block (LIFEOS-PATCH.md): a wrong split would corrupt bytes or fail sshd's tag check. Each
//! case is a real sshd that offers only one cipher, so a session that works used that cipher.

mod support;

use std::io::Read;
use std::path::{Path, PathBuf};

use lifeos_spark::host::{self, Command, Host, SshOptions};
use support::*;

/// The ciphers OpenSSH offers that libssh2 speaks: the two patched ones and two untouched.
const CIPHERS: [&str; 4] = [
    "aes256-gcm@openssh.com",
    "aes128-gcm@openssh.com",
    "chacha20-poly1305@openssh.com",
    "aes256-ctr",
];

/// Lengths around the block and packet edges (16-byte blocks, 32 KiB channel packets), so
/// packets of every shape are sent and received: one byte, a block less or more, a packet
/// and a bit.
const EDGES: [usize; 12] = [1, 15, 16, 17, 31, 32, 33, 100, 4096, 32_768, 32_769, 40_000];

#[test]
fn bulk_bytes_cross_intact_under_every_cipher() {
    let client = ClientHome::new();
    let bytes: Vec<u8> = (0..3 << 20).map(|_| rand::random()).collect();
    for (i, cipher) in CIPHERS.into_iter().enumerate() {
        let Some(mut server) = SshServer::for_client(&client) else {
            return;
        };
        server.reconfigure(&format!("Ciphers {cipher}\n"));
        // A new alias each time: ~/.ssh/config's first matching `Host` wins.
        let alias = format!("box{i}");
        client.add_alias(&alias, &server);
        client.trust(&server);
        let opts = SshOptions {
            home: Some(PathBuf::from(client.path())),
            ..Default::default()
        };
        let host = host::connect(&alias, &opts)
            .unwrap_or_else(|e| panic!("{cipher}: {e:#}\n{}", server.log()));
        let file = server.home().join("model.bin");
        write_in_odd_pieces(host.as_ref(), &file, &bytes, cipher);
        // What landed on the target's disk, read there, not through the tool.
        assert!(
            std::fs::read(&file).unwrap() == bytes,
            "{cipher}: the file on the target differs from what was sent"
        );
        read_back(host.as_ref(), &file, &bytes, cipher);
    }
}

/// Write `bytes` through the bulk writer (exec channels into `dd`) in pieces of every edge
/// length, then the rest in big pieces, in two runs (as two download segments would).
fn write_in_odd_pieces(host: &dyn Host, file: &Path, bytes: &[u8], cipher: &str) {
    let mut w = host.open_write(file).unwrap();
    w.set_len(bytes.len() as u64).unwrap();
    let half = bytes.len() / 2;
    let mut pos = 0;
    for len in EDGES.iter().cycle().take(40) {
        w.write_at(pos as u64, &bytes[pos..pos + len]).unwrap();
        pos += len;
    }
    // The second run first, so the two are open at once.
    for chunk_start in (half..bytes.len()).step_by(256 << 10) {
        let end = (chunk_start + (256 << 10)).min(bytes.len());
        w.write_at(chunk_start as u64, &bytes[chunk_start..end])
            .unwrap_or_else(|e| panic!("{cipher}: {e}"));
    }
    for chunk_start in (pos..half).step_by(100_003) {
        let end = (chunk_start + 100_003).min(half);
        w.write_at(chunk_start as u64, &bytes[chunk_start..end])
            .unwrap_or_else(|e| panic!("{cipher}: {e}"));
    }
    w.sync().unwrap_or_else(|e| panic!("{cipher}: {e}"));
}

/// Receive: command output of every edge length, the whole file as output, and over SFTP.
fn read_back(host: &dyn Host, file: &Path, bytes: &[u8], cipher: &str) {
    for len in EDGES {
        let cmd = Command::new("head")
            .args(["-c", &len.to_string()])
            .arg(file.display().to_string());
        let out = host.run(&cmd).unwrap();
        assert!(
            out.stdout == bytes[..len],
            "{cipher}: `head -c {len}` differs"
        );
    }
    let out = host
        .run(&Command::new("cat").arg(file.display().to_string()))
        .unwrap();
    assert!(out.stdout == bytes, "{cipher}: `cat` differs");
    let mut sftp = Vec::new();
    let from = 12_345;
    host.open_read(file, from as u64)
        .unwrap()
        .read_to_end(&mut sftp)
        .unwrap();
    assert!(sftp == bytes[from..], "{cipher}: the SFTP read differs");
}
