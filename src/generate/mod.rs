//! `verify --generate` (and setup's last step): run two small real graphs through ComfyUI's
//! API — SDXL text-to-image, then IP-Adapter FaceID on the face it drew — and check that each
//! returns a PNG of the playbook's size. The only proof that the models, the custom nodes,
//! InsightFace's Python packages and the GPU work together.

pub mod diagnose;
pub mod graph;

use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use serde::Serialize;

use crate::comfyui::{Client, HistoryEntry, ImageRef, Submitted};
use crate::playbook::GenerateSettings;
use crate::ui::{HintExt, Printer};

pub use graph::Models;

/// How often `/history/<id>` is asked while a graph runs.
const POLL: Duration = Duration::from_millis(500);

/// One generation: what it made and how long it took.
#[derive(Debug, Clone, Serialize)]
pub struct StepTiming {
    pub name: &'static str,
    pub prompt_id: String,
    /// From `POST /prompt` to the image fetched from `/view`.
    pub seconds: f64,
    /// From `execution_start` to `execution_success`, by ComfyUI's clock.
    pub comfyui_seconds: Option<f64>,
    pub image: ImageRef,
    pub width: u32,
    pub height: u32,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub steps: Vec<StepTiming>,
    /// The FaceID portrait's time, the checkpoint already loaded by step 1: what one
    /// Life-OS portrait of this size and step count costs. ComfyUI's own execution time when
    /// its history has it (no polling granularity), else the wall time.
    pub seconds_per_image: f64,
}

/// What the run needs besides ComfyUI's API: the container's log, for the lines around a
/// failure.
pub struct Env<'a> {
    pub client: &'a Client,
    pub logs: &'a dyn Fn() -> String,
    pub printer: &'a Printer,
}

pub fn run(ctx: &Env, models: &Models, settings: &GenerateSettings) -> Result<Report> {
    let first = step(
        ctx,
        "text-to-image",
        graph::text_to_image(models, settings),
        settings,
    )?;
    let face = match first.image.subfolder.as_str() {
        "" => format!("{} [output]", first.image.filename),
        sub => format!("{sub}/{} [output]", first.image.filename),
    };
    let second = step(
        ctx,
        "faceid",
        graph::faceid(models, settings, &face),
        settings,
    )?;
    Ok(Report {
        seconds_per_image: second.comfyui_seconds.unwrap_or(second.seconds),
        steps: vec![first, second],
    })
}

fn step(
    ctx: &Env,
    name: &'static str,
    graph: serde_json::Value,
    settings: &GenerateSettings,
) -> Result<StepTiming> {
    let started = Instant::now();
    ctx.printer.status(format!("generating: {name}"));
    let client_id = format!("lifeos-spark-{}", std::process::id());
    let id = match ctx.client.submit(&graph, &client_id)? {
        Submitted::Queued(q) => q.prompt_id,
        Submitted::Rejected(r) => return Err(diagnose::rejected(name, &r)),
    };
    let entry = wait(ctx, name, &id, Duration::from_secs(settings.timeout))?;
    let status = entry.status.clone().unwrap_or_default();
    if let Some(err) = status.execution_error() {
        return Err(diagnose::execution(name, &err, &(ctx.logs)()));
    }
    if status.status_str != "success" {
        return Err(anyhow!(
            "`{name}` ended with status `{}` and no error message",
            status.status_str
        ))
        .hint("see `docker compose logs comfyui` in the deployment root");
    }
    let image = first_image(&entry)
        .ok_or_else(|| anyhow!("`{name}` finished but saved no image"))
        .hint("the graph's SaveImage produced nothing: see `docker compose logs comfyui`")?;
    let bytes = ctx.client.view(&image)?;
    let (width, height) = png_size(&bytes)
        .with_context(|| format!("`{name}`: /view's {} is not a PNG", image.filename))?;
    if (width, height) != (settings.width, settings.height) {
        return Err(anyhow!(
            "`{name}`: the image is {width}x{height}, the playbook asked for {}x{}",
            settings.width,
            settings.height
        ));
    }
    Ok(StepTiming {
        name,
        prompt_id: id,
        seconds: started.elapsed().as_secs_f64(),
        comfyui_seconds: status.execution_ms().map(|ms| ms as f64 / 1000.0),
        image,
        width,
        height,
    })
}

/// Poll `/history/<id>` until the prompt is there (finished, either way) or time runs out.
fn wait(ctx: &Env, name: &str, id: &str, timeout: Duration) -> Result<HistoryEntry> {
    let started = Instant::now();
    loop {
        if let Some(entry) = ctx.client.history(id)? {
            return Ok(entry);
        }
        if started.elapsed() >= timeout {
            return Err(diagnose::timeout(name, id, timeout, &(ctx.logs)()));
        }
        std::thread::sleep(POLL.min(timeout.saturating_sub(started.elapsed())));
    }
}

fn first_image(entry: &HistoryEntry) -> Option<ImageRef> {
    entry
        .outputs
        .values()
        .flat_map(|o| o.images.iter())
        .next()
        .cloned()
}

/// Decode the whole PNG (every chunk's CRC and the image data), return its size.
pub fn png_size(bytes: &[u8]) -> Result<(u32, u32)> {
    let decoder = png::Decoder::new(std::io::Cursor::new(bytes));
    let mut reader = decoder.read_info().context("no PNG header")?;
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader
        .next_frame(&mut buf)
        .context("the PNG data does not decode")?;
    Ok((info.width, info.height))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn png_size_rejects_what_is_not_a_png() {
        assert!(png_size(b"<html>not found</html>").is_err());
        let mut out = Vec::new();
        {
            let mut enc = png::Encoder::new(&mut out, 3, 2);
            enc.set_color(png::ColorType::Rgb);
            enc.write_header()
                .unwrap()
                .write_image_data(&[7; 18])
                .unwrap();
        }
        assert_eq!(png_size(&out).unwrap(), (3, 2));
        let cut = &out[..out.len() - 20];
        assert!(png_size(cut).is_err());
    }
}
