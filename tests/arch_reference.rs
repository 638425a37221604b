//! The six architectures against Hugging Face `transformers` in F32 (the
//! exact computation of the tiny random-weight models in
//! `shared/reference/archs`, copied to `models/archs/` by the fetch script;
//! reference JSON and full last-position logits in `tests/data/archs/`).
//!
//! Per model, on the CPU and on the GPU (all layers and half; lavapipe in
//! CI), for every prompt: at every position each of HF's top-10 logits
//! within 0.05, the full last-position logits within 0.05, the top-1 token
//! equal wherever HF's top-2 margin exceeds 0.05, and the 16 greedy ids
//! equal up to the first step whose margin is 0.05 or less. llama3 also
//! scores its 177-token prompt, and without `rope_freqs` it must fail.

mod common;

use std::path::PathBuf;
use std::sync::Arc;

use infer_engine::{CpuMoe, GpuLayers, Logits, Model, ModelOptions, SessionParams};
use serde_json::Value;

/// The bound on |logit − HF|.
const LOGIT_TOL: f32 = 0.05;
const N_CTX: usize = 256;

fn gguf(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models/archs").join(format!("{name}.gguf"))
}

fn reference(name: &str) -> Value {
    common::reference(&format!("archs/{name}.json"))
}

/// Row `i` of the full last-position logits.
fn last_logits(name: &str, i: usize, vocab: usize) -> Vec<f32> {
    let p = common::data_path(&format!("archs/{name}.last_logits.bin"));
    let bytes = std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    bytes[i * vocab * 4..(i + 1) * vocab * 4].chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect()
}

fn load(path: &PathBuf, gpu_layers: GpuLayers, cpu_moe: CpuMoe) -> Arc<Model> {
    let opts = ModelOptions { gpu_layers, n_ctx: N_CTX, cpu_moe, ..Default::default() };
    let m = Model::load(path, opts).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    if gpu_layers != GpuLayers::None {
        assert!(m.offload().is_some(), "no GPU adapter: the offload fell back to the CPU");
    }
    m
}

/// The prompts of a reference, with llama3's long prompt last.
fn prompts(r: &Value) -> Vec<&Value> {
    let mut v: Vec<&Value> = r["prompts"].as_array().expect("prompts").iter().collect();
    if let Some(long) = r.get("long_prompt") {
        v.push(long);
    }
    v
}

/// Worst |logit − HF| over every prompt and position, checking the top-1
/// and greedy bounds on the way.
fn check(model: &Arc<Model>, name: &str, r: &Value, what: &str) -> f32 {
    let vocab = model.config().vocab;
    let mut worst = 0.0f32;
    for (pi, p) in prompts(r).into_iter().enumerate() {
        let ids = common::ids(&p["ids"]);
        let mut s = model.session(SessionParams { n_ctx: N_CTX, ..Default::default() }).unwrap();
        let logits = s.eval(&ids, Logits::All).unwrap().to_vec();
        for (pos, hf) in p["hf"]["positions"].as_array().expect("positions").iter().enumerate() {
            let row = &logits[pos * vocab..(pos + 1) * vocab];
            let top: Vec<(usize, f32)> = hf["top10"]
                .as_array()
                .expect("top10")
                .iter()
                .map(|e| (e[0].as_u64().expect("id") as usize, e[1].as_f64().expect("logit") as f32))
                .collect();
            for &(id, want) in &top {
                let d = (row[id] - want).abs();
                worst = worst.max(d);
                assert!(d <= LOGIT_TOL, "{what}: prompt {pi} position {pos} token {id}: {} vs HF {want}", row[id]);
            }
            if top[0].1 - top[1].1 > LOGIT_TOL {
                let ours = infer_engine::sampler::argmax_row(row) as usize;
                assert_eq!(ours, top[0].0, "{what}: prompt {pi} position {pos}: top-1 differs from HF");
            }
        }
        let want = last_logits(name, pi, vocab);
        let last = &logits[(ids.len() - 1) * vocab..];
        let d = last.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
        worst = worst.max(d);
        assert!(d <= LOGIT_TOL, "{what}: prompt {pi}: full last-position logits differ from HF by {d}");
        // Greedy continuation, compared up to the first near-tie.
        let hf_greedy = common::ids(&p["hf"]["greedy"]);
        let margins: Vec<f64> =
            p["hf"]["greedy_top2_margin"].as_array().expect("margins").iter().map(|m| m.as_f64().expect("margin")).collect();
        let n_cmp = margins.iter().position(|&m| m <= LOGIT_TOL as f64).unwrap_or(hf_greedy.len());
        let mut g = model.session(SessionParams { n_ctx: N_CTX, ..Default::default() }).unwrap();
        let mut seq = ids.clone();
        for step in 0..n_cmp {
            let next = g.eval_greedy(&seq[g.tokens().len()..]).unwrap();
            assert_eq!(next, hf_greedy[step], "{what}: prompt {pi}: greedy step {step} differs from HF (margin {})", margins[step]);
            seq.push(next);
        }
    }
    worst
}

fn family(name: &str) {
    let r = reference(name);
    let path = gguf(name);
    let cpu = load(&path, GpuLayers::None, CpuMoe::None);
    let n = cpu.config().n_layers;
    let w_cpu = check(&cpu, name, &r, &format!("{name} cpu"));
    let w_all = check(&load(&path, GpuLayers::All, CpuMoe::None), name, &r, &format!("{name} gpu all"));
    let w_half = check(&load(&path, GpuLayers::Count((n + 1).div_ceil(2)), CpuMoe::None), name, &r, &format!("{name} gpu half"));
    eprintln!("{name}: max |logit - HF| cpu {w_cpu:.2e}, gpu all {w_all:.2e}, gpu half {w_half:.2e}");
}

#[test]
fn llama3_matches_hf() {
    family("llama3");
}

#[test]
fn mistral_matches_hf() {
    family("mistral");
}

#[test]
fn qwen2_matches_hf() {
    family("qwen2");
}

#[test]
fn qwen3_matches_hf() {
    family("qwen3");
}

#[test]
fn phi3_matches_hf() {
    family("phi3");
}

#[test]
fn qwen3moe_matches_hf() {
    family("qwen3moe");
    // Experts kept on the CPU while the rest runs on the GPU: all of them, and the first layer's.
    let (name, r, path) = ("qwen3moe", reference("qwen3moe"), gguf("qwen3moe"));
    let w = check(&load(&path, GpuLayers::All, CpuMoe::All), name, &r, "qwen3moe gpu --cpu-moe");
    let w1 = check(&load(&path, GpuLayers::All, CpuMoe::First(1)), name, &r, "qwen3moe gpu --n-cpu-moe 1");
    eprintln!("qwen3moe: max |logit - HF| --cpu-moe {w:.2e}, --n-cpu-moe 1 {w1:.2e}");
}

/// Rewrites the reference GGUF `name` with metadata `edit`ed and each
/// tensor passed through `tensor` (None drops it), into a temporary file.
fn rewrite(
    name: &str,
    tag: &str,
    edit: impl Fn(&str, &infer_gguf::Value) -> Option<infer_gguf::Value>,
    tensor: impl Fn(&infer_gguf::TensorInfo, &[u8]) -> Option<(infer_gguf::QuantType, Vec<u8>)>,
) -> PathBuf {
    let src = infer_gguf::Gguf::open(gguf(name)).unwrap();
    let mut w = infer_gguf::GgufWriter::new();
    for (k, v) in src.metadata() {
        if let Some(v) = edit(k, v) {
            w.add_metadata(k, v);
        }
    }
    for t in src.tensors() {
        let view = src.tensor(&t.name).unwrap();
        if let Some((ty, data)) = tensor(t, view.data) {
            w.add_tensor(&t.name, ty, &t.dims, data).unwrap();
        }
    }
    let dir = std::env::temp_dir().join(format!("infer-arch-{}-{tag}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{name}-{tag}.gguf"));
    w.write_to_path(&path).unwrap();
    path
}

fn keep(t: &infer_gguf::TensorInfo, d: &[u8]) -> Option<(infer_gguf::QuantType, Vec<u8>)> {
    Some((t.ty, d.to_vec()))
}

/// Without `rope_freqs.weight` (llama3's frequency factors) the 177-token
/// prompt's logits move by far more than the bound: the factors are applied.
#[test]
fn llama3_without_rope_freqs_fails_the_bound() {
    let path = rewrite("llama3", "no-rope-freqs", |_, v| Some(v.clone()), |t, d| (t.name != "rope_freqs.weight").then(|| keep(t, d)).flatten());
    let model = load(&path, GpuLayers::None, CpuMoe::None);
    let r = reference("llama3");
    let ids = common::ids(&r["long_prompt"]["ids"]);
    let mut s = model.session(SessionParams { n_ctx: N_CTX, ..Default::default() }).unwrap();
    let last = s.eval(&ids, Logits::Last).unwrap().to_vec();
    let want = last_logits("llama3", r["prompts"].as_array().unwrap().len(), model.config().vocab);
    let d = last.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
    std::fs::remove_file(&path).ok();
    // Measured: 0.148 at the last position (the reference says up to 0.43 over all of them).
    assert!(d > 2.0 * LOGIT_TOL, "without rope_freqs the long prompt is still within {d} of HF");
}

/// Bad files: each a clear error naming the problem, none a panic.
#[test]
fn bad_architecture_files_are_named_errors() {
    use infer_gguf::Value;
    let err = |p: &PathBuf| Model::load(p, ModelOptions::default()).err().map(|e| e.to_string()).unwrap_or_default();
    let unknown = rewrite(
        "qwen2",
        "unknown",
        |k, v| Some(if k == "general.architecture" { Value::String("qwen9".into()) } else { v.clone() }),
        keep,
    );
    let e = err(&unknown);
    assert!(e.contains("qwen9") && e.contains("qwen3moe") && e.contains("phi3"), "{e}");
    let missing = rewrite("qwen2", "missing", |_, v| Some(v.clone()), |t, d| (t.name != "blk.1.attn_k.bias").then(|| keep(t, d)).flatten());
    let e = err(&missing);
    assert!(e.contains("blk.1.attn_k.bias") && e.contains("[64]"), "{e}");
    let topk = rewrite(
        "qwen3moe",
        "topk",
        |k, v| Some(if k == "qwen3moe.expert_used_count" { Value::U32(8) } else { v.clone() }),
        keep,
    );
    let e = err(&topk);
    assert!(e.contains("expert_used_count 8 exceeds expert_count 4"), "{e}");
    let count = rewrite(
        "qwen3moe",
        "count",
        |k, v| Some(if k == "qwen3moe.expert_count" { Value::U32(3) } else { v.clone() }),
        keep,
    );
    let e = err(&count);
    assert!(e.contains("ffn_gate_inp.weight") && e.contains("[128, 3]"), "{e}");
    for p in [unknown, missing, topk, count] {
        std::fs::remove_file(p).ok();
    }
}

/// A layer holding a BF16 matrix (a type the GPU kernels took late) is
/// offloaded with the rest, not kept on the CPU, and the logits match the
/// CPU run of the same file.
#[test]
fn a_bf16_layer_runs_on_the_gpu_like_the_cpu() {
    let path = rewrite("qwen2", "bf16", |_, v| Some(v.clone()), |t, d| {
        if t.name != "blk.0.attn_q.weight" {
            return keep(t, d);
        }
        let bf: Vec<u8> = d
            .chunks_exact(2)
            .flat_map(|b| half::bf16::from_f32(half::f16::from_le_bytes([b[0], b[1]]).to_f32()).to_le_bytes())
            .collect();
        Some((infer_gguf::QuantType::BF16, bf))
    });
    let gpu = load(&path, GpuLayers::All, CpuMoe::None);
    let plan = &gpu.offload().expect("offload").plan;
    assert!(plan.on_gpu(0) && plan.on_gpu(1) && plan.on_gpu(2) && plan.cpu_fallback.is_empty(), "{plan:?}");
    let cpu = load(&path, GpuLayers::None, CpuMoe::None);
    let ids = common::ids(&reference("qwen2")["prompts"][0]["ids"]);
    let run = |m: &Arc<Model>| {
        let mut s = m.session(SessionParams { n_ctx: N_CTX, ..Default::default() }).unwrap();
        s.eval(&ids, Logits::Last).unwrap().to_vec()
    };
    let (a, b) = (run(&gpu), run(&cpu));
    let d = a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0.0f32, f32::max);
    std::fs::remove_file(&path).ok();
    assert!(d <= LOGIT_TOL, "GPU with a BF16 layer differs from the CPU run by {d}");
}

/// Mistral with `llama.attention.sliding_window` set: positions inside the
/// window keep the full-attention logits, later ones change (the window is
/// applied on the CPU and the GPU alike).
#[test]
fn mistral_sliding_window_when_the_file_sets_one() {
    use infer_gguf::Value;
    const WINDOW: u32 = 6;
    let path = rewrite("mistral", "swa", |_, v| Some(v.clone()), keep);
    let windowed = {
        let src = infer_gguf::Gguf::open(&path).unwrap();
        let mut w = infer_gguf::GgufWriter::new();
        for (k, v) in src.metadata() {
            w.add_metadata(k, v.clone());
        }
        w.add_metadata("llama.attention.sliding_window", Value::U32(WINDOW));
        for t in src.tensors() {
            w.add_tensor(&t.name, t.ty, &t.dims, src.tensor(&t.name).unwrap().data.to_vec()).unwrap();
        }
        let p = path.with_file_name("mistral-swa6.gguf");
        w.write_to_path(&p).unwrap();
        p
    };
    let ids = common::ids(&reference("mistral")["prompts"][3]["ids"]);
    assert!(ids.len() > 2 * WINDOW as usize);
    let full = load(&gguf("mistral"), GpuLayers::None, CpuMoe::None);
    let all_logits = |m: &Arc<Model>| {
        let mut s = m.session(SessionParams { n_ctx: N_CTX, ..Default::default() }).unwrap();
        s.eval(&ids, Logits::All).unwrap().to_vec()
    };
    let want = all_logits(&full);
    let vocab = full.config().vocab;
    for gpu in [GpuLayers::None, GpuLayers::All] {
        let m = load(&windowed, gpu, CpuMoe::None);
        assert_eq!(m.config().sliding_window, WINDOW as usize);
        let got = all_logits(&m);
        let diff = |p: usize| {
            got[p * vocab..(p + 1) * vocab].iter().zip(&want[p * vocab..(p + 1) * vocab]).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max)
        };
        for p in 0..WINDOW as usize {
            assert!(diff(p) <= LOGIT_TOL, "{gpu:?}: position {p} inside the window moved by {}", diff(p));
        }
        let last = ids.len() - 1;
        assert!(diff(last) > LOGIT_TOL, "{gpu:?}: the window did not change position {last}");
    }
    std::fs::remove_file(&windowed).ok();
    std::fs::remove_file(&path).ok();
}
