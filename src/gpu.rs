//! NVIDIA GPUs as `nvidia-smi` reports them, and the host profile they imply.
//! Parsers are pure functions of text; `probe` is the only part that touches a host.

use anyhow::Result;
use serde::Serialize;

use crate::host::{Command, Host};

/// Fields asked of `nvidia-smi --query-gpu`, in this order (the H100 capture in
/// shared/reference/hardware.md used exactly these).
pub const QUERY_FIELDS: &str =
    "name,memory.total,memory.used,memory.free,driver_version,compute_cap,uuid,pci.bus_id";

/// Exit status of `nvidia-smi` when it cannot talk to the driver.
const NO_DRIVER_EXIT: i32 = 9;
/// Exit status of a shell that cannot find the command.
const NOT_FOUND_EXIT: i32 = 127;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Profile {
    #[serde(rename = "dgx_spark")]
    DgxSpark,
    #[serde(rename = "rtx_4090")]
    Rtx4090,
    #[serde(rename = "generic_nvidia")]
    GenericNvidia,
    #[serde(rename = "no_gpu")]
    NoGpu,
}

impl Profile {
    pub fn as_str(self) -> &'static str {
        match self {
            Profile::DgxSpark => "dgx_spark",
            Profile::Rtx4090 => "rtx_4090",
            Profile::GenericNvidia => "generic_nvidia",
            Profile::NoGpu => "no_gpu",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Gpu {
    pub name: String,
    /// `None` when the driver does not report it (GB10: unified memory).
    pub memory_total_mib: Option<u64>,
    pub memory_unified: bool,
    /// What ComfyUI can use: the GPU's own memory, or system memory when it is unified.
    pub usable_memory_mib: Option<u64>,
    pub driver_version: Option<String>,
    pub cuda_version: Option<String>,
    pub compute_cap: Option<String>,
    pub uuid: Option<String>,
    pub pci_bus_id: Option<String>,
}

/// What probing `nvidia-smi` found.
#[derive(Debug, Clone, PartialEq)]
pub enum Probe {
    Gpus(Vec<Gpu>),
    /// The binary is not installed.
    NoBinary,
    /// The binary exists but the driver is not loaded (exit 9) or it failed otherwise.
    Failed {
        status: Option<i32>,
        message: String,
    },
}

/// `[N/A]`, `[Not Supported]`, `N/A` and empty fields all mean "not reported".
fn value(field: &str) -> Option<String> {
    let f = field.trim();
    let missing =
        f.is_empty() || f.eq_ignore_ascii_case("n/a") || (f.starts_with('[') && f.ends_with(']'));
    (!missing).then(|| f.to_string())
}

/// Memory in MiB; tolerates a unit left in (`24564 MiB`) when `nounits` was not honoured.
fn mib(field: &str) -> Option<u64> {
    value(field)?.trim_end_matches("MiB").trim().parse().ok()
}

/// One GPU per line of `--query-gpu=QUERY_FIELDS --format=csv,noheader,nounits`.
pub fn parse_query(csv: &str) -> Vec<Gpu> {
    csv.lines()
        .filter(|l| !l.trim().is_empty())
        .filter_map(|line| {
            let f: Vec<&str> = line.split(',').collect();
            if f.len() < 8 {
                return None;
            }
            let name = value(f[0])?;
            let memory_total_mib = mib(f[1]);
            Some(Gpu {
                memory_unified: is_unified(&name, memory_total_mib),
                usable_memory_mib: memory_total_mib,
                name,
                memory_total_mib,
                driver_version: value(f[4]),
                cuda_version: None,
                compute_cap: value(f[5]),
                uuid: value(f[6]),
                pci_bus_id: value(f[7]),
            })
        })
        .collect()
}

/// GB10 (Grace Blackwell) shares system memory with the CPU; the driver reports no VRAM.
fn is_unified(name: &str, memory_total_mib: Option<u64>) -> bool {
    name.contains("GB10") || (memory_total_mib.is_none() && name.contains("Grace"))
}

/// Driver and CUDA versions from the banner of plain `nvidia-smi`. From driver 610 it says
/// `KMD Version:` / `CUDA UMD Version:` instead of `Driver Version:` / `CUDA Version:`.
pub fn parse_banner(text: &str) -> (Option<String>, Option<String>) {
    let after = |labels: &[&str]| {
        labels.iter().find_map(|label| {
            let rest = &text[text.find(label)? + label.len()..];
            rest.split_whitespace().next().map(str::to_string)
        })
    };
    (
        after(&["Driver Version:", "KMD Version:"]),
        after(&["CUDA UMD Version:", "CUDA Version:"]),
    )
}

/// `MemTotal` from /proc/meminfo, in MiB.
pub fn parse_meminfo_total_mib(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024)
}

pub fn profile_of(gpus: &[Gpu]) -> Profile {
    match gpus.first() {
        None => Profile::NoGpu,
        Some(g) if g.memory_unified && g.name.contains("GB10") => Profile::DgxSpark,
        Some(g) if g.name.contains("RTX 4090") => Profile::Rtx4090,
        Some(_) => Profile::GenericNvidia,
    }
}

/// Ask the host's `nvidia-smi`; for unified-memory GPUs, take usable memory from /proc/meminfo.
pub fn probe(host: &dyn Host) -> Result<Probe> {
    let query = Command::new("nvidia-smi")
        .arg(format!("--query-gpu={QUERY_FIELDS}"))
        .arg("--format=csv,noheader,nounits");
    let out = host.run(&query)?;
    match out.status {
        Some(0) => {}
        Some(NOT_FOUND_EXIT) => return Ok(Probe::NoBinary),
        status => {
            let text = format!("{}{}", out.stdout_text(), out.stderr_text());
            return Ok(Probe::Failed {
                status,
                message: text.lines().next().unwrap_or("").trim().to_string(),
            });
        }
    }
    let mut gpus = parse_query(&out.stdout_text());
    let banner = host.run(&Command::new("nvidia-smi"))?;
    let (driver, cuda) = parse_banner(&banner.stdout_text());
    let system_mib = match gpus.iter().any(|g| g.memory_unified) {
        true => host
            .read_opt("/proc/meminfo".as_ref())?
            .and_then(|m| parse_meminfo_total_mib(&String::from_utf8_lossy(&m))),
        false => None,
    };
    for gpu in &mut gpus {
        gpu.cuda_version = cuda.clone();
        if gpu.driver_version.is_none() {
            gpu.driver_version = driver.clone();
        }
        if gpu.memory_unified {
            gpu.usable_memory_mib = system_mib;
        }
    }
    Ok(Probe::Gpus(gpus))
}

/// The host's GPUs; empty when it has none or no working driver (`doctor` says why).
pub fn gpus(host: &dyn Host) -> Result<Vec<Gpu>> {
    Ok(match probe(host)? {
        Probe::Gpus(g) => g,
        _ => Vec::new(),
    })
}

pub fn is_no_driver(status: Option<i32>) -> bool {
    status == Some(NO_DRIVER_EXIT)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str, file: &str) -> String {
        let path = format!(
            "{}/tests/fixtures/nvidia-smi/{name}/{file}",
            env!("CARGO_MANIFEST_DIR")
        );
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    #[test]
    fn gb10_memory_is_not_reported_and_unified() {
        let gpus = parse_query(&fixture("gb10", "query.csv"));
        assert_eq!(gpus.len(), 1);
        assert_eq!(gpus[0].name, "NVIDIA GB10");
        assert_eq!(gpus[0].memory_total_mib, None);
        assert!(gpus[0].memory_unified);
        assert_eq!(gpus[0].compute_cap.as_deref(), Some("12.1"));
        assert_eq!(gpus[0].driver_version.as_deref(), Some("580.126.09"));
        assert_eq!(profile_of(&gpus), Profile::DgxSpark);
    }

    #[test]
    fn rtx_4090_and_h100_profiles() {
        let rtx = parse_query(&fixture("rtx4090", "query.csv"));
        assert_eq!(rtx[0].memory_total_mib, Some(24564));
        assert!(!rtx[0].memory_unified);
        assert_eq!(profile_of(&rtx), Profile::Rtx4090);
        let h100 = parse_query(&fixture("h100", "query.csv"));
        assert_eq!(h100[0].name, "NVIDIA H100 80GB HBM3");
        assert_eq!(h100[0].memory_total_mib, Some(81559));
        assert_eq!(h100[0].compute_cap.as_deref(), Some("9.0"));
        assert_eq!(h100[0].pci_bus_id.as_deref(), Some("00000000:00:06.0"));
        assert_eq!(profile_of(&h100), Profile::GenericNvidia);
        assert_eq!(profile_of(&[]), Profile::NoGpu);
    }

    #[test]
    fn several_gpus_and_not_supported_fields() {
        let gpus = parse_query(&fixture("multi-gpu", "query.csv"));
        assert_eq!(gpus.len(), 2);
        assert_eq!(gpus[1].memory_total_mib, Some(24564));
        assert_eq!(value("[Not Supported]"), None);
        assert_eq!(value(" N/A"), None);
        assert_eq!(mib(" 24564 MiB"), Some(24564));
    }

    #[test]
    fn banner_both_spellings() {
        assert_eq!(
            parse_banner(&fixture("gb10", "banner.txt")),
            (Some("580.95.05".into()), Some("13.0".into()))
        );
        assert_eq!(
            parse_banner(&fixture("h100", "banner.txt")),
            (Some("580.159.04".into()), Some("13.0".into()))
        );
        assert_eq!(
            parse_banner(&fixture("driver610", "banner.txt")),
            (Some("610.12".into()), Some("13.2".into()))
        );
    }

    #[test]
    fn no_driver_message_parses_to_no_gpu() {
        assert!(parse_query(&fixture("no-driver", "query.csv")).is_empty());
        assert_eq!(fixture("no-driver", "exit").trim(), "9");
    }

    #[test]
    fn meminfo_total() {
        let m = "MemTotal:       124610900 kB\nMemFree:        1000 kB\n";
        assert_eq!(parse_meminfo_total_mib(m), Some(121690));
    }
}
