//! An in-process HTTP file server with real Range / If-Range / ETag / Content-Range semantics
//! and faults to inject, playing the Hugging Face hub (redirects, `X-Linked-*`, gated refusals)
//! or the CDN behind it. It runs on its own thread and runtime, so tests can call the blocking
//! library or spawn the binary.

#![allow(dead_code)] // each test file uses a different part of it

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, Response, StatusCode, Uri};
use sha2::{Digest, Sha256};

/// What to do to the next GET of a path (consumed in order), or to every one.
#[derive(Debug, Clone)]
pub enum Fault {
    /// Announce the full length, send this many body bytes, then cut the connection.
    DropAfter(u64),
    /// Answer with this status (and `Retry-After: 0` for 429/503).
    Status(u16),
    /// 403 with `X-Error-Code: GatedRepo`, as the hub answers for a gated repo.
    Gated,
    /// Ignore `Range`: 200 with the whole body.
    IgnoreRange,
    /// Serve the bytes with one flipped (the hash will not match).
    Corrupt,
    /// A 206 whose `Content-Range` names other bytes than those asked for.
    ShiftedRange,
    /// Announce the full length, send this many body bytes, then send nothing more while
    /// keeping the connection open (until the client gives up on it).
    StallAfter(u64),
}

#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub range: Option<String>,
    pub if_range: Option<String>,
    pub authorization: Option<String>,
    pub status: u16,
}

/// One response body as it ended: the bytes `[start, start + sent)` of `path` were handed to
/// the network; `complete` when that was every byte the response announced.
#[derive(Debug, Clone)]
pub struct Served {
    pub path: String,
    pub start: u64,
    pub sent: u64,
    pub complete: bool,
}

#[derive(Clone)]
struct File {
    data: Bytes,
    etag: String,
}

#[derive(Default)]
struct Shared {
    files: Mutex<HashMap<String, File>>,
    faults: Mutex<HashMap<String, VecDeque<Fault>>>,
    always: Mutex<Vec<Fault>>,
    seen: Mutex<Vec<Seen>>,
    body_bytes: AtomicU64,
    /// Bodies being sent now, and the most at once.
    in_flight: AtomicU64,
    max_in_flight: AtomicU64,
    /// Bytes per second per response, like nginx `limit_rate`.
    rate: Mutex<Option<u64>>,
    /// Bytes per second for responses whose range starts at or after this offset.
    throttle_from: Mutex<Option<(u64, u64)>>,
    /// Hold each body's first byte until this many bodies are in flight (or 10 s pass).
    gate: Mutex<Option<u64>>,
    /// Every body that ended (finished, cut, or dropped by a client that went away).
    served: Mutex<Vec<Served>>,
    /// Redirect GET (and HEAD, unless `redirect_get_only`) to this base URL, as the hub does.
    redirect: Mutex<Option<String>>,
    redirect_get_only: Mutex<bool>,
    /// Override `X-Linked-Etag` / `X-Linked-Size` on redirects.
    linked: Mutex<(Option<String>, Option<u64>)>,
}

pub struct FakeHub {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
}

/// A temp HOME with a deployment root in it, and a hub serving the files: what every test of
/// the `models` commands through the binary starts from. Test files add their own methods.
pub struct CliEnv {
    pub dir: tempfile::TempDir,
    pub hub: FakeHub,
}

impl CliEnv {
    pub fn new() -> CliEnv {
        CliEnv {
            dir: tempfile::tempdir().unwrap(),
            hub: FakeHub::start(),
        }
    }

    pub fn root(&self) -> std::path::PathBuf {
        self.dir.path().join("comfyui")
    }

    /// The binary as an operator on this machine would run it, with a clean HOME (no token).
    pub fn cmd(&self, manifest: &Path, args: &[&str]) -> Command {
        models_cmd(self.dir.path(), manifest, &self.root(), args)
    }

    pub fn run(&self, manifest: &Path, args: &[&str]) -> Output {
        self.cmd(manifest, args).output().unwrap()
    }
}

/// `lifeos-spark models ARGS --manifest MANIFEST --root ROOT` as an operator on this machine
/// would run it, with `home` as HOME and no Hugging Face variables (no token, no mirror).
pub fn models_cmd(home: &Path, manifest: &Path, root: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_lifeos-spark"));
    cmd.env("HOME", home)
        .env("NO_COLOR", "1")
        .env_remove("HF_TOKEN")
        .env_remove("HF_HOME")
        .env_remove("HF_ENDPOINT")
        .arg("models")
        .args(args)
        .arg("--manifest")
        .arg(manifest)
        .arg("--root")
        .arg(root);
    cmd
}

/// A finished command's status, stdout and stderr, for assertion messages.
pub fn output_text(out: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A manifest entry (docs/models.md) for `data` served at `url`, as a YAML item of `models:`.
pub fn manifest_entry(id: &str, url: &str, dest: &str, data: &[u8]) -> String {
    format!(
        "  - id: {id}\n    url: {url}\n    dest: {dest}\n    size: {}\n    sha256: {}\n",
        data.len(),
        sha256_hex(data)
    )
}

/// `dir/manifest.yaml` with the one entry `manifest_entry` makes.
pub fn one_model_manifest(
    dir: &Path,
    id: &str,
    url: &str,
    dest: &str,
    data: &[u8],
) -> std::path::PathBuf {
    let path = dir.join("manifest.yaml");
    let text =
        "name: t\ndescription: t\nmodels:\n".to_string() + &manifest_entry(id, url, dest, data);
    std::fs::write(&path, text).unwrap();
    path
}

pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// Deterministic pseudo-random bytes (a model file stand-in).
pub fn bytes_of(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

impl FakeHub {
    pub fn start() -> FakeHub {
        let shared = Arc::new(Shared::default());
        let (tx, rx) = std::sync::mpsc::channel();
        let state = shared.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                tx.send(listener.local_addr().unwrap()).unwrap();
                let app = axum::Router::new().fallback(handle).with_state(state);
                axum::serve(listener, app).await.unwrap();
            });
        });
        FakeHub {
            addr: rx.recv().unwrap(),
            shared,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn put(&self, path: &str, data: Vec<u8>, etag: &str) {
        self.shared.files.lock().unwrap().insert(
            path.to_string(),
            File {
                data: data.into(),
                etag: format!("\"{etag}\""),
            },
        );
    }

    pub fn fault(&self, path: &str, fault: Fault) {
        self.shared
            .faults
            .lock()
            .unwrap()
            .entry(path.to_string())
            .or_default()
            .push_back(fault);
    }

    pub fn always(&self, fault: Fault) {
        self.shared.always.lock().unwrap().push(fault);
    }

    pub fn clear_faults(&self) {
        self.shared.faults.lock().unwrap().clear();
        self.shared.always.lock().unwrap().clear();
    }

    pub fn rate_limit(&self, bytes_per_sec: Option<u64>) {
        *self.shared.rate.lock().unwrap() = bytes_per_sec;
    }

    /// Send responses whose range starts at or after `offset` at `bytes_per_sec` (the rest at
    /// full speed): the first pieces of a file finish, the later ones stay in flight.
    pub fn throttle_from(&self, offset_and_rate: Option<(u64, u64)>) {
        *self.shared.throttle_from.lock().unwrap() = offset_and_rate;
    }

    /// Hold every body until `n` are in flight at once (10 s at most): a test of "n at once"
    /// then depends on the client opening n, not on how the scheduler spreads them in time.
    pub fn gate(&self, n: Option<u64>) {
        *self.shared.gate.lock().unwrap() = n;
    }

    /// The log of bodies that ended, in the order they ended.
    pub fn served(&self) -> Vec<Served> {
        self.shared.served.lock().unwrap().clone()
    }

    /// Redirect to `cdn` (same paths there), as the hub does for LFS files.
    pub fn redirect_to(&self, cdn: &FakeHub, get_only: bool) {
        *self.shared.redirect.lock().unwrap() =
            Some(format!("http://localhost:{}", cdn.addr.port()));
        *self.shared.redirect_get_only.lock().unwrap() = get_only;
    }

    pub fn linked(&self, sha256: Option<&str>, size: Option<u64>) {
        *self.shared.linked.lock().unwrap() = (sha256.map(str::to_string), size);
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.shared.seen.lock().unwrap().clone()
    }

    pub fn gets(&self) -> Vec<Seen> {
        self.seen()
            .into_iter()
            .filter(|s| s.method == "GET")
            .collect()
    }

    /// The most response bodies that were being sent at the same time.
    pub fn max_in_flight(&self) -> u64 {
        self.shared.max_in_flight.load(Ordering::SeqCst)
    }

    /// Response bodies being sent now.
    pub fn in_flight(&self) -> u64 {
        self.shared.in_flight.load(Ordering::SeqCst)
    }

    /// Body bytes handed to the network so far.
    pub fn body_bytes(&self) -> u64 {
        self.shared.body_bytes.load(Ordering::SeqCst)
    }
}

async fn handle(
    State(s): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response<Body> {
    let path = uri.path().to_string();
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let mut seen = Seen {
        method: method.to_string(),
        path: path.clone(),
        range: header("range"),
        if_range: header("if-range"),
        authorization: header("authorization"),
        status: 0,
    };
    let response = answer(&s, &method, &path, &seen);
    seen.status = response.status().as_u16();
    s.seen.lock().unwrap().push(seen);
    response
}

fn answer(s: &Arc<Shared>, method: &Method, path: &str, req: &Seen) -> Response<Body> {
    let Some(file) = s.files.lock().unwrap().get(path).cloned() else {
        return status(404);
    };
    let fault = if *method == Method::GET {
        let queued = s
            .faults
            .lock()
            .unwrap()
            .get_mut(path)
            .and_then(|q| q.pop_front());
        queued.or_else(|| s.always.lock().unwrap().first().cloned())
    } else {
        None
    };
    match fault {
        Some(Fault::Status(code)) => return status(code),
        Some(Fault::Gated) => {
            let mut r = status(403);
            r.headers_mut()
                .insert("x-error-code", HeaderValue::from_static("GatedRepo"));
            return r;
        }
        _ => {}
    }
    let redirect = s.redirect.lock().unwrap().clone();
    let get_only = *s.redirect_get_only.lock().unwrap();
    if let Some(base) = redirect.filter(|_| *method == Method::GET || !get_only) {
        let (sha, size) = s.linked.lock().unwrap().clone();
        let mut r = status(302);
        let h = r.headers_mut();
        h.insert("location", format!("{base}{path}").parse().unwrap());
        let sha = sha.unwrap_or_else(|| sha256_hex(&file.data));
        h.insert("x-linked-etag", format!("\"{sha}\"").parse().unwrap());
        h.insert(
            "x-linked-size",
            size.unwrap_or(file.data.len() as u64).into(),
        );
        return r;
    }
    let len = file.data.len() as u64;
    let range = req
        .range
        .as_deref()
        .filter(|_| !matches!(fault, Some(Fault::IgnoreRange)))
        .filter(|_| req.if_range.as_ref().is_none_or(|v| *v == file.etag));
    let (code, start, end) = match range.map(|r| parse_range(r, len)) {
        None => (200, 0, len),
        Some(Some((a, b))) => (206, a, b),
        Some(None) => {
            let mut r = status(416);
            r.headers_mut()
                .insert("content-range", format!("bytes */{len}").parse().unwrap());
            return r;
        }
    };
    let mut data = file.data.slice(start as usize..end as usize);
    if matches!(fault, Some(Fault::Corrupt)) && !data.is_empty() {
        let mut v = data.to_vec();
        v[0] ^= 0xff;
        data = v.into();
    }
    let mut builder = Response::builder()
        .status(code)
        .header("etag", &file.etag)
        .header("accept-ranges", "bytes")
        .header("content-length", end - start);
    if code == 206 {
        let shift = if matches!(fault, Some(Fault::ShiftedRange)) {
            1
        } else {
            0
        };
        builder = builder.header(
            "content-range",
            format!("bytes {}-{}/{len}", start + shift, end - 1),
        );
    }
    if *method == Method::HEAD {
        return builder.body(Body::empty()).unwrap();
    }
    let cut = match fault {
        Some(Fault::DropAfter(n) | Fault::StallAfter(n)) => {
            Some(n.min(data.len() as u64 - 1) as usize)
        }
        _ => None,
    };
    let stall = matches!(fault, Some(Fault::StallAfter(_)));
    let throttle = s
        .throttle_from
        .lock()
        .unwrap()
        .filter(|(from, _)| start >= *from);
    let rate = throttle.map(|(_, r)| r).or(*s.rate.lock().unwrap());
    let log = Served {
        path: path.to_string(),
        start,
        sent: 0,
        complete: false,
    };
    builder
        .body(stream_body(s.clone(), data, cut, stall, rate, log))
        .unwrap()
}

/// Counts a body as in flight from its creation until it is dropped (sent or abandoned), and
/// logs how far it got when it is.
struct InFlight(Arc<Shared>, Mutex<Served>);

impl InFlight {
    fn new(s: Arc<Shared>, log: Served) -> InFlight {
        let now = s.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        s.max_in_flight.fetch_max(now, Ordering::SeqCst);
        InFlight(s, Mutex::new(log))
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
        let log = self.1.lock().unwrap().clone();
        self.0.served.lock().unwrap().push(log);
    }
}

/// The body in 16 KiB chunks, counted, optionally throttled, optionally cut short (the
/// connection dropped, or held silent when `stall`).
fn stream_body(
    s: Arc<Shared>,
    data: Bytes,
    cut: Option<usize>,
    stall: bool,
    rate: Option<u64>,
    log: Served,
) -> Body {
    const CHUNK: usize = 16 << 10;
    let guard = Arc::new(InFlight::new(s.clone(), log));
    let stream = futures_util::stream::unfold(0usize, move |pos| {
        let (s, data, guard) = (s.clone(), data.clone(), guard.clone());
        async move {
            if pos == usize::MAX {
                return None;
            }
            let end = cut.unwrap_or(data.len());
            let gate = *s.gate.lock().unwrap();
            if let Some(n) = gate.filter(|_| pos == 0) {
                let until = tokio::time::Instant::now() + Duration::from_secs(10);
                while s.in_flight.load(Ordering::SeqCst) < n && tokio::time::Instant::now() < until
                {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
            if pos >= end && stall {
                // Silent, the connection open: only the client's read timeout ends this.
                tokio::time::sleep(Duration::from_secs(600)).await;
                return None;
            }
            if pos >= end {
                // Let the bytes sent so far reach the client before the cut (an abort with
                // unsent or unread data would reset the connection and lose them).
                tokio::time::sleep(Duration::from_millis(100)).await;
                return cut.map(|_| {
                    (
                        Err(std::io::Error::other("fault: connection cut")),
                        usize::MAX,
                    )
                });
            }
            let next = (pos + CHUNK).min(end);
            if let Some(rate) = rate {
                tokio::time::sleep(Duration::from_secs_f64((next - pos) as f64 / rate as f64))
                    .await;
            }
            s.body_bytes
                .fetch_add((next - pos) as u64, Ordering::SeqCst);
            {
                let mut log = guard.1.lock().unwrap();
                log.sent = next as u64;
                log.complete = cut.is_none() && next == data.len();
            }
            Some((Ok::<_, std::io::Error>(data.slice(pos..next)), next))
        }
    });
    Body::from_stream(stream)
}

fn status(code: u16) -> Response<Body> {
    let mut r = Response::new(Body::from(format!("fault {code}")));
    *r.status_mut() = StatusCode::from_u16(code).unwrap();
    if code == 429 || code == 503 {
        r.headers_mut()
            .insert("retry-after", HeaderValue::from_static("0"));
    }
    r
}

/// `bytes=a-b` or `bytes=a-` within `len`, as `[a, b+1)`; `None` when not satisfiable.
fn parse_range(value: &str, len: u64) -> Option<(u64, u64)> {
    let (a, b) = value.strip_prefix("bytes=")?.split_once('-')?;
    let a: u64 = a.parse().ok()?;
    let b: u64 = if b.is_empty() {
        len - 1
    } else {
        b.parse::<u64>().ok()?.min(len - 1)
    };
    (a < len && a <= b).then_some((a, b + 1))
}
