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
//! - generation (the `generation` module): `POST /prompt` validated against the input schemas
//!   `/object_info` serves, `GET /history[/<id>]`, `GET /view`; see that module for failure modes
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
    if let Some((status, kind, bytes)) = generation::route(method, path, &body, root) {
        let head = format!(
            "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            bytes.len()
        );
        let _ = stream.write_all(head.as_bytes());
        let _ = stream.write_all(&bytes);
        return;
    }
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

/// The classes loaded at startup (ComfyUI imports custom nodes once, when it starts).
fn node_classes(_root: &Path) -> Vec<String> {
    startup::classes()
}

/// Class names from each custom node's NODE_CLASSES file; a node without one "failed to import".
fn read_node_classes(root: &Path) -> Vec<String> {
    let mut classes: Vec<String> = generation::BUILT_IN.iter().map(|c| c.to_string()).collect();
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
        .map(|c| generation::class_info(c, root).unwrap_or_else(|| format!(r#"{}: {{"name": {0}, "display_name": {0}, "category": "mock", "input": {{}}, "output": []}}"#, json_str(c))))
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

/// Running graphs, in the shapes of ComfyUI's server.py and execution.py: `POST /prompt`
/// validates the graph against the schemas `/object_info` serves (unknown class, missing
/// required input, value not in list, link type mismatch, invalid LoadImage file, no output
/// node: the real 400 `{error, node_errors}`), then "runs" it on a thread: the loaders check
/// their files as the real nodes do, SaveImage writes a real PNG of the EmptyLatentImage's size
/// to `output/`, and `/history/<id>` gets `outputs` and `status.messages`.
///
/// Every graph received is appended to `<comfy>/user/mock_prompts.jsonl` (the request body).
/// `<comfy>/user/mock_generate` picks a failure mode: `exec_error` (IPAdapterFaceID raises
/// "InsightFace: No face detected."), `no_image` (success without images), `never` (the prompt
/// never finishes).
mod generation {
    use super::json_str;
    use std::io::Write;
    use std::path::Path;
    use std::sync::{Mutex, OnceLock};
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    pub const BUILT_IN: [&str; 9] = [
        "CheckpointLoaderSimple",
        "VAELoader",
        "LoraLoaderModelOnly",
        "CLIPTextEncode",
        "EmptyLatentImage",
        "KSampler",
        "VAEDecode",
        "SaveImage",
        "LoadImage",
    ];

    enum Kind {
        Link(&'static str),
        Int,
        Float,
        Str,
        Folder(&'static str),
        Fixed(&'static [&'static str]),
        /// LoadImage's `image`: checked by its VALIDATE_INPUTS (the file must exist).
        InputImage,
    }

    const SAMPLERS: &[&str] = &[
        "euler",
        "euler_ancestral",
        "heun",
        "dpmpp_2m",
        "dpmpp_2m_sde",
        "ddim",
        "uni_pc",
    ];
    const SCHEDULERS: &[&str] = &[
        "normal",
        "karras",
        "exponential",
        "sgm_uniform",
        "simple",
        "ddim_uniform",
        "beta",
    ];
    const FACEID_PRESETS: &[&str] = &[
        "FACEID",
        "FACEID PLUS - SD1.5 only",
        "FACEID PLUS V2",
        "FACEID PORTRAIT (style transfer)",
        "FACEID PORTRAIT UNNORM - SDXL only (strong)",
    ];
    const PROVIDERS: &[&str] = &["CPU", "CUDA", "ROCM", "DirectML", "OpenVINO", "CoreML"];
    const WEIGHT_TYPES: &[&str] = &[
        "linear",
        "ease in",
        "ease out",
        "ease in-out",
        "reverse in-out",
        "weak input",
        "weak output",
        "weak middle",
        "strong middle",
        "style transfer",
        "composition",
        "strong style transfer",
        "style and composition",
        "style transfer precise",
        "composition precise",
    ];
    const COMBINE: &[&str] = &["concat", "add", "subtract", "average", "norm average"];
    const SCALING: &[&str] = &[
        "V only",
        "K+V",
        "K+V w/ C penalty",
        "K+mean(V) w/ C penalty",
    ];

    /// Required inputs and outputs of each class, from ComfyUI's nodes.py and
    /// ComfyUI_IPAdapter_plus's IPAdapterPlus.py (commit 9d076a3).
    fn schema(class: &str) -> Option<(Vec<(&'static str, Kind)>, &'static [&'static str])> {
        use Kind::*;
        Some(match class {
            "CheckpointLoaderSimple" => (
                vec![("ckpt_name", Folder("checkpoints"))],
                &["MODEL", "CLIP", "VAE"],
            ),
            "VAELoader" => (vec![("vae_name", Folder("vae"))], &["VAE"]),
            "LoraLoaderModelOnly" => (
                vec![
                    ("model", Link("MODEL")),
                    ("lora_name", Folder("loras")),
                    ("strength_model", Float),
                ],
                &["MODEL"],
            ),
            "CLIPTextEncode" => (
                vec![("text", Str), ("clip", Link("CLIP"))],
                &["CONDITIONING"],
            ),
            "EmptyLatentImage" => (
                vec![("width", Int), ("height", Int), ("batch_size", Int)],
                &["LATENT"],
            ),
            "KSampler" => (
                vec![
                    ("model", Link("MODEL")),
                    ("seed", Int),
                    ("steps", Int),
                    ("cfg", Float),
                    ("sampler_name", Fixed(SAMPLERS)),
                    ("scheduler", Fixed(SCHEDULERS)),
                    ("positive", Link("CONDITIONING")),
                    ("negative", Link("CONDITIONING")),
                    ("latent_image", Link("LATENT")),
                    ("denoise", Float),
                ],
                &["LATENT"],
            ),
            "VAEDecode" => (
                vec![("samples", Link("LATENT")), ("vae", Link("VAE"))],
                &["IMAGE"],
            ),
            "SaveImage" => (
                vec![("images", Link("IMAGE")), ("filename_prefix", Str)],
                &[],
            ),
            "LoadImage" => (vec![("image", InputImage)], &["IMAGE", "MASK"]),
            "IPAdapterUnifiedLoaderFaceID" => (
                vec![
                    ("model", Link("MODEL")),
                    ("preset", Fixed(FACEID_PRESETS)),
                    ("lora_strength", Float),
                    ("provider", Fixed(PROVIDERS)),
                ],
                &["MODEL", "IPADAPTER"],
            ),
            "IPAdapterFaceID" => (
                vec![
                    ("model", Link("MODEL")),
                    ("ipadapter", Link("IPADAPTER")),
                    ("image", Link("IMAGE")),
                    ("weight", Float),
                    ("weight_faceidv2", Float),
                    ("weight_type", Fixed(WEIGHT_TYPES)),
                    ("combine_embeds", Fixed(COMBINE)),
                    ("start_at", Float),
                    ("end_at", Float),
                    ("embeds_scaling", Fixed(SCALING)),
                ],
                &["MODEL", "IMAGE"],
            ),
            _ => return None,
        })
    }

    fn folder_files(root: &Path, folder: &str) -> Vec<String> {
        let mut files = Vec::new();
        super::walk(&root.join("models").join(folder), "", &mut files);
        files.sort();
        files
    }

    fn choices(root: &Path, kind: &Kind) -> Option<Vec<String>> {
        match kind {
            Kind::Folder(f) => Some(folder_files(root, f)),
            Kind::Fixed(list) => Some(list.iter().map(|s| s.to_string()).collect()),
            Kind::InputImage => {
                let mut files = Vec::new();
                super::walk(&root.join("input"), "", &mut files);
                Some(files)
            }
            _ => None,
        }
    }

    /// The `/object_info` entry of a class with a schema, in ComfyUI's shape.
    pub fn class_info(class: &str, root: &Path) -> Option<String> {
        let (inputs, outputs) = schema(class)?;
        let required: Vec<String> = inputs
            .iter()
            .map(|(name, kind)| {
                let spec = match (kind, choices(root, kind)) {
                    (_, Some(list)) => format!(
                        "[[{}]]",
                        list.iter()
                            .map(|s| json_str(s))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                    (Kind::Link(t), _) => format!("[{}]", json_str(t)),
                    (Kind::Int, _) => r#"["INT", {"default": 0}]"#.into(),
                    (Kind::Float, _) => r#"["FLOAT", {"default": 1.0}]"#.into(),
                    _ => r#"["STRING", {"multiline": true}]"#.into(),
                };
                format!("{}: {spec}", json_str(name))
            })
            .collect();
        let outs: Vec<String> = outputs.iter().map(|o| json_str(o)).collect();
        Some(format!(
            r#"{}: {{"input": {{"required": {{{}}}}}, "output": [{}], "output_is_list": [], "output_name": [{2}], "name": {0}, "display_name": {0}, "description": "", "category": "mock", "output_node": {}}}"#,
            json_str(class),
            required.join(", "),
            outs.join(", "),
            class == "SaveImage"
        ))
    }

    type Reply = (String, &'static str, Vec<u8>);

    fn json(status: &str, body: String) -> Reply {
        (status.to_string(), "application/json", body.into_bytes())
    }

    pub fn route(method: &str, path: &str, body: &[u8], root: &Path) -> Option<Reply> {
        let (path, query) = path.split_once('?').unwrap_or((path, ""));
        match (method, path) {
            ("POST", "/prompt") => Some(prompt(body, root)),
            ("GET", "/history") => Some(json("200 OK", history_json(None))),
            ("GET", p) if p.starts_with("/history/") => {
                Some(json("200 OK", history_json(Some(&p["/history/".len()..]))))
            }
            ("GET", "/view") => Some(view(query, root)),
            _ => None,
        }
    }

    // ---- history ------------------------------------------------------------------------

    fn history() -> &'static Mutex<Vec<(String, String)>> {
        static H: OnceLock<Mutex<Vec<(String, String)>>> = OnceLock::new();
        H.get_or_init(|| Mutex::new(Vec::new()))
    }

    fn history_json(id: Option<&str>) -> String {
        let h = history().lock().unwrap();
        let items: Vec<String> = h
            .iter()
            .filter(|(i, _)| id.is_none_or(|id| id == i))
            .map(|(i, entry)| format!("{}: {entry}", json_str(i)))
            .collect();
        format!("{{{}}}", items.join(", "))
    }

    fn now_ms() -> u128 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0)
    }

    // ---- POST /prompt ---------------------------------------------------------------------

    fn prompt(body: &[u8], root: &Path) -> Reply {
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(root.join("user/mock_prompts.jsonl"))
        {
            let _ = f.write_all(body);
            let _ = f.write_all(b"\n");
        }
        let Some(Json::Obj(request)) = Json::parse(body) else {
            return json("400 Bad Request", r#"{"error": {"type": "invalid_prompt", "message": "Invalid prompt: body is not JSON", "details": "", "extra_info": {}}, "node_errors": {}}"#.into());
        };
        let Some(Json::Obj(graph)) = get(&request, "prompt").cloned() else {
            return json("400 Bad Request", r#"{"error": {"type": "no_prompt", "message": "No prompt provided", "details": "No prompt provided", "extra_info": {}}, "node_errors": {}}"#.into());
        };
        if let Err(e) = validate(&graph, root) {
            return json("400 Bad Request", e);
        }
        static N: Mutex<u64> = Mutex::new(0);
        let number = {
            let mut n = N.lock().unwrap();
            *n += 1;
            *n
        };
        let id = format!(
            "{:08x}-0000-4000-8000-{:012x}",
            number,
            now_ms() & 0xffff_ffff_ffff
        );
        let root = root.to_path_buf();
        let run_id = id.clone();
        std::thread::spawn(move || execute(&run_id, &graph, &root));
        json(
            "200 OK",
            format!(
                r#"{{"prompt_id": {}, "number": {number}, "node_errors": {{}}}}"#,
                json_str(&id)
            ),
        )
    }

    fn get<'a>(obj: &'a [(String, Json)], key: &str) -> Option<&'a Json> {
        obj.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    fn class_of(node: &Json) -> Option<&str> {
        match node {
            Json::Obj(o) => match get(o, "class_type") {
                Some(Json::Str(s)) => Some(s),
                _ => None,
            },
            _ => None,
        }
    }

    fn inputs_of(node: &Json) -> &[(String, Json)] {
        match node {
            Json::Obj(o) => match get(o, "inputs") {
                Some(Json::Obj(i)) => i,
                _ => &[],
            },
            _ => &[],
        }
    }

    fn error(kind: &str, message: &str, details: &str) -> String {
        format!(
            r#"{{"type": {}, "message": {}, "details": {}, "extra_info": {{}}}}"#,
            json_str(kind),
            json_str(message),
            json_str(details)
        )
    }

    fn validate(graph: &[(String, Json)], root: &Path) -> Result<(), String> {
        let known = super::node_classes(root);
        for (id, node) in graph {
            let class = class_of(node).unwrap_or("");
            if !known.iter().any(|k| k == class) {
                let e = error(
                    "invalid_prompt",
                    &format!("Cannot execute because node {class} does not exist."),
                    &format!("Node ID '#{id}'"),
                );
                return Err(format!(r#"{{"error": {e}, "node_errors": {{}}}}"#));
            }
        }
        let outputs: Vec<&String> = graph
            .iter()
            .filter(|(_, n)| class_of(n) == Some("SaveImage"))
            .map(|(id, _)| id)
            .collect();
        if outputs.is_empty() {
            let e = error("prompt_no_outputs", "Prompt has no outputs", "");
            return Err(format!(r#"{{"error": {e}, "node_errors": []}}"#));
        }
        let mut node_errors = Vec::new();
        for (id, node) in graph {
            let class = class_of(node).unwrap_or("");
            let errors = node_input_errors(graph, node, class, root);
            if !errors.is_empty() {
                let deps: Vec<String> = outputs.iter().map(|o| json_str(o)).collect();
                node_errors.push(format!(
                    r#"{}: {{"errors": [{}], "dependent_outputs": [{}], "class_type": {}}}"#,
                    json_str(id),
                    errors.join(", "),
                    deps.join(", "),
                    json_str(class)
                ));
            }
        }
        if node_errors.is_empty() {
            return Ok(());
        }
        let e = error(
            "prompt_outputs_failed_validation",
            "Prompt outputs failed validation",
            "",
        );
        Err(format!(
            r#"{{"error": {e}, "node_errors": {{{}}}}}"#,
            node_errors.join(", ")
        ))
    }

    fn node_input_errors(
        graph: &[(String, Json)],
        node: &Json,
        class: &str,
        root: &Path,
    ) -> Vec<String> {
        let Some((spec, _)) = schema(class) else {
            return Vec::new();
        };
        let inputs = inputs_of(node);
        let mut errors = Vec::new();
        for (name, kind) in &spec {
            let Some(value) = get(inputs, name) else {
                errors.push(error(
                    "required_input_missing",
                    "Required input is missing",
                    name,
                ));
                continue;
            };
            if let Json::Arr(link) = value {
                let from = match link.first() {
                    Some(Json::Str(s)) => s.clone(),
                    Some(Json::Num(n)) => format!("{n}"),
                    _ => String::new(),
                };
                let slot = match link.get(1) {
                    Some(Json::Num(n)) => *n as usize,
                    _ => usize::MAX,
                };
                let received = get(graph, &from)
                    .and_then(class_of)
                    .and_then(schema)
                    .and_then(|(_, outs)| outs.get(slot).copied());
                let wanted = match kind {
                    Kind::Link(t) => *t,
                    _ => "",
                };
                if received != Some(wanted) {
                    let got = received.unwrap_or("none");
                    errors.push(error(
                        "return_type_mismatch",
                        "Return type mismatch between linked nodes",
                        &format!("{name}, received_type({got}) mismatch input_type({wanted})"),
                    ));
                }
                continue;
            }
            match (kind, value) {
                (Kind::Link(t), _) => errors.push(error(
                    "invalid_input_type",
                    &format!("Input {name} must be a link to a {t} output"),
                    name,
                )),
                (Kind::Int | Kind::Float, Json::Num(_)) | (Kind::Str, Json::Str(_)) => {}
                (Kind::Int | Kind::Float | Kind::Str, _) => errors.push(error(
                    "invalid_input_type",
                    "Failed to convert an input value",
                    &format!("{name}: wrong type"),
                )),
                (Kind::InputImage, Json::Str(v)) => {
                    if !annotated(root, v).is_some_and(|p| p.is_file()) {
                        errors.push(error(
                            "custom_validation_failed",
                            "Custom validation failed for node",
                            &format!("image - Invalid image file: {v}"),
                        ));
                    }
                }
                (_, Json::Str(v)) => {
                    let list = choices(root, kind).unwrap_or_default();
                    if !list.contains(v) {
                        errors.push(error(
                            "value_not_in_list",
                            "Value not in list",
                            &format!("{name}: '{v}' not in {list:?}"),
                        ));
                    }
                }
                _ => errors.push(error("value_not_in_list", "Value not in list", name)),
            }
        }
        errors
    }

    /// ComfyUI's folder_paths.get_annotated_filepath: `name [output]`, `name [input]`, else input.
    fn annotated(root: &Path, name: &str) -> Option<std::path::PathBuf> {
        let (name, dir) = if let Some(n) = name.strip_suffix("[output]") {
            (n.trim_end(), "output")
        } else if let Some(n) = name.strip_suffix("[input]") {
            (n.trim_end(), "input")
        } else {
            (name, "input")
        };
        (!name.contains("..")).then(|| root.join(dir).join(name))
    }

    // ---- execution ----------------------------------------------------------------------------

    fn execute(id: &str, graph: &[(String, Json)], root: &Path) {
        let mode = std::fs::read_to_string(root.join("user/mock_generate")).unwrap_or_default();
        let mode = mode.trim();
        let start = now_ms();
        println!("got prompt");
        if mode == "never" {
            return;
        }
        std::thread::sleep(Duration::from_millis(150));
        let mut messages = vec![format!(
            r#"["execution_start", {{"prompt_id": {}, "timestamp": {start}}}]"#,
            json_str(id)
        )];
        let failure = graph.iter().find_map(|(node_id, node)| {
            let class = class_of(node)?;
            node_failure(class, root, mode).map(|(t, m)| (node_id.clone(), class.to_string(), t, m))
        });
        if let Some((node_id, class, typ, message)) = failure {
            println!("!!! Exception during processing !!! {message}");
            println!("Traceback (most recent call last):\n  File \"/opt/ComfyUI/execution.py\", line 496, in execute\n{typ}: {message}");
            println!("Prompt executed in 0.15 seconds");
            messages.push(format!(
                r#"["execution_error", {{"prompt_id": {}, "node_id": {}, "node_type": {}, "executed": [], "exception_message": {}, "exception_type": {}, "traceback": ["  File \"/opt/ComfyUI/execution.py\", line 496, in execute\n"], "current_inputs": {{}}, "current_outputs": {{}}, "timestamp": {}}}]"#,
                json_str(id), json_str(&node_id), json_str(&class), json_str(&message), json_str(&typ), now_ms()
            ));
            record(id, "{}", "error", false, &messages);
            return;
        }
        let mut outputs = Vec::new();
        if mode != "no_image" {
            for (node_id, node) in graph
                .iter()
                .filter(|(_, n)| class_of(n) == Some("SaveImage"))
            {
                let prefix = match get(inputs_of(node), "filename_prefix") {
                    Some(Json::Str(s)) => s.clone(),
                    _ => "ComfyUI".into(),
                };
                let (w, h) = latent_size(graph);
                if let Some(file) = save_png(root, &prefix, w, h) {
                    outputs.push(format!(r#"{}: {{"images": [{file}]}}"#, json_str(node_id)));
                }
            }
        }
        println!("Prompt executed in 0.15 seconds");
        messages.push(format!(
            r#"["execution_success", {{"prompt_id": {}, "timestamp": {}}}]"#,
            json_str(id),
            now_ms()
        ));
        record(
            id,
            &format!("{{{}}}", outputs.join(", ")),
            "success",
            true,
            &messages,
        );
    }

    fn record(id: &str, outputs: &str, status: &str, completed: bool, messages: &[String]) {
        let entry = format!(
            r#"{{"prompt": [], "outputs": {outputs}, "status": {{"status_str": {}, "completed": {completed}, "messages": [{}]}}, "meta": {{}}}}"#,
            json_str(status),
            messages.join(", ")
        );
        history().lock().unwrap().push((id.to_string(), entry));
    }

    /// What the real node raises when its files are missing (IPAdapterPlus.py, utils.py).
    fn node_failure(class: &str, root: &Path, mode: &str) -> Option<(String, String)> {
        let has = |folder: &str, needle: &str| {
            folder_files(root, folder)
                .iter()
                .any(|f| f.to_lowercase().contains(needle))
        };
        let fail = |m: &str| Some(("Exception".to_string(), m.to_string()));
        match class {
            "IPAdapterUnifiedLoaderFaceID" if !has("clip_vision", "vit-h-14") => {
                fail("ClipVision model not found.")
            }
            "IPAdapterUnifiedLoaderFaceID" if !has("ipadapter", "faceid-plusv2_sdxl") => {
                fail("IPAdapter model not found.")
            }
            "IPAdapterUnifiedLoaderFaceID" if !has("loras", "faceid-plusv2_sdxl_lora") => {
                fail("LoRA model not found.")
            }
            "IPAdapterUnifiedLoaderFaceID" if !has("insightface", "buffalo_l/") => {
                Some(("AssertionError".into(), String::new()))
            }
            "IPAdapterFaceID" if mode == "exec_error" => fail("InsightFace: No face detected."),
            _ => None,
        }
    }

    fn latent_size(graph: &[(String, Json)]) -> (u32, u32) {
        let latent = graph
            .iter()
            .find(|(_, n)| class_of(n) == Some("EmptyLatentImage"));
        let dim = |k: &str| match latent.map(|(_, n)| inputs_of(n)).and_then(|i| get(i, k)) {
            Some(Json::Num(v)) if *v >= 1.0 && *v <= 8192.0 => *v as u32,
            _ => 64,
        };
        (dim("width"), dim("height"))
    }

    /// SaveImage's naming: `<prefix>_<counter:05>_.png` under output/<prefix's folder>.
    fn save_png(root: &Path, prefix: &str, w: u32, h: u32) -> Option<String> {
        let (sub, base) = prefix.rsplit_once('/').unwrap_or(("", prefix));
        let dir = root.join("output").join(sub);
        std::fs::create_dir_all(&dir).ok()?;
        let counter = (1..).find(|n| !dir.join(format!("{base}_{n:05}_.png")).exists())?;
        let name = format!("{base}_{counter:05}_.png");
        std::fs::write(dir.join(&name), png(w, h)).ok()?;
        Some(format!(
            r#"{{"filename": {}, "subfolder": {}, "type": "output"}}"#,
            json_str(&name),
            json_str(sub)
        ))
    }

    // ---- GET /view ------------------------------------------------------------------------

    fn view(query: &str, root: &Path) -> Reply {
        let param = |k: &str| {
            query
                .split('&')
                .find_map(|kv| {
                    kv.split_once('=')
                        .filter(|(key, _)| *key == k)
                        .map(|(_, v)| unescape(v))
                })
                .unwrap_or_default()
        };
        let (name, sub, kind) = (param("filename"), param("subfolder"), param("type"));
        let dir = match kind.as_str() {
            "" | "output" => "output",
            "input" => "input",
            "temp" => "temp",
            _ => return ("400 Bad Request".into(), "text/plain", b"".to_vec()),
        };
        if name.is_empty() || name.contains("..") || sub.contains("..") {
            return ("400 Bad Request".into(), "text/plain", b"".to_vec());
        }
        match std::fs::read(root.join(dir).join(&sub).join(&name)) {
            Ok(bytes) => ("200 OK".into(), "image/png", bytes),
            Err(_) => (
                "404 Not Found".into(),
                "text/plain",
                b"404: Not Found".to_vec(),
            ),
        }
    }

    fn unescape(s: &str) -> String {
        let b = s.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < b.len() {
            match b[i] {
                b'+' => out.push(b' '),
                b'%' if i + 2 < b.len() => {
                    let hex = std::str::from_utf8(&b[i + 1..i + 3])
                        .ok()
                        .and_then(|h| u8::from_str_radix(h, 16).ok());
                    match hex {
                        Some(v) => {
                            out.push(v);
                            i += 2;
                        }
                        None => out.push(b'%'),
                    }
                }
                c => out.push(c),
            }
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    }

    // ---- a PNG encoder: stored (uncompressed) deflate blocks, crc32, adler32 -------------------

    pub fn png(w: u32, h: u32) -> Vec<u8> {
        let mut raw = Vec::with_capacity((w as usize * 3 + 1) * h as usize);
        for y in 0..h {
            raw.push(0); // filter: none
            for x in 0..w {
                raw.extend([(x * 255 / w.max(1)) as u8, (y * 255 / h.max(1)) as u8, 128]);
            }
        }
        let mut z = vec![0x78, 0x01];
        let chunks: Vec<&[u8]> = raw.chunks(65535).collect();
        for (i, c) in chunks.iter().enumerate() {
            z.push((i + 1 == chunks.len()) as u8);
            let len = c.len() as u16;
            z.extend(len.to_le_bytes());
            z.extend((!len).to_le_bytes());
            z.extend_from_slice(c);
        }
        z.extend(adler32(&raw).to_be_bytes());
        let mut ihdr = Vec::new();
        ihdr.extend(w.to_be_bytes());
        ihdr.extend(h.to_be_bytes());
        ihdr.extend([8, 2, 0, 0, 0]);
        let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
        for (kind, data) in [(b"IHDR", ihdr), (b"IDAT", z), (b"IEND", Vec::new())] {
            out.extend((data.len() as u32).to_be_bytes());
            let mut crc_input = kind.to_vec();
            crc_input.extend(&data);
            out.extend(&crc_input);
            out.extend(crc32(&crc_input).to_be_bytes());
        }
        out
    }

    fn crc32(data: &[u8]) -> u32 {
        let mut crc = 0xffff_ffffu32;
        for &b in data {
            crc ^= b as u32;
            for _ in 0..8 {
                crc = if crc & 1 != 0 {
                    (crc >> 1) ^ 0xedb8_8320
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }

    fn adler32(data: &[u8]) -> u32 {
        let (mut a, mut b) = (1u32, 0u32);
        for &d in data {
            a = (a + d as u32) % 65521;
            b = (b + a) % 65521;
        }
        (b << 16) | a
    }

    // ---- a small JSON reader (std only) -------------------------------------------------------

    #[derive(Clone, Debug)]
    pub enum Json {
        Null,
        Bool(#[allow(dead_code)] bool),
        Num(f64),
        Str(String),
        Arr(Vec<Json>),
        Obj(Vec<(String, Json)>),
    }

    impl Json {
        pub fn parse(bytes: &[u8]) -> Option<Json> {
            let mut p = Parser { b: bytes, i: 0 };
            let v = p.value()?;
            p.ws();
            (p.i == bytes.len()).then_some(v)
        }
    }

    struct Parser<'a> {
        b: &'a [u8],
        i: usize,
    }

    impl Parser<'_> {
        fn ws(&mut self) {
            while self.b.get(self.i).is_some_and(|c| c.is_ascii_whitespace()) {
                self.i += 1;
            }
        }

        fn eat(&mut self, c: u8) -> bool {
            self.ws();
            let ok = self.b.get(self.i) == Some(&c);
            self.i += ok as usize;
            ok
        }

        fn value(&mut self) -> Option<Json> {
            self.ws();
            match *self.b.get(self.i)? {
                b'{' => {
                    self.i += 1;
                    let mut items = Vec::new();
                    if self.eat(b'}') {
                        return Some(Json::Obj(items));
                    }
                    loop {
                        self.ws();
                        let Json::Str(k) = self.value()? else {
                            return None;
                        };
                        if !self.eat(b':') {
                            return None;
                        }
                        items.push((k, self.value()?));
                        if self.eat(b'}') {
                            return Some(Json::Obj(items));
                        }
                        if !self.eat(b',') {
                            return None;
                        }
                    }
                }
                b'[' => {
                    self.i += 1;
                    let mut items = Vec::new();
                    if self.eat(b']') {
                        return Some(Json::Arr(items));
                    }
                    loop {
                        items.push(self.value()?);
                        if self.eat(b']') {
                            return Some(Json::Arr(items));
                        }
                        if !self.eat(b',') {
                            return None;
                        }
                    }
                }
                b'"' => self.string().map(Json::Str),
                b't' => self.word("true", Json::Bool(true)),
                b'f' => self.word("false", Json::Bool(false)),
                b'n' => self.word("null", Json::Null),
                _ => {
                    let start = self.i;
                    while self
                        .b
                        .get(self.i)
                        .is_some_and(|c| b"+-.eE0123456789".contains(c))
                    {
                        self.i += 1;
                    }
                    std::str::from_utf8(&self.b[start..self.i])
                        .ok()?
                        .parse()
                        .ok()
                        .map(Json::Num)
                }
            }
        }

        fn word(&mut self, w: &str, v: Json) -> Option<Json> {
            let ok = self.b[self.i..].starts_with(w.as_bytes());
            self.i += w.len();
            ok.then_some(v)
        }

        fn string(&mut self) -> Option<String> {
            self.i += 1;
            let mut out = Vec::new();
            loop {
                let c = *self.b.get(self.i)?;
                self.i += 1;
                match c {
                    b'"' => return String::from_utf8(out).ok(),
                    b'\\' => {
                        let e = *self.b.get(self.i)?;
                        self.i += 1;
                        match e {
                            b'n' => out.push(b'\n'),
                            b't' => out.push(b'\t'),
                            b'r' => out.push(b'\r'),
                            b'b' => out.push(8),
                            b'f' => out.push(12),
                            b'u' => {
                                let hex =
                                    std::str::from_utf8(self.b.get(self.i..self.i + 4)?).ok()?;
                                let ch = char::from_u32(u32::from_str_radix(hex, 16).ok()?)
                                    .unwrap_or('\u{fffd}');
                                self.i += 4;
                                out.extend(ch.to_string().as_bytes());
                            }
                            other => out.push(other),
                        }
                    }
                    c => out.push(c),
                }
            }
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
