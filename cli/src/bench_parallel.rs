//! `infer bench --parallel 1,2,4,8`: N sequences at once, measured as
//! llama.cpp's `llama-batched-bench -npp P -ntg G -npl 1,2,4,8` measures
//! them: all N prompts of P tokens prefilled together (in steps of at most
//! `-b` tokens), then G steps that each decode one token of every sequence.

use std::sync::Arc;
use std::time::Instant;

use infer_engine::batch::{BatchToken, MultiParams, MultiSession};
use infer_engine::Model;
use serde_json::json;

/// One row: N sequences of `n_prompt` + `n_gen` tokens.
#[derive(Debug, Clone)]
pub struct ParallelRow {
    pub n_parallel: usize,
    pub n_prompt: usize,
    pub n_gen: usize,
    /// Median seconds of the prefill and of the generation over the repetitions.
    pub t_pp: f64,
    pub t_tg: f64,
}

impl ParallelRow {
    pub fn pp_tok_s(&self) -> f64 {
        (self.n_parallel * self.n_prompt) as f64 / self.t_pp.max(1e-9)
    }
    pub fn tg_tok_s(&self) -> f64 {
        (self.n_parallel * self.n_gen) as f64 / self.t_tg.max(1e-9)
    }
    /// Milliseconds per generation step (one token of every sequence).
    pub fn step_ms(&self) -> f64 {
        1e3 * self.t_tg / self.n_gen.max(1) as f64
    }
    pub fn to_json(&self) -> serde_json::Value {
        json!({
            "n_parallel": self.n_parallel,
            "n_prompt": self.n_prompt,
            "n_gen": self.n_gen,
            "n_kv": self.n_parallel * (self.n_prompt + self.n_gen),
            "t_pp": self.t_pp,
            "pp_tok_s": self.pp_tok_s(),
            "t_tg": self.t_tg,
            "tg_tok_s": self.tg_tok_s(),
            "step_ms": self.step_ms(),
        })
    }
}

/// Prefill and generation times of one run.
fn run_once(ms: &mut MultiSession, n: usize, n_prompt: usize, n_gen: usize, vocab: u32) -> anyhow::Result<(f64, f64)> {
    for s in 0..n {
        ms.clear(s)?;
    }
    // Arbitrary valid ids: speed does not depend on them.
    let all: Vec<BatchToken> = (0..n)
        .flat_map(|seq| {
            (0..n_prompt).map(move |pos| BatchToken {
                seq,
                pos,
                token: ((seq * 7919 + pos * 31 + 1) as u32) % vocab,
                logits: pos + 1 == n_prompt,
            })
        })
        .collect();
    let t = Instant::now();
    let mut last = vec![0u32; n];
    for chunk in all.chunks(ms.n_batch()) {
        let ids = ms.decode_greedy(chunk)?;
        let ends: Vec<usize> = chunk.iter().filter(|t| t.logits).map(|t| t.seq).collect();
        for (s, id) in ends.into_iter().zip(ids) {
            last[s] = id;
        }
    }
    let t_pp = t.elapsed().as_secs_f64();
    let t = Instant::now();
    for _ in 0..n_gen {
        let batch: Vec<BatchToken> =
            (0..n).map(|seq| BatchToken { seq, pos: ms.seq_len(seq), token: last[seq], logits: true }).collect();
        last = ms.decode_greedy(&batch)?;
    }
    Ok((t_pp, t.elapsed().as_secs_f64()))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

/// Measures each N of `parallel` (one warm-up run, then `reps`).
pub fn bench_parallel(
    model: &Arc<Model>,
    parallel: &[usize],
    n_prompt: usize,
    n_gen: usize,
    reps: usize,
    n_batch: usize,
) -> anyhow::Result<Vec<ParallelRow>> {
    let vocab = model.config().vocab as u32;
    let mut rows = Vec::new();
    for &n in parallel {
        let p = MultiParams { n_seq: n, n_ctx: (n_prompt + n_gen + 1).max(2), n_batch, ..Default::default() };
        let mut ms = model.multi_session(p)?;
        run_once(&mut ms, n, n_prompt.min(8).max(1), n_gen.min(2), vocab)?;
        let (mut pp, mut tg) = (Vec::new(), Vec::new());
        for _ in 0..reps.max(1) {
            let (a, b) = run_once(&mut ms, n, n_prompt.max(1), n_gen, vocab)?;
            pp.push(a);
            tg.push(b);
        }
        rows.push(ParallelRow { n_parallel: n, n_prompt, n_gen, t_pp: median(pp), t_tg: median(tg) });
    }
    Ok(rows)
}

/// The table as `llama-batched-bench` prints it.
pub fn print_table(rows: &[ParallelRow]) {
    println!("|    PP |     TG |    B |   N_KV |   T_PP s | S_PP t/s |   T_TG s | S_TG t/s | step ms |");
    println!("|-------|--------|------|--------|----------|----------|----------|----------|---------|");
    for r in rows {
        println!(
            "| {:>5} | {:>6} | {:>4} | {:>6} | {:>8.3} | {:>8.2} | {:>8.3} | {:>8.2} | {:>7.2} |",
            r.n_prompt,
            r.n_gen,
            r.n_parallel,
            r.n_parallel * (r.n_prompt + r.n_gen),
            r.t_pp,
            r.pp_tok_s(),
            r.t_tg,
            r.tg_tok_s(),
            r.step_ms()
        );
    }
}
