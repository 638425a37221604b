//! A device whose storage binding limit is lower than a model's buffers
//! (INFER_GPU_MAX_BINDING, set before this binary opens any adapter):
//! weights are split into parts and still give the CPU's text, while an
//! activation slot or KV cache over the limit is an error naming the buffer,
//! its size and the limit, not a panic.

mod common;

use common::*;
use infer_engine::{GpuLayers, Model, ModelOptions, SessionParams};

/// 256 KiB: the weights need parts; one token's slots and logits (49152
/// f32) fit.
const CAP: u64 = 256 << 10;

/// The error of opening a session of `n_ctx` and `n_batch` (a panic if it opens).
fn session_error(model: &std::sync::Arc<Model>, n_ctx: usize, n_batch: usize) -> String {
    match model.session(SessionParams { n_ctx, n_batch, ..Default::default() }) {
        Ok(_) => panic!("a session of {n_ctx} x {n_batch} opened under a {CAP}-byte binding limit"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn buffers_over_a_low_binding_limit_split_or_fail_by_name() {
    // This binary's only test: the variable is read when the adapter opens.
    std::env::set_var("INFER_GPU_MAX_BINDING", CAP.to_string());
    let opts = ModelOptions { gpu_layers: GpuLayers::All, n_ctx: 64, ..Default::default() };
    let model = Model::load(model_path(SMOLLM2), opts).unwrap();
    assert!(model.offload().is_some(), "no GPU adapter: the offload fell back to the CPU");
    let prompt = model.prompt_tokens("The capital of France is").unwrap();
    // One token per batch: every slot fits, the weights run in parts.
    let mut s = model.session(SessionParams { n_ctx: 64, n_batch: 1, ..Default::default() }).unwrap();
    let gpu = s.eval_greedy(&prompt).unwrap();
    let cpu_model = Model::load(model_path(SMOLLM2), ModelOptions::default()).unwrap();
    let mut c = cpu_model.session(SessionParams { n_ctx: 64, ..Default::default() }).unwrap();
    assert_eq!(gpu, c.eval_greedy(&prompt).unwrap(), "first token with the weights in parts");
    // 64 tokens of the FFN slot (64 x 1536 f32) exceed the limit.
    let err = session_error(&model, 64, 64);
    assert!(err.contains("activation slot") && err.contains(&format!("binding of {CAP} bytes")) && err.contains("batch size"), "{err}");
    // 1024 rows x 192 f16 of one layer's keys exceed it too.
    let err = session_error(&model, 1024, 1);
    assert!(err.contains("KV cache of 1024 rows") && err.contains("at most 682 rows fit") && err.contains("context size"), "{err}");
}
