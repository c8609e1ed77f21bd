//! A mock ComfyUI for tests: std only, built as a static binary and run as the whole content of
//! a `FROM scratch` test image. It answers the routes lifeos-spark uses, in the shapes of
//! ComfyUI's server.py (shared/reference/comfyui.md), from the folders mounted into the container:
//! - `GET /system_stats`, `/queue`, `/prompt` (also under `/api/...`)
//! - `GET /models/<folder>`: as ComfyUI's `folder_paths.get_filename_list`: 404 for a folder
//!   ComfyUI does not register (`insightface`), else the files with a model extension under the
//!   folder's directories, recursively (`.git` skipped), sorted
//! - `GET /object_info`: built-in classes plus, for each folder in `<comfy>/custom_nodes`, the
//!   class names listed one per line in its `NODE_CLASSES` file (a stand-in for importing Python),
//!   read once at startup as ComfyUI imports nodes once: new nodes show after a restart
//! - faults for tests of the waits, from `MOCK_COMFYUI_*` variables or from
//!   `<comfy>/user/mock-comfyui.env` (`KEY=VALUE` lines; the playbook sets no environment):
//!   `START_DELAY=<s>` listen only after that long; `FAIL_FIRST=<n>` the first n `/system_stats`
//!   answer 500; `BAD_JSON_FIRST=<n>` the next n answer 200 with broken JSON; `STATUS=<code>`
//!   every `/system_stats` answers that status. Each fault answer is logged on stdout.
//!
//! Run `mock-comfyui --check ADDR` as a healthcheck: exit 0 when URL answers 200.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--check") {
        std::process::exit(check(args.get(2).map_or("127.0.0.1:8188", String::as_str)));
    }
    let root = PathBuf::from(std::env::var("COMFY_ROOT").unwrap_or_else(|_| "/opt/ComfyUI".into()));
    let port = std::env::var("PORT").unwrap_or_else(|_| "8188".into());
    let modes = faults::modes(&root);
    if modes.start_delay > 0 {
        println!("mock: starting in {}s (START_DELAY)", modes.start_delay);
        std::thread::sleep(std::time::Duration::from_secs(modes.start_delay));
    }
    startup::snapshot(&root);
    let listener = TcpListener::bind(format!("0.0.0.0:{port}")).expect("bind");
    println!("Starting server\nTo see the GUI go to: http://0.0.0.0:{port}");
    for line in loaded_nodes(&root) {
        println!("{line}");
    }
    for stream in listener.incoming().flatten() {
        let root = root.clone();
        std::thread::spawn(move || handle(stream, &root));
    }
}

fn check(addr: &str) -> i32 {
    let Ok(mut s) = TcpStream::connect(addr) else {
        return 1;
    };
    // Its own path, so the faults a test sets count only the requests of the tool under test.
    let _ = s.write_all(b"GET /system_stats?healthcheck HTTP/1.0\r\n\r\n");
    let mut head = String::new();
    let _ = BufReader::new(s).read_line(&mut head);
    if head.contains(" 200 ") {
        0
    } else {
        1
    }
}

fn handle(mut stream: TcpStream, root: &Path) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut request = String::new();
    if reader.read_line(&mut request).is_err() {
        return;
    }
    let mut length = 0;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
            break;
        }
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            length = v.trim().parse().unwrap_or(0);
        }
    }
    let mut body = vec![0; length];
    let _ = reader.read_exact(&mut body);
    let mut parts = request.split_whitespace();
    let method = parts.next().unwrap_or("");
    let path = parts.next().unwrap_or("/");
    let path = path.strip_prefix("/api").unwrap_or(path);
    let (status, json) = route(method, path, root);
    let reply = format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{json}",
        json.len()
    );
    let _ = stream.write_all(reply.as_bytes());
}

fn route(method: &str, path: &str, root: &Path) -> (&'static str, String) {
    match (method, path) {
        ("GET", "/system_stats") => faults::system_stats().unwrap_or(("200 OK", system_stats())),
        ("GET", "/system_stats?healthcheck") => ("200 OK", system_stats()),
        ("GET", "/queue") => (
            "200 OK",
            r#"{"queue_running": [], "queue_pending": []}"#.into(),
        ),
        ("GET", "/prompt") => ("200 OK", r#"{"exec_info": {"queue_remaining": 0}}"#.into()),
        ("GET", "/object_info") => ("200 OK", object_info(root)),
        ("GET", p) if p.starts_with("/models/") => models(root, &p["/models/".len()..]),
        ("GET", "/") => ("200 OK", "{}".into()),
        _ => ("404 Not Found", r#"{"error": "not found"}"#.into()),
    }
}

fn system_stats() -> String {
    let ram_total = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .next()?
                .split_whitespace()
                .nth(1)?
                .parse::<u64>()
                .ok()
        })
        .unwrap_or(0)
        * 1024;
    format!(
        r#"{{"system": {{"os": "linux", "ram_total": {ram_total}, "ram_free": {}, "comfyui_version": "0.3.60-mock", "python_version": "3.12.3", "pytorch_version": "2.9.0+cu130", "embedded_python": false, "argv": ["main.py", "--listen", "0.0.0.0"], "deploy_environment": "mock"}},
 "devices": [{{"name": "cuda:0 NVIDIA GeForce RTX 4090 : cudaMallocAsync", "type": "cuda", "index": 0, "vram_total": 25262096384, "vram_free": 24000000000, "torch_vram_total": 0, "torch_vram_free": 0}}]}}"#,
        ram_total / 2
    )
}

fn json_str(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out += "\\\"",
            '\\' => out += "\\\\",
            c if (c as u32) < 0x20 => out += &format!("\\u{:04x}", c as u32),
            c => out.push(c),
        }
    }
    out + "\""
}

/// The classes loaded at startup (ComfyUI imports custom nodes once, when it starts).
fn node_classes(_root: &Path) -> Vec<String> {
    startup::classes()
}

/// Class names from each custom node's NODE_CLASSES file; a node without one "failed to import".
fn read_node_classes(root: &Path) -> Vec<String> {
    let mut classes = vec!["CheckpointLoaderSimple".to_string(), "KSampler".to_string()];
    let Ok(entries) = std::fs::read_dir(root.join("custom_nodes")) else {
        return classes;
    };
    for entry in entries.flatten() {
        if let Ok(text) = std::fs::read_to_string(entry.path().join("NODE_CLASSES")) {
            classes.extend(
                text.lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty())
                    .map(String::from),
            );
        }
    }
    classes
}

fn loaded_nodes(root: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(root.join("custom_nodes")) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter(|e| e.path().is_dir())
        .map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            if e.path().join("NODE_CLASSES").exists() {
                format!("   0.1 seconds: /opt/ComfyUI/custom_nodes/{name}")
            } else {
                format!("Cannot import /opt/ComfyUI/custom_nodes/{name} module for custom nodes: No module named 'insightface'\n   0.0 seconds (IMPORT FAILED): /opt/ComfyUI/custom_nodes/{name}")
            }
        })
        .collect()
}

fn object_info(root: &Path) -> String {
    let items: Vec<String> = node_classes(root)
        .iter()
        .map(|c| format!(r#"{}: {{"name": {0}, "display_name": {0}, "category": "mock", "input": {{}}, "output": []}}"#, json_str(c)))
        .collect();
    format!("{{{}}}", items.join(", "))
}

fn models(root: &Path, folder: &str) -> (&'static str, String) {
    let Some((dirs, extensions)) = startup::folder(folder) else {
        // server.py: `if not folder in folder_paths.folder_names_and_paths: web.Response(status=404)`
        return ("404 Not Found", String::new());
    };
    let mut files = Vec::new();
    for dir in dirs {
        walk(&root.join("models").join(dir), "", &mut files);
    }
    // folder_paths.filter_files_extensions: the extension, lowercased, in the folder's set (an
    // empty set lets everything through); then sorted, duplicates merged.
    files.retain(|f| {
        let ext = Path::new(f)
            .extension()
            .map(|e| format!(".{}", e.to_string_lossy().to_lowercase()))
            .unwrap_or_default();
        extensions.is_empty() || extensions.contains(&ext.as_str())
    });
    files.sort();
    files.dedup();
    let list: Vec<String> = files.iter().map(|f| json_str(f)).collect();
    ("200 OK", format!("[{}]", list.join(", ")))
}

/// folder_paths.recursive_search: every file below `dir`, relative, `.git` folders skipped.
fn walk(dir: &Path, prefix: &str, out: &mut Vec<String>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let name = format!("{prefix}{}", e.file_name().to_string_lossy());
        if e.path().is_dir() {
            if e.file_name() != ".git" {
                walk(&e.path(), &format!("{name}/"), out);
            }
        } else {
            out.push(name);
        }
    }
}

/// What ComfyUI settles when it starts: the custom nodes' classes and the model folders it
/// registers (ComfyUI's folder_paths.py, plus those a loaded custom node adds, listed in its
/// `MODEL_FOLDERS` file as `name ext ext...`, as ComfyUI_IPAdapter_plus adds `ipadapter`).
mod startup {
    use std::path::Path;
    use std::sync::OnceLock;

    /// folder_paths.supported_pt_extensions
    const PT: &[&str] = &[
        ".ckpt", ".pt", ".pt2", ".bin", ".pth", ".safetensors", ".pkl", ".sft",
    ];

    type Folder = (String, Vec<String>, Vec<&'static str>);
    static CLASSES: OnceLock<Vec<String>> = OnceLock::new();
    static FOLDERS: OnceLock<Vec<Folder>> = OnceLock::new();

    pub fn snapshot(root: &Path) {
        let _ = CLASSES.set(super::read_node_classes(root));
        let _ = FOLDERS.set(folders(root));
    }

    pub fn classes() -> Vec<String> {
        CLASSES.get().cloned().unwrap_or_default()
    }

    /// The directories under `models/` and the extensions of a registered folder.
    pub fn folder(name: &str) -> Option<(Vec<String>, Vec<&'static str>)> {
        FOLDERS
            .get()?
            .iter()
            .find(|(n, _, _)| n == name)
            .map(|(_, dirs, ext)| (dirs.clone(), ext.clone()))
    }

    fn folders(root: &Path) -> Vec<Folder> {
        let pt = || PT.to_vec();
        let one = |n: &str, ext: Vec<&'static str>| (n.to_string(), vec![n.to_string()], ext);
        let mut out = vec![
            one("checkpoints", pt()),
            one("configs", vec![".yaml"]),
            one("loras", pt()),
            one("vae", pt()),
            ("text_encoders".into(), vec!["text_encoders".into(), "clip".into()], pt()),
            ("diffusion_models".into(), vec!["unet".into(), "diffusion_models".into()], pt()),
            one("clip_vision", pt()),
            one("style_models", pt()),
            one("embeddings", pt()),
            one("diffusers", vec!["folder"]),
            one("vae_approx", pt()),
            ("controlnet".into(), vec!["controlnet".into(), "t2i_adapter".into()], pt()),
            one("gligen", pt()),
            one("upscale_models", pt()),
            one("hypernetworks", pt()),
            one("photomaker", pt()),
            one("classifiers", vec![""]),
        ];
        let Ok(nodes) = std::fs::read_dir(root.join("custom_nodes")) else {
            return out;
        };
        for node in nodes.flatten() {
            let Ok(text) = std::fs::read_to_string(node.path().join("MODEL_FOLDERS")) else {
                continue;
            };
            for line in text.lines() {
                let mut words = line.split_whitespace();
                if let Some(name) = words.next() {
                    let ext: Vec<&'static str> = words
                        .map(|w| &*Box::leak(w.to_string().into_boxed_str()))
                        .collect();
                    out.push(one(name, if ext.is_empty() { pt() } else { ext }));
                }
            }
        }
        out
    }
}

/// Test-chosen faults on `/system_stats`, for `up`'s wait, retry and timeout paths.
mod faults {
    use std::path::Path;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::OnceLock;

    #[derive(Default, Debug)]
    pub struct Modes {
        pub start_delay: u64,
        pub fail_first: u64,
        pub bad_json_first: u64,
        pub status: Option<u16>,
    }

    static MODES: OnceLock<Modes> = OnceLock::new();
    static ANSWERED: AtomicU64 = AtomicU64::new(0);

    /// From `MOCK_COMFYUI_<KEY>` variables, else `<root>/user/mock-comfyui.env`.
    pub fn modes(root: &Path) -> &'static Modes {
        MODES.get_or_init(|| {
            let file = std::fs::read_to_string(root.join("user/mock-comfyui.env")).unwrap_or_default();
            let get = |key: &str| {
                std::env::var(format!("MOCK_COMFYUI_{key}")).ok().or_else(|| {
                    file.lines()
                        .find_map(|l| l.trim().strip_prefix(key)?.strip_prefix('='))
                        .map(|v| v.trim().to_string())
                })
            };
            let num = |key: &str| get(key).and_then(|v| v.parse().ok()).unwrap_or(0);
            Modes {
                start_delay: num("START_DELAY"),
                fail_first: num("FAIL_FIRST"),
                bad_json_first: num("BAD_JSON_FIRST"),
                status: get("STATUS").and_then(|v| v.parse().ok()),
            }
        })
    }

    /// A fault answer for this `/system_stats` request, or `None` for the real one.
    pub fn system_stats() -> Option<(&'static str, String)> {
        let m = MODES.get()?;
        let n = ANSWERED.fetch_add(1, Ordering::SeqCst);
        let answer = if let Some(code) = m.status {
            Some((status_line(code), format!("{{\"error\": \"mock status {code}\"}}")))
        } else if n < m.fail_first {
            Some(("500 Internal Server Error", "{\"error\": \"mock: starting\"}".into()))
        } else if n < m.fail_first + m.bad_json_first {
            Some(("200 OK", "{\"system\": {\"os\": ".into()))
        } else {
            None
        };
        if let Some((status, _)) = &answer {
            println!("mock: /system_stats request {} answered {status} (fault)", n + 1);
        }
        answer
    }

    fn status_line(code: u16) -> &'static str {
        match code {
            500 => "500 Internal Server Error",
            502 => "502 Bad Gateway",
            503 => "503 Service Unavailable",
            404 => "404 Not Found",
            _ => "500 Internal Server Error",
        }
    }
}
