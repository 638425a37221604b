//! Many sequences in one forward step (llama.cpp's unified batch): each
//! token of a batch names its sequence and position and whether its logits
//! are wanted; every matmul runs all the batch's rows in one pass over the
//! weights, and attention reads each sequence's own KV cache region.
//!
//! ```no_run
//! use infer_engine::batch::{BatchToken, MultiParams};
//! use infer_engine::{Model, ModelOptions};
//! let model = Model::load("models/SmolLM2-135M-Instruct.Q4_1.gguf", ModelOptions::default())?;
//! let mut ms = model.multi_session(MultiParams { n_seq: 2, ..Default::default() })?;
//! let (a, b) = (model.prompt_tokens("The capital of France is")?, model.prompt_tokens("Once upon")?);
//! // Both prompts in one step; logits for the last token of each.
//! let mut batch = Vec::new();
//! for (seq, p) in [&a, &b].into_iter().enumerate() {
//!     for (pos, &token) in p.iter().enumerate() {
//!         batch.push(BatchToken { seq, pos, token, logits: pos + 1 == p.len() });
//!     }
//! }
//! let next = ms.decode_greedy(&batch)?; // one id per sequence
//! # Ok::<(), infer_engine::EngineError>(())
//! ```

use std::sync::Arc;

use crate::arch::{HeadOutput, OutRows, Step};
use crate::backend::{Backends, Segment};
use crate::error::{EngineError, Result};
use crate::kv_cache::CacheType;
use crate::model::Model;
use crate::offload::exec::{self, ExecParams};

/// One token of a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchToken {
    /// Sequence (slot) index, `< n_seq`.
    pub seq: usize,
    /// Its position in the sequence: the sequence's next one.
    pub pos: usize,
    pub token: u32,
    /// Whether this token's logits are returned.
    pub logits: bool,
}

/// Sizes of a [`MultiSession`].
#[derive(Debug, Clone, Copy)]
pub struct MultiParams {
    /// Sequences, each with its own KV cache region.
    pub n_seq: usize,
    /// Positions per sequence (0 = min(4096, the model's training context)).
    pub n_ctx: usize,
    /// Most tokens in one step (`--batch-size`).
    pub n_batch: usize,
    pub cache_type: CacheType,
}

impl Default for MultiParams {
    fn default() -> Self {
        MultiParams { n_seq: 4, n_ctx: 0, n_batch: 512, cache_type: CacheType::F16 }
    }
}

/// Several sequences over one model, evaluated together.
pub struct MultiSession {
    model: Arc<Model>,
    backends: Backends,
    n_ctx: usize,
    n_batch: usize,
    /// Positions cached per sequence.
    lens: Vec<usize>,
    out: HeadOutput,
    segs: Vec<Segment>,
    rows: Vec<usize>,
}

impl Model {
    /// A session of `p.n_seq` sequences evaluated in shared steps.
    pub fn multi_session(self: &Arc<Self>, p: MultiParams) -> Result<MultiSession> {
        let n_ctx = if p.n_ctx == 0 { self.config().n_ctx_train.min(4096) } else { p.n_ctx };
        if p.n_seq == 0 || p.n_batch == 0 || n_ctx < 2 {
            return Err(EngineError::InvalidParam(format!(
                "{} sequences of {n_ctx} positions in batches of {}: each must be at least 1 (context 2)",
                p.n_seq, p.n_batch
            )));
        }
        let e = ExecParams { n_seq: p.n_seq, n_ctx, n_batch: p.n_batch, cache_type: p.cache_type };
        let backends = exec::build_backends(self.exec(false), e)?;
        Ok(MultiSession {
            model: self.clone(),
            backends,
            n_ctx,
            n_batch: p.n_batch,
            lens: vec![0; p.n_seq],
            out: HeadOutput::default(),
            segs: Vec::new(),
            rows: Vec::new(),
        })
    }
}

impl MultiSession {
    pub fn model(&self) -> &Arc<Model> {
        &self.model
    }
    pub fn n_seq(&self) -> usize {
        self.lens.len()
    }
    /// Positions per sequence.
    pub fn n_ctx(&self) -> usize {
        self.n_ctx
    }
    pub fn n_batch(&self) -> usize {
        self.n_batch
    }
    /// Positions cached for sequence `seq`.
    pub fn seq_len(&self, seq: usize) -> usize {
        self.lens.get(seq).copied().unwrap_or(0)
    }

    fn check_seq(&self, seq: usize) -> Result<()> {
        if seq >= self.lens.len() {
            return Err(EngineError::InvalidParam(format!("sequence {seq} is out of range (0..{})", self.lens.len())));
        }
        Ok(())
    }

    /// Forgets sequence `seq` (its slot is free for a new one).
    pub fn clear(&mut self, seq: usize) -> Result<()> {
        self.truncate(seq, 0)
    }

    /// Keeps the first `len` positions of sequence `seq`.
    pub fn truncate(&mut self, seq: usize, len: usize) -> Result<()> {
        self.check_seq(seq)?;
        self.lens[seq] = self.lens[seq].min(len);
        Ok(())
    }

    /// Makes `dst` hold the first `len` positions of `src` (a shared prefix:
    /// a system prompt or an earlier turn), without re-evaluating them.
    pub fn fork(&mut self, src: usize, dst: usize, len: usize) -> Result<()> {
        self.check_seq(src)?;
        self.check_seq(dst)?;
        let len = len.min(self.lens[src]);
        self.backends.copy_seq(src, dst, len)?;
        self.lens[dst] = len;
        Ok(())
    }

    /// Checks `batch` and turns it into segments and wanted rows; nothing
    /// changes when it is refused, so no other sequence is disturbed.
    fn plan(&mut self, batch: &[BatchToken]) -> Result<()> {
        if batch.is_empty() {
            return Err(EngineError::EmptyPrompt);
        }
        if batch.len() > self.n_batch {
            return Err(EngineError::InvalidParam(format!(
                "a batch of {} tokens exceeds the batch size of {}",
                batch.len(),
                self.n_batch
            )));
        }
        let mut next = self.lens.clone();
        self.segs.clear();
        self.rows.clear();
        for (i, t) in batch.iter().enumerate() {
            self.check_seq(t.seq)?;
            if t.pos != next[t.seq] {
                return Err(EngineError::InvalidParam(format!(
                    "sequence {}: token at position {} but the next position is {} (no gaps or rewinds; truncate first)",
                    t.seq, t.pos, next[t.seq]
                )));
            }
            if t.pos >= self.n_ctx {
                return Err(EngineError::InvalidParam(format!(
                    "sequence {}: the context of {} positions is full",
                    t.seq, self.n_ctx
                )));
            }
            next[t.seq] += 1;
            match self.segs.last_mut() {
                Some(s) if s.seq == t.seq && s.pos0 + s.len == t.pos => s.len += 1,
                _ => self.segs.push(Segment { seq: t.seq, pos0: t.pos, start: i, len: 1 }),
            }
            if t.logits {
                self.rows.push(i);
            }
        }
        Ok(())
    }

    fn run(&mut self, batch: &[BatchToken], greedy: bool) -> Result<()> {
        self.plan(batch)?;
        let tokens: Vec<u32> = batch.iter().map(|t| t.token).collect();
        let step = Step { tokens: &tokens, segments: &self.segs, rows: OutRows::These(&self.rows), greedy, hidden: false };
        let (model, bk, out) = (&self.model, &mut self.backends, &mut self.out);
        crate::threads::install(|| model.arch().forward_step(bk, model.weights(), &step, out))?;
        for t in batch {
            self.lens[t.seq] = self.lens[t.seq].max(t.pos + 1);
        }
        Ok(())
    }

    /// Evaluates `batch`; returns `vocab` logits for each token marked
    /// `logits`, in batch order.
    pub fn decode(&mut self, batch: &[BatchToken]) -> Result<&[f32]> {
        self.run(batch, false)?;
        Ok(&self.out.logits)
    }

    /// Evaluates `batch`; returns the most likely next token for each token
    /// marked `logits`, in batch order (a GPU head reads back only the ids).
    pub fn decode_greedy(&mut self, batch: &[BatchToken]) -> Result<Vec<u32>> {
        self.run(batch, true)?;
        Ok(self.out.tokens.clone())
    }
}
