//! `workflows backup|restore|transfer` through the built binary on real file trees: round
//! trips, determinism, conflicts, hostile archives built here, and a transfer between two
//! real sshd instances.

mod support;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use flate2::{write::GzEncoder, Compression};
use serde_json::json;
use sha2::{Digest, Sha256};
use support::*;
use tar::{EntryType, Header};

fn lifeos(args: &[&str]) -> Output {
    Command::new(bin())
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .unwrap()
}

fn ok(out: Output) -> Output {
    assert!(
        out.status.success(),
        "stdout={}\nstderr={}",
        stdout(&out),
        stderr(&out)
    );
    out
}

fn arg(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// `workflows backup --root <root> --out <out>` and `extra`; it must succeed.
fn backup(root: &Path, out: &Path, extra: &[&str]) -> Output {
    let args = [
        "workflows",
        "backup",
        "--root",
        arg(root),
        "--out",
        arg(out),
    ];
    ok(lifeos(&[&args[..], extra].concat()))
}

/// `workflows restore <archive> --root <root>` and `extra`.
fn restore_args<'a>(archive: &'a Path, root: &'a Path, extra: &[&'a str]) -> Vec<&'a str> {
    let args = ["workflows", "restore", arg(archive), "--root", arg(root)];
    [&args[..], extra].concat()
}

/// `workflows restore <archive> --root <root>` and `extra`; the caller checks how it ended.
fn restore(archive: &Path, root: &Path, extra: &[&str]) -> Output {
    lifeos(&restore_args(archive, root, extra))
}

/// `args` with `--dry-run`; the caller checks how it ended.
fn dry_run(args: &[&str]) -> Output {
    lifeos(&[args, &["--dry-run"]].concat())
}

/// The `--json` report on stdout.
fn json_report(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap()
}

/// `text` (a stdout or stderr) contains `needle`; shown whole when it does not.
fn assert_contains(text: &str, needle: &str) {
    assert!(text.contains(needle), "{text}");
}

/// 3 MiB that do not compress to nothing.
fn large_bytes() -> Vec<u8> {
    let mut x: u32 = 0x1234_5678;
    (0..3 << 20)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

/// A deployment root as a Spark or RTX PC has it: both workflow folders, unicode and spaces,
/// an empty folder, a 3 MiB file, a 0600 file, and things a backup must not take.
fn sample_root(dir: &Path) -> PathBuf {
    let root = dir.join("comfyui");
    let w = root.join("workflows");
    fs::create_dir_all(w.join("portraits/über fine")).unwrap();
    fs::create_dir_all(w.join("empty folder")).unwrap();
    fs::write(
        w.join("portraits/über fine/face id.json"),
        r#"{"nodes":["IPAdapterFaceID"]}"#,
    )
    .unwrap();
    fs::write(w.join("日本語 workflow.json"), "{}\n").unwrap();
    fs::write(w.join("large.bin"), large_bytes()).unwrap();
    fs::write(w.join("private.json"), "secret-ish").unwrap();
    fs::set_permissions(w.join("private.json"), fs::Permissions::from_mode(0o600)).unwrap();
    symlink("/etc/passwd", w.join("escape-link")).unwrap();
    let ui = root.join("user/default/workflows");
    fs::create_dir_all(&ui).unwrap();
    fs::write(ui.join("saved from UI.json"), "[1,2,3]").unwrap();
    fs::create_dir_all(root.join("models/checkpoints")).unwrap();
    fs::write(
        root.join("models/checkpoints/not-a-workflow.safetensors"),
        "x",
    )
    .unwrap();
    root
}

/// Every file and folder under `dir`: relative path -> (mode, content or None for a folder).
fn snapshot(dir: &Path) -> BTreeMap<String, (u32, Option<Vec<u8>>)> {
    let mut found = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let rel = p.strip_prefix(dir).unwrap().to_string_lossy().into_owned();
            let meta = fs::symlink_metadata(&p).unwrap();
            let mode = meta.permissions().mode() & 0o777;
            if meta.is_dir() {
                stack.push(p.clone());
                found.insert(rel, (mode, None));
            } else {
                found.insert(rel, (mode, Some(fs::read(&p).unwrap())));
            }
        }
    }
    found
}

fn workflows_only(
    snap: BTreeMap<String, (u32, Option<Vec<u8>>)>,
) -> BTreeMap<String, (u32, Option<Vec<u8>>)> {
    snap.into_iter()
        .filter(|(p, _)| p.starts_with("workflows") || p.starts_with("user/default/workflows"))
        .filter(|(p, _)| p != "workflows/escape-link")
        .map(|(p, (mode, data))| (p, (if data.is_none() { 0 } else { mode }, data)))
        .collect()
}

/// The workflow folders under `copy` are those under `original`: paths, modes, bytes.
fn assert_same_workflows(copy: &Path, original: &Path) {
    assert_eq!(
        workflows_only(snapshot(copy)),
        workflows_only(snapshot(original))
    );
}

/// `sample_root` under `dir`, backed up to `<dir>/w.tar.gz`: the archive's path.
fn sample_archive(dir: &Path) -> PathBuf {
    let archive = dir.join("w.tar.gz");
    backup(&sample_root(dir), &archive, &[]);
    archive
}

#[test]
fn round_trip_is_exact_and_deterministic() {
    let tmp = tempfile::tempdir().unwrap();
    let root = sample_root(tmp.path());
    let a = tmp.path().join("a.tar.gz");
    let b = tmp.path().join("b.tar.gz");
    let out = backup(&root, &a, &["--json"]);
    let report = json_report(&out);
    let files: Vec<_> = workflows_only(snapshot(&root))
        .into_values()
        .filter_map(|(_, d)| d)
        .collect();
    assert_eq!(report["files"], files.len());
    assert_eq!(report["files"], 5);
    assert_eq!(report["bytes"], files.iter().map(Vec::len).sum::<usize>());
    assert_eq!(report["skipped"][0]["path"], "workflows/escape-link");
    assert_contains(&stderr(&out), "skipped `workflows/escape-link`");
    backup(&root, &b, &[]);
    assert_eq!(
        fs::read(&a).unwrap(),
        fs::read(&b).unwrap(),
        "same tree, same bytes"
    );

    // The real tar reads it: manifest first, no owner or time recorded.
    let listing = sh(&format!("tar tzvf '{}'", a.display()));
    let first = stdout(&listing).lines().next().unwrap().to_string();
    assert!(
        first.contains("0/0")
            && first.contains("1970-01-01")
            && first.ends_with("lifeos-spark-manifest.json"),
        "{first}"
    );

    let restored = tmp.path().join("restored");
    let out = ok(restore(&a, &restored, &[]));
    assert_contains(&stderr(&out), "5 restored, 0 unchanged, 0 conflicting");
    assert_same_workflows(&restored, &root);
    assert_eq!(
        fs::metadata(restored.join("workflows/private.json"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );
    assert!(restored.join("workflows/empty folder").is_dir());
    assert!(!restored.join("models").exists());

    // Backing up the restored tree gives the very same archive.
    let c = tmp.path().join("c.tar.gz");
    backup(&restored, &c, &[]);
    assert_eq!(fs::read(&a).unwrap(), fs::read(&c).unwrap());

    let again = ok(restore(&a, &restored, &[]));
    assert_contains(&stderr(&again), "0 restored, 5 unchanged");
}

#[test]
fn conflicts_are_left_alone_unless_forced_then_backed_up() {
    let tmp = tempfile::tempdir().unwrap();
    let archive = sample_archive(tmp.path());
    let dest = tmp.path().join("dest");
    let edited = dest.join("workflows/日本語 workflow.json");
    fs::create_dir_all(edited.parent().unwrap()).unwrap();
    fs::write(&edited, "{\"edited\":true}").unwrap();

    let out = restore(&archive, &dest, &[]);
    assert_eq!(out.status.code(), Some(1));
    assert_contains(&stdout(&out), "conflicting: workflows/日本語 workflow.json");
    assert_contains(
        &stderr(&out),
        "hint: compare them, then re-run with `--force`",
    );
    assert_eq!(fs::read_to_string(&edited).unwrap(), "{\"edited\":true}");
    assert!(
        dest.join("workflows/large.bin").exists(),
        "the others are restored"
    );

    let dry = ok(dry_run(&restore_args(&archive, &dest, &["--force"])));
    assert_contains(
        &stdout(&dry),
        "would restore: workflows/日本語 workflow.json",
    );
    assert_eq!(fs::read_to_string(&edited).unwrap(), "{\"edited\":true}");

    ok(restore(&archive, &dest, &["--force"]));
    assert_eq!(fs::read_to_string(&edited).unwrap(), "{}\n");
    let baks: Vec<_> = fs::read_dir(edited.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("日本語 workflow.json.bak-"))
        .collect();
    assert_eq!(baks.len(), 1, "{baks:?}");
    assert_eq!(
        fs::read_to_string(edited.with_file_name(&baks[0])).unwrap(),
        "{\"edited\":true}"
    );
}

#[test]
fn local_transfer_and_dry_run() {
    let tmp = tempfile::tempdir().unwrap();
    let root = sample_root(tmp.path());
    let dest = tmp.path().join("spark");
    let args = [
        "workflows",
        "transfer",
        "--from",
        "local",
        "--to",
        "local",
        "--from-root",
        arg(&root),
        "--to-root",
        arg(&dest),
    ];
    let dry = ok(dry_run(&args));
    assert_contains(&stdout(&dry), "would restore: workflows/large.bin");
    assert!(!dest.exists(), "--dry-run wrote something");
    let report = json_report(&ok(lifeos(&[&args[..], &["--json"]].concat())));
    assert_eq!(report["verified"], 5);
    assert_eq!(report["restored"].as_array().unwrap().len(), 5);
    assert_same_workflows(&dest, &root);
}

// ---------------------------------------------------------------- hostile archives

/// A raw tar header: the name is written byte for byte, so the tests can say what the tar
/// crate's own path checks would refuse to write.
fn raw_header(name: &str, kind: EntryType, size: u64, link: Option<&str>) -> Header {
    let mut h = Header::new_gnu();
    h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
    if let Some(link) = link {
        h.as_old_mut().linkname[..link.len()].copy_from_slice(link.as_bytes());
    }
    h.set_entry_type(kind);
    h.set_size(size);
    h.set_mode(0o644);
    h.set_cksum();
    h
}

fn file_entry(path: &str, data: &[u8]) -> serde_json::Value {
    json!({"kind": "file", "path": path, "size": data.len(), "sha256": hex::encode(Sha256::digest(data)), "mode": 0o644})
}

/// Manifest (from `listed`) first, then `entries` as given.
fn hostile(path: &Path, listed: Vec<serde_json::Value>, entries: Vec<(Header, Vec<u8>)>) {
    let manifest =
        serde_json::to_vec(&json!({"format": "lifeos-spark-workflows/1", "entries": listed}))
            .unwrap();
    let mut tar = tar::Builder::new(GzEncoder::new(
        fs::File::create(path).unwrap(),
        Compression::default(),
    ));
    tar.append(
        &raw_header(
            "lifeos-spark-manifest.json",
            EntryType::Regular,
            manifest.len() as u64,
            None,
        ),
        manifest.as_slice(),
    )
    .unwrap();
    for (header, data) in entries {
        tar.append(&header, data.as_slice()).unwrap();
    }
    tar.into_inner().unwrap().finish().unwrap();
}

fn good() -> (serde_json::Value, (Header, Vec<u8>)) {
    let data = b"{\"ok\":1}".to_vec();
    (
        file_entry("workflows/ok.json", &data),
        (
            raw_header(
                "workflows/ok.json",
                EntryType::Regular,
                data.len() as u64,
                None,
            ),
            data,
        ),
    )
}

/// Restore `archive` into `<tmp>/target/comfyui`; it must fail with `why`, and nothing may
/// change anywhere under `<tmp>` (the target stays empty, the sibling folder untouched).
fn assert_refused(
    name: &str,
    listed: Vec<serde_json::Value>,
    entries: Vec<(Header, Vec<u8>)>,
    why: &str,
) {
    let tmp = tempfile::tempdir().unwrap();
    let outside = tmp.path().join("outside");
    fs::create_dir_all(&outside).unwrap();
    fs::write(outside.join("sentinel"), "untouched").unwrap();
    let target = tmp.path().join("target/comfyui");
    fs::create_dir_all(&target).unwrap();
    let archive = tmp.path().join("hostile.tar.gz");
    hostile(&archive, listed, entries);
    let before = snapshot(tmp.path());
    let out = restore(&archive, &target, &["--force"]);
    assert_eq!(out.status.code(), Some(1), "{name}: {}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.starts_with("error: ") && err.contains(why),
        "{name}: expected `{why}` in\n{err}"
    );
    assert!(err.contains("nothing was written"), "{name}: {err}");
    assert_eq!(
        snapshot(tmp.path()),
        before,
        "{name}: something was written"
    );
    assert!(!Path::new("/tmp/lifeos-pwned").exists(), "{name}");
}

/// An entry with no data: a link to `link`, or a special file.
fn no_data(name: &str, kind: EntryType, link: Option<&str>) -> (Header, Vec<u8>) {
    (raw_header(name, kind, 0, link), vec![])
}

#[test]
fn hostile_archives_are_refused_and_write_nothing() {
    let (listed, entry) = good();
    let data = b"pwned".to_vec();
    let plain = |name: &str| {
        (
            raw_header(name, EntryType::Regular, data.len() as u64, None),
            data.clone(),
        )
    };
    // A good archive with `extra` after its one listed file.
    let assert_refused_after_good = |name: &str, extra: (Header, Vec<u8>), why: &str| {
        assert_refused(name, vec![listed.clone()], vec![entry.clone(), extra], why);
    };
    assert_refused_after_good(
        "absolute path",
        plain("/tmp/lifeos-pwned"),
        "is an absolute path",
    );
    assert_refused_after_good(
        "dot-dot",
        plain("workflows/../../../outside/sentinel"),
        "has a `..` component",
    );
    assert_refused_after_good(
        "symlink escape",
        no_data(
            "workflows/evil",
            EntryType::Symlink,
            Some("../../../outside"),
        ),
        "is a symlink to `../../../outside`: points outside the target folder",
    );
    assert_refused_after_good(
        "hardlink escape",
        no_data("workflows/hard", EntryType::Link, Some("/etc/passwd")),
        "is a hardlink to `/etc/passwd`: points outside the target folder",
    );
    assert_refused_after_good(
        "device node",
        no_data("workflows/sda", EntryType::Block, None),
        "is a device file",
    );
    assert_refused_after_good(
        "not in the manifest",
        plain("workflows/extra.json"),
        "is in the archive but not in its manifest",
    );
    let mut lying = listed.clone();
    lying["sha256"] = json!(hex::encode(Sha256::digest(b"something else")));
    assert_refused(
        "hash mismatch",
        vec![lying],
        vec![entry.clone()],
        "does not match the manifest: sha256",
    );
    assert_refused(
        "listed but missing",
        vec![listed.clone(), file_entry("workflows/zz-gone.json", b"x")],
        vec![entry.clone()],
        "is in the manifest but missing from the archive",
    );
    assert_refused(
        "manifest lists an escape",
        vec![file_entry("workflows/../x", b"x")],
        vec![],
        "has a `..` component",
    );
    assert_refused(
        "outside the workflow folders",
        vec![file_entry("models/x", &data)],
        vec![plain("models/x")],
        "is not inside a workflow folder",
    );
}

#[test]
fn a_symlink_already_in_the_target_is_not_written_through() {
    let tmp = tempfile::tempdir().unwrap();
    let archive = sample_archive(tmp.path());
    let outside = tmp.path().join("outside");
    fs::create_dir_all(&outside).unwrap();
    let dest = tmp.path().join("dest");
    fs::create_dir_all(dest.join("workflows")).unwrap();
    symlink(&outside, dest.join("workflows/portraits")).unwrap();
    let out = restore(&archive, &dest, &["--force"]);
    assert_eq!(out.status.code(), Some(1));
    assert_contains(&stderr(&out), "is a symlink on local; refusing to write");
    assert_eq!(
        fs::read_dir(&outside).unwrap().count(),
        0,
        "written through the symlink"
    );
}

// ---------------------------------------------------------------- over SSH

fn ssh_server(client: &ClientHome, alias: &str) -> Option<SshServer> {
    let server = SshServer::start(SshServerConfig {
        gpu_profile: None,
        docker_host: None,
        authorized_keys: vec![client.public_key()],
    })?;
    client.add_alias(alias, &server);
    client.trust(&server);
    Some(server)
}

/// The binary as `client` runs it (its HOME, its SSH config); it must succeed.
fn ok_as(client: &ClientHome, args: &[&str]) -> Output {
    ok(client.lifeos().args(args).output().unwrap())
}

#[test]
fn transfer_between_two_ssh_hosts_then_backup_restore_over_ssh() {
    let client = ClientHome::new();
    let Some(rtx) = ssh_server(&client, "rtx") else {
        return;
    };
    let Some(spark) = ssh_server(&client, "spark") else {
        return;
    };
    let root = sample_root(&rtx.home());
    let report = json_report(&ok_as(
        &client,
        &[
            "workflows",
            "transfer",
            "--from",
            "rtx",
            "--to",
            "spark",
            "--json",
        ],
    ));
    assert_eq!(
        (report["from"].as_str(), report["host"].as_str()),
        (Some("rtx"), Some("spark"))
    );
    assert_eq!(report["verified"], 5);
    let landed = spark.home().join("comfyui");
    assert_same_workflows(&landed, &root);
    assert!(!landed.join("models").exists());

    // Backup from one SSH host to the operator's machine, restore onto the other: unchanged.
    let archive = client.path().join("rtx.tar.gz");
    ok_as(
        &client,
        &[
            "--host",
            "rtx",
            "workflows",
            "backup",
            "--out",
            arg(&archive),
        ],
    );
    let local = tmp_backup(&root);
    assert_eq!(
        fs::read(&archive).unwrap(),
        local,
        "over SSH and locally: the same bytes"
    );
    let out = ok_as(
        &client,
        &["--host", "spark", "workflows", "restore", arg(&archive)],
    );
    assert_contains(&stderr(&out), "0 restored, 5 unchanged, 0 conflicting");
}

/// The archive of `root` made on this machine directly.
fn tmp_backup(root: &Path) -> Vec<u8> {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("local.tar.gz");
    backup(root, &out, &[]);
    fs::read(out).unwrap()
}

/// The sha256 of `len` zero bytes, streamed.
fn zeros_sha256(len: u64) -> String {
    let chunk = vec![0u8; 1 << 20];
    let mut sha = Sha256::new();
    let mut left = len;
    while left > 0 {
        let n = left.min(chunk.len() as u64) as usize;
        sha.update(&chunk[..n]);
        left -= n as u64;
    }
    hex::encode(sha.finalize())
}

/// The sha256 of a file, streamed.
fn file_sha256(path: &Path) -> String {
    let mut file = fs::File::open(path).unwrap();
    let mut sha = Sha256::new();
    std::io::copy(&mut file, &mut sha).unwrap();
    hex::encode(sha.finalize())
}

/// A restore of an archive holding one entry of `size` zeros (listed with `sha256`) under
/// `/usr/bin/time -v`: its output and the child's peak RSS in bytes.
fn restore_measured(dir: &Path, size: u64, sha256: &str) -> (Output, u64) {
    use std::io::Read;
    let archive = dir.join("big.tar.gz");
    let listed = [
        json!({"kind": "dir", "path": "workflows"}),
        json!({"kind": "file", "path": "workflows/big.json", "size": size, "sha256": sha256, "mode": 0o640}),
    ];
    let manifest =
        serde_json::to_vec(&json!({"format": "lifeos-spark-workflows/1", "entries": listed}))
            .unwrap();
    let file = fs::File::create(&archive).unwrap();
    let mut tar = tar::Builder::new(GzEncoder::new(file, Compression::fast()));
    let name = "lifeos-spark-manifest.json";
    let header = raw_header(name, EntryType::Regular, manifest.len() as u64, None);
    tar.append(&header, manifest.as_slice()).unwrap();
    let header = raw_header("workflows", EntryType::Directory, 0, None);
    tar.append(&header, std::io::empty()).unwrap();
    let header = raw_header("workflows/big.json", EntryType::Regular, size, None);
    tar.append(&header, std::io::repeat(0).take(size)).unwrap();
    tar.into_inner().unwrap().finish().unwrap();
    assert!(
        fs::metadata(&archive).unwrap().len() < 16 << 20,
        "not a small archive"
    );
    let root = dir.join("root");
    let out = Command::new("/usr/bin/time")
        .arg("-v")
        .arg(bin())
        .args(restore_args(&archive, &root, &[]))
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let peak_kb: u64 = stderr(&out)
        .lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("Maximum resident set size (kbytes): ")
        })
        .unwrap_or_else(|| panic!("no peak RSS in {}", stderr(&out)))
        .parse()
        .unwrap();
    (out, peak_kb * 1024)
}

/// Restore streams: a 1 GiB entry (about 1 MB compressed) is restored with the child's peak
/// RSS under 64 MiB, the file lands whole; the same entry with a wrong hash leaves nothing
/// under the final name, nor a temp file beside it.
#[test]
fn a_1_gib_entry_restores_in_bounded_memory_and_a_wrong_one_leaves_nothing() {
    require(
        Path::new("/usr/bin/time").exists(),
        "/usr/bin/time (GNU time)",
    )
    .expect("skipped");
    const SIZE: u64 = 1 << 30;
    let tmp = tempfile::tempdir().unwrap();
    let sha = zeros_sha256(SIZE);
    let (out, peak) = restore_measured(tmp.path(), SIZE, &sha);
    ok(out);
    eprintln!("peak RSS restoring a 1 GiB entry: {} KiB", peak / 1024);
    assert!(peak < 64 << 20, "peak RSS {peak} bytes");
    let big = tmp.path().join("root/workflows/big.json");
    assert_eq!(fs::metadata(&big).unwrap().len(), SIZE);
    assert_eq!(
        fs::metadata(&big).unwrap().permissions().mode() & 0o777,
        0o640
    );
    assert_eq!(file_sha256(&big), sha);

    let bad = tempfile::tempdir().unwrap();
    let (out, peak) = restore_measured(bad.path(), SIZE, &"0".repeat(64));
    assert!(!out.status.success());
    assert_contains(&stderr(&out), "does not match the manifest");
    assert!(peak < 64 << 20, "peak RSS {peak} bytes");
    let folder = bad.path().join("root/workflows");
    let left: Vec<_> = fs::read_dir(&folder)
        .map(|d| d.map(|e| e.unwrap().file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "left behind: {left:?}");
}

// ---------------------------------------------------------------- restore decisions
// Each of these kills a mutant cargo-mutants found alive in src/workflows/extract.rs.

/// A symlink elsewhere in the workflow folders blocks only what would go through it: the
/// other files restore. (Mutant: `path == link` -> `!=` refused every other entry.)
#[test]
fn an_unrelated_symlink_in_the_target_does_not_block_the_restore() {
    let tmp = tempfile::tempdir().unwrap();
    let archive = sample_archive(tmp.path());
    let dest = tmp.path().join("dest");
    fs::create_dir_all(dest.join("workflows")).unwrap();
    symlink("/etc/hostname", dest.join("workflows/mine.json")).unwrap();
    let out = ok(restore(&archive, &dest, &[]));
    assert_contains(&stderr(&out), "5 restored");
    let original = workflows_only(snapshot(&tmp.path().join("comfyui")));
    for (path, (_, data)) in &original {
        if let Some(data) = data {
            assert_eq!(&fs::read(dest.join(path)).unwrap(), data, "{path}");
        }
    }
    assert_eq!(
        fs::read_link(dest.join("workflows/mine.json")).unwrap(),
        Path::new("/etc/hostname")
    );
}

/// A file of the same size with other bytes is a conflict, not "unchanged": left alone
/// without `--force`, replaced (with a backup) with it. (Mutant: `size != || hash !=` -> `&&`.)
#[test]
fn a_same_size_file_with_other_bytes_is_a_conflict() {
    let tmp = tempfile::tempdir().unwrap();
    let archive = sample_archive(tmp.path());
    let dest = tmp.path().join("dest");
    let file = dest.join("workflows/private.json");
    fs::create_dir_all(file.parent().unwrap()).unwrap();
    fs::write(&file, "SECRET-ish").unwrap(); // "secret-ish": same length
    let out = restore(&archive, &dest, &[]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_contains(&stdout(&out), "conflicting: workflows/private.json");
    assert_eq!(fs::read(&file).unwrap(), b"SECRET-ish");
    ok(restore(&archive, &dest, &["--force"]));
    assert_eq!(fs::read(&file).unwrap(), b"secret-ish");
}

/// A folder where the archive has a file, or a file where it has a folder: refused, naming
/// which, and nothing written. (Mutants: both file-vs-folder guards.)
#[test]
fn a_file_where_the_archive_has_a_folder_and_the_reverse_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let archive = sample_archive(tmp.path());
    for (make, message) in [
        (
            "workflows/portraits",
            "is a file on local, the archive has a folder there",
        ),
        (
            "workflows/private.json",
            "is a folder on local, the archive has a file there",
        ),
    ] {
        let dest = tmp.path().join(format!("dest-{}", make.len()));
        let path = dest.join(make);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        if make.ends_with(".json") {
            fs::create_dir(&path).unwrap();
        } else {
            fs::write(&path, "a file").unwrap();
        }
        let before = snapshot(&dest);
        let out = restore(&archive, &dest, &["--force"]);
        assert_eq!(out.status.code(), Some(1), "{make}: {}", stderr(&out));
        assert_contains(&stderr(&out), message);
        assert_eq!(snapshot(&dest), before, "{make}: something was written");
    }
}

/// The report's byte and folder counts are those of what landed, counted here from the
/// sample tree. (Mutants: the counters.)
#[test]
fn the_restore_report_counts_the_bytes_and_folders_written() {
    let tmp = tempfile::tempdir().unwrap();
    let archive = sample_archive(tmp.path());
    let original = workflows_only(snapshot(&tmp.path().join("comfyui")));
    let bytes: usize = original
        .values()
        .filter_map(|(_, d)| d.as_ref())
        .map(Vec::len)
        .sum();
    let folders = original.values().filter(|(_, d)| d.is_none()).count();
    let dest = tmp.path().join("dest");
    let args = restore_args(&archive, &dest, &["--json"]);
    let report = json_report(&ok(lifeos(&args)));
    assert_eq!(report["bytes_written"], bytes, "{report}");
    assert_eq!(report["folders_created"], folders, "{report}");
    // Again: everything unchanged, nothing written.
    let report = json_report(&ok(lifeos(&args)));
    assert_eq!(report["bytes_written"], 0, "{report}");
    assert_eq!(report["folders_created"], 0, "{report}");
}

/// Whether process `pid` has `path` open now (its `/proc/<pid>/fd` links).
fn has_open(pid: u32, path: &Path) -> bool {
    fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|fds| {
            fds.filter_map(|fd| fs::read_link(fd.ok()?.path()).ok())
                .any(|target| target == path)
        })
        .unwrap_or(false)
}

#[test]
fn a_file_that_shrinks_while_it_is_archived_fails_the_backup_and_leaves_no_archive() {
    // The backup reads each file twice: once to hash it for the manifest, once into the
    // archive. The victim is cut to half its size as soon as the first read closed it, while
    // the other 64 MiB file is read (hashed or compressed): the archive gets fewer bytes than
    // the manifest and the header announced.
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("comfyui");
    let w = root.join("workflows");
    fs::create_dir_all(&w).unwrap();
    let victim = w.join("a-victim.bin");
    fs::write(&victim, vec![7u8; 64 << 20]).unwrap();
    fs::write(w.join("b-other.bin"), vec![9u8; 64 << 20]).unwrap();
    let out = dir.path().join("backup.tar.gz");
    let mut child = Command::new(bin())
        .args([
            "workflows",
            "backup",
            "--root",
            arg(&root),
            "--out",
            arg(&out),
        ])
        .env("NO_COLOR", "1")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    let mut seen_open = false;
    loop {
        assert!(
            std::time::Instant::now() < deadline,
            "the victim was never read"
        );
        let open = has_open(child.id(), &victim);
        if seen_open && !open {
            break;
        }
        seen_open |= open;
        assert!(
            child.try_wait().unwrap().is_none(),
            "the backup ended first"
        );
        std::thread::sleep(std::time::Duration::from_micros(500));
    }
    fs::OpenOptions::new()
        .write(true)
        .open(&victim)
        .unwrap()
        .set_len(32 << 20)
        .unwrap();
    let run = child.wait_with_output().unwrap();
    let err = stderr(&run);
    assert_eq!(run.status.code(), Some(1), "{}\n{err}", stdout(&run));
    assert_contains(&err, "the file shrank during the backup");
    assert_contains(&err, "a-victim.bin");
    // Neither the archive nor its temp file is left.
    let left: Vec<_> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n != "comfyui")
        .collect();
    assert!(left.is_empty(), "{left:?}");
}
