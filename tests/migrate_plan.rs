//! The migration plan on two real folders of this machine (`LocalHost` at both ends): what each
//! file and node becomes, judged against the bytes the test wrote, and the conflict list that
//! stops a run. Both trees are compared before and after: planning writes nothing.

mod fake_hub;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use fake_hub::{bytes_of, sha256_hex};
use lifeos_spark::host::LocalHost;
use lifeos_spark::models::manifest::Manifest;
use lifeos_spark::nodes::manifest::NodeList;
use lifeos_spark::source::inventory::{self, Action, Destination, Plan};
use lifeos_spark::source::{self, transfer, Hints};
use lifeos_spark::ui::{Printer, Verbosity};

fn printer() -> Printer {
    Printer::plain(Verbosity::Quiet)
}

fn write(path: &Path, data: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, data).unwrap();
}

fn snapshot(root: &Path) -> BTreeMap<String, Vec<u8>> {
    let out = Command::new("find")
        .arg(root)
        .args(["-type", "f"])
        .output()
        .unwrap();
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|p| (p.to_string(), std::fs::read(p).unwrap()))
        .collect()
}

fn action(plan: &Plan, name: &str) -> Action {
    plan.items
        .iter()
        .find(|i| i.name == name)
        .unwrap_or_else(|| panic!("no {name} in {:#?}", plan.items))
        .action
}

#[test]
fn every_source_file_and_node_gets_its_action() {
    let dir = tempfile::tempdir().unwrap();
    let (src, dst) = (dir.path().join("ComfyUI"), dir.path().join("dest"));
    let ckpt = bytes_of(40_000, 1);
    let onnx = bytes_of(30_000, 2);
    let lora = bytes_of(20_000, 3);
    write(&src.join("main.py"), b"");
    write(&src.join("models/checkpoints/base.safetensors"), &ckpt);
    write(&src.join("models/insightface/models/scrfd.onnx"), &onnx);
    write(
        &src.join("models/insightface/models/glint.onnx"),
        b"version https://git-lfs.github.com/spec/v1\noid sha256:00\nsize 1\n",
    );
    write(&src.join("models/loras/mine.safetensors"), &lora);
    write(&src.join("user/default/workflows/a.json"), b"{\"a\":1}");
    write(&src.join("user/default/workflows/b.json"), b"{\"b\":1}");
    write(&src.join("input/x.png"), b"png");
    write(&src.join("custom_nodes/Plain/__init__.py"), b"# not git\n");
    // The destination already has a.json (same bytes) and b.json (other bytes).
    write(&dst.join("user/default/workflows/a.json"), b"{\"a\":1}");
    write(&dst.join("user/default/workflows/b.json"), b"{\"b\":2}");
    let manifest_path = dir.path().join("m.yaml");
    let entry = |id: &str, dest: &str, data: &[u8]| {
        format!(
            "  - id: {id}\n    url: http://127.0.0.1:9/{id}\n    dest: {dest}\n    size: {}\n    sha256: {}\n",
            data.len(),
            sha256_hex(data)
        )
    };
    std::fs::write(
        &manifest_path,
        format!(
            "name: t\ndescription: t\nmodels:\n{}{}{}",
            entry("ckpt", "models/checkpoints/base.safetensors", &ckpt),
            entry(
                "scrfd",
                "models/insightface/models/antelopev2/scrfd.onnx",
                &onnx
            ),
            entry(
                "missing",
                "models/loras/faceid.safetensors",
                &bytes_of(10, 4)
            ),
        ),
    )
    .unwrap();
    let manifest = Manifest::load(Some(&manifest_path), false).unwrap();
    let nodes = NodeList::parse("nodes: []\n", "test").unwrap();
    let host = LocalHost::new();
    let before = (snapshot(&src), snapshot(&dst));

    let hints = Hints {
        root: Some(src.to_str().unwrap().into()),
        ..Default::default()
    };
    let layout = source::discover(&host, &hints).unwrap();
    assert_eq!(layout.models.as_deref(), Some(src.join("models").as_path()));
    let to = Destination {
        host: &host,
        root: &dst,
    };
    let plan = inventory::plan(&host, &layout, &to, &manifest, &nodes, &printer()).unwrap();

    assert_eq!(action(&plan, "ckpt"), Action::CopyFromSource);
    assert_eq!(action(&plan, "scrfd"), Action::CopyFromSource);
    assert_eq!(
        plan.model_sources()["scrfd"],
        src.join("models/insightface/models/scrfd.onnx"),
        "the flattened file is the source of the manifest's antelopev2 entry"
    );
    assert_eq!(action(&plan, "missing"), Action::Download);
    assert_eq!(
        action(&plan, "models/insightface/models/scrfd.onnx"),
        Action::NotMoved
    );
    assert_eq!(
        action(&plan, "models/insightface/models/glint.onnx"),
        Action::NotMoved
    );
    assert_eq!(
        action(&plan, "models/loras/mine.safetensors"),
        Action::CopyFromSource
    );
    assert_eq!(action(&plan, "input/x.png"), Action::CopyFromSource);
    assert_eq!(
        action(&plan, "user/default/workflows/a.json"),
        Action::OnDestination
    );
    assert_eq!(
        action(&plan, "user/default/workflows/b.json"),
        Action::Conflict
    );
    assert_eq!(action(&plan, "Plain"), Action::CopyFromSource);
    assert_eq!(
        action(&plan, "custom_nodes/Plain/__init__.py"),
        Action::CopyFromSource
    );
    let lora_item = plan
        .items
        .iter()
        .find(|i| i.name == "models/loras/mine.safetensors")
        .unwrap();
    assert_eq!(
        lora_item.sha256.as_deref(),
        Some(sha256_hex(&lora).as_str())
    );
    assert_eq!(plan.totals.download_bytes, 10);
    assert_eq!(plan.totals.conflicts, 1);

    let err = transfer::refuse_conflicts(&plan, false).unwrap_err();
    assert!(
        format!("{err:#}").contains("user/default/workflows/b.json"),
        "{err:#}"
    );
    assert!(transfer::refuse_conflicts(&plan, true).is_ok());
    assert_eq!(
        (snapshot(&src), snapshot(&dst)),
        before,
        "planning wrote something"
    );

    // `--overwrite`: the conflicting file replaced, the destination's kept beside it; the
    // file already there untouched; every copy has the source's bytes.
    let a_mtime = std::fs::metadata(dst.join("user/default/workflows/a.json"))
        .unwrap()
        .modified()
        .unwrap();
    let opts = transfer::TransferOptions {
        overwrite: true,
        dry_run: false,
    };
    let (_, moved) =
        transfer::copy_user_files(&host, &host, &dst, &plan, opts, &printer()).unwrap();
    let wf = dst.join("user/default/workflows");
    assert_eq!(std::fs::read(wf.join("b.json")).unwrap(), b"{\"b\":1}");
    assert_eq!(
        std::fs::read(wf.join("b.json.before-migrate")).unwrap(),
        b"{\"b\":2}"
    );
    assert_eq!(
        std::fs::metadata(wf.join("a.json"))
            .unwrap()
            .modified()
            .unwrap(),
        a_mtime
    );
    for m in &moved {
        let got = sha256_hex(&std::fs::read(dst.join(&m.dest)).unwrap());
        assert_eq!(got, m.sha256, "{}", m.dest);
        assert_eq!(
            got,
            sha256_hex(&std::fs::read(src.join(&m.dest)).unwrap_or_default()),
            "{}",
            m.dest
        );
    }
    assert!(moved
        .iter()
        .any(|m| m.dest == "models/loras/mine.safetensors"));
    assert!(
        !dst.join("models/insightface/models/glint.onnx").exists(),
        "an lfs pointer was copied"
    );
}

#[test]
fn a_folder_without_comfyui_is_refused_with_a_hint() {
    let dir = tempfile::tempdir().unwrap();
    let hints = Hints {
        root: Some(dir.path().to_str().unwrap().into()),
        ..Default::default()
    };
    let err = source::discover(&LocalHost::new(), &hints).unwrap_err();
    assert!(
        format!("{err:#}").contains("not a ComfyUI folder"),
        "{err:#}"
    );
}

/// A checkout whose `extra_model_paths.yaml` (ComfyUI's own format, beside `main.py`) names an
/// A1111 folder: its files are in the plan under ComfyUI's folder for their kind, a manifest
/// file there is its copy source, a name the default `models/` already holds stays behind, and
/// the copy puts the A1111 bytes at the destination's `models/<kind>/`.
#[test]
fn extra_model_paths_folders_are_inventoried_and_copied() {
    let dir = tempfile::tempdir().unwrap();
    let (src, dst) = (dir.path().join("ComfyUI"), dir.path().join("dest"));
    let sd = dir.path().join("stable-diffusion-webui");
    let (ckpt, lora, lyco, shadowed) = (
        bytes_of(40_000, 11),
        bytes_of(20_000, 12),
        bytes_of(10_000, 13),
        bytes_of(5_000, 14),
    );
    write(&src.join("main.py"), b"");
    write(&src.join("models/loras/x.safetensors"), b"mine");
    write(&sd.join("models/Stable-diffusion/base.safetensors"), &ckpt);
    write(&sd.join("models/Lora/x.safetensors"), &shadowed);
    write(&sd.join("models/Lora/styles/a.safetensors"), &lora);
    write(&sd.join("models/LyCORIS/b.safetensors"), &lyco);
    let yaml = format!(
        "a1111:\n    base_path: {}\n\n    checkpoints: models/Stable-diffusion\n    loras: |\n         models/Lora\n         models/LyCORIS\n    vae: models/VAE\n#comfyui:\n#     base_path: path/to/comfyui/\n",
        sd.display()
    );
    write(&src.join("extra_model_paths.yaml"), yaml.as_bytes());
    let manifest = Manifest::parse(
        &format!(
            "name: t\nmodels:\n  - id: ckpt\n    url: http://127.0.0.1:9/c\n    dest: models/checkpoints/base.safetensors\n    size: {}\n    sha256: {}\n",
            ckpt.len(),
            sha256_hex(&ckpt)
        ),
        "m.yaml",
        false,
    )
    .unwrap();
    let nodes = NodeList::parse("nodes: []\n", "test").unwrap();
    let host = LocalHost::new();
    let hints = Hints {
        root: Some(src.to_str().unwrap().into()),
        ..Default::default()
    };

    let layout = source::discover(&host, &hints).unwrap();
    let extra: Vec<(String, std::path::PathBuf)> = layout
        .extra_models
        .iter()
        .map(|e| (e.kind.clone(), e.path.clone()))
        .collect();
    assert_eq!(
        extra,
        [
            ("checkpoints".into(), sd.join("models/Stable-diffusion")),
            ("loras".into(), sd.join("models/Lora")),
            ("loras".into(), sd.join("models/LyCORIS")),
        ],
        "the VAE folder does not exist and is left out"
    );
    let to = Destination {
        host: &host,
        root: &dst,
    };
    let plan = inventory::plan(&host, &layout, &to, &manifest, &nodes, &printer()).unwrap();
    assert_eq!(action(&plan, "ckpt"), Action::CopyFromSource);
    assert_eq!(
        plan.model_sources()["ckpt"],
        sd.join("models/Stable-diffusion/base.safetensors")
    );
    let item = |source: &Path| {
        plan.items
            .iter()
            .find(|i| i.source.as_deref() == Some(source))
            .unwrap_or_else(|| panic!("no item for {}", source.display()))
    };
    let a = item(&sd.join("models/Lora/styles/a.safetensors"));
    assert_eq!(
        (a.name.as_str(), a.action, a.dest.as_deref()),
        (
            "models/loras/styles/a.safetensors",
            Action::CopyFromSource,
            Some("models/loras/styles/a.safetensors")
        )
    );
    assert_eq!(a.sha256.as_deref(), Some(sha256_hex(&lora).as_str()));
    assert_eq!(
        item(&sd.join("models/LyCORIS/b.safetensors"))
            .dest
            .as_deref(),
        Some("models/loras/b.safetensors")
    );
    let shadow = item(&sd.join("models/Lora/x.safetensors"));
    assert_eq!(
        (shadow.action, shadow.dest.as_deref()),
        (Action::NotMoved, None)
    );
    assert_eq!(
        item(&src.join("models/loras/x.safetensors")).action,
        Action::CopyFromSource
    );

    let opts = transfer::TransferOptions {
        overwrite: false,
        dry_run: false,
    };
    transfer::copy_user_files(&host, &host, &dst, &plan, opts, &printer()).unwrap();
    for (rel, data) in [
        ("models/loras/styles/a.safetensors", &lora),
        ("models/loras/b.safetensors", &lyco),
    ] {
        assert_eq!(
            sha256_hex(&std::fs::read(dst.join(rel)).unwrap()),
            sha256_hex(data),
            "{rel}"
        );
    }
    assert_eq!(
        std::fs::read(dst.join("models/loras/x.safetensors")).unwrap(),
        b"mine"
    );
}
