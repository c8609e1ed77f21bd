//! The model manifest (`manifests/*.yaml`): which files, from where, to where, how big, which hash.

use serde::Deserialize;

/// The default manifest, embedded so the binary works on its own.
pub const DEFAULT_MANIFEST: &str = include_str!("../../manifests/sdxl-faceid.yaml");
pub const DEFAULT_MANIFEST_NAME: &str = "manifests/sdxl-faceid.yaml";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub models: Vec<ModelFile>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelFile {
    pub id: String,
    pub url: String,
    /// Relative to the deployment root.
    pub dest: String,
    pub size: u64,
    pub sha256: Option<String>,
}

impl Manifest {
    pub fn parse(text: &str, source: &str) -> anyhow::Result<Manifest> {
        serde_yaml::from_str(text).map_err(|e| anyhow::anyhow!("invalid manifest `{source}`: {e}"))
    }

    pub fn default_set() -> Manifest {
        Manifest::parse(DEFAULT_MANIFEST, DEFAULT_MANIFEST_NAME)
            .expect("the embedded manifest is valid (checked by a test)")
    }

    /// Bytes on disk once everything is in place. Files with the same sha256 are stored once
    /// and hard-linked, so they count once.
    pub fn disk_bytes(&self) -> u64 {
        let mut seen = std::collections::HashSet::new();
        self.models
            .iter()
            .filter(|m| m.sha256.as_ref().is_none_or(|h| seen.insert(h.clone())))
            .map(|m| m.size)
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_manifest_parses_and_counts_shared_files_once() {
        let m = Manifest::default_set();
        assert_eq!(m.models.len(), 17);
        let all: u64 = m.models.iter().map(|f| f.size).sum();
        assert_eq!(all, 13_872_302_586);
        // det_10g == scrfd_10g_bnkps and four more files are shared by buffalo_l and antelopev2.
        assert!(m.disk_bytes() < all);
    }
}
