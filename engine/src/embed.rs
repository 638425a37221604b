//! Sentence embeddings: texts → token ids → hidden states → one pooled,
//! optionally L2-normalised vector per text.
//!
//! Encoders (`bert`) run [`crate::arch::bert::encode`]; decoders that a file
//! marks as embedders (`{arch}.pooling_type`, e.g. Qwen3-Embedding with
//! last-token pooling) run their usual forward pass and are pooled after
//! the final norm, as llama.cpp does. Many texts of different lengths go
//! through in one pass: each is a segment of the batch, attention never
//! crosses segments and pooling reads only a text's own rows, so there is
//! no padding at all.

use crate::arch::{bert, HeadOutput, OutRows, Step};
use crate::backend::cpu::CpuBackend;
use crate::backend::{Backends, Segment};
use crate::error::{EngineError, Result};
use crate::kv_cache::{CacheType, KvCache};
use crate::model::Model;
use crate::offload::exec::{build_backends, ExecParams};

/// How a text's token vectors become one vector (`{arch}.pooling_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pooling {
    /// The mean over the text's tokens, special tokens included (1).
    Mean,
    /// The first token's (`[CLS]`) vector (2).
    Cls,
    /// The last token's vector (3): decoder embedders.
    Last,
}

impl Pooling {
    /// The pooling of a GGUF `pooling_type` value; `None` for 0 (none) and
    /// for types infer does not pool with (4, rank: a reranker's score).
    pub fn from_gguf(v: u32) -> Option<Self> {
        match v {
            1 => Some(Pooling::Mean),
            2 => Some(Pooling::Cls),
            3 => Some(Pooling::Last),
            _ => None,
        }
    }
}

impl std::str::FromStr for Pooling {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "mean" => Ok(Pooling::Mean),
            "cls" => Ok(Pooling::Cls),
            "last" => Ok(Pooling::Last),
            other => Err(format!("unknown pooling \"{other}\" (mean, cls, last)")),
        }
    }
}

/// How to embed.
#[derive(Debug, Clone)]
pub struct EmbedOptions {
    /// L2-normalise each vector (default on: what sentence-transformers'
    /// `Normalize` module and llama.cpp's tools do).
    pub normalize: bool,
    /// Pool this way instead of the model's own `pooling_type` (needed for
    /// a model whose file names none).
    pub pooling: Option<Pooling>,
    /// A text longer than the model's context (or sentence-transformers'
    /// `max_seq_length` where the model has one): cut it (keeping the final
    /// `[SEP]`/EOS) and list it in [`Embeddings::truncated`] (true, the
    /// default), or fail with [`EngineError::PromptTooLong`] (false).
    pub truncate: bool,
    /// Tokens per forward pass; texts are packed into passes up to this.
    pub batch_tokens: usize,
}

impl Default for EmbedOptions {
    fn default() -> Self {
        EmbedOptions { normalize: true, pooling: None, truncate: true, batch_tokens: 2048 }
    }
}

/// What [`Model::embed_with`] returns.
#[derive(Debug, Clone, Default)]
pub struct Embeddings {
    /// One vector (`dim` values) per text, in input order.
    pub vectors: Vec<Vec<f32>>,
    /// Tokens run, all texts together.
    pub n_tokens: usize,
    /// Indices of the texts cut to the context (a warning for the caller).
    pub truncated: Vec<usize>,
    /// The context length they were cut to.
    pub n_ctx: usize,
}

/// The pooling `model`'s file names (`{arch}.pooling_type`), if any.
pub fn model_pooling(model: &Model) -> Result<Option<Pooling>> {
    Ok(model.gguf().arch_u32_opt("pooling_type")?.and_then(Pooling::from_gguf))
}

/// The most tokens a text keeps: sentence-transformers' `max_seq_length`
/// when the model carries it (a folder's `sentence_bert_config.json`), else
/// the trained context.
pub fn max_tokens(model: &Model) -> Result<usize> {
    let n_ctx = model.config().n_ctx_train;
    let st = model.gguf().arch_u32_opt(crate::hf::config::MAX_SEQ_LENGTH_KEY)?;
    Ok(st.map_or(n_ctx, |m| (m as usize).min(n_ctx)).max(2))
}

/// Embeds `texts` with `model`; see [`Model::embed_with`].
pub fn embed<S: AsRef<str>>(model: &Model, texts: &[S], opts: &EmbedOptions) -> Result<Embeddings> {
    let c = model.config();
    let pooling = match opts.pooling {
        Some(p) => p,
        None => model_pooling(model)?.ok_or_else(|| EngineError::Config {
            path: model.path().display().to_string(),
            detail: format!(
                "the model is not an embedding model: {}.pooling_type names no pooling (pass a pooling, e.g. --pooling last, to embed with it anyway)",
                c.arch
            ),
        })?,
    };
    let n_ctx = max_tokens(model)?;
    let mut out = Embeddings { n_ctx, ..Default::default() };
    let mut ids = Vec::with_capacity(texts.len());
    for (i, text) in texts.iter().enumerate() {
        let mut t = model.tokenizer().encode(text.as_ref(), true, true)?;
        if t.is_empty() {
            return Err(EngineError::EmptyPrompt);
        }
        if t.len() > n_ctx {
            if !opts.truncate {
                return Err(EngineError::PromptTooLong { n_tokens: t.len(), n_ctx });
            }
            let last = t[t.len() - 1];
            t.truncate(n_ctx);
            if model.tokenizer().add_eos() {
                t[n_ctx - 1] = last;
            }
            out.truncated.push(i);
        }
        out.n_tokens += t.len();
        ids.push(t);
    }
    // On the compute pool, so each op's parallel loop starts on a worker.
    out.vectors = crate::threads::install(|| run_passes(model, &ids, pooling, opts))?;
    Ok(out)
}

/// Packs the texts' `ids` into passes and pools each text's rows.
fn run_passes(model: &Model, ids: &[Vec<u32>], pooling: Pooling, opts: &EmbedOptions) -> Result<Vec<Vec<f32>>> {
    let c = model.config();
    let mut vectors = Vec::with_capacity(ids.len());
    let mut runner = Runner::new(model, ids, opts.batch_tokens.max(1))?;
    let mut at = 0;
    while at < ids.len() {
        // Texts at..end fill one pass (at least one text).
        let mut end = at + 1;
        let mut n = ids[at].len();
        while end < ids.len() && n + ids[end].len() <= runner.batch_tokens {
            n += ids[end].len();
            end += 1;
        }
        let batch = &ids[at..end];
        let (hidden, one_row) = runner.run(batch, pooling)?;
        let dim = c.dim;
        let mut row = 0;
        for t in batch {
            let n = if one_row { 1 } else { t.len() };
            let mut v = pool(&hidden[row * dim..(row + n) * dim], dim, pooling);
            if opts.normalize {
                l2_normalize(&mut v);
            }
            vectors.push(v);
            row += n;
        }
        at = end;
    }
    Ok(vectors)
}

/// One text's pooled vector from its rows (`dim` values per token).
pub fn pool(rows: &[f32], dim: usize, pooling: Pooling) -> Vec<f32> {
    let n = rows.len() / dim.max(1);
    match pooling {
        Pooling::Cls => rows[..dim].to_vec(),
        Pooling::Last => rows[(n - 1) * dim..].to_vec(),
        Pooling::Mean => {
            let mut v = vec![0.0f32; dim];
            for r in rows.chunks_exact(dim) {
                v.iter_mut().zip(r).for_each(|(a, &b)| *a += b);
            }
            v.iter_mut().for_each(|a| *a /= n as f32);
            v
        }
    }
}

/// Scales `v` to unit length (a zero vector stays zero).
pub fn l2_normalize(v: &mut [f32]) {
    let norm = v.iter().map(|x| (*x as f64) * (*x as f64)).sum::<f64>().sqrt() as f32;
    if norm > 0.0 {
        v.iter_mut().for_each(|x| *x /= norm);
    }
}

/// Cosine similarity of two vectors (0 when one is zero).
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum();
    let na: f64 = a.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    if na == 0.0 || nb == 0.0 {
        0.0
    } else {
        (dot / (na * nb)) as f32
    }
}

/// The backends of one embed call and how its passes run.
struct Runner<'m> {
    model: &'m Model,
    bk: Backends,
    batch_tokens: usize,
    /// Encoders: the last hidden states of a pass.
    hidden: Vec<f32>,
    /// Decoders: the head's output (the normed rows asked for).
    head: HeadOutput,
}

impl<'m> Runner<'m> {
    /// CPU backends sized for passes of up to `batch_tokens` tokens (or the
    /// longest text) over the texts `ids`.
    fn new(model: &'m Model, ids: &[Vec<u32>], batch_tokens: usize) -> Result<Self> {
        let c = model.config();
        let longest = ids.iter().map(Vec::len).max().unwrap_or(1);
        // Sized for what this call holds: the backends' buffers are made
        // (and zeroed) per call, so a short call must not pay for 2048 tokens.
        let total: usize = ids.iter().map(Vec::len).sum();
        let batch_tokens = batch_tokens.min(total).max(longest);
        let min_len = ids.iter().map(Vec::len).min().unwrap_or(1).max(1);
        let n_seq = (batch_tokens / min_len).clamp(1, ids.len().max(1));
        let encoder = model.arch().def.name == bert::ARCH.name;
        let bk = if encoder && model.offload().is_none() {
            // No KV cache: the encoder holds no layer's cache.
            let kv = KvCache::new(1, longest, c.kv_dim(), &vec![false; c.n_layers], CacheType::F32);
            let cpu = CpuBackend::new(model.weights().clone(), c.widths(), batch_tokens, kv);
            Backends::new(vec![Box::new(cpu)], vec![0; c.n_layers + 1])
        } else if encoder {
            // The offloaded layers on the GPU; every text is "sequence 0"
            // (see `run`), so the unused caches stay one text long.
            let p = ExecParams { n_seq: 1, n_ctx: longest, n_batch: batch_tokens, cache_type: CacheType::F32 };
            build_backends(model.exec(false), p)?
        } else {
            let p = ExecParams { n_seq, n_ctx: longest, n_batch: batch_tokens, cache_type: CacheType::F32 };
            build_backends(model.exec(true), p)?
        };
        Ok(Runner { model, bk, batch_tokens, hidden: Vec::new(), head: HeadOutput::default() })
    }

    /// The last hidden states of the texts of one pass, row after row, and
    /// whether they are one row per text (a decoder's first or last token,
    /// picked before the head) rather than every token's.
    fn run(&mut self, batch: &[Vec<u32>], pooling: Pooling) -> Result<(&[f32], bool)> {
        let tokens: Vec<u32> = batch.iter().flatten().copied().collect();
        let mut segs = Vec::with_capacity(batch.len());
        let mut start = 0;
        for (seq, t) in batch.iter().enumerate() {
            segs.push(Segment { seq, pos0: 0, start, len: t.len() });
            start += t.len();
        }
        let (arch, table) = (self.model.arch(), self.model.weights());
        if arch.def.name == bert::ARCH.name {
            // The encoder keeps no cache: texts differ by their rows alone.
            segs.iter_mut().for_each(|s| s.seq = 0);
            bert::encode(arch, &mut self.bk, table, &tokens, &segs, &mut self.hidden)?;
            return Ok((&self.hidden, false));
        }
        // A decoder: its usual step, the head stopping after the final norm
        // (no vocabulary matmul), over only the rows pooling reads.
        let picked: Vec<usize> = match pooling {
            Pooling::Last => segs.iter().map(|s| s.start + s.len - 1).collect(),
            Pooling::Cls => segs.iter().map(|s| s.start).collect(),
            Pooling::Mean => Vec::new(),
        };
        let rows = if pooling == Pooling::Mean { OutRows::All } else { OutRows::These(&picked) };
        let step = Step { tokens: &tokens, segments: &segs, rows, greedy: false, hidden: true };
        arch.forward_step(&mut self.bk, table, &step, &mut self.head)?;
        Ok((&self.head.hidden, pooling != Pooling::Mean))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pooling_reads_only_the_text_rows() {
        let rows = [1.0, 2.0, 3.0, 4.0, 5.0, 9.0];
        assert_eq!(pool(&rows, 2, Pooling::Mean), [3.0, 5.0]);
        assert_eq!(pool(&rows, 2, Pooling::Cls), [1.0, 2.0]);
        assert_eq!(pool(&rows, 2, Pooling::Last), [5.0, 9.0]);
        let mut v = vec![3.0, 4.0];
        l2_normalize(&mut v);
        assert_eq!(v, [0.6, 0.8]);
        assert!((cosine(&[1.0, 0.0], &[1.0, 1.0]) - std::f32::consts::FRAC_1_SQRT_2).abs() < 1e-6);
        assert_eq!(Pooling::from_gguf(3), Some(Pooling::Last));
        assert_eq!(Pooling::from_gguf(0), None);
    }
}
