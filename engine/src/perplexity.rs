//! Perplexity by llama.cpp's method.
//!
//! The text's tokens are cut into `floor(n / n_ctx)` chunks of `n_ctx`
//! tokens; where the model adds BOS, each chunk's first token is replaced by
//! BOS. Each chunk is evaluated from an empty cache and, for positions `p` in
//! `[n_ctx/2, n_ctx-1)`, `-log softmax(logits[p])[token[p+1]]` is summed.
//! PPL = exp(mean).

use std::sync::Arc;

use crate::arch::Logits;
use crate::error::{EngineError, Result};
use crate::model::Model;
use crate::session::SessionParams;

/// A perplexity result.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Perplexity {
    pub ppl: f64,
    /// Standard error of the PPL estimate (delta method, as llama.cpp prints).
    pub stderr: f64,
    pub chunks: usize,
    pub n_ctx: usize,
}

/// Computes perplexity over `tokens` (the text tokenized with special tokens).
/// `max_chunks = 0` uses every full chunk. `progress(done, total)` is called
/// after each chunk.
pub fn perplexity(
    model: &Arc<Model>,
    tokens: &[u32],
    n_ctx: usize,
    max_chunks: usize,
    progress: impl FnMut(usize, usize),
) -> Result<Perplexity> {
    perplexity_batched(model, tokens, n_ctx, n_ctx, max_chunks, progress)
}

/// [`perplexity`] evaluating each chunk in batches of `n_batch` tokens
/// (smaller submissions on a slow device; the result does not depend on it).
pub fn perplexity_batched(
    model: &Arc<Model>,
    tokens: &[u32],
    n_ctx: usize,
    n_batch: usize,
    max_chunks: usize,
    mut progress: impl FnMut(usize, usize),
) -> Result<Perplexity> {
    if n_batch == 0 {
        return Err(EngineError::InvalidParam("perplexity batch of 0 tokens".into()));
    }
    if n_ctx < 4 {
        return Err(EngineError::InvalidParam(format!("perplexity context {n_ctx} is too small (at least 4)")));
    }
    let mut chunks = tokens.len() / n_ctx;
    if max_chunks > 0 {
        chunks = chunks.min(max_chunks);
    }
    if chunks == 0 {
        return Err(EngineError::InvalidParam(format!(
            "the text has {} tokens, fewer than one chunk of {n_ctx}",
            tokens.len()
        )));
    }
    let vocab = model.config().vocab;
    let bos = model.tokenizer().add_bos().then(|| model.tokenizer().bos_id()).flatten();
    let mut session = model.session(SessionParams { n_ctx, n_batch: n_batch.min(n_ctx), ..Default::default() })?;
    let mut nlls = Vec::with_capacity(chunks * n_ctx / 2);
    for c in 0..chunks {
        let mut chunk = tokens[c * n_ctx..(c + 1) * n_ctx].to_vec();
        if let Some(b) = bos {
            chunk[0] = b;
        }
        session.clear();
        let logits = session.eval(&chunk, Logits::All)?;
        for p in n_ctx / 2..n_ctx - 1 {
            let row = &logits[p * vocab..(p + 1) * vocab];
            nlls.push(-log_softmax_at(row, chunk[p + 1] as usize));
        }
        progress(c + 1, chunks);
    }
    let n = nlls.len() as f64;
    let mean = nlls.iter().sum::<f64>() / n;
    let var = nlls.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0).max(1.0);
    let ppl = mean.exp();
    Ok(Perplexity { ppl, stderr: ppl * (var / n).sqrt(), chunks, n_ctx })
}

/// `log softmax(row)[i]` in f64.
pub fn log_softmax_at(row: &[f32], i: usize) -> f64 {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let sum: f64 = row.iter().map(|&v| (v as f64 - max).exp()).sum();
    row[i] as f64 - max - sum.ln()
}
