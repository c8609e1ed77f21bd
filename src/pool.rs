//! The device pool Life-OS's router reads (the seed's `comfyui_devices`): one writer for
//! `pool` (from the inventory and what each ComfyUI reports) and `migrate --mode parallel`.

use std::path::PathBuf;

use anyhow::Result;
use serde::{Deserialize, Serialize};

use crate::gpu::Profile;
use crate::host::Host;
use crate::status::HostStatus;
use crate::step::{FileStep, Mode, Replace, StepReport};
use crate::ui::Printer;

/// One entry of the pool. Optional fields are left out when unknown, so a host that was down
/// does not get invented numbers.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Device {
    pub name: String,
    pub url: String,
    /// Lower is preferred.
    pub priority: u32,
    pub capabilities: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device_type: Option<String>,
    /// Memory ComfyUI can use, GB (system memory on a unified-memory GB10).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_gb: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub batch_size: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seconds_per_image: Option<f64>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct DevicePool {
    pub comfyui_devices: Vec<Device>,
}

/// What the seed's router filters on: every CUDA box does SDXL, Flux and ControlNet; a Spark's
/// 128 GB of unified memory also takes large batches and several large models at once.
pub fn capabilities(profile: Profile) -> Vec<String> {
    let mut caps = vec!["sdxl", "flux", "controlnet"];
    if profile == Profile::DgxSpark {
        caps.extend(["large_batch", "large_models"]);
    }
    caps.into_iter().map(String::from).collect()
}

/// The seed's router sends batches above 4 only to `large_batch` devices.
pub fn batch_size(profile: Profile) -> u32 {
    if profile == Profile::DgxSpark {
        8
    } else {
        4
    }
}

/// The profile a ComfyUI's reported device name implies (`cuda:0 NVIDIA GB10 : cudaMallocAsync`).
pub fn profile_of_device(device: &str) -> Profile {
    if device.contains("GB10") {
        Profile::DgxSpark
    } else if device.contains("RTX 4090") {
        Profile::Rtx4090
    } else if device.contains("cuda") {
        Profile::GenericNvidia
    } else {
        Profile::NoGpu
    }
}

/// The GPU's name out of ComfyUI's device string: `NVIDIA GB10`.
pub fn device_name(device: &str) -> String {
    let s = device.split(" : ").next().unwrap_or(device);
    let s = s
        .split_once(' ')
        .filter(|(a, _)| a.contains(':'))
        .map_or(s, |(_, b)| b);
    s.trim().to_string()
}

/// An entry from what `status` learned of a host, with the inventory's values first.
pub fn from_status(s: &HostStatus, entry: &crate::inventory::HostEntry) -> Device {
    let profile = s.device.as_deref().map(profile_of_device);
    let gb = s
        .memory_total_bytes
        .map(|b| (b as f64 / 1e9).round() as u64);
    Device {
        name: s.host.clone(),
        url: s.url.clone(),
        priority: entry.priority(),
        capabilities: entry
            .capabilities
            .clone()
            .or(profile.map(capabilities))
            .unwrap_or_default(),
        device_type: s.device.as_deref().map(device_name),
        memory_gb: gb,
        batch_size: entry.batch_size.or(profile.map(batch_size)),
        seconds_per_image: entry.seconds_per_image,
    }
}

/// The pool file's text: preferred first, then by name, so the same pool is the same bytes.
pub fn render(mut devices: Vec<Device>, writer: &str) -> Result<String> {
    devices.sort_by(|a, b| (a.priority, &a.name).cmp(&(b.priority, &b.name)));
    let pool = DevicePool {
        comfyui_devices: devices,
    };
    Ok(format!(
        "# Written by lifeos-spark {writer}: ComfyUI devices for Life-OS's router, preferred first.\n{}",
        serde_yaml::to_string(&pool)?
    ))
}

/// Write the pool on `local` as a step: atomic, the old file kept as a backup. The pool is
/// the tool's own output, so it is replaced without asking.
pub fn write(
    local: &dyn Host,
    path: PathBuf,
    devices: Vec<Device>,
    writer: &str,
    dry_run: bool,
    printer: &Printer,
) -> Result<StepReport> {
    let text = render(devices, writer)?;
    let step = FileStep {
        path,
        content: &text,
        mode: Some(0o644),
    };
    let mode = Mode {
        dry_run,
        replace: Replace::Yes,
    };
    step.run(local, mode, printer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_names_out_of_comfyui_strings() {
        assert_eq!(
            device_name("cuda:0 NVIDIA GB10 : cudaMallocAsync"),
            "NVIDIA GB10"
        );
        assert_eq!(device_name("cpu"), "cpu");
        assert_eq!(
            profile_of_device("cuda:0 NVIDIA GeForce RTX 4090 : native"),
            Profile::Rtx4090
        );
    }

    #[test]
    fn rendered_pool_is_sorted_and_round_trips() {
        let d = |name: &str, priority| Device {
            name: name.into(),
            url: format!("http://{name}:8188"),
            priority,
            capabilities: capabilities(Profile::Rtx4090),
            device_type: None,
            memory_gb: Some(24),
            batch_size: None,
            seconds_per_image: Some(2.5),
        };
        let text = render(vec![d("b", 2), d("a", 2), d("c", 1)], "pool").unwrap();
        let pool: DevicePool = serde_yaml::from_str(&text).unwrap();
        let names: Vec<_> = pool
            .comfyui_devices
            .iter()
            .map(|d| d.name.as_str())
            .collect();
        assert_eq!(names, ["c", "a", "b"]);
        assert!(!text.contains("device_type"), "{text}");
    }
}
