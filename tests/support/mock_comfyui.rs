//! A mock ComfyUI for tests: std only, built as a static binary and run as the whole content of
//! a `FROM scratch` test image. It answers the routes lifeos-spark uses, in the shapes of
//! ComfyUI's server.py (shared/reference/comfyui.md), from the folders mounted into the container:
//! - `GET /system_stats`, `/queue`, `/prompt` (also under `/api/...`)
//! - `GET /models/<folder>`: the files under `<comfy>/models/<folder>` (recursively)
//! - `GET /object_info`: built-in classes plus, for each folder in `<comfy>/custom_nodes`, the
//!   class names listed one per line in its `NODE_CLASSES` file (a stand-in for importing Python)
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
    let _ = s.write_all(b"GET /system_stats HTTP/1.0\r\n\r\n");
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
        ("GET", "/system_stats") => ("200 OK", system_stats()),
        ("GET", "/queue") => ("200 OK", queue()),
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
    // `MOCK_DEVICE` names another GPU (`cuda:0 NVIDIA GB10 : cudaMallocAsync`).
    let device = std::env::var("MOCK_DEVICE")
        .unwrap_or_else(|_| "cuda:0 NVIDIA GeForce RTX 4090 : cudaMallocAsync".into());
    format!(
        r#"{{"system": {{"os": "linux", "ram_total": {ram_total}, "ram_free": {}, "comfyui_version": "0.3.60-mock", "python_version": "3.12.3", "pytorch_version": "2.9.0+cu130", "embedded_python": false, "argv": ["main.py", "--listen", "0.0.0.0"], "deploy_environment": "mock"}},
 "devices": [{{"name": {}, "type": "cuda", "index": 0, "vram_total": 25262096384, "vram_free": 24000000000, "torch_vram_total": 0, "torch_vram_free": 0}}]}}"#,
        ram_total / 2,
        json_str(&device)
    )
}

/// `/queue` in server.py's shape: lists of `[number, prompt_id, prompt, extra_data,
/// outputs_to_execute]`, as many as `MOCK_QUEUE_RUNNING` / `MOCK_QUEUE_PENDING` say (default 0).
fn queue() -> String {
    let items = |var: &str, base: usize| {
        let n: usize = std::env::var(var).ok().and_then(|v| v.parse().ok()).unwrap_or(0);
        (base..base + n)
            .map(|i| format!(r#"[{i}, "mock-{i}", {{}}, {{"client_id": "mock"}}, []]"#))
            .collect::<Vec<_>>()
            .join(", ")
    };
    format!(
        r#"{{"queue_running": [{}], "queue_pending": [{}]}}"#,
        items("MOCK_QUEUE_RUNNING", 0),
        items("MOCK_QUEUE_PENDING", 100)
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

/// Class names from each custom node's NODE_CLASSES file; a node without one "failed to import".
fn node_classes(root: &Path) -> Vec<String> {
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
    if folder.contains("..") || folder.contains('/') {
        return ("404 Not Found", r#"{"error": "not found"}"#.into());
    }
    let mut files = Vec::new();
    walk(&root.join("models").join(folder), "", &mut files);
    files.sort();
    let list: Vec<String> = files.iter().map(|f| json_str(f)).collect();
    ("200 OK", format!("[{}]", list.join(", ")))
}

fn walk(dir: &Path, prefix: &str, out: &mut Vec<String>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let name = format!("{prefix}{}", e.file_name().to_string_lossy());
        if e.path().is_dir() {
            walk(&e.path(), &format!("{name}/"), out);
        } else if !name.ends_with(".part") {
            out.push(name);
        }
    }
}
