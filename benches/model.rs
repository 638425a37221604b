//! Model-level benches through the real engine path (`Session`):
//! - `attention/ctx{N}`: one decode step at position N of a one-layer
//!   synthetic model whose projections are tiny (dim 256) but whose attention
//!   is a 1B llama's (32 query heads, 8 KV heads, head_dim 64), so the step
//!   time is mostly attention over the f16 KV cache. `ctx1` is the baseline.
//! - `decode/smollm2`: one full decode step of SmolLM2-135M Q4_1 at position 16
//!   (fails when models/ has not been fetched).
//! - `batched_decode/rows{N}`: one batched step of SmolLM2 decoding one token
//!   for each of N sequences (1, 4, 8) at position 16 (`MultiSession`).
//!
//! Run with `cargo bench --bench model`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use infer_engine::synth::{write_synth, SynthConfig, SynthTokenizer};
use infer_engine::{Model, ModelOptions, Session, SessionParams};
use infer_gguf::QuantType;

/// A session holding `prefix`; each step re-evaluates only the token after it.
fn step_at<'a>(session: &'a mut Session, prefix: &[u32], next: u32) -> impl FnMut() + 'a {
    let mut all = prefix.to_vec();
    all.push(next);
    session.load_prompt(&all).expect("prefill");
    // The cached prefix matches, so load_prompt evaluates just the last token.
    move || {
        session.load_prompt(&all).expect("decode step");
    }
}

fn attention(c: &mut Criterion) {
    let path = std::env::temp_dir().join(format!("infer-bench-attn-{}.gguf", std::process::id()));
    let cfg = SynthConfig {
        dim: 256,
        n_layers: 1,
        ffn_dim: 256,
        n_heads: 32,
        n_kv_heads: 8,
        head_dim: 64,
        vocab: 512,
        ty: QuantType::Q8_0,
        n_ctx_train: 8192,
        seed: 3,
    };
    write_synth(&cfg, &SynthTokenizer::Builtin, &path).expect("writing the synthetic model");
    let model = Model::load(&path, ModelOptions::default()).expect("loading the synthetic model");
    let mut g = c.benchmark_group("attention");
    for ctx in [1usize, 512, 4096] {
        let params = SessionParams { n_ctx: ctx + 1, n_batch: 512, ..Default::default() };
        let mut s = model.session(params).expect("session");
        let prefix: Vec<u32> = (0..ctx as u32 - 1).map(|i| i % 500).collect();
        let mut step = step_at(&mut s, &prefix, 7);
        g.bench_function(format!("ctx{ctx}"), |b| b.iter(&mut step));
    }
    g.finish();
    let _ = std::fs::remove_file(&path);
}

fn decode(c: &mut Criterion) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models/SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(path.is_file(), "{} is missing: run scripts/fetch-models.sh", path.display());
    let model: Arc<Model> =
        Model::load(&path, ModelOptions { prefault: true, ..Default::default() }).expect("loading SmolLM2");
    let mut s = model.session(SessionParams { n_ctx: 64, ..Default::default() }).expect("session");
    let prefix: Vec<u32> = (1..=16).collect();
    let mut step = step_at(&mut s, &prefix, 42);
    c.bench_function("decode/smollm2_q4_1", |b| b.iter(&mut step));
}

fn batched_decode(c: &mut Criterion) {
    use infer_engine::batch::{BatchToken, MultiParams};
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models/SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(path.is_file(), "{} is missing: run scripts/fetch-models.sh", path.display());
    let model: Arc<Model> =
        Model::load(&path, ModelOptions { prefault: true, ..Default::default() }).expect("loading SmolLM2");
    let mut g = c.benchmark_group("batched_decode");
    for n in [1usize, 4, 8] {
        let mut ms = model.multi_session(MultiParams { n_seq: n, n_ctx: 64, n_batch: 128, ..Default::default() }).expect("multi");
        let prefill: Vec<BatchToken> = (0..n)
            .flat_map(|seq| (0..16).map(move |pos| BatchToken { seq, pos, token: 1 + pos as u32, logits: false }))
            .collect();
        ms.decode(&prefill).expect("prefill");
        // Each iteration decodes position 16 again: truncating first keeps the positions fixed.
        g.bench_function(format!("rows{n}"), |b| {
            b.iter(|| {
                let batch: Vec<BatchToken> = (0..n).map(|seq| BatchToken { seq, pos: 16, token: 42, logits: true }).collect();
                for seq in 0..n {
                    ms.truncate(seq, 16).expect("truncate");
                }
                ms.decode_greedy(&batch).expect("batched step")
            })
        });
    }
    g.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
}

criterion_group! { name = benches; config = config(); targets = attention, decode, batched_decode }
criterion_main!(benches);
