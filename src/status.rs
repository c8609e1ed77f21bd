//! `status`: what each ComfyUI answers — version, device, memory, queue — queried in parallel,
//! for an operator running an RTX PC and a Spark side by side.

use serde::Serialize;

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
    /// The inventory's priority (lower is preferred), for the router's tie-break.
    pub priority: Option<u32>,
    /// The host a queue-aware router would send the next job to.
    pub next: bool,
    pub error: Option<String>,
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
        priority: None,
        next: false,
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

/// Mark the host a queue-aware router picks next: among those that answered both
/// `/system_stats` and `/queue`, the least running + pending, then the lowest priority, then
/// the name.
pub fn mark_next(rows: &mut [HostStatus]) {
    let best = rows
        .iter()
        .enumerate()
        .filter(|(_, r)| r.reachable)
        .filter_map(|(i, r)| {
            let load = r.queue_running? + r.queue_pending?;
            Some((load, r.priority.unwrap_or(u32::MAX), r.host.clone(), i))
        })
        .min()
        .map(|(.., i)| i);
    for (i, r) in rows.iter_mut().enumerate() {
        r.next = Some(i) == best;
    }
}

pub fn render(rows: &[HostStatus]) -> String {
    let gb = |b: Option<u64>| b.map_or("-".to_string(), crate::units::size);
    let mut table = vec![[
        "HOST",
        "URL",
        "STATE",
        "VERSION",
        "DEVICE",
        "MEMORY (used/free)",
        "QUEUE (run/pend)",
        "S/IMAGE",
        "NEXT",
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
                Some(total) => format!(
                    "{}/{}{}",
                    gb(r.memory_free_bytes.map(|f| total.saturating_sub(f))),
                    gb(r.memory_free_bytes),
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
            if r.next { "*".into() } else { String::new() },
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

#[cfg(test)]
mod tests {
    use super::*;

    fn row(host: &str, load: Option<(usize, usize)>, priority: Option<u32>) -> HostStatus {
        let mut r = query_unreachable(host);
        r.reachable = load.is_some();
        r.queue_running = load.map(|l| l.0);
        r.queue_pending = load.map(|l| l.1);
        r.priority = priority;
        r
    }

    fn query_unreachable(host: &str) -> HostStatus {
        // An unparsable URL fails before any network.
        query(host.into(), "not a url".into())
    }

    #[test]
    fn next_is_least_loaded_then_by_priority() {
        let mut rows = vec![
            row("a", Some((1, 2)), Some(1)),
            row("b", Some((0, 1)), Some(3)),
            row("c", Some((1, 0)), Some(2)),
            row("d", None, Some(0)),
        ];
        mark_next(&mut rows);
        let next: Vec<_> = rows
            .iter()
            .filter(|r| r.next)
            .map(|r| r.host.as_str())
            .collect();
        assert_eq!(next, ["c"]);
        assert!(render(&rows)
            .lines()
            .any(|l| l.starts_with('c') && l.ends_with('*')));
    }
}
