//! The two check graphs in ComfyUI's API format (`{id: {class_type, inputs}}`). Input names
//! and enum values are those of ComfyUI's nodes.py and of ComfyUI_IPAdapter_plus's
//! IPAdapterPlus.py at the pinned commit 9d076a3.

use std::collections::BTreeMap;

use anyhow::{anyhow, Result};
use serde::Serialize;
use serde_json::{json, Value};

use crate::models::manifest::Manifest;
use crate::playbook::GenerateSettings;

/// The prefix SaveImage writes under (`output/lifeos-verify/`); `status` finds the last
/// check generation by it in ComfyUI's history.
pub const OUTPUT_FOLDER: &str = "lifeos-verify";
pub const FACEID_PREFIX: &str = "faceid";
const TEXT_PREFIX: &str = "text-to-image";

/// `IPAdapterUnifiedLoaderFaceID`'s preset for the SDXL FaceID Plus v2 model: it loads the
/// `faceid.plusv2.sdxl` IP-Adapter, the ViT-H CLIP Vision encoder and InsightFace's `buffalo_l`.
pub const FACEID_PRESET: &str = "FACEID PLUS V2";
/// InsightFace on the CPU: onnxruntime-gpu has no aarch64 wheel (shared/reference/comfyui.md).
pub const INSIGHTFACE_PROVIDER: &str = "CPU";

const PROMPT: &str = "studio portrait photo of a smiling middle-aged woman, face centred, looking at the camera, soft light, sharp focus";
const NEGATIVE: &str = "blurry, deformed, cartoon, text, watermark, several people";

/// The manifest's files the graphs load, by their names in ComfyUI's model folders.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Models {
    pub checkpoint: String,
    pub vae: String,
    pub lora: String,
}

impl Models {
    /// The SDXL checkpoint, the VAE and the FaceID Plus v2 SDXL LoRA of a manifest.
    pub fn from_manifest(manifest: &Manifest) -> Result<Models> {
        let find = |folder: &str, needles: &[&str], what: &str| {
            manifest
                .models
                .iter()
                .filter_map(|m| m.dest.strip_prefix(&format!("models/{folder}/")))
                .find(|name| {
                    let lower = name.to_lowercase();
                    needles.iter().all(|n| lower.contains(n))
                })
                .map(String::from)
                .ok_or_else(|| {
                    anyhow!(
                        "the model manifest `{}` has no {what} (a file under models/{folder}/)",
                        manifest.name
                    )
                })
        };
        Ok(Models {
            checkpoint: find("checkpoints", &[], "SDXL checkpoint")?,
            vae: find("vae", &[], "VAE")?,
            lora: find(
                "loras",
                &["faceid", "plusv2", "sdxl"],
                "FaceID Plus v2 SDXL LoRA",
            )?,
        })
    }
}

#[derive(Debug, Serialize)]
struct Node {
    class_type: &'static str,
    /// An object of input name to a value or a link.
    inputs: Value,
}

/// A graph under construction: node ids are "1", "2", ... in insertion order.
#[derive(Default)]
struct Graph(BTreeMap<String, Node>);

impl Graph {
    fn add(&mut self, class_type: &'static str, inputs: Value) -> String {
        let id = (self.0.len() + 1).to_string();
        self.0.insert(id.clone(), Node { class_type, inputs });
        id
    }

    fn into_value(self) -> Value {
        serde_json::to_value(self.0).unwrap_or(Value::Null)
    }
}

/// An input linked to output `slot` of node `id`.
fn link(id: &str, slot: u32) -> Value {
    json!([id, slot])
}

/// Prompt, sampler, decode and save, on `model`; returns nothing (the graph holds it).
fn sample(g: &mut Graph, ckpt: &str, model: Value, vae: &str, s: &GenerateSettings, prefix: &str) {
    let positive = g.add(
        "CLIPTextEncode",
        json!({"text": PROMPT, "clip": link(ckpt, 1)}),
    );
    let negative = g.add(
        "CLIPTextEncode",
        json!({"text": NEGATIVE, "clip": link(ckpt, 1)}),
    );
    let latent = g.add(
        "EmptyLatentImage",
        json!({"width": s.width, "height": s.height, "batch_size": 1}),
    );
    let sampled = g.add(
        "KSampler",
        json!({
            "model": model, "seed": s.seed, "steps": s.steps, "cfg": s.cfg,
            "sampler_name": "euler", "scheduler": "normal",
            "positive": link(&positive, 0), "negative": link(&negative, 0),
            "latent_image": link(&latent, 0), "denoise": 1.0,
        }),
    );
    let decoded = g.add(
        "VAEDecode",
        json!({"samples": link(&sampled, 0), "vae": link(vae, 0)}),
    );
    g.add(
        "SaveImage",
        json!({"images": link(&decoded, 0), "filename_prefix": format!("{OUTPUT_FOLDER}/{prefix}")}),
    );
}

/// Step 1: SDXL text-to-image with the manifest's checkpoint and VAE.
pub fn text_to_image(models: &Models, s: &GenerateSettings) -> Value {
    let mut g = Graph::default();
    let ckpt = g.add(
        "CheckpointLoaderSimple",
        json!({"ckpt_name": models.checkpoint}),
    );
    let vae = g.add("VAELoader", json!({"vae_name": models.vae}));
    sample(&mut g, &ckpt, link(&ckpt, 0), &vae, s, TEXT_PREFIX);
    g.into_value()
}

/// Step 2: the same, with IP-Adapter FaceID Plus v2 conditioned on the face in `face` (an
/// image ComfyUI saved, as LoadImage names it: `name [output]`). The LoRA is loaded by name
/// with `LoraLoaderModelOnly`; the unified loader's own LoRA strength is 0 so it is not applied
/// twice (the loader still requires the file: "LoRA model not found.").
pub fn faceid(models: &Models, s: &GenerateSettings, face: &str) -> Value {
    let mut g = Graph::default();
    let ckpt = g.add(
        "CheckpointLoaderSimple",
        json!({"ckpt_name": models.checkpoint}),
    );
    let vae = g.add("VAELoader", json!({"vae_name": models.vae}));
    let lora = g.add(
        "LoraLoaderModelOnly",
        json!({"model": link(&ckpt, 0), "lora_name": models.lora, "strength_model": 0.6}),
    );
    let loader = g.add(
        "IPAdapterUnifiedLoaderFaceID",
        json!({
            "model": link(&lora, 0), "preset": FACEID_PRESET, "lora_strength": 0.0,
            "provider": INSIGHTFACE_PROVIDER,
        }),
    );
    let image = g.add("LoadImage", json!({"image": face}));
    let apply = g.add(
        "IPAdapterFaceID",
        json!({
            "model": link(&loader, 0), "ipadapter": link(&loader, 1), "image": link(&image, 0),
            "weight": 0.85, "weight_faceidv2": 1.0, "weight_type": "linear",
            "combine_embeds": "concat", "start_at": 0.0, "end_at": 1.0,
            "embeds_scaling": "V only",
        }),
    );
    sample(&mut g, &ckpt, link(&apply, 0), &vae, s, FACEID_PREFIX);
    g.into_value()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn models() -> Models {
        Models::from_manifest(&Manifest::load(None, false).unwrap()).unwrap()
    }

    #[test]
    fn models_come_from_the_embedded_manifest() {
        let m = models();
        assert_eq!(m.checkpoint, "sd_xl_base_1.0.safetensors");
        assert_eq!(m.vae, "sdxl_vae.safetensors");
        assert_eq!(m.lora, "ip-adapter-faceid-plusv2_sdxl_lora.safetensors");
    }

    #[test]
    fn faceid_graph_links_resolve_and_inputs_are_known() {
        let g = faceid(&models(), &GenerateSettings::default(), "x.png [output]");
        let nodes = g.as_object().unwrap();
        assert_eq!(nodes.len(), 12);
        for node in nodes.values() {
            for (name, v) in node["inputs"].as_object().unwrap() {
                if let Some(l) = v.as_array() {
                    assert!(nodes.contains_key(l[0].as_str().unwrap()), "{name}");
                }
            }
        }
        let loader = nodes
            .values()
            .find(|n| n["class_type"] == "IPAdapterUnifiedLoaderFaceID");
        assert_eq!(loader.unwrap()["inputs"]["preset"], "FACEID PLUS V2");
    }
}
