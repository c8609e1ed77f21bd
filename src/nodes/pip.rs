//! pip inside the ComfyUI container, never allowed to touch the image's CUDA PyTorch: every
//! install runs under a constraints file generated from the container's own installed
//! versions of torch, torchvision, torchaudio and nvidia-* (ComfyUI-Manager #344, #475, #1136).

use std::collections::BTreeMap;

/// Packages whose installed versions are frozen.
fn is_protected(name: &str) -> bool {
    let name = name.to_ascii_lowercase().replace('_', "-");
    matches!(name.as_str(), "torch" | "torchvision" | "torchaudio") || name.starts_with("nvidia-")
}

/// `name==version` lines for the protected packages, from `pip list --format=freeze` (which,
/// unlike `pip freeze`, never prints `name @ file://...`).
pub fn constraints_from_freeze(freeze: &str) -> String {
    let mut lines: Vec<&str> = freeze
        .lines()
        .map(str::trim)
        .filter(|l| {
            l.split_once("==")
                .is_some_and(|(name, _)| is_protected(name))
        })
        .collect();
    lines.sort_unstable();
    lines.iter().map(|l| format!("{l}\n")).collect()
}

/// The package name at the start of a requirements line (`torch>=2.1 ; ...` -> `torch`).
fn requirement_name(line: &str) -> &str {
    let end = line
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.'))
        .unwrap_or(line.len());
    &line[..end]
}

/// requirements.txt with packages renamed for this architecture (`onnxruntime-gpu` ->
/// `onnxruntime` on aarch64). Comments, options and everything else stay.
pub fn rewrite_requirements(text: &str, renames: &BTreeMap<String, String>) -> String {
    text.lines()
        .map(|line| {
            let trimmed = line.trim_start();
            let name = requirement_name(trimmed);
            match renames
                .iter()
                .find(|(from, _)| from.eq_ignore_ascii_case(name))
            {
                Some((_, to)) if !name.is_empty() => format!("{to}{}\n", &trimmed[name.len()..]),
                _ => format!("{line}\n"),
            }
        })
        .collect()
}

pub fn rename_all(packages: &[String], renames: &BTreeMap<String, String>) -> Vec<String> {
    rewrite_requirements(&packages.join("\n"), renames)
        .lines()
        .map(String::from)
        .collect()
}

/// Arguments after `pip` for installing a node's requirements and extras under the constraints.
/// `--dry-run` answers whether anything would be installed, without installing.
pub fn install_args(
    constraints: &str,
    requirements: Option<&str>,
    extras: &[String],
    dry_run: bool,
) -> Vec<String> {
    let mut args: Vec<String> = vec![
        "install".into(),
        "--no-cache-dir".into(),
        "--disable-pip-version-check".into(),
    ];
    if dry_run {
        args.push("--dry-run".into());
    }
    args.extend(["-c".into(), constraints.into()]);
    if let Some(req) = requirements {
        args.extend(["-r".into(), req.into()]);
    }
    args.extend(extras.iter().cloned());
    args
}

/// Packages pip's `--dry-run` would install (`Would install a-1.0 b-2.0`); empty when everything
/// is already satisfied.
pub fn would_install(output: &str) -> Vec<String> {
    output
        .lines()
        .find_map(|l| l.strip_prefix("Would install "))
        .map(|rest| rest.split_whitespace().map(String::from).collect())
        .unwrap_or_default()
}

/// Why pip failed, in the operator's terms: a conflict with a protected package means the node
/// asks for another PyTorch than the image's.
pub fn explain_failure(stderr: &str) -> Option<String> {
    let conflict =
        stderr.contains("conflicting dependencies") || stderr.contains("ResolutionImpossible");
    let names_protected = stderr.lines().any(|l| {
        l.split(|c: char| c.is_whitespace() || c == '(' || c == ')' || c == ',')
            .any(|w| is_protected(requirement_name(w)) && !requirement_name(w).is_empty())
    });
    (conflict && names_protected).then(|| {
        "the node asks for another torch/torchvision/torchaudio/nvidia-* version than the image's CUDA build; installing it would break PyTorch, so nothing was installed".to_string()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constraints_keep_only_protected_packages() {
        let freeze = "numpy==1.26.4\ntorch==2.9.0a0+50eac811a6.nv25.09\nnvidia_cudnn_frontend==1.14.0\ntorchvision==0.24.0a0\ntorchsde==0.2.6\nnvidia-dali-cuda130==1.51.0\n";
        assert_eq!(
            constraints_from_freeze(freeze),
            "nvidia-dali-cuda130==1.51.0\nnvidia_cudnn_frontend==1.14.0\ntorch==2.9.0a0+50eac811a6.nv25.09\ntorchvision==0.24.0a0\n"
        );
    }

    #[test]
    fn requirements_rewrite_by_name_only() {
        let renames = BTreeMap::from([("onnxruntime-gpu".to_string(), "onnxruntime".to_string())]);
        let text = "# deps\nonnxruntime-gpu>=1.17 ; sys_platform=='linux'\nonnxruntime-gpu-extra\nmediapipe\n";
        assert_eq!(
            rewrite_requirements(text, &renames),
            "# deps\nonnxruntime>=1.17 ; sys_platform=='linux'\nonnxruntime-gpu-extra\nmediapipe\n"
        );
        assert_eq!(
            rename_all(&["onnxruntime-gpu".into(), "insightface".into()], &renames),
            ["onnxruntime", "insightface"]
        );
    }

    #[test]
    fn dry_run_output() {
        assert_eq!(would_install("Requirement already satisfied: torch\nWould install insightface-0.7.3 onnxruntime-1.19.2\n"), ["insightface-0.7.3", "onnxruntime-1.19.2"]);
        assert!(would_install("Requirement already satisfied: torch in ./lib\n").is_empty());
    }
}
