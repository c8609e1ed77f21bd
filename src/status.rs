//! `status`: what each ComfyUI answers — version, device, memory, queue — queried in parallel,
//! for an operator running an RTX PC and a Spark side by side.

use std::path::Path;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::comfyui::Client;

#[derive(Debug, Clone, Serialize)]
pub struct HostStatus {
    pub host: String,
    pub url: String,
    pub reachable: bool,
    pub comfyui_version: Option<String>,
    pub device: Option<String>,
    /// GB10 shares system memory: then these are the system's.
    pub memory_unified: bool,
    pub memory_total_bytes: Option<u64>,
    pub memory_free_bytes: Option<u64>,
    pub queue_running: Option<usize>,
    pub queue_pending: Option<usize>,
    /// The last check generation's FaceID image (`verify --generate`), by ComfyUI's clock:
    /// from its history, so only since ComfyUI last started.
    pub seconds_per_image: Option<f64>,
    pub error: Option<String>,
}

/// One entry of an inventory file: `- name: spark\n  url: http://192.168.1.101:8188`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InventoryEntry {
    pub name: String,
    pub url: String,
}

pub fn read_inventory(path: &Path) -> Result<Vec<InventoryEntry>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read inventory `{}`", path.display()))?;
    serde_yaml::from_str(&text).with_context(|| {
        format!(
            "invalid inventory `{}` (a YAML list of `name:` and `url:`)",
            path.display()
        )
    })
}

fn query(name: String, url: String) -> HostStatus {
    let mut status = HostStatus {
        host: name,
        url: url.clone(),
        reachable: false,
        comfyui_version: None,
        device: None,
        memory_unified: false,
        memory_total_bytes: None,
        memory_free_bytes: None,
        queue_running: None,
        queue_pending: None,
        seconds_per_image: None,
        error: None,
    };
    let client = match Client::new(&url) {
        Ok(c) => c,
        Err(e) => {
            status.error = Some(format!("{e:#}"));
            return status;
        }
    };
    match client.system_stats() {
        Ok(stats) => {
            status.reachable = true;
            status.comfyui_version = stats.system.comfyui_version.clone();
            if let Some(dev) = stats.devices.first() {
                status.device = Some(dev.name.clone());
                status.memory_unified = dev.name.contains("GB10");
                status.memory_total_bytes = dev.vram_total;
                status.memory_free_bytes = dev.vram_free;
            }
            if status.memory_unified {
                status.memory_total_bytes = stats.system.ram_total.or(status.memory_total_bytes);
                status.memory_free_bytes = stats.system.ram_free.or(status.memory_free_bytes);
            }
        }
        Err(e) => status.error = Some(format!("{e:#}")),
    }
    if let Ok(q) = client.queue() {
        status.queue_running = Some(q.queue_running.len());
        status.queue_pending = Some(q.queue_pending.len());
    }
    status.seconds_per_image = client
        .all_history()
        .ok()
        .and_then(|h| last_check_seconds(&h));
    status
}

/// The newest check-generation FaceID entry's execution time (its image is saved under
/// `lifeos-verify/faceid_*`).
fn last_check_seconds(
    history: &std::collections::BTreeMap<String, crate::comfyui::HistoryEntry>,
) -> Option<f64> {
    use crate::generate::graph::{FACEID_PREFIX, OUTPUT_FOLDER};
    let started = |e: &crate::comfyui::HistoryEntry| -> Option<u64> {
        let status = e.status.as_ref()?;
        let (_, data) = status
            .messages
            .iter()
            .find(|(m, _)| m == "execution_start")?;
        data.get("timestamp")?.as_u64()
    };
    history
        .values()
        .filter(|e| {
            e.outputs.values().flat_map(|o| &o.images).any(|i| {
                i.subfolder == OUTPUT_FOLDER && i.filename.starts_with(&format!("{FACEID_PREFIX}_"))
            })
        })
        .filter_map(|e| Some((started(e)?, e.status.as_ref()?.execution_ms()?)))
        .max_by_key(|(at, _)| *at)
        .map(|(_, ms)| ms as f64 / 1000.0)
}

/// Query every `(name, url)` at once, a thread each: a host that does not answer costs its
/// timeout once, not once per host.
pub fn query_all(targets: Vec<(String, String)>) -> Vec<HostStatus> {
    std::thread::scope(|s| {
        let handles: Vec<_> = targets
            .into_iter()
            .map(|(n, u)| s.spawn(move || query(n, u)))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("status query panicked"))
            .collect()
    })
}

pub fn render(rows: &[HostStatus]) -> String {
    let gb = |b: Option<u64>| b.map_or("-".to_string(), crate::units::size);
    let mut table = vec![[
        "HOST",
        "URL",
        "STATE",
        "VERSION",
        "DEVICE",
        "MEMORY (free/total)",
        "QUEUE (run/pend)",
        "S/IMAGE",
    ]
    .map(String::from)
    .to_vec()];
    for r in rows {
        table.push(vec![
            r.host.clone(),
            r.url.clone(),
            if r.reachable {
                "up".into()
            } else {
                "unreachable".into()
            },
            r.comfyui_version.clone().unwrap_or_else(|| "-".into()),
            r.device.clone().unwrap_or_else(|| "-".into()),
            match r.memory_total_bytes {
                Some(_) => format!(
                    "{}/{}{}",
                    gb(r.memory_free_bytes),
                    gb(r.memory_total_bytes),
                    if r.memory_unified { " unified" } else { "" }
                ),
                None => "-".into(),
            },
            match (r.queue_running, r.queue_pending) {
                (Some(a), Some(b)) => format!("{a}/{b}"),
                _ => "-".into(),
            },
            r.seconds_per_image
                .map_or("-".into(), |s| format!("{s:.1}")),
        ]);
    }
    let widths: Vec<usize> = (0..table[0].len())
        .map(|c| {
            table
                .iter()
                .map(|r| r[c].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in &table {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:w$}"))
            .collect();
        out += cells.join("  ").trim_end();
        out += "\n";
    }
    out
}

/// Why each unreachable host did not answer, for stderr (the table is the data).
pub fn errors(rows: &[HostStatus]) -> Vec<anyhow::Error> {
    rows.iter()
        .filter_map(|r| {
            let cause = r.error.as_deref()?;
            Some(
                anyhow::anyhow!(cause.to_string())
                    .context(format!("`{}` did not answer at {}", r.host, r.url)),
            )
        })
        .collect()
}
