//! Many sequences in one forward step, on both real models, on the CPU and
//! on the GPU (all layers and half; lavapipe in CI): four prompts run
//! together give each one's greedy text run alone; a sequence that stops
//! mid-batch, a freed and reused slot, a full context and bad batches leave
//! the others unchanged; a forked prefix gives the logits of a full
//! re-evaluation.

mod common;

use std::sync::Arc;

use common::*;
use infer_engine::batch::{BatchToken, MultiParams, MultiSession};
use infer_engine::{GpuLayers, Model, ModelOptions, SessionParams};

const N_GEN: usize = 12;
const N_CTX: usize = 128;
/// Rows of one sequence inside a batch go through the same kernels as
/// alone, but a matmul over more rows may take the tiled path: a few ulps.
const LOGIT_TOL: f32 = 0.02;

const PROMPTS: [&str; 4] = [
    "The capital of France is",
    "Once upon a time, in a small village,",
    "def fibonacci(n):",
    "The three primary colors are",
];

fn load(name: &str, gpu_layers: GpuLayers) -> Arc<Model> {
    let opts = ModelOptions { gpu_layers, n_ctx: N_CTX, ..Default::default() };
    let m = Model::load(model_path(name), opts).unwrap();
    if gpu_layers != GpuLayers::None {
        assert!(m.offload().is_some(), "no GPU adapter: the offload fell back to the CPU");
    }
    m
}

/// Greedy ids of `prompt` in a session of its own.
fn alone(model: &Arc<Model>, prompt: &[u32]) -> Vec<u32> {
    let mut s = model.session(SessionParams { n_ctx: N_CTX, ..Default::default() }).unwrap();
    let mut seq = prompt.to_vec();
    let mut out = Vec::new();
    for _ in 0..N_GEN {
        let next = s.eval_greedy(&seq[s.tokens().len()..]).unwrap();
        out.push(next);
        seq.push(next);
    }
    out
}

/// The prompt tokens of `seq` from position `from`, logits wanted for the last.
fn prompt_batch(seq: usize, ids: &[u32], from: usize) -> Vec<BatchToken> {
    (from..ids.len()).map(|pos| BatchToken { seq, pos, token: ids[pos], logits: pos + 1 == ids.len() }).collect()
}

fn multi(model: &Arc<Model>, n_seq: usize) -> MultiSession {
    model.multi_session(MultiParams { n_seq, n_ctx: N_CTX, n_batch: 128, ..Default::default() }).unwrap()
}

/// All prompts prefilled in one step, then one token per live sequence per
/// step; `stop_at[i]` ends sequence `i` after that many tokens.
fn together(model: &Arc<Model>, prompts: &[Vec<u32>], stop_at: &[usize]) -> Vec<Vec<u32>> {
    let mut ms = multi(model, prompts.len());
    let batch: Vec<BatchToken> = prompts.iter().enumerate().flat_map(|(s, p)| prompt_batch(s, p, 0)).collect();
    let first = ms.decode_greedy(&batch).unwrap();
    let mut out: Vec<Vec<u32>> = first.iter().map(|&t| vec![t]).collect();
    for _ in 1..N_GEN {
        let live: Vec<usize> = (0..prompts.len()).filter(|&s| out[s].len() < stop_at[s]).collect();
        if live.is_empty() {
            break;
        }
        let batch: Vec<BatchToken> = live
            .iter()
            .map(|&s| BatchToken { seq: s, pos: ms.seq_len(s), token: *out[s].last().unwrap(), logits: true })
            .collect();
        let next = ms.decode_greedy(&batch).unwrap();
        for (&s, t) in live.iter().zip(next) {
            out[s].push(t);
        }
    }
    out
}

fn check_together(name: &str, gpu_layers: GpuLayers) {
    let model = load(name, gpu_layers);
    let prompts: Vec<Vec<u32>> = PROMPTS.iter().map(|p| model.prompt_tokens(p).unwrap()).collect();
    let want: Vec<Vec<u32>> = prompts.iter().map(|p| alone(&model, p)).collect();
    let got = together(&model, &prompts, &[N_GEN; 4]);
    assert_eq!(got, want, "{name} {gpu_layers:?}: greedy ids together differ from alone");
    // Sequence 1 stops after 3 tokens (finished or cancelled): the others go on unchanged.
    let got = together(&model, &prompts, &[N_GEN, 3, N_GEN, N_GEN]);
    for s in [0, 2, 3] {
        assert_eq!(got[s], want[s], "{name} {gpu_layers:?}: sequence {s} changed when sequence 1 stopped");
    }
    assert_eq!(got[1], want[1][..3]);
}


#[test]
fn smollm2_sequences_together_equal_alone_on_the_cpu() {
    check_together(SMOLLM2, GpuLayers::None);
}

#[test]
fn gemma3_sequences_together_equal_alone_on_the_cpu() {
    check_together(GEMMA3, GpuLayers::None);
}

#[test]
fn smollm2_sequences_together_equal_alone_on_the_gpu() {
    check_together(SMOLLM2, GpuLayers::All);
    check_together(SMOLLM2, half_layers(SMOLLM2));
}

#[test]
fn gemma3_sequences_together_equal_alone_on_the_gpu() {
    check_together(GEMMA3, GpuLayers::All);
    check_together(GEMMA3, half_layers(GEMMA3));
}

/// A freed slot takes a new sequence; a full context refuses only the
/// batch that overflows it; bad batches are named errors that change nothing.
#[test]
fn slots_are_reused_and_bad_batches_refused() {
    for gpu in [GpuLayers::None, GpuLayers::All] {
        let model = load(SMOLLM2, gpu);
        let p: Vec<Vec<u32>> = PROMPTS.iter().map(|p| model.prompt_tokens(p).unwrap()).collect();
        let mut ms = multi(&model, 2);
        ms.decode_greedy(&prompt_batch(0, &p[0], 0)).unwrap();
        ms.decode_greedy(&prompt_batch(1, &p[1], 0)).unwrap();
        // Free slot 1 and reuse it for another prompt: its first token is that prompt's alone.
        ms.clear(1).unwrap();
        let first = ms.decode_greedy(&prompt_batch(1, &p[2], 0)).unwrap();
        assert_eq!(first[0], alone(&model, &p[2])[0], "{gpu:?}: reused slot");
        let err = |ms: &mut MultiSession, b: &[BatchToken]| ms.decode_greedy(b).unwrap_err().to_string();
        let len0 = ms.seq_len(0);
        let tok = |seq, pos| BatchToken { seq, pos, token: 1, logits: true };
        assert!(err(&mut ms, &[tok(2, 0)]).contains("sequence 2 is out of range"));
        assert!(err(&mut ms, &[tok(0, len0 + 1)]).contains("position"));
        let big: Vec<BatchToken> = (0..129).map(|i| tok(0, len0 + i)).collect();
        assert!(err(&mut ms, &big).contains("exceeds the batch size"));
        // Fill sequence 0 to the end of its context: the overflowing batch is refused by name.
        let fill: Vec<BatchToken> = (len0..N_CTX).map(|pos| tok(0, pos)).collect();
        ms.decode_greedy(&fill).unwrap();
        let len1 = ms.seq_len(1);
        let e = err(&mut ms, &[tok(0, N_CTX), tok(1, len1)]);
        assert!(e.contains("sequence 0") && e.contains("full"), "{e}");
        // Sequence 1 goes on as if nothing happened.
        let mut ids = p[2].clone();
        ids.push(first[0]);
        let second = ms.decode_greedy(&[BatchToken { seq: 1, pos: ids.len() - 1, token: first[0], logits: true }]).unwrap();
        assert_eq!(second[0], alone(&model, &p[2])[1], "{gpu:?}: sequence 1 after the refused batch");
        assert_eq!(ms.seq_len(0), N_CTX);
    }
}

/// A second turn that shares a prefix with a cached sequence evaluates only
/// its new tokens (after a fork), with the logits of a full re-evaluation.
#[test]
fn forked_prefix_gives_the_logits_of_a_full_evaluation() {
    for gpu in [GpuLayers::None, GpuLayers::All] {
        let model = load(SMOLLM2, gpu);
        let vocab = model.config().vocab;
        let turn1 = model.prompt_tokens("<|im_start|>user\nName a color.<|im_end|>\n<|im_start|>assistant\nBlue.").unwrap();
        let mut turn2 = turn1.clone();
        turn2.extend(model.prompt_tokens("<|im_end|>\n<|im_start|>user\nAnother one?<|im_end|>\n").unwrap());
        let mut ms = multi(&model, 2);
        ms.decode(&prompt_batch(0, &turn1, 0)).unwrap();
        ms.fork(0, 1, turn1.len()).unwrap();
        let reused = ms.decode(&prompt_batch(1, &turn2, turn1.len())).unwrap()[..vocab].to_vec();
        let mut fresh = multi(&model, 1);
        let full = fresh.decode(&prompt_batch(0, &turn2, 0)).unwrap()[..vocab].to_vec();
        let d = reused.iter().zip(&full).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
        assert!(d <= LOGIT_TOL, "{gpu:?}: forked prefix differs from a full evaluation by {d}");
        // The fork left sequence 0 as it was.
        assert_eq!(ms.seq_len(0), turn1.len());
    }
}
