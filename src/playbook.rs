//! Host profiles as playbooks (`playbooks/*.yaml`, embedded; `--playbook PATH` overrides):
//! where ComfyUI lives, which image it is built from, which port, which models and nodes.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;

use anyhow::{bail, Context, Result};
use serde::Deserialize;

use crate::gpu::Profile;
use crate::ui::HintExt;

const EMBEDDED: [(&str, &str); 3] = [
    ("dgx-spark", include_str!("../playbooks/dgx-spark.yaml")),
    ("rtx-4090", include_str!("../playbooks/rtx-4090.yaml")),
    (
        "generic-nvidia",
        include_str!("../playbooks/generic-nvidia.yaml"),
    ),
];

/// The playbook where no GPU picks one: a plan on a host without a GPU, and the commands that
/// need none (`nodes`). Every embedded playbook has the same root, project, port, models and
/// nodes (a test checks), so with it those commands find the deployment any of them made.
pub const DEFAULT: &str = "generic-nvidia";

/// The names by which a playbook's `models` and `nodes` mean the embedded lists.
pub const EMBEDDED_MODELS: &str = "sdxl-faceid";
pub const EMBEDDED_NODES: &str = "custom-nodes";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Playbook {
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub profile: String,
    /// Deployment root on the target (`~` allowed).
    pub root: String,
    /// Compose project name (`-p`): containers are `<project>-comfyui-1` / `<project>_comfyui_1`.
    pub project: String,
    /// What the Dockerfile builds `FROM`.
    pub base_image: String,
    /// The tag the built image gets.
    pub image: String,
    pub comfyui: ComfyUiSource,
    /// Host port ComfyUI is published on (the container always listens on 8188).
    pub port: u16,
    /// Host address the port is bound to.
    pub bind: IpAddr,
    /// Model manifest: an embedded name or a path.
    pub models: String,
    /// Custom-node list: an embedded name or a path.
    pub nodes: String,
    pub batch_size: u32,
    #[serde(default)]
    pub pip: PipRules,
    /// Overrides of the container healthcheck (tests use a faster one).
    #[serde(default)]
    pub healthcheck: Option<HealthcheckOverride>,
    /// Container resource limits; the defaults are what NVIDIA's DGX Spark playbooks pass to
    /// `docker run` for PyTorch (`--ulimit memlock=-1 --ulimit stack=67108864`).
    #[serde(default)]
    pub ulimits: Ulimits,
    /// Seconds `up` waits for `/system_stats` to answer.
    #[serde(default = "default_start_timeout")]
    pub start_timeout: u64,
    /// The check generation of `verify --generate` (and of `setup`).
    #[serde(default)]
    pub generate: GenerateSettings,
    /// Extra ComfyUI launch flags (`--disable-mmap`, `--highvram`, ...), checked against
    /// `LAUNCH_FLAGS`; the tool owns `--listen` and `--port`.
    #[serde(default)]
    pub comfyui_args: Vec<String>,
}

/// ComfyUI launch flags a playbook may add (comfy/cli_args.py, read 2026-11), each with its
/// mutually exclusive group (at most one flag per group) and whether it takes `=VALUE`.
pub const LAUNCH_FLAGS: &[(&str, &str, bool)] = &[
    ("--disable-mmap", "", false),
    ("--mmap-torch-files", "", false),
    ("--gpu-only", "vram", false),
    ("--highvram", "vram", false),
    ("--normalvram", "vram", false),
    ("--lowvram", "vram", false),
    ("--novram", "vram", false),
    ("--cpu", "vram", false),
    ("--reserve-vram", "", true),
    ("--disable-smart-memory", "", false),
    ("--async-offload", "", false),
    ("--cuda-malloc", "cuda-malloc", false),
    ("--disable-cuda-malloc", "cuda-malloc", false),
    ("--force-fp32", "fp", false),
    ("--force-fp16", "fp", false),
    ("--fp32-vae", "vae", false),
    ("--fp16-vae", "vae", false),
    ("--bf16-vae", "vae", false),
    ("--cpu-vae", "", false),
    ("--use-split-cross-attention", "attention", false),
    ("--use-quad-cross-attention", "attention", false),
    ("--use-pytorch-cross-attention", "attention", false),
    ("--use-sage-attention", "attention", false),
    ("--use-flash-attention", "attention", false),
    ("--disable-xformers", "", false),
    ("--force-channels-last", "", false),
    ("--cache-classic", "cache", false),
    ("--cache-lru", "cache", true),
    ("--cache-none", "cache", false),
    ("--preview-method", "", true),
    ("--deterministic", "", false),
    ("--disable-metadata", "", false),
    ("--verbose", "", true),
];

/// Why a list of launch flags is not acceptable, naming the flag.
pub fn check_comfyui_args(args: &[String]) -> std::result::Result<(), String> {
    let mut groups: Vec<(&str, &str)> = Vec::new();
    for arg in args {
        let (flag, value) = match arg.split_once('=') {
            Some((f, v)) => (f, Some(v)),
            None => (arg.as_str(), None),
        };
        let Some((_, group, takes)) = LAUNCH_FLAGS.iter().find(|(f, _, _)| *f == flag) else {
            return Err(format!("`{arg}` is not a ComfyUI flag lifeos-spark knows"));
        };
        match (takes, value) {
            (true, None | Some("")) => {
                return Err(format!("`{flag}` needs a value: `{flag}=VALUE`"))
            }
            (false, Some(_)) => return Err(format!("`{flag}` takes no value")),
            _ => {}
        }
        if let Some((other, _)) = groups.iter().find(|(_, g)| !group.is_empty() && g == group) {
            return Err(format!(
                "`{flag}` and `{other}` exclude each other (one {group} flag at most)"
            ));
        }
        groups.push((flag, group));
    }
    Ok(())
}

/// A small, fast generation: proof that the models, nodes and GPU work together, not a
/// portrait worth keeping. SDXL is trained at 1024x1024; 768 still draws a face that InsightFace
/// detects, in about half the time.
#[derive(Debug, Clone, PartialEq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct GenerateSettings {
    pub width: u32,
    pub height: u32,
    pub steps: u32,
    pub cfg: f32,
    pub seed: u64,
    /// Seconds each of the two generations may take, model loading included.
    pub timeout: u64,
}

impl Default for GenerateSettings {
    fn default() -> Self {
        GenerateSettings {
            width: 768,
            height: 768,
            steps: 12,
            cfg: 5.0,
            seed: 42,
            timeout: 600,
        }
    }
}

fn default_start_timeout() -> u64 {
    600
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ComfyUiSource {
    pub repo: String,
    /// A tag or a full commit sha.
    #[serde(rename = "ref")]
    pub git_ref: String,
}

/// How ComfyUI's requirements.txt is adapted before `pip install`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipRules {
    /// Packages never installed from requirements (the image's CUDA PyTorch must stay).
    /// A trailing `*` matches a prefix (`nvidia-*`).
    #[serde(default)]
    pub drop: Vec<String>,
    /// Package replacements (`onnxruntime-gpu: onnxruntime`).
    #[serde(default)]
    pub rewrite: BTreeMap<String, String>,
    #[serde(default)]
    pub aarch64: Option<Box<PipRules>>,
    #[serde(default)]
    pub x86_64: Option<Box<PipRules>>,
}

impl PipRules {
    /// The rules for one architecture: the common ones plus that architecture's.
    pub fn for_arch(&self, arch: &str) -> PipRules {
        let mut rules = PipRules {
            drop: self.drop.clone(),
            rewrite: self.rewrite.clone(),
            aarch64: None,
            x86_64: None,
        };
        let extra = match arch {
            "aarch64" | "arm64" => &self.aarch64,
            "x86_64" | "amd64" => &self.x86_64,
            _ => &None,
        };
        if let Some(extra) = extra {
            rules.drop.extend(extra.drop.iter().cloned());
            rules.rewrite.extend(extra.rewrite.clone());
        }
        rules
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Ulimits {
    /// -1: unlimited.
    pub memlock: i64,
    pub stack: i64,
}

impl Default for Ulimits {
    fn default() -> Self {
        Ulimits {
            memlock: -1,
            stack: 67_108_864,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthcheckOverride {
    #[serde(default)]
    pub test: Option<Vec<String>>,
    #[serde(default)]
    pub interval: Option<String>,
}

impl Playbook {
    /// An embedded playbook by name, or a file on this machine.
    pub fn load(name_or_path: &str) -> Result<Playbook> {
        if let Some((name, text)) = EMBEDDED.iter().find(|(n, _)| *n == name_or_path) {
            return Playbook::parse(text, &format!("playbooks/{name}.yaml"));
        }
        let path = Path::new(name_or_path);
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read playbook `{name_or_path}`"))
            .hint(format!(
                "name an embedded playbook ({}) or a YAML file",
                EMBEDDED.map(|(n, _)| n).join(", ")
            ))?;
        Playbook::parse(&text, name_or_path)
    }

    /// The canonical embedded name for `arg` (`dgx_spark`, the profile spelling, is
    /// `dgx-spark`), or `arg` itself when it is a file on this machine.
    pub fn resolve_name(arg: &str) -> Result<String> {
        let dashed = arg.replace('_', "-");
        if let Some((name, _)) = EMBEDDED.iter().find(|(n, _)| *n == dashed) {
            return Ok(name.to_string());
        }
        if Path::new(arg).is_file() {
            return Ok(arg.to_string());
        }
        Err(anyhow::anyhow!(
            "no embedded playbook `{arg}` and no such file"
        ))
        .hint(format!(
            "name an embedded playbook ({}) or a YAML file",
            EMBEDDED.map(|(n, _)| n).join(", ")
        ))
    }

    /// The named playbook, else the one for the host's profile; a host without a GPU gets the
    /// generic one when the service runs without a GPU (`--gpu none`).
    pub fn choose(named: Option<&str>, profile: Profile, gpu: bool) -> Result<Playbook> {
        match (named, profile) {
            (Some(name), _) => Playbook::load(name),
            (None, Profile::NoGpu) if !gpu => Playbook::load(DEFAULT),
            (None, profile) => Playbook::for_profile(profile),
        }
    }

    /// The named playbook, else the default: for what needs no GPU, so no `nvidia-smi`.
    pub fn named_or_default(named: Option<&str>) -> Result<Playbook> {
        Playbook::load(named.unwrap_or(DEFAULT))
    }

    /// The playbook for a profile `doctor` detected.
    pub fn for_profile(profile: Profile) -> Result<Playbook> {
        let name = match profile {
            Profile::DgxSpark => "dgx-spark",
            Profile::Rtx4090 => "rtx-4090",
            Profile::GenericNvidia => "generic-nvidia",
            Profile::NoGpu => {
                return Err(anyhow::anyhow!("no NVIDIA GPU found, so no playbook fits this host"))
                    .hint("name one with `--playbook NAME|PATH` (with `--gpu none` for a CPU-only test service)")
            }
        };
        Playbook::load(name)
    }

    pub fn parse(text: &str, source: &str) -> Result<Playbook> {
        let playbook: Playbook = serde_yaml::from_str(text)
            .map_err(|e| anyhow::anyhow!(crate::yaml::located(&e, source)))
            .with_context(|| format!("invalid playbook `{source}`"))
            .hint("compare with the embedded playbooks in `playbooks/`")?;
        playbook.validate(text, source)?;
        Ok(playbook)
    }

    fn validate(&self, text: &str, source: &str) -> Result<()> {
        let fail = |field: &str, why: String, fix: &str| -> Result<()> {
            let line = line_of(text, field).map_or(String::new(), |l| format!(", line {l}"));
            Err(anyhow::anyhow!(
                "invalid playbook `{source}`{line}: field `{field}` {why}"
            ))
            .hint(fix.to_string())
        };
        if !["dgx_spark", "rtx_4090", "generic_nvidia", "no_gpu"].contains(&self.profile.as_str()) {
            fail(
                "profile",
                format!("is `{}`", self.profile),
                "use dgx_spark, rtx_4090, generic_nvidia or no_gpu",
            )?;
        }
        if self.port == 0 {
            fail(
                "port",
                "is 0".into(),
                "use a port from 1 to 65535 (ComfyUI's default is 8188)",
            )?;
        }
        if self.comfyui.git_ref.trim().is_empty() {
            fail(
                "ref",
                "is empty".into(),
                "pin ComfyUI to a tag or a full commit sha",
            )?;
        }
        if !self
            .project
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
            || self.project.is_empty()
        {
            fail(
                "project",
                format!("is `{}`", self.project),
                "use lowercase letters, digits, `-` and `_`",
            )?;
        }
        for (field, value) in [("image", &self.image), ("base_image", &self.base_image)] {
            if value.trim().is_empty() || value.contains(char::is_whitespace) {
                fail(
                    field,
                    format!("is `{value}`"),
                    "name an image like `registry/name:tag`",
                )?;
            }
        }
        if let Err(why) = check_comfyui_args(&self.comfyui_args) {
            let known: Vec<&str> = LAUNCH_FLAGS.iter().map(|(f, _, _)| *f).collect();
            fail(
                "comfyui_args",
                why,
                &format!("use flags from ComfyUI's cli_args.py: {}", known.join(" ")),
            )?;
        }
        let g = &self.generate;
        for (field, value) in [("width", g.width), ("height", g.height)] {
            if !(64..=2048).contains(&value) || value % 8 != 0 {
                fail(
                    field,
                    format!("is {value}"),
                    "generate.width and generate.height are multiples of 8 from 64 to 2048",
                )?;
            }
        }
        if !(1..=100).contains(&g.steps) || g.timeout == 0 {
            fail(
                "generate",
                format!("has steps {} and timeout {}", g.steps, g.timeout),
                "use 1 to 100 steps and a timeout of at least 1 second",
            )?;
        }
        if self.batch_size == 0 {
            bail!("invalid playbook `{source}`: field `batch_size` is 0");
        }
        Ok(())
    }
}

/// 1-based line of the first `field:` key in a YAML text.
fn line_of(text: &str, field: &str) -> Option<usize> {
    text.lines()
        .position(|l| {
            l.trim_start()
                .strip_prefix(field)
                .is_some_and(|r| r.starts_with(':'))
        })
        .map(|i| i + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_playbooks_are_valid_and_differ_where_they_should() {
        let spark = Playbook::load("dgx-spark").unwrap();
        let rtx = Playbook::load("rtx-4090").unwrap();
        Playbook::load("generic-nvidia").unwrap();
        assert_eq!((spark.batch_size, rtx.batch_size), (8, 2));
        assert_eq!(spark.port, 8188);
        let arm = spark.pip.for_arch("aarch64");
        assert_eq!(
            arm.rewrite.get("onnxruntime-gpu").map(String::as_str),
            Some("onnxruntime")
        );
        assert!(arm.drop.contains(&"xformers".to_string()));
        let x86 = rtx.pip.for_arch("x86_64");
        assert!(x86.rewrite.is_empty() && !x86.drop.contains(&"xformers".to_string()));
        assert!(x86.drop.contains(&"torch".to_string()));
    }

    /// What `DEFAULT` stands in for: the commands that need no GPU use its root, project,
    /// port, models and nodes, so every embedded playbook must agree on them.
    #[test]
    fn the_default_playbook_shares_the_gpu_independent_fields() {
        let default = Playbook::load(DEFAULT).unwrap();
        for (name, _) in EMBEDDED {
            let p = Playbook::load(name).unwrap();
            assert_eq!(
                (&p.root, &p.project, p.port, &p.models, &p.nodes),
                (
                    &default.root,
                    &default.project,
                    default.port,
                    &default.models,
                    &default.nodes
                ),
                "{name}"
            );
        }
    }

    #[test]
    fn launch_flags_are_checked() {
        let spark = Playbook::load("dgx-spark").unwrap();
        assert_eq!(spark.comfyui_args, ["--disable-mmap", "--highvram"]);
        let ok =
            |a: &[&str]| check_comfyui_args(&a.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert!(ok(&["--reserve-vram=2", "--use-pytorch-cross-attention"]).is_ok());
        assert!(ok(&["--highvram", "--lowvram"])
            .unwrap_err()
            .contains("exclude"));
        assert!(ok(&["--listen"])
            .unwrap_err()
            .contains("not a ComfyUI flag"));
        assert!(ok(&["--reserve-vram"])
            .unwrap_err()
            .contains("needs a value"));
        let text = include_str!("../playbooks/dgx-spark.yaml").replace("--highvram", "--turbo");
        let err = format!("{:#}", Playbook::parse(&text, "s.yaml").unwrap_err());
        assert!(
            err.contains("field `comfyui_args`") && err.contains("--turbo") && err.contains("line"),
            "{err}"
        );
    }

    #[test]
    fn profile_picks_playbook() {
        assert_eq!(
            Playbook::for_profile(Profile::DgxSpark).unwrap().name,
            "dgx-spark"
        );
        assert_eq!(
            Playbook::for_profile(Profile::GenericNvidia).unwrap().name,
            "generic-nvidia"
        );
        let err = Playbook::for_profile(Profile::NoGpu).unwrap_err();
        assert!(format!("{err:#}").contains("no NVIDIA GPU"));
    }

    #[test]
    fn errors_name_file_line_and_field() {
        let text = include_str!("../playbooks/rtx-4090.yaml");
        let bad = text.replace("port: 8188", "port: 0");
        let err = format!("{:#}", Playbook::parse(&bad, "my.yaml").unwrap_err());
        assert!(
            err.contains("`my.yaml`, line") && err.contains("field `port`"),
            "{err}"
        );
        let unknown = format!("{text}colour: blue\n");
        let err = format!("{:#}", Playbook::parse(&unknown, "my.yaml").unwrap_err());
        let line = text.lines().count() + 1;
        assert!(
            err.contains(&format!("my.yaml:{line}:1:")) && err.contains("unknown field `colour`"),
            "{err}"
        );
        let bind = text.replace("bind: 0.0.0.0", "bind: everywhere");
        let err = format!("{:#}", Playbook::parse(&bind, "my.yaml").unwrap_err());
        assert!(err.contains("bind"), "{err}");
    }
}
