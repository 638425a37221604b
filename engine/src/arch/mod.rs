//! Model architectures: configuration from GGUF keys, weights by tensor
//! name, and one forward pass per architecture (`llama.rs`, `gemma3.rs`).

pub mod gemma3;
pub mod llama;

use std::sync::Arc;

use infer_gguf::Gguf;

use crate::backend::{Backends, SlotWidths};
use crate::error::{EngineError, Result};
use crate::weights::{WeightId, WeightTable};

/// Which forward pass a model runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArchKind {
    Llama,
    Gemma3,
}

/// Hyper-parameters shared by the supported architectures.
#[derive(Debug, Clone)]
pub struct ModelConfig {
    pub arch: ArchKind,
    pub n_layers: usize,
    /// Residual stream width.
    pub dim: usize,
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub head_dim: usize,
    pub ffn_dim: usize,
    pub vocab: usize,
    /// Context length the model was trained for.
    pub n_ctx_train: usize,
    pub rms_eps: f32,
    pub rope_base: f32,
    /// RoPE base of sliding-window layers (gemma3: 10 000).
    pub rope_base_swa: f32,
    pub rope_freq_scale: f32,
    pub rope_neox: bool,
    /// Sliding window size (0 = none).
    pub sliding_window: usize,
    /// `swa_layers[l]`: layer `l` uses the sliding window.
    pub swa_layers: Vec<bool>,
    pub attn_scale: f32,
}

impl ModelConfig {
    pub fn q_dim(&self) -> usize {
        self.n_heads * self.head_dim
    }
    pub fn kv_dim(&self) -> usize {
        self.n_kv_heads * self.head_dim
    }
    pub fn widths(&self) -> SlotWidths {
        SlotWidths { dim: self.dim, q_dim: self.q_dim(), kv_dim: self.kv_dim(), ffn_dim: self.ffn_dim, vocab: self.vocab }
    }
}

/// The weights of one transformer block. Optional norms are gemma3's.
#[derive(Debug, Clone)]
pub struct LayerWeights {
    pub attn_norm: WeightId,
    pub wq: WeightId,
    pub wk: WeightId,
    pub wv: WeightId,
    pub wo: WeightId,
    pub q_norm: Option<WeightId>,
    pub k_norm: Option<WeightId>,
    pub post_attn_norm: Option<WeightId>,
    pub ffn_norm: WeightId,
    pub gate: WeightId,
    pub up: WeightId,
    pub down: WeightId,
    pub post_ffn_norm: Option<WeightId>,
}

/// All weights of a model.
#[derive(Debug, Clone)]
pub struct ModelWeights {
    pub token_embd: WeightId,
    pub output_norm: WeightId,
    /// The output head; `token_embd` when the file has no `output.weight` (tied).
    pub output: WeightId,
    pub layers: Vec<LayerWeights>,
}

/// Which logits a forward pass returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Logits {
    /// Only the last position's (generation).
    Last,
    /// Every position's (perplexity, scoring).
    All,
    /// Only the last position's most likely token (greedy decoding): the
    /// head's backend picks it, so a GPU head reads back one id instead of
    /// `vocab` logits.
    Greedy,
}

/// What a forward step returns.
#[derive(Debug, Clone, Default)]
pub struct HeadOutput {
    /// `vocab` logits per returned position; empty with [`Logits::Greedy`].
    pub logits: Vec<f32>,
    /// With [`Logits::Greedy`]: the id of the highest logit (the lowest id on ties).
    pub token: Option<u32>,
}

/// A loaded architecture: config and weights.
#[derive(Debug)]
pub struct Arch {
    pub config: ModelConfig,
    pub weights: ModelWeights,
}

impl Arch {
    /// Reads the config and registers the weights of the file's architecture.
    pub fn load(gguf: &Arc<Gguf>, table: &mut WeightTable) -> Result<Self> {
        let arch = gguf.architecture()?;
        let config = match arch {
            "llama" => llama::config(gguf)?,
            "gemma3" => gemma3::config(gguf)?,
            other => {
                return Err(EngineError::UnknownArchitecture {
                    path: gguf.path().display().to_string(),
                    arch: other.to_string(),
                })
            }
        };
        let weights = load_weights(arch, &config, table)?;
        Ok(Arch { config, weights })
    }

    /// Runs `tokens` at positions `pos0..` through the model; writes the
    /// requested logits (`vocab` per returned position) or greedy token to `out`.
    pub fn forward(
        &self,
        bk: &mut Backends,
        table: &WeightTable,
        tokens: &[u32],
        pos0: usize,
        which: Logits,
        out: &mut HeadOutput,
    ) -> Result<()> {
        match self.config.arch {
            ArchKind::Llama => llama::forward(self, bk, table, tokens, pos0, which, out),
            ArchKind::Gemma3 => gemma3::forward(self, bk, table, tokens, pos0, which, out),
        }
    }
}

/// Defaults an architecture uses for keys a file may omit.
pub(crate) struct KeyDefaults {
    pub n_ctx_train: u32,
    pub rms_eps: f32,
    pub rope_base: f32,
}

/// Reads (and checks) the `{arch}.*` keys shared by the supported architectures; the
/// architecture then sets its own RoPE ordering, sliding window and scale.
pub(crate) fn common_config(g: &Gguf, arch: ArchKind, d: KeyDefaults) -> Result<ModelConfig> {
    let dim = key_usize(g, "embedding_length")?;
    let n_heads = key_usize(g, "attention.head_count")?;
    let head_dim = g.arch_u32_opt("attention.key_length")?.map_or(dim / n_heads, |v| v as usize);
    let n_layers = key_usize(g, "block_count")?;
    let c = ModelConfig {
        arch,
        n_layers,
        dim,
        n_heads,
        n_kv_heads: g.arch_u32_opt("attention.head_count_kv")?.map_or(n_heads, |v| v as usize),
        head_dim,
        ffn_dim: key_usize(g, "feed_forward_length")?,
        vocab: vocab_size(g)?,
        n_ctx_train: g.arch_u32_opt("context_length")?.unwrap_or(d.n_ctx_train) as usize,
        rms_eps: g.arch_f32_opt("attention.layer_norm_rms_epsilon")?.unwrap_or(d.rms_eps),
        rope_base: g.arch_f32_opt("rope.freq_base")?.unwrap_or(d.rope_base),
        rope_base_swa: d.rope_base,
        rope_freq_scale: 1.0 / g.arch_f32_opt("rope.scaling.factor")?.filter(|&f| f > 0.0).unwrap_or(1.0),
        rope_neox: false,
        sliding_window: 0,
        swa_layers: vec![false; n_layers],
        attn_scale: 1.0 / (head_dim as f32).sqrt(),
    };
    check_heads(g, &c)?;
    Ok(c)
}

/// Reads an architecture key that must be present and non-zero.
pub(crate) fn key_usize(g: &Gguf, suffix: &str) -> Result<usize> {
    let v = g.arch_u32(suffix)? as usize;
    if v == 0 {
        return Err(EngineError::Config {
            path: g.path().display().to_string(),
            detail: format!("{} is 0", g.arch_key(suffix)?),
        });
    }
    Ok(v)
}

/// Checks the head layout shared by every architecture.
pub(crate) fn check_heads(g: &Gguf, c: &ModelConfig) -> Result<()> {
    let bad = |detail: String| EngineError::Config { path: g.path().display().to_string(), detail };
    if c.n_kv_heads == 0 || c.n_heads % c.n_kv_heads != 0 {
        return Err(bad(format!("{} heads cannot be grouped over {} KV heads", c.n_heads, c.n_kv_heads)));
    }
    if c.head_dim % 2 != 0 {
        return Err(bad(format!("head dimension {} is odd; RoPE needs pairs", c.head_dim)));
    }
    Ok(())
}

/// Vocabulary size: `{arch}.vocab_size` or the tokenizer's token count.
pub(crate) fn vocab_size(g: &Gguf) -> Result<usize> {
    if let Some(v) = g.arch_u32_opt("vocab_size")? {
        return Ok(v as usize);
    }
    Ok(g.array("tokenizer.ggml.tokens")?.len())
}

fn load_weights(arch: &str, c: &ModelConfig, t: &mut WeightTable) -> Result<ModelWeights> {
    let (d, q, kv, f) = (c.dim as u64, c.q_dim() as u64, c.kv_dim() as u64, c.ffn_dim as u64);
    let gemma = c.arch == ArchKind::Gemma3;
    let token_embd = t.require(arch, "token_embd.weight", &[d, c.vocab as u64])?;
    let output_norm = t.require(arch, "output_norm.weight", &[d])?;
    let output = t.optional("output.weight", &[d, c.vocab as u64])?.unwrap_or(token_embd);
    let mut layers = Vec::with_capacity(c.n_layers);
    for l in 0..c.n_layers {
        let n = |s: &str| format!("blk.{l}.{s}.weight");
        let hd = c.head_dim as u64;
        let (q_norm, k_norm, post_attn_norm, post_ffn_norm) = if gemma {
            (
                Some(t.require(arch, &n("attn_q_norm"), &[hd])?),
                Some(t.require(arch, &n("attn_k_norm"), &[hd])?),
                Some(t.require(arch, &n("post_attention_norm"), &[d])?),
                Some(t.require(arch, &n("post_ffw_norm"), &[d])?),
            )
        } else {
            (None, None, None, None)
        };
        layers.push(LayerWeights {
            attn_norm: t.require(arch, &n("attn_norm"), &[d])?,
            wq: t.require(arch, &n("attn_q"), &[d, q])?,
            wk: t.require(arch, &n("attn_k"), &[d, kv])?,
            wv: t.require(arch, &n("attn_v"), &[d, kv])?,
            wo: t.require(arch, &n("attn_output"), &[q, d])?,
            q_norm,
            k_norm,
            post_attn_norm,
            ffn_norm: t.require(arch, &n("ffn_norm"), &[d])?,
            gate: t.require(arch, &n("ffn_gate"), &[d, f])?,
            up: t.require(arch, &n("ffn_up"), &[d, f])?,
            down: t.require(arch, &n("ffn_down"), &[f, d])?,
            post_ffn_norm,
        });
    }
    Ok(ModelWeights { token_embd, output_norm, output, layers })
}

/// Looks up the embedding rows of `tokens` (on the CPU, from the mmap).
pub(crate) fn embed(table: &WeightTable, w: WeightId, tokens: &[u32], out: &mut Vec<f32>) -> Result<()> {
    let m = table.matrix(w);
    let dim = m.cols;
    out.resize(tokens.len() * dim, 0.0);
    for (i, &tok) in tokens.iter().enumerate() {
        if tok as usize >= m.rows {
            return Err(EngineError::InvalidParam(format!("token id {tok} is outside the vocabulary of {}", m.rows)));
        }
        infer_kernels::cpu::get_row(&m, tok as usize, &mut out[i * dim..(i + 1) * dim])?;
    }
    Ok(())
}

/// The output head shared by every architecture: final RMSNorm, then
/// `logits = x · outputᵀ` for the last position or all of them, or only the
/// last position's most likely token.
pub(crate) fn output_head(arch: &Arch, bk: &mut Backends, which: Logits, out: &mut HeadOutput) -> Result<()> {
    use crate::backend::Slot;
    let (c, w) = (&arch.config, &arch.weights);
    let mut b = bk.for_layer(c.n_layers, c.dim)?;
    if which != Logits::All {
        b.keep_last(Slot::X, c.dim)?;
    }
    b.rmsnorm(Slot::X, w.output_norm, Slot::Xn, c.dim, c.dim, c.rms_eps)?;
    b.matmul(w.output, Slot::Xn, Slot::Logits)?;
    b.record(c.n_layers, "logits", Slot::Logits, c.vocab)?;
    if which == Logits::Greedy {
        let mut ids = Vec::with_capacity(1);
        b.argmax(Slot::Logits, c.vocab, &mut ids)?;
        out.logits.clear();
        out.token = ids.first().copied();
    } else {
        out.logits.resize(b.n_tokens() * c.vocab, 0.0);
        b.read(Slot::Logits, &mut out.logits)?;
        out.token = None;
    }
    Ok(())
}
