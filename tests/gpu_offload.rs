//! GPU offload end to end, on whatever adapter exists (lavapipe in CI; the
//! tests fail, not skip, without one): with every layer and with half of
//! them on the GPU, teacher-forced log-probabilities along llama.cpp's
//! greedy tokens within the same bounds as the CPU path's
//! (tests/reference_greedy.rs, docs/PARITY.md), greedy ids against the CPU
//! path's and llama.cpp's, and perplexity against the CPU path's. With every
//! layer on the GPU, also against the exact computation (an F32 copy of the
//! weights on the CPU): greedy ids and log-probs.

mod common;

use std::sync::Arc;

use common::*;
use infer_engine::{GenerateOptions, GpuLayers, Model, ModelOptions, SamplerParams, Session, SessionParams};

const GREEDY_IDS: usize = 16;
/// The bound and sample: 4 chunks of 256 tokens, GPU within 0.5% of
/// the CPU path. Measured on lavapipe: SmolLM2 0.40%, gemma3 0.03%. (At 64-
/// token chunks the sample is too small: 0.8–1.4% either way.)
const PPL_REL_TOL: f64 = 0.005;
const PPL_CHUNKS: usize = 4;
const PPL_CTX: usize = 256;
/// Submissions of 64 tokens: a 256-token prefill on the software device
/// under load can take minutes in one submit.
const PPL_BATCH: usize = 64;
const N_CTX: usize = 64;

fn load(name: &str, gpu_layers: GpuLayers) -> Arc<Model> {
    let opts = ModelOptions { gpu_layers, n_ctx: N_CTX, ..Default::default() };
    let m = Model::load(model_path(name), opts).unwrap();
    let off = m.offload().expect("no GPU adapter: the offload fell back to the CPU");
    eprintln!("{}", off.plan.estimate);
    m
}

fn greedy(mut s: Session, prompt: &[u32]) -> Vec<u32> {
    let opts = GenerateOptions { max_tokens: GREEDY_IDS, stop: vec![] };
    let mut g = s.generate(prompt, SamplerParams::greedy(), opts).unwrap();
    for t in g.by_ref() {
        t.unwrap();
    }
    g.ids().to_vec()
}

fn check_greedy(name: &str, gpu_layers: GpuLayers) {
    let model = load(name, gpu_layers);
    let params = SessionParams { n_ctx: N_CTX, ..Default::default() };
    check_teacher_forced(&format!("{name} {gpu_layers:?}"), name, || model.session(params.clone()).unwrap());
    let r = reference(&format!("{}.llamacpp.json", stem(name)));
    let (mut same_as_cpu, mut cpu_ref, mut gpu_ref, mut same_first) = (0, 0, 0, 0);
    for case in r["greedy"].as_array().unwrap() {
        let prompt = ids(&case["prompt_ids"]);
        let want = ids(&case["tokens"]);
        let want = &want[..GREEDY_IDS.min(want.len())];
        let cpu = greedy(model.session_on_cpu(params.clone()).unwrap(), &prompt);
        let gpu = greedy(model.session(params.clone()).unwrap(), &prompt);
        same_as_cpu += (gpu == cpu) as usize;
        same_first += (gpu.first() == cpu.first()) as usize;
        cpu_ref += cpu.starts_with(want) as usize;
        gpu_ref += gpu.starts_with(want) as usize;
        if gpu != cpu {
            eprintln!("{name} {gpu_layers:?}: {prompt:?}: gpu {gpu:?}, cpu {cpu:?}");
        }
    }
    eprintln!(
        "{name} {gpu_layers:?}: gpu = cpu {same_as_cpu}/5 (first id {same_first}/5); llama.cpp: gpu {gpu_ref}/5, cpu {cpu_ref}/5"
    );
    // Free-running greedy text parts at near-ties on these models, between
    // llama.cpp's own settings too (docs/PARITY.md); the teacher-forced check
    // above is the one with teeth. The first id comes from the prompt alone.
    assert_eq!(same_first, 5, "{name} {gpu_layers:?}: the GPU's first greedy id differs from the CPU's");
}

fn check_perplexity(name: &str) {
    let opts = ModelOptions { gpu_layers: GpuLayers::All, n_ctx: PPL_CTX, ..Default::default() };
    let model = Model::load(model_path(name), opts).unwrap();
    assert!(model.offload().is_some(), "no GPU adapter: the offload fell back to the CPU");
    let cpu_model = Model::load(model_path(name), ModelOptions::default()).unwrap();
    let text = std::fs::read_to_string(data_path("eval_text.txt")).unwrap();
    let tokens = model.tokenizer().encode(&text, true, true).unwrap();
    let ppl = |m: &Arc<Model>| {
        infer_engine::perplexity::perplexity_batched(m, &tokens, PPL_CTX, PPL_BATCH, PPL_CHUNKS, |_, _| {}).unwrap().ppl
    };
    let (gpu, cpu) = (ppl(&model), ppl(&cpu_model));
    let rel = (gpu - cpu).abs() / cpu;
    eprintln!("{name}: PPL gpu {gpu:.4}, cpu {cpu:.4} ({:.3}% apart)", rel * 100.0);
    // Bit-equal figures would mean the GPU run fell back to the CPU.
    assert_ne!(gpu, cpu, "{name}: the GPU perplexity run gave the CPU's figure exactly");
    assert!(rel < PPL_REL_TOL, "{name}: GPU PPL {gpu:.4}, CPU {cpu:.4} ({:.2}% apart)", rel * 100.0);
}


#[test]
fn smollm2_all_layers_greedy() {
    check_greedy(SMOLLM2, GpuLayers::All);
}

#[test]
fn smollm2_half_layers_greedy() {
    check_greedy(SMOLLM2, half_layers(SMOLLM2));
}

#[test]
fn gemma3_all_layers_greedy() {
    check_greedy(GEMMA3, GpuLayers::All);
}

#[test]
fn gemma3_half_layers_greedy() {
    check_greedy(GEMMA3, half_layers(GEMMA3));
}

#[test]
fn smollm2_perplexity_on_gpu() {
    check_perplexity(SMOLLM2);
}

#[test]
fn gemma3_perplexity_on_gpu() {
    check_perplexity(GEMMA3);
}

#[test]
fn output_head_only_and_ratio() {
    // -ngl 1: only the head on the GPU; --offload 0.5: about half the layers.
    let one = load(SMOLLM2, GpuLayers::Count(1));
    assert_eq!(one.offload().unwrap().plan.n_gpu, 1);
    let p = one.prompt_tokens("The capital of France is").unwrap();
    let params = SessionParams { n_ctx: N_CTX, ..Default::default() };
    let a = one.session(params.clone()).unwrap().load_prompt(&p).unwrap().to_vec();
    let b = one.session_on_cpu(params).unwrap().load_prompt(&p).unwrap().to_vec();
    assert!(infer_engine::verify::rel_error(&a, &b) < 0.05);
    let ratio = load(SMOLLM2, GpuLayers::Ratio(0.5));
    assert_eq!(ratio.offload().unwrap().plan.n_gpu, 16);
}

#[test]
fn a_layer_over_the_budget_is_a_clear_error() {
    let opts = ModelOptions { gpu_layers: GpuLayers::All, vram_budget: Some(1 << 20), n_ctx: N_CTX, ..Default::default() };
    let e = Model::load(model_path(SMOLLM2), opts).unwrap_err().to_string();
    assert!(e.contains("does not fit") && e.contains("--vram-budget"), "{e}");
    // About 54 MiB of scratch, 17 MiB of head, 2 MiB per block: some blocks fit.
    let auto = ModelOptions { gpu_layers: GpuLayers::Auto, vram_budget: Some(100 << 20), n_ctx: N_CTX, ..Default::default() };
    let m = Model::load(model_path(SMOLLM2), auto).unwrap();
    let n = m.offload().map_or(0, |o| o.plan.n_gpu);
    assert!(n > 1 && n < 31, "auto with 100 MiB put {n} layers on the GPU");
}

/// Greedy generation on a GPU head reads back only the chosen id
/// (`Logits::Greedy`); it must pick exactly what the host's argmax over the
/// same logits picks, from a prompt batch (`keep_last`) and step by step.
fn check_greedy_readback(name: &str) {
    let model = load(name, GpuLayers::All);
    let params = SessionParams { n_ctx: N_CTX, ..Default::default() };
    let prompt = model.prompt_tokens("The capital of France is").unwrap();
    let generated = greedy(model.session(params.clone()).unwrap(), &prompt);
    let mut s = model.session(params.clone()).unwrap();
    let mut host = Vec::new();
    let mut logits = s.load_prompt(&prompt).unwrap().to_vec();
    for _ in 0..GREEDY_IDS {
        let id = infer_engine::sampler::argmax_row(&logits);
        host.push(id);
        logits = s.eval(&[id], infer_engine::Logits::Last).unwrap().to_vec();
    }
    assert_eq!(generated, host, "{name}: greedy ids read back from the GPU differ from the host's argmax");
    let mut fresh = model.session(params).unwrap();
    assert_eq!(fresh.eval_greedy(&prompt).unwrap(), host[0], "{name}: eval_greedy over the prompt batch");
    assert!(fresh.logits().is_empty(), "{name}: a greedy step left logits behind");
}

#[test]
fn smollm2_greedy_token_readback() {
    check_greedy_readback(SMOLLM2);
}

#[test]
fn gemma3_greedy_token_readback() {
    check_greedy_readback(GEMMA3);
}

/// The GPU against the exact computation of the same quantized weights (an
/// F32 copy on the CPU, see `F32Copy`). llama.cpp and the CPU path round
/// activations to 8 bits before each product and the GPU does not, so the
/// exact run is the yardstick that separates rounding from error. Measured
/// with every layer on the GPU: 5 of 5 prompts give the exact run's 16 ids on
/// both models (llama.cpp's own reference: 3 of 5 on SmolLM2, 2 of 5 on
/// gemma3), log-prob differences median 0.0003, max 0.005. (With half the
/// layers on the CPU, its rounding makes 3–4 of 5.)
fn check_against_exact(name: &str) {
    use infer_engine::perplexity::log_softmax_at;
    let exact_file = F32Copy::of(name);
    let exact = Model::load(&exact_file.0, ModelOptions { n_ctx: N_CTX, ..Default::default() }).unwrap();
    let model = load(name, GpuLayers::All);
    let params = SessionParams { n_ctx: N_CTX, ..Default::default() };
    let r = reference(&format!("{}.llamacpp.json", stem(name)));
    let (mut same, mut llama_cpp, mut diffs) = (0, 0, Vec::new());
    for case in r["greedy"].as_array().unwrap() {
        let prompt = ids(&case["prompt_ids"]);
        let want = greedy(exact.session_on_cpu(params.clone()).unwrap(), &prompt);
        same += (greedy(model.session(params.clone()).unwrap(), &prompt) == want) as usize;
        llama_cpp += ids(&case["tokens"]).starts_with(&want) as usize;
        // Teacher-forced along the exact run's tokens: the log-prob of each.
        let mut g = model.session(params.clone()).unwrap();
        let mut e = exact.session_on_cpu(params.clone()).unwrap();
        let (mut lg, mut le) = (g.load_prompt(&prompt).unwrap().to_vec(), e.load_prompt(&prompt).unwrap().to_vec());
        for &id in &want {
            diffs.push((log_softmax_at(&lg, id as usize) - log_softmax_at(&le, id as usize)).abs());
            lg = g.eval(&[id], infer_engine::Logits::Last).unwrap().to_vec();
            le = e.eval(&[id], infer_engine::Logits::Last).unwrap().to_vec();
        }
    }
    diffs.sort_by(f64::total_cmp);
    let (median, max) = (diffs[diffs.len() / 2], diffs[diffs.len() - 1]);
    eprintln!(
        "{name}: all layers on the GPU give the exact run's ids on {same}/5 prompts (llama.cpp's reference: \
         {llama_cpp}/5); |logprob diff| median {median:.4}, max {max:.4}"
    );
    assert!(same >= 4, "{name}: the exact run's greedy ids on only {same}/5 prompts");
    assert!(median <= EXACT_MEDIAN_TOL && max <= EXACT_MAX_TOL, "{name}: median {median}, max {max}");
}

/// Teacher-forced bounds against the exact run, ten times the measured
/// figures (summation order is all that differs).
const EXACT_MEDIAN_TOL: f64 = 0.005;
const EXACT_MAX_TOL: f64 = 0.05;

#[test]
fn smollm2_gpu_matches_the_exact_computation() {
    check_against_exact(SMOLLM2);
}

#[test]
fn gemma3_gpu_matches_the_exact_computation() {
    check_against_exact(GEMMA3);
}
