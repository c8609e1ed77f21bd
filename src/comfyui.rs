//! A client for ComfyUI's HTTP API (server.py): `/system_stats`, `/queue`, `/object_info`,
//! `/models/<folder>`, and running a graph: `POST /prompt`, `/history/<id>`, `/view`. Tolerant of unknown fields and of older and newer shapes: only what is
//! used is required.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

/// Synchronous to its callers (the operations are synchronous), with a small runtime of its
/// own: a reqwest client must stay on the runtime it was first used on.
#[derive(Debug)]
pub struct Client {
    base: String,
    http: reqwest::Client,
    rt: tokio::runtime::Runtime,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct SystemStats {
    #[serde(default)]
    pub system: System,
    #[serde(default)]
    pub devices: Vec<Device>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct System {
    #[serde(default)]
    pub os: Option<String>,
    #[serde(default)]
    pub ram_total: Option<u64>,
    #[serde(default)]
    pub ram_free: Option<u64>,
    /// Absent from old versions.
    #[serde(default)]
    pub comfyui_version: Option<String>,
    #[serde(default)]
    pub python_version: Option<String>,
    #[serde(default)]
    pub pytorch_version: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct Device {
    #[serde(default)]
    pub name: String,
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    #[serde(default)]
    pub vram_total: Option<u64>,
    #[serde(default)]
    pub vram_free: Option<u64>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct Queue {
    #[serde(default)]
    pub queue_running: Vec<serde_json::Value>,
    #[serde(default)]
    pub queue_pending: Vec<serde_json::Value>,
}

impl Client {
    pub fn new(base: &str) -> Result<Client> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(30))
            .build()?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        Ok(Client {
            base: base.trim_end_matches('/').to_string(),
            http,
            rt,
        })
    }

    fn get<T: serde::de::DeserializeOwned>(&self, path: &str) -> Result<T> {
        self.rt.block_on(self.fetch(path))
    }

    async fn fetch<T: serde::de::DeserializeOwned>(&self, path: &str) -> Result<T> {
        let url = format!("{}{path}", self.base);
        let resp = traced("GET", &url, self.http.get(&url).send().await)
            .with_context(|| format!("no answer from {url}"))?;
        let resp = resp
            .error_for_status()
            .with_context(|| format!("{url} answered with an error"))?;
        let body = resp
            .bytes()
            .await
            .with_context(|| format!("{url} broke off its answer"))?;
        serde_json::from_slice(&body)
            .with_context(|| format!("{url} did not answer in ComfyUI's shape"))
    }

    pub fn system_stats(&self) -> Result<SystemStats> {
        self.get("/system_stats")
    }

    pub fn queue(&self) -> Result<Queue> {
        self.get("/queue")
    }

    /// Names of every node class ComfyUI loaded (built-in and custom).
    pub fn object_info_classes(&self) -> Result<Vec<String>> {
        let map: BTreeMap<String, serde_json::Value> = self.get("/object_info")?;
        Ok(map.into_keys().collect())
    }

    /// Files ComfyUI sees in a model folder (`checkpoints`, `ipadapter`, ...).
    pub fn models(&self, folder: &str) -> Result<Vec<String>> {
        self.get(&format!("/models/{folder}"))
    }
}

/// `POST /prompt`'s answer to a graph it queued.
#[derive(Debug, Clone, Deserialize)]
pub struct PromptAccepted {
    pub prompt_id: String,
}

/// `POST /prompt`'s HTTP 400 (execution.py `validate_prompt`): `error` is an object
/// (`type`, `message`, `details`) in current versions, a string in old ones; `node_errors`
/// maps node ids to their errors (`{}` or `[]` when there are none).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct PromptRejected {
    #[serde(default)]
    pub error: serde_json::Value,
    #[serde(default)]
    pub node_errors: serde_json::Value,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct ApiError {
    #[serde(default, rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub message: String,
    #[serde(default)]
    pub details: String,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct NodeError {
    #[serde(default)]
    pub errors: Vec<ApiError>,
    #[serde(default)]
    pub class_type: String,
}

impl PromptRejected {
    pub fn error(&self) -> ApiError {
        match &self.error {
            serde_json::Value::String(s) => ApiError {
                message: s.clone(),
                ..ApiError::default()
            },
            v => serde_json::from_value(v.clone()).unwrap_or_default(),
        }
    }

    /// The node errors by node id (an empty list or object: none).
    pub fn node_errors(&self) -> BTreeMap<String, NodeError> {
        serde_json::from_value(self.node_errors.clone()).unwrap_or_default()
    }
}

/// One `/history/<id>` entry: present once the prompt finished, with or without success.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct HistoryEntry {
    #[serde(default)]
    pub outputs: BTreeMap<String, NodeOutput>,
    #[serde(default)]
    pub status: Option<HistoryStatus>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct NodeOutput {
    #[serde(default)]
    pub images: Vec<ImageRef>,
}

/// An image a node saved, as `/view` takes it back.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
pub struct ImageRef {
    pub filename: String,
    #[serde(default)]
    pub subfolder: String,
    #[serde(default, rename = "type")]
    pub kind: String,
}

/// `status` of a history entry: `messages` are `[event, data]` pairs (`execution_start`,
/// `execution_cached`, `execution_error`, `execution_success`, ...).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct HistoryStatus {
    #[serde(default)]
    pub status_str: String,
    #[serde(default)]
    pub completed: bool,
    #[serde(default)]
    pub messages: Vec<(String, serde_json::Value)>,
}

/// The data of an `execution_error` message.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct ExecutionError {
    #[serde(default)]
    pub node_id: String,
    #[serde(default)]
    pub node_type: String,
    #[serde(default)]
    pub exception_type: String,
    #[serde(default)]
    pub exception_message: String,
}

impl HistoryStatus {
    pub fn execution_error(&self) -> Option<ExecutionError> {
        self.messages
            .iter()
            .find(|(event, _)| event == "execution_error")
            .and_then(|(_, data)| serde_json::from_value(data.clone()).ok())
    }

    /// Milliseconds from `execution_start` to `execution_success`, by ComfyUI's own clock.
    pub fn execution_ms(&self) -> Option<u64> {
        let at = |name: &str| {
            self.messages
                .iter()
                .find(|(event, _)| event == name)
                .and_then(|(_, d)| d.get("timestamp")?.as_u64())
        };
        Some(at("execution_success")?.saturating_sub(at("execution_start")?))
    }
}

/// `-v`'s line for a request to ComfyUI: method, URL (credentials masked), status or error.
fn traced(
    method: &str,
    url: &str,
    answer: reqwest::Result<reqwest::Response>,
) -> reqwest::Result<reqwest::Response> {
    match &answer {
        Ok(resp) => crate::trace::line(format_args!("HTTP {method} {url} -> {}", resp.status())),
        Err(e) => crate::trace::line(format_args!("HTTP {method} {url} -> {e}")),
    }
    answer
}

/// What `POST /prompt` answered.
#[derive(Debug)]
pub enum Submitted {
    Queued(PromptAccepted),
    Rejected(PromptRejected),
}

impl Client {
    /// Queue a graph: `{"prompt": graph, "client_id"}`.
    pub fn submit(&self, graph: &serde_json::Value, client_id: &str) -> Result<Submitted> {
        self.rt.block_on(async {
            let url = format!("{}/prompt", self.base);
            let body = serde_json::json!({ "prompt": graph, "client_id": client_id });
            let request = self.http.post(&url).body(serde_json::to_vec(&body)?);
            let request = request.header(reqwest::header::CONTENT_TYPE, "application/json");
            let resp = traced("POST", &url, request.send().await)
                .with_context(|| format!("no answer from {url}"))?;
            let status = resp.status();
            let bytes =
                (resp.bytes().await).with_context(|| format!("{url} broke off its answer"))?;
            let shape = || format!("{url} did not answer in ComfyUI's shape (HTTP {status})");
            if status == reqwest::StatusCode::BAD_REQUEST {
                return Ok(Submitted::Rejected(
                    serde_json::from_slice(&bytes).with_context(shape)?,
                ));
            }
            if !status.is_success() {
                anyhow::bail!(
                    "{url} answered HTTP {status}: {}",
                    String::from_utf8_lossy(&bytes)
                );
            }
            Ok(Submitted::Queued(
                serde_json::from_slice(&bytes).with_context(shape)?,
            ))
        })
    }

    /// The prompt's history entry; `None` while it is queued or running.
    pub fn history(&self, prompt_id: &str) -> Result<Option<HistoryEntry>> {
        let mut map: BTreeMap<String, HistoryEntry> = self.get(&format!("/history/{prompt_id}"))?;
        Ok(map.remove(prompt_id))
    }

    /// Every finished prompt ComfyUI remembers (since it started), by prompt id.
    pub fn all_history(&self) -> Result<BTreeMap<String, HistoryEntry>> {
        self.get("/history")
    }

    /// An image's bytes from `/view`.
    pub fn view(&self, image: &ImageRef) -> Result<Vec<u8>> {
        self.rt.block_on(async {
            let url = format!("{}/view", self.base);
            let query = [
                ("filename", image.filename.as_str()),
                ("subfolder", image.subfolder.as_str()),
                ("type", image.kind.as_str()),
            ];
            let resp = traced("GET", &url, self.http.get(&url).query(&query).send().await)
                .with_context(|| format!("no answer from {url}"))?
                .error_for_status()
                .with_context(|| format!("{url} has no image {}", image.filename))?;
            Ok(resp
                .bytes()
                .await
                .context("/view broke off the image")?
                .to_vec())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_stats_tolerates_old_and_new_shapes() {
        let new = r#"{"system": {"os": "linux", "ram_total": 135089000000, "ram_free": 1, "comfyui_version": "0.3.60",
            "python_version": "3.12.3", "pytorch_version": "2.9.0+cu130", "embedded_python": false,
            "argv": ["main.py"], "required_frontend_version": "1.2", "deploy_environment": "local"},
            "devices": [{"name": "cuda:0 NVIDIA GB10 : cudaMallocAsync", "type": "cuda", "index": 0,
            "vram_total": 135089000000, "vram_free": 1, "torch_vram_total": 0, "torch_vram_free": 0}]}"#;
        let s: SystemStats = serde_json::from_str(new).unwrap();
        assert_eq!(s.system.comfyui_version.as_deref(), Some("0.3.60"));
        assert_eq!(s.devices[0].vram_total, Some(135089000000));
        let old = r#"{"system": {"os": "posix", "python_version": "3.10", "embedded_python": false}, "devices": [{"name": "cpu", "type": "cpu"}]}"#;
        let s: SystemStats = serde_json::from_str(old).unwrap();
        assert_eq!(s.system.os.as_deref(), Some("posix"));
        assert_eq!(s.system.comfyui_version, None);
    }
}
