//! Model architectures. Each family is one file: its tensor table, the
//! keys it reads, and its forward pass top to bottom, built from the shared
//! blocks of [`blocks`] against the op-level backend trait. Adding a family
//! is a file and a line in [`ARCHS`].

pub mod bert;
pub mod blocks;
pub mod gemma3;
pub mod llama;
pub mod phi3;
pub mod qwen2;
pub mod qwen3;
pub mod qwen3moe;
pub mod rope;
pub mod table;

use std::sync::Arc;

use infer_gguf::Gguf;

pub use self::rope::RopeConfig;
pub use self::table::{ExpertWeights, LayerWeights, ModelWeights, Role};
use crate::backend::{Activation, Backends, Segment, SlotWidths};
use crate::error::{EngineError, Result};
use crate::weights::WeightTable;

/// A forward step: a batch of tokens (segments of sequences) through the
/// model, the requested logits (or greedy tokens) into `out`.
pub type ForwardFn = fn(&Arch, &mut Backends, &WeightTable, &Step, &mut HeadOutput) -> Result<()>;

/// Which rows of a step's batch return logits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutRows<'a> {
    Last,
    All,
    /// These rows (increasing).
    These(&'a [usize]),
}

/// One forward step: the batch's tokens, the segments of sequences they
/// form, and which rows return logits.
#[derive(Debug, Clone, Copy)]
pub struct Step<'a> {
    pub tokens: &'a [u32],
    pub segments: &'a [Segment],
    pub rows: OutRows<'a>,
    /// Return only each returned row's most likely token (see [`Logits::Greedy`]).
    pub greedy: bool,
    /// Return the rows' final-normed hidden states ([`HeadOutput::hidden`])
    /// instead of logits: a decoder as an embedder, without the head's matmul.
    pub hidden: bool,
}

/// One supported architecture.
pub struct ArchDef {
    /// `general.architecture` in GGUF.
    pub name: &'static str,
    /// Reads the hyper-parameters.
    pub config: fn(&Gguf) -> Result<ModelConfig>,
    /// The tensors it reads.
    pub tensors: &'static [table::TensorSpec],
    pub forward: ForwardFn,
}

impl std::fmt::Debug for ArchDef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ArchDef({})", self.name)
    }
}

/// Every supported architecture.
pub const ARCHS: &[&ArchDef] =
    &[&llama::ARCH, &gemma3::ARCH, &qwen2::ARCH, &qwen3::ARCH, &phi3::ARCH, &qwen3moe::ARCH, &bert::ARCH];

/// Names of the supported architectures, for messages.
pub fn supported() -> String {
    ARCHS.iter().map(|a| a.name).collect::<Vec<_>>().join(", ")
}

/// A mixture-of-experts feed-forward.
#[derive(Debug, Clone, PartialEq)]
pub struct MoeConfig {
    pub n_experts: usize,
    /// Experts each token is routed to (top-k).
    pub n_used: usize,
    /// Hidden width of one expert.
    pub expert_ffn: usize,
    /// Renormalise the selected experts' softmax weights to sum to 1.
    pub renorm: bool,
}

/// Hyper-parameters of a model.
#[derive(Debug, Clone)]
pub struct ModelConfig {
    /// `general.architecture`.
    pub arch: &'static str,
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
    pub rope: RopeConfig,
    /// Sliding window size (0 = none).
    pub sliding_window: usize,
    /// `swa_layers[l]`: layer `l` uses the sliding window.
    pub swa_layers: Vec<bool>,
    pub attn_scale: f32,
    /// Gating activation of the feed-forward.
    pub act: Activation,
    /// Factor on the embeddings (gemma: √dim).
    pub embed_scale: f32,
    pub moe: Option<MoeConfig>,
}

impl ModelConfig {
    pub fn q_dim(&self) -> usize {
        self.n_heads * self.head_dim
    }
    pub fn kv_dim(&self) -> usize {
        self.n_kv_heads * self.head_dim
    }
    pub fn widths(&self) -> SlotWidths {
        let ffn = self.moe.as_ref().map_or(self.ffn_dim, |m| m.expert_ffn.max(self.ffn_dim));
        SlotWidths { dim: self.dim, q_dim: self.q_dim(), kv_dim: self.kv_dim(), ffn_dim: ffn, vocab: self.vocab }
    }
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
    /// With a greedy step over several rows: each returned row's token.
    pub tokens: Vec<u32>,
    /// With [`Step::hidden`]: `dim` values per returned row, after the final norm.
    pub hidden: Vec<f32>,
}

/// A loaded architecture: its definition, config and weights.
#[derive(Debug)]
pub struct Arch {
    pub def: &'static ArchDef,
    pub config: ModelConfig,
    pub weights: ModelWeights,
}

impl Arch {
    /// Reads the config and registers the weights of the file's
    /// architecture; `n_ctx` (0 = default) picks context-dependent RoPE factors.
    pub fn load(gguf: &Arc<Gguf>, table: &mut WeightTable, n_ctx: usize) -> Result<Self> {
        let name = gguf.architecture()?;
        let def = ARCHS.iter().find(|a| a.name == name).ok_or_else(|| EngineError::UnknownArchitecture {
            path: gguf.path().display().to_string(),
            arch: name.to_string(),
            supported: supported(),
        })?;
        let mut config = (def.config)(gguf)?;
        let weights = table::load(def.name, def.tensors, &config, table)?;
        rope_factors(&mut config, &weights, table, n_ctx)?;
        Ok(Arch { def, config, weights })
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
        let seg = [Segment { seq: 0, pos0, start: 0, len: tokens.len() }];
        let rows = if which == Logits::All { OutRows::All } else { OutRows::Last };
        let step = Step { tokens, segments: &seg, rows, greedy: which == Logits::Greedy, hidden: false };
        self.forward_step(bk, table, &step, out)
    }

    /// Runs one batched step (several sequences' tokens) through the model.
    pub fn forward_step(&self, bk: &mut Backends, table: &WeightTable, step: &Step, out: &mut HeadOutput) -> Result<()> {
        (self.def.forward)(self, bk, table, step, out)
    }
}

/// Folds the file's RoPE frequency divisors into the multiplier table:
/// llama3's `rope_freqs`, or Phi-3's LongRoPE factors (long ones when the
/// context exceeds the original one).
fn rope_factors(c: &mut ModelConfig, w: &ModelWeights, table: &WeightTable, n_ctx: usize) -> Result<()> {
    let g = &w.global;
    let n_ctx = if n_ctx == 0 { c.n_ctx_train.min(4096) } else { n_ctx };
    let orig = if c.rope.orig_ctx > 0 { c.rope.orig_ctx } else { c.n_ctx_train };
    let id = g.get(Role::RopeFreqs).or(match (g.get(Role::RopeFactorsLong), g.get(Role::RopeFactorsShort)) {
        (Some(long), _) if n_ctx > orig => Some(long),
        (_, Some(short)) => Some(short),
        (long, None) => long,
    });
    if let Some(id) = id {
        let div = table.f32s(id)?;
        let own = rope::from_divisors(&div);
        let merged: Arc<[f32]> = match &c.rope.mult {
            Some(m) => m.iter().zip(own.iter()).map(|(a, b)| a * b).collect(),
            None => own,
        };
        c.rope.mult = Some(merged);
    }
    Ok(())
}

/// Defaults an architecture uses for keys a file may omit.
pub(crate) struct KeyDefaults {
    pub n_ctx_train: u32,
    pub rms_eps: f32,
    pub rope_base: f32,
    pub neox: bool,
}

/// The most layers a model may declare (the deepest have about 130).
pub const MAX_LAYERS: usize = 4096;
/// The widest attention head a model may declare (real ones: 64 to 512).
pub const MAX_HEAD_DIM: usize = 1 << 16;

/// Reads (and checks) the `{arch}.*` keys shared by the supported
/// architectures: sizes, norms, RoPE (with its scaling), sliding window.
pub(crate) fn common_config(g: &Gguf, arch: &'static str, d: KeyDefaults) -> Result<ModelConfig> {
    let dim = key_usize(g, "embedding_length")?;
    let n_heads = key_usize(g, "attention.head_count")?;
    let head_dim = g.arch_u32_opt("attention.key_length")?.map_or(dim / n_heads, |v| v as usize);
    let n_layers = key_usize(g, "block_count")?;
    let n_ctx_train = g.arch_u32_opt("context_length")?.unwrap_or(d.n_ctx_train) as usize;
    let n_rot = g.arch_u32_opt("rope.dimension_count")?.map_or(head_dim, |v| v as usize);
    // The per-layer table and the rope tables are sized from these keys
    // before any tensor is read: a hostile header fails here, naming the
    // key, rather than as an allocation of gigabytes.
    let too_big = |key: &str, v: usize, max: usize| EngineError::Config {
        path: g.path().display().to_string(),
        detail: format!("{key} is {v}; infer reads at most {max}"),
    };
    if n_layers > MAX_LAYERS {
        return Err(too_big("block_count", n_layers, MAX_LAYERS));
    }
    if head_dim > MAX_HEAD_DIM {
        return Err(too_big("the head width (attention.key_length, or embedding_length / head_count)", head_dim, MAX_HEAD_DIM));
    }
    if n_rot > head_dim {
        return Err(too_big("rope.dimension_count", n_rot, head_dim));
    }
    let mut rope = RopeConfig::plain(n_rot, g.arch_f32_opt("rope.freq_base")?.unwrap_or(d.rope_base), d.neox);
    rope.orig_ctx = g.arch_u32_opt("rope.scaling.original_context_length")?.map_or(n_ctx_train, |v| v as usize);
    rope::apply_scaling(&mut rope, &rope::read_scaling(g, n_ctx_train)?);
    let sliding_window = g.arch_u32_opt("attention.sliding_window")?.unwrap_or(0) as usize;
    let c = ModelConfig {
        arch,
        n_layers,
        dim,
        n_heads,
        n_kv_heads: g.arch_u32_opt("attention.head_count_kv")?.map_or(n_heads, |v| v as usize),
        head_dim,
        ffn_dim: key_usize(g, "feed_forward_length")?,
        vocab: vocab_size(g)?,
        n_ctx_train,
        rms_eps: g.arch_f32_opt("attention.layer_norm_rms_epsilon")?.unwrap_or(d.rms_eps),
        rope,
        sliding_window,
        swa_layers: vec![sliding_window > 0; n_layers],
        attn_scale: 1.0 / (head_dim as f32).sqrt(),
        act: Activation::SwiGlu,
        embed_scale: 1.0,
        moe: None,
    };
    check_heads(g, &c)?;
    Ok(c)
}

/// Reads the MoE keys (`expert_count`, `expert_used_count`,
/// `expert_feed_forward_length`) and checks them.
pub(crate) fn moe_config(g: &Gguf, renorm: bool) -> Result<MoeConfig> {
    let bad = |detail: String| EngineError::Config { path: g.path().display().to_string(), detail };
    let n_experts = key_usize(g, "expert_count")?;
    let n_used = key_usize(g, "expert_used_count")?;
    if n_used > n_experts {
        return Err(bad(format!("expert_used_count {n_used} exceeds expert_count {n_experts}")));
    }
    let expert_ffn = key_usize(g, "expert_feed_forward_length")?;
    Ok(MoeConfig { n_experts, n_used, expert_ffn, renorm })
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
    if c.head_dim == 0 || c.head_dim % 2 != 0 {
        return Err(bad(format!("head dimension {} is odd or zero; RoPE needs pairs", c.head_dim)));
    }
    if c.rope.n_rot == 0 || c.rope.n_rot % 2 != 0 || c.rope.n_rot > c.head_dim {
        return Err(bad(format!("rope.dimension_count {} is not an even number within head_dim {}", c.rope.n_rot, c.head_dim)));
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

#[cfg(test)]
mod tests {
    use infer_gguf::Value;

    use super::*;

    fn llama_keys(extra: &[(&str, u32)]) -> Gguf {
        let mut m: Vec<(String, Value)> = vec![("general.architecture".into(), Value::String("llama".into()))];
        let keys = [("embedding_length", 64), ("attention.head_count", 4), ("block_count", 2), ("feed_forward_length", 128), ("vocab_size", 300)];
        for (k, v) in keys.iter().chain(extra) {
            m.retain(|(key, _)| key != &format!("llama.{k}"));
            m.push((format!("llama.{k}"), Value::U32(*v)));
        }
        Gguf::from_metadata("hostile.gguf", m).unwrap()
    }

    fn config(extra: &[(&str, u32)]) -> Result<ModelConfig> {
        common_config(&llama_keys(extra), "llama", KeyDefaults { n_ctx_train: 64, rms_eps: 1e-5, rope_base: 1e4, neox: false })
    }

    /// Found by fuzzing (tests/fuzz.rs, `hf_config`): block_count 2^32 - 1
    /// reached the per-layer table's allocation (2.8 TB) and aborted.
    #[test]
    fn huge_layer_counts_and_head_widths_are_errors_naming_the_key() {
        assert_eq!(config(&[]).unwrap().head_dim, 16);
        let e = config(&[("block_count", u32::MAX)]).unwrap_err().to_string();
        assert!(e.contains("hostile.gguf") && e.contains("block_count is 4294967295"), "{e}");
        let e = config(&[("attention.key_length", u32::MAX)]).unwrap_err().to_string();
        assert!(e.contains("head width") && e.contains("4294967295"), "{e}");
        let e = config(&[("rope.dimension_count", u32::MAX)]).unwrap_err().to_string();
        assert!(e.contains("rope.dimension_count is 4294967295"), "{e}");
    }
}
