//! `~/CONNECTION_INFO.txt` on the target, as the seed writes it by hand: the LAN address, port,
//! base URL, the `COMFYUI_URL=` line for Life-OS's `.env`, GPU model, memory and setup date.
//! Built only from those facts, so it never carries a secret. Rewriting keeps the first
//! setup date, so running it again on an unchanged host is `ok`, not `changed`.

use std::path::PathBuf;

use anyhow::{Context, Result};
use serde::Serialize;

use crate::file_change::FileChange;
use crate::gpu::{self, Gpu, Profile};
use crate::host::{Command, Host};
use crate::step::{unified_diff, Outcome};
use crate::ui::HintExt;

const SETUP_DATE: &str = "Setup Date: ";
const SECONDS_PER_IMAGE: &str = "Seconds per image: ";

#[derive(Debug, Clone)]
pub struct Options {
    pub port: u16,
    /// Publish this address instead of discovering it.
    pub address: Option<String>,
    /// The playbook's batch size; the profile's playbook decides when `None`.
    pub batch_size: Option<u32>,
    /// Measured by the check generation (`verify --generate`); `None` keeps the file's.
    pub seconds_per_image: Option<f64>,
    pub dry_run: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct ConnectionInfo {
    pub address: String,
    pub port: u16,
    pub comfyui_url: String,
    pub profile: Profile,
    /// GPU model(s), `None` when nvidia-smi found none.
    pub gpu: Option<String>,
    pub memory: String,
    /// Images per generation this device handles well (the seed: 8 on a Spark, 2 on a 4090).
    pub batch_size: Option<u32>,
    /// One FaceID portrait at the playbook's check size, as last measured.
    pub seconds_per_image: Option<f64>,
    pub setup_date: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub host: String,
    pub path: PathBuf,
    pub status: Outcome,
    pub info: ConnectionInfo,
    /// The file as written (or as it would be written).
    pub text: String,
    pub diff: String,
}

pub fn run(host: &dyn Host, opts: &Options) -> Result<Report> {
    let path = host.expand_home(crate::defaults::CONNECTION_INFO)?;
    let address = match &opts.address {
        Some(a) => a.clone(),
        None => lan_address(host)?,
    };
    let gpus = gpu::gpus(host)?;
    let mut info = ConnectionInfo {
        comfyui_url: base_url(&address, opts.port),
        address,
        port: opts.port,
        profile: gpu::profile_of(&gpus),
        gpu: (!gpus.is_empty()).then(|| {
            gpus.iter()
                .map(|g| g.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        }),
        memory: memory_line(host, &gpus)?,
        batch_size: opts.batch_size.or_else(|| {
            let profile = gpu::profile_of(&gpus);
            crate::playbook::Playbook::for_profile(profile)
                .ok()
                .map(|p| p.batch_size)
        }),
        seconds_per_image: None,
        setup_date: String::new(),
    };
    let change = FileChange::plan(host, &path, |before| {
        let before_text = before.map(String::from_utf8_lossy).unwrap_or_default();
        info.seconds_per_image =
            kept_seconds(seconds_per_image(&before_text), opts.seconds_per_image);
        let kept = before.and_then(|b| setup_date(&String::from_utf8_lossy(b)));
        info.setup_date = kept.unwrap_or_else(|| {
            chrono::Local::now()
                .format("%Y-%m-%d %H:%M:%S %z")
                .to_string()
        });
        Ok(render(&info).into_bytes())
    })?;
    let text = String::from_utf8_lossy(&change.after).into_owned();
    let before = change
        .before
        .as_deref()
        .map(String::from_utf8_lossy)
        .unwrap_or_default();
    let diff = unified_diff(&path, &before, &text);
    let status = match (change.is_noop(), opts.dry_run) {
        (true, _) => Outcome::Ok,
        (false, true) => Outcome::WouldChange,
        (false, false) => {
            change.apply(host, 0o644, false)?;
            Outcome::Changed
        }
    };
    Ok(Report {
        host: host.name().to_string(),
        path,
        status,
        info,
        text,
        diff,
    })
}

/// `http://ADDR:PORT`, with an IPv6 address in brackets.
fn base_url(address: &str, port: u16) -> String {
    match address.contains(':') {
        true => format!("http://[{address}]:{port}"),
        false => format!("http://{address}:{port}"),
    }
}

/// The source address of the route to the outside: the interface that reaches the LAN. The
/// seed's `hostname -I | awk '{print $1}'` can pick docker0 or a VPN; it is only the fallback.
fn lan_address(host: &dyn Host) -> Result<String> {
    let route = host.run(&Command::new("ip").args(["-4", "route", "get", "1.1.1.1"]))?;
    if let Some(a) = route
        .success()
        .then(|| parse_route_src(&route.stdout_text()))
        .flatten()
    {
        return Ok(a);
    }
    let names = host.run(&Command::new("hostname").arg("-I"))?;
    names
        .success()
        .then(|| parse_hostname_i(&names.stdout_text()))
        .flatten()
        .with_context(|| format!("cannot find the LAN address of {}", host.name()))
        .hint("name it: `connection-info --address 192.168.1.101`")
}

/// `src X` from `ip route get` (`1.1.1.1 via 192.168.1.1 dev eth0 src 192.168.1.101 uid 1000`).
pub fn parse_route_src(text: &str) -> Option<String> {
    let mut words = text.split_whitespace();
    words.find(|w| *w == "src")?;
    words.next().map(str::to_string)
}

/// The first address `hostname -I` lists that is not Docker's bridge.
pub fn parse_hostname_i(text: &str) -> Option<String> {
    text.split_whitespace()
        .find(|a| !a.starts_with("172.17.") && !a.starts_with("127."))
        .map(str::to_string)
}

/// Unified memory is the system's (a Spark's GB10 reports no VRAM); otherwise the GPU's.
fn memory_line(host: &dyn Host, gpus: &[Gpu]) -> Result<String> {
    let gib = |mib: u64| (mib + 512) / 1024;
    if let Some(g) = gpus.first() {
        match (g.memory_unified, g.usable_memory_mib) {
            (true, Some(mib)) => return Ok(format!("{} GiB unified", gib(mib))),
            (false, Some(mib)) => return Ok(format!("{} GiB VRAM", gib(mib))),
            _ => {}
        }
    }
    let system = crate::system::probe_platform(host)?.memory_total_mib;
    Ok(system.map_or("unknown".to_string(), |mib| {
        format!("{} GiB system", gib(mib))
    }))
}

fn title(profile: Profile) -> &'static str {
    match profile {
        Profile::DgxSpark => "DGX Spark",
        Profile::Rtx4090 => "RTX 4090 PC",
        Profile::GenericNvidia | Profile::NoGpu => "ComfyUI Server",
    }
}

pub fn render(info: &ConnectionInfo) -> String {
    let device_type = match info.profile {
        Profile::DgxSpark | Profile::Rtx4090 => {
            format!("COMFYUI_DEVICE_TYPE={}\n", info.profile.as_str())
        }
        Profile::GenericNvidia | Profile::NoGpu => String::new(),
    };
    let batch = info
        .batch_size
        .map_or(String::new(), |b| format!("Batch size: {b}\n"));
    let speed = info
        .seconds_per_image
        .map_or(String::new(), |s| format!("{SECONDS_PER_IMAGE}{s:.1}\n"));
    format!(
        "# {} Connection Information\n\nIP Address: {}\nPort: {}\nBase URL: {url}\n\nCOMFYUI_URL={url}\n{device_type}\nModel: {}\nMemory: {}\n{batch}{speed}{SETUP_DATE}{}\n",
        title(info.profile),
        info.address,
        info.port,
        info.gpu.as_deref().unwrap_or("no NVIDIA GPU found"),
        info.memory,
        info.setup_date,
        url = info.comfyui_url,
    )
}

/// The seconds per image an earlier CONNECTION_INFO.txt records.
fn seconds_per_image(text: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(SECONDS_PER_IMAGE))
        .and_then(|v| v.trim().parse().ok())
}

/// A new measurement replaces the recorded one only when it differs by more than a quarter
/// (and half a second): timings jitter, and a re-run of `setup` on an unchanged host must leave
/// the file as it is.
fn kept_seconds(before: Option<f64>, measured: Option<f64>) -> Option<f64> {
    match (before, measured) {
        (Some(b), Some(m)) if (m - b).abs() <= (b * 0.25).max(0.5) => Some(b),
        (b, m) => m.or(b),
    }
}

/// The setup date of an earlier CONNECTION_INFO.txt (ours or the seed's).
fn setup_date(text: &str) -> Option<String> {
    text.lines()
        .find_map(|l| l.strip_prefix(SETUP_DATE))
        .map(|d| d.trim().to_string())
        .filter(|d| !d.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_per_image_is_kept_within_a_quarter() {
        assert_eq!(kept_seconds(Some(4.0), Some(4.9)), Some(4.0));
        assert_eq!(kept_seconds(Some(4.0), Some(5.1)), Some(5.1));
        assert_eq!(kept_seconds(Some(0.2), Some(0.6)), Some(0.2));
        assert_eq!(kept_seconds(Some(4.0), None), Some(4.0));
        assert_eq!(kept_seconds(None, Some(3.0)), Some(3.0));
        assert_eq!(seconds_per_image("x\nSeconds per image: 4.2\n"), Some(4.2));
    }

    #[test]
    fn addresses_from_ip_route_and_hostname() {
        let route = "1.1.1.1 via 192.168.1.1 dev enP7s7 src 192.168.1.101 uid 1000 \n    cache \n";
        assert_eq!(parse_route_src(route).as_deref(), Some("192.168.1.101"));
        assert_eq!(
            parse_route_src("RTNETLINK answers: Network is unreachable"),
            None
        );
        assert_eq!(
            parse_hostname_i("172.17.0.1 192.168.1.100 fd00::2 \n").as_deref(),
            Some("192.168.1.100")
        );
        assert_eq!(base_url("fd00::2", 8188), "http://[fd00::2]:8188");
    }

    #[test]
    fn seed_layout_and_setup_date_kept() {
        let info = ConnectionInfo {
            address: "192.168.1.101".into(),
            port: 8188,
            comfyui_url: "http://192.168.1.101:8188".into(),
            profile: Profile::DgxSpark,
            gpu: Some("NVIDIA GB10".into()),
            memory: "119 GiB unified".into(),
            batch_size: Some(8),
            seconds_per_image: None,
            setup_date: "2026-11-26 10:00:00 +0000".into(),
        };
        let text = render(&info);
        assert_eq!(
            text,
            "# DGX Spark Connection Information\n\nIP Address: 192.168.1.101\nPort: 8188\nBase URL: http://192.168.1.101:8188\n\nCOMFYUI_URL=http://192.168.1.101:8188\nCOMFYUI_DEVICE_TYPE=dgx_spark\n\nModel: NVIDIA GB10\nMemory: 119 GiB unified\nBatch size: 8\nSetup Date: 2026-11-26 10:00:00 +0000\n"
        );
        assert_eq!(
            setup_date(&text).as_deref(),
            Some("2026-11-26 10:00:00 +0000")
        );
        let seed = "Memory: 128 GB unified\nSetup Date: Wed Nov 26 10:00:00 UTC 2026\n";
        assert_eq!(
            setup_date(seed).as_deref(),
            Some("Wed Nov 26 10:00:00 UTC 2026")
        );
    }
}
