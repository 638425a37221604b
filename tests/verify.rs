//! `infer verify`'s comparison: every named intermediate of a prompt (and
//! two decode steps) on the CPU and with the GPU offload stays within its
//! stage tolerance, on both models, with all and with half the layers.

mod common;

use common::*;
use infer_engine::{GpuLayers, Model, ModelOptions};

fn check(name: &str, gpu_layers: GpuLayers) {
    let opts = ModelOptions { gpu_layers, n_ctx: 64, ..Default::default() };
    let model = Model::load(model_path(name), opts).unwrap();
    assert!(model.offload().is_some(), "no GPU adapter: the offload fell back to the CPU");
    let ids = model.prompt_tokens("The capital of France is").unwrap();
    let report = infer_engine::verify::verify(&model, &ids, 2).unwrap();
    assert!(report.ok(), "{name} {gpu_layers:?}:\n{report}");
    let n_layers = model.config().n_layers;
    // Every block's stages and the logits, for the prompt and both decode steps.
    assert!(report.stages.len() >= 3 * (n_layers * 6 + 1), "{} stages", report.stages.len());
    eprintln!("{name} {gpu_layers:?}: {:?}", report.by_kind());
}

#[test]
fn smollm2_verify_all() {
    check(SMOLLM2, GpuLayers::All);
}

#[test]
fn smollm2_verify_half() {
    check(SMOLLM2, GpuLayers::Count(15));
}

#[test]
fn gemma3_verify_all() {
    check(GEMMA3, GpuLayers::All);
}

#[test]
fn gemma3_verify_half() {
    check(GEMMA3, GpuLayers::Count(9));
}
