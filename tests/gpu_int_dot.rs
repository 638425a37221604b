//! The real-GPU kernel set's decode fusions on whole models, run on lavapipe
//! too (every layer on the GPU):
//! - the output norm fused into the head gives the logits of the CPU-device
//!   kernels, which norm first (SmolLM2, and Gemma 3, whose norm weights
//!   carry their +1 in the file);
//! - SmolLM2 (Q4_1, a type of the integer-dot matvec) with int8 activations
//!   forced on (written by the norms' epilogue): decode logits along the
//!   CPU's greedy tokens within a bound of the f32 matvec's, the CPU's ids,
//!   the integer-dot kernel runs, and no dispatch is added.

mod common;

use common::*;
use infer_engine::{GpuLayers, Logits, Model, ModelOptions, SessionParams};

const N_CTX: usize = 32;
/// Decode steps compared (each a whole-model matvec pass on the software device).
const STEPS: usize = 3;
/// Max |int8 - f32| logit over the f32 logits' largest magnitude: the
/// activations of q|k|v and gate|up rounded to 8 bits (the CPU path rounds
/// them the same way for its integer dot products). Measured: 0.021.
const INT8_LOGIT_REL_TOL: f32 = 0.04;
/// Fused head against norm-then-head, over the largest logit: summation
/// order (the prompt also runs through other matmul kernels). Measured:
/// 2.5e-5 (SmolLM2), 2.3e-5 (Gemma 3).
const FUSED_HEAD_REL_TOL: f32 = 3e-4;

fn argmax(v: &[f32]) -> u32 {
    (0..v.len()).fold(0, |best, i| if v[i] > v[best] { i } else { best }) as u32
}

/// The logits of one decode step after `prompt` on `name`'s GPU session,
/// with the CPU-device kernels (norm, then head) or the real-GPU ones
/// (the norm fused into the head).
fn decode_logits(name: &str, cpu_device_kernels: bool) -> Vec<f32> {
    let opts = ModelOptions { gpu_layers: GpuLayers::All, n_ctx: N_CTX, ..Default::default() };
    let model = Model::load(model_path(name), opts).unwrap();
    let ctx = model.offload().expect("no GPU adapter: the offload fell back to the CPU").weights.context().clone();
    ctx.set_cpu_device_kernels(cpu_device_kernels);
    let mut s = model.session(SessionParams { n_ctx: N_CTX, ..Default::default() }).unwrap();
    let prompt = model.prompt_tokens("The capital of France is").unwrap();
    let first = argmax(s.load_prompt(&prompt).unwrap());
    s.eval(&[first], Logits::Last).unwrap().to_vec()
}

#[test]
fn fused_output_norm_gives_the_logits_of_norm_then_head() {
    for name in [SMOLLM2, GEMMA3] {
        let (fused, unfused) = (decode_logits(name, false), decode_logits(name, true));
        let scale = unfused.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let worst = fused.iter().zip(&unfused).fold(0.0f32, |m, (x, y)| m.max((x - y).abs()));
        eprintln!("{name}: max |fused - unfused| logit {worst:.5} of {scale:.2}");
        assert!(worst <= FUSED_HEAD_REL_TOL * scale, "{name}: max |fused - unfused| logit {worst} > {FUSED_HEAD_REL_TOL} x {scale}");
        assert_eq!(argmax(&fused), argmax(&unfused), "{name}: greedy id");
    }
}

#[test]
fn smollm2_decodes_on_int8_activations_within_the_f32_paths_bound() {
    let opts = ModelOptions { gpu_layers: GpuLayers::All, n_ctx: N_CTX, ..Default::default() };
    let model = Model::load(model_path(SMOLLM2), opts).unwrap();
    let ctx = model.offload().expect("no GPU adapter: the offload fell back to the CPU").weights.context().clone();
    // The real-GPU kernels whatever the adapter (the weights' layout is the
    // same for both sets; slots are made per session).
    ctx.set_cpu_device_kernels(false);
    let params = SessionParams { n_ctx: N_CTX, ..Default::default() };
    let prompt = model.prompt_tokens("The capital of France is").unwrap();
    // The CPU's greedy tokens and its decode logits along them.
    let mut cpu = model.session_on_cpu(params.clone()).unwrap();
    let mut tokens = vec![argmax(cpu.load_prompt(&prompt).unwrap())];
    let mut cpu_ids = Vec::new();
    for i in 0..STEPS {
        cpu_ids.push(argmax(cpu.eval(&[tokens[i]], Logits::Last).unwrap()));
        tokens.push(cpu_ids[i]);
    }
    // The same steps on the GPU: logits per step, and dispatches of the decode steps.
    let run = |int_dot: bool| {
        ctx.set_int_dot(int_dot);
        let mut s = model.session(params.clone()).unwrap();
        s.load_prompt(&prompt).unwrap();
        let before = ctx.stats();
        let logits: Vec<Vec<f32>> = (0..STEPS).map(|i| s.eval(&[tokens[i]], Logits::Last).unwrap().to_vec()).collect();
        (logits, ctx.stats().since(&before).dispatches)
    };
    let (f32_logits, f32_dispatches) = run(false);
    assert!(ctx.set_profiling(true), "the adapter cannot time kernels (needed to see which ran)");
    let (int8_logits, int8_dispatches) = run(true);
    let kernels: Vec<String> = ctx.take_profile().into_iter().map(|k| k.kernel).collect();
    ctx.set_profiling(false);
    assert!(kernels.iter().any(|k| k.starts_with("MatvecI8(Q4_1")), "no integer-dot matvec ran: {kernels:?}");
    assert!(!kernels.iter().any(|k| k.starts_with("QuantizeQ8")), "a quantize dispatch ran: {kernels:?}");
    assert_eq!(int8_dispatches, f32_dispatches, "dispatches of {STEPS} decode steps, int8 against f32");
    for (i, (a, b)) in int8_logits.iter().zip(&f32_logits).enumerate() {
        let scale = b.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let worst = a.iter().zip(b).fold(0.0f32, |m, (x, y)| m.max((x - y).abs()));
        eprintln!("step {i}: max |int8 - f32| logit {worst:.4} of {scale:.2}; ids int8 {} f32 {} cpu {}", argmax(a), argmax(b), cpu_ids[i]);
        assert!(worst <= INT8_LOGIT_REL_TOL * scale, "step {i}: max |int8 - f32| logit {worst} > {INT8_LOGIT_REL_TOL} x {scale}");
        assert_eq!(argmax(a), cpu_ids[i], "step {i}: the int8 run's greedy id differs from the CPU's");
    }
}
