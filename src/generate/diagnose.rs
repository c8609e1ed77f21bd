//! A failed check generation as an error a person can act on: ComfyUI's own message (the
//! 400's `node_errors`, or the exception type and message of `execution_error`), the container's
//! log lines around it, and a hint for the known causes.

use std::time::Duration;

use anyhow::anyhow;

use crate::comfyui::{ExecutionError, PromptRejected};
use crate::ui::HintExt;

/// The known causes, matched on ComfyUI's text (lowercase).
fn hint_for(text: &str) -> &'static str {
    let t = text.to_lowercase();
    if t.contains("no face detected") {
        "InsightFace found no face in the step-1 image: raise `generate.steps` (or the size) in the playbook so a face forms, and run again"
    } else if t.contains("out of memory") || t.contains("outofmemory") {
        "the GPU ran out of memory: stop other GPU work, lower `generate.width`/`height`; on a Spark `sync; echo 3 | sudo tee /proc/sys/vm/drop_caches` and launch with --disable-mmap"
    } else if t.contains("insightface") && (t.contains("module") || t.contains("import"))
        || t.contains("no module named")
        || t.contains("importerror")
    {
        "a custom node's Python package is missing in the container (insightface, onnxruntime): run `lifeos-spark nodes install`"
    } else if t.contains("assertionerror") {
        "InsightFace could not load its model pack: models/insightface/models/buffalo_l must hold its .onnx files (`lifeos-spark models pull`)"
    } else if t.contains("not found") || t.contains("value_not_in_list") || t.contains("not in [") {
        "a model file is missing or misnamed: run `lifeos-spark models pull`, then `lifeos-spark verify`"
    } else if t.contains("does not exist") {
        "a node class is missing, so its custom node did not load: `lifeos-spark nodes install`, then `lifeos-spark nodes verify`"
    } else {
        "see `docker compose logs comfyui` in the deployment root"
    }
}

/// `POST /prompt` answered 400: the graph failed ComfyUI's validation.
pub fn rejected(step: &str, r: &PromptRejected) -> anyhow::Error {
    let top = r.error();
    let mut lines = Vec::new();
    for (id, node) in r.node_errors() {
        for e in &node.errors {
            lines.push(format!(
                "node {id} ({}): {} [{}]: {}",
                node.class_type, e.message, e.kind, e.details
            ));
        }
    }
    let summary = format!("{} [{}] {}", top.message, top.kind, top.details);
    let all = format!("{summary}\n{}", lines.join("\n"));
    let detail = match lines.is_empty() {
        true => summary.trim().to_string(),
        false => lines.join("\n"),
    };
    let head = format!("ComfyUI rejected the `{step}` graph: {}", top.message);
    Err::<(), _>(anyhow!("{detail}").context(head))
        .hint(hint_for(&all))
        .unwrap_err()
}

/// The graph ran and a node raised.
pub fn execution(step: &str, e: &ExecutionError, logs: &str) -> anyhow::Error {
    let head = format!(
        "`{step}` failed in node {} ({}): {}: {}",
        e.node_id, e.node_type, e.exception_type, e.exception_message
    );
    let needle = match e.exception_message.trim() {
        "" => "!!! Exception during processing",
        m => m,
    };
    let around = log_around(logs, &["!!! Exception during processing", needle]);
    let text = format!("{} {} {around}", e.exception_type, e.exception_message);
    with_log(head, &around).hint(hint_for(&text)).unwrap_err()
}

/// The prompt did not finish in time.
pub fn timeout(step: &str, id: &str, timeout: Duration, logs: &str) -> anyhow::Error {
    let tail: Vec<&str> = logs.lines().rev().take(10).collect();
    let tail: Vec<&str> = tail.into_iter().rev().collect();
    let head = format!(
        "`{step}` (prompt {id}) did not finish within {}s",
        timeout.as_secs()
    );
    with_log(head, &tail.join("\n"))
        .hint("raise `generate.timeout` in the playbook if the first model load is slow; `lifeos-spark status` shows the queue")
        .unwrap_err()
}

fn with_log(head: String, log: &str) -> anyhow::Result<()> {
    match log.trim().is_empty() {
        true => Err(anyhow!(head)),
        false => Err(anyhow!("ComfyUI's log:\n{log}").context(head)),
    }
}

/// The lines around the last line holding the first of `needles` found (the newest failure):
/// two before, ten after.
pub fn log_around(logs: &str, needles: &[&str]) -> String {
    let lines: Vec<&str> = logs.lines().collect();
    let Some(at) = needles
        .iter()
        .filter(|n| !n.is_empty())
        .find_map(|n| lines.iter().rposition(|l| l.contains(n)))
    else {
        return String::new();
    };
    lines[at.saturating_sub(2)..(at + 10).min(lines.len())].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hints_name_the_cause() {
        assert!(hint_for("Exception: InsightFace: No face detected.").contains("no face"));
        assert!(hint_for("torch.OutOfMemoryError: CUDA out of memory").contains("memory"));
        assert!(
            hint_for("ModuleNotFoundError: No module named 'insightface'")
                .contains("nodes install")
        );
        assert!(hint_for("Exception: LoRA model not found.").contains("models pull"));
        assert!(
            hint_for("Cannot execute because node IPAdapterFaceID does not exist.")
                .contains("nodes install")
        );
    }

    #[test]
    fn rejected_names_node_class_and_details() {
        let r: PromptRejected = serde_json::from_str(
            r#"{"error": {"type": "prompt_outputs_failed_validation", "message": "Prompt outputs failed validation", "details": "", "extra_info": {}},
                "node_errors": {"1": {"errors": [{"type": "value_not_in_list", "message": "Value not in list", "details": "ckpt_name: 'x.safetensors' not in []", "extra_info": {}}], "dependent_outputs": ["9"], "class_type": "CheckpointLoaderSimple"}}}"#,
        )
        .unwrap();
        let text = format!("{:#}", rejected("text-to-image", &r));
        assert!(
            text.contains("CheckpointLoaderSimple") && text.contains("x.safetensors"),
            "{text}"
        );
        let old: PromptRejected =
            serde_json::from_str(r#"{"error": "no prompt", "node_errors": []}"#).unwrap();
        assert!(format!("{:#}", rejected("faceid", &old)).contains("no prompt"));
    }

    #[test]
    fn log_around_keeps_the_exception_and_what_follows() {
        let logs = "!!! Exception during processing !!! old\na\nb\nc\n!!! Exception during processing !!! boom\nTraceback\nException: boom\nz";
        let got = log_around(logs, &["!!! Exception during processing"]);
        assert!(got.starts_with("b\nc\n!!!") && got.ends_with("z"), "{got}");
        assert_eq!(log_around("x", &["nothing"]), "");
    }
}
