//! The custom-node list (`manifests/custom-nodes.yaml`, embedded; `--nodes PATH` overrides).

use std::collections::BTreeMap;
use std::collections::HashSet;

use anyhow::{anyhow, Context, Result};
use serde::Deserialize;

use crate::ui::HintExt;

pub const DEFAULT_NODES: &str = include_str!("../../manifests/custom-nodes.yaml");
pub const DEFAULT_NODES_NAME: &str = "manifests/custom-nodes.yaml";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeList {
    pub nodes: Vec<Node>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Node {
    /// Folder name under `custom_nodes/`.
    pub id: String,
    pub repo: String,
    /// A full 40-hex commit sha.
    pub commit: String,
    /// Extra packages the node needs beyond its requirements.txt.
    #[serde(default)]
    pub pip: Vec<String>,
    /// Per architecture (`aarch64`, `x86_64`): package renames (`onnxruntime-gpu: onnxruntime`).
    #[serde(default)]
    pub rewrite: BTreeMap<String, BTreeMap<String, String>>,
    /// Node classes that exist in `/object_info` only once the node loaded.
    #[serde(default)]
    pub proves: Vec<String>,
}

impl Node {
    pub fn renames(&self, arch: &str) -> BTreeMap<String, String> {
        let arch = match arch {
            "arm64" => "aarch64",
            "amd64" => "x86_64",
            a => a,
        };
        self.rewrite.get(arch).cloned().unwrap_or_default()
    }
}

impl NodeList {
    pub fn load(path: Option<&str>) -> Result<NodeList> {
        match path {
            None => NodeList::parse(DEFAULT_NODES, DEFAULT_NODES_NAME),
            Some(p) => {
                let text = std::fs::read_to_string(p)
                    .with_context(|| format!("cannot read node list `{p}`"))?;
                NodeList::parse(&text, p)
            }
        }
    }

    pub fn parse(text: &str, source: &str) -> Result<NodeList> {
        let list: NodeList = serde_yaml::from_str(text)
            .map_err(|e| anyhow!(crate::yaml::located(&e, source)))
            .with_context(|| format!("invalid node list `{source}`"))
            .hint("each node needs `id`, `repo`, `commit`; optional `pip`, `rewrite`, `proves`")?;
        let mut ids = HashSet::new();
        for node in &list.nodes {
            let at = |value: &str| {
                text.lines()
                    .position(|l| l.contains(value))
                    .map_or(String::new(), |i| format!(", line {}", i + 1))
            };
            let bad = |field: &str, why: String, fix: &str| {
                Err(anyhow!(
                    "invalid node list `{source}`{}: node `{}`: field `{field}` {why}",
                    at(&node.id),
                    node.id
                ))
                .hint(fix.to_string())
            };
            if node.commit.len() != 40 || !node.commit.chars().all(|c| c.is_ascii_hexdigit()) {
                bad(
                    "commit",
                    format!("is `{}`", node.commit),
                    "pin a full 40-character commit sha (`git rev-parse HEAD`)",
                )?;
            }
            // The id names a folder and goes into commands: a plain name only.
            let plain = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.');
            if node.id.is_empty() || node.id.starts_with('.') || !node.id.chars().all(plain) {
                bad(
                    "id",
                    format!("is `{}`", node.id),
                    "use the repository's folder name: letters, digits, `_`, `-`, `.`",
                )?;
            }
            if !ids.insert(node.id.clone()) {
                bad("id", "appears twice".into(), "keep one entry per node")?;
            }
            if node.repo.trim().is_empty() {
                bad("repo", "is empty".into(), "give the git URL to clone")?;
            }
        }
        Ok(list)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_list_pins_the_reference_commits() {
        let list = NodeList::load(None).unwrap();
        let ip = &list.nodes[0];
        assert_eq!(ip.id, "ComfyUI_IPAdapter_plus");
        assert_eq!(ip.commit, "9d076a3df0d2763cef5510ec5ab807f6632c39f5");
        assert_eq!(ip.pip, ["insightface", "onnxruntime"]);
        assert!(ip
            .proves
            .contains(&"IPAdapterUnifiedLoaderFaceID".to_string()));
        assert_eq!(
            list.nodes[1].commit,
            "33ff89fd354d8ec3ab6affb605a79a931b445d99"
        );
        assert_eq!(
            list.nodes[2].commit,
            "e8b689a513c3e6b63edc44066560ca5919c0576e"
        );
        assert_eq!(
            list.nodes[2].renames("aarch64")["onnxruntime-gpu"],
            "onnxruntime"
        );
        assert!(list.nodes[2].renames("x86_64").is_empty());
    }

    #[test]
    fn bad_entries_name_file_line_node_and_field() {
        let text = "nodes:\n  - id: a\n    repo: https://x/a.git\n    commit: abc123\n";
        let err = format!("{:#}", NodeList::parse(text, "n.yaml").unwrap_err());
        assert!(
            err.contains("`n.yaml`, line 2: node `a`: field `commit` is `abc123`"),
            "{err}"
        );
        let sha = "9d076a3df0d2763cef5510ec5ab807f6632c39f5";
        let dup = format!("nodes:\n  - id: a\n    repo: r\n    commit: {sha}\n  - id: a\n    repo: r\n    commit: {sha}\n");
        assert!(
            format!("{:#}", NodeList::parse(&dup, "n.yaml").unwrap_err()).contains("appears twice")
        );
        let unknown =
            format!("nodes:\n  - id: a\n    repo: r\n    commit: {sha}\n    branch: main\n");
        let err = format!("{:#}", NodeList::parse(&unknown, "n.yaml").unwrap_err());
        assert!(
            err.contains("unknown field `branch`") && err.contains("n.yaml:5:5:"),
            "{err}"
        );
    }
}
