//! A client for ComfyUI's HTTP API (server.py): `/system_stats`, `/queue`, `/object_info`,
//! `/models/<folder>`. Tolerant of unknown fields and of older and newer shapes: only what is
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
        let resp = self
            .http
            .get(&url)
            .send()
            .await
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
