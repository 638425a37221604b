//! Synthetic models of the other families at real shapes (Qwen 2.5, Qwen 3,
//! Phi-3, an OLMoE-shaped qwen3moe), for speed work. The tensors written are
//! exactly those the architecture's tensor table lists, so the file is what
//! the engine (and llama.cpp) loads for that family.
//!
//! ```no_run
//! use infer_engine::synth::SynthTokenizer;
//! use infer_engine::synth_family::{write_family, FamilyPreset};
//! use infer_gguf::QuantType;
//! let p = FamilyPreset::get("qwen3-1.7b", QuantType::Q4_0).expect("known preset");
//! write_family(&p, &SynthTokenizer::Builtin, "/tmp/synth-qwen3.gguf")?;
//! # Ok::<(), infer_engine::EngineError>(())
//! ```

use std::path::Path;

use infer_gguf::{GgufWriter, QuantType, Value};

use crate::arch::table::{Need, Role};
use crate::arch::{ArchDef, ModelConfig, MoeConfig, RopeConfig, ARCHS};
use crate::backend::Activation;
use crate::error::{EngineError, Result};
use crate::synth::{add_random, borrowed_tokenizer, builtin_tokenizer, norm, Rng, SynthConfig, SynthTokenizer};

/// Family preset names accepted by [`FamilyPreset::get`].
pub const FAMILY_PRESETS: &[&str] = &["qwen2.5-1.5b", "qwen3-1.7b", "phi3-mini", "olmoe-1b-7b"];

/// A family's shape: the llama-style sizes plus what the family adds.
#[derive(Debug, Clone, PartialEq)]
pub struct FamilyPreset {
    /// GGUF architecture name.
    pub arch: &'static str,
    pub shape: SynthConfig,
    pub moe: Option<MoeConfig>,
    /// Whether the head is the embedding matrix (no `output.weight`).
    pub tied: bool,
    pub rope_base: f32,
}

impl FamilyPreset {
    /// The published shapes (vocabularies included, so the head costs what it does).
    pub fn get(name: &str, ty: QuantType) -> Option<Self> {
        // (arch, dim, layers, ffn, heads, kv heads, head dim, vocab, tied, moe)
        let (arch, dim, n_layers, ffn_dim, n_heads, n_kv_heads, head_dim, vocab, tied, moe) = match name {
            "qwen2.5-1.5b" => ("qwen2", 1536, 28, 8960, 12, 2, 128, 151_936, true, None),
            "qwen3-1.7b" => ("qwen3", 2048, 28, 6144, 16, 8, 128, 151_936, true, None),
            "phi3-mini" => ("phi3", 3072, 32, 8192, 32, 32, 96, 32_064, false, None),
            "olmoe-1b-7b" => (
                "qwen3moe",
                2048,
                16,
                1024,
                16,
                16,
                128,
                50_304,
                false,
                Some(MoeConfig { n_experts: 64, n_used: 8, expert_ffn: 1024, renorm: true }),
            ),
            _ => return None,
        };
        let shape = SynthConfig {
            dim,
            n_layers,
            ffn_dim,
            n_heads,
            n_kv_heads,
            head_dim,
            vocab,
            ty,
            n_ctx_train: 8192,
            seed: 0x5eed,
        };
        let rope_base = if arch == "phi3" { 10_000.0 } else { 1_000_000.0 };
        Some(FamilyPreset { arch, shape, moe, tied, rope_base })
    }

    fn def(&self) -> Result<&'static ArchDef> {
        ARCHS
            .iter()
            .copied()
            .find(|a| a.name == self.arch)
            .ok_or_else(|| EngineError::InvalidParam(format!("synthetic model: no architecture \"{}\"", self.arch)))
    }

    /// The engine config this preset describes (what the table's shapes resolve against).
    fn config(&self) -> ModelConfig {
        let s = &self.shape;
        ModelConfig {
            arch: self.arch,
            n_layers: s.n_layers,
            dim: s.dim,
            n_heads: s.n_heads,
            n_kv_heads: s.n_kv_heads,
            head_dim: s.head_dim,
            ffn_dim: s.ffn_dim,
            vocab: s.vocab,
            n_ctx_train: s.n_ctx_train,
            rms_eps: 1e-6,
            rope: RopeConfig::plain(s.head_dim, self.rope_base, true),
            sliding_window: 0,
            swa_layers: vec![false; s.n_layers],
            attn_scale: 1.0 / (s.head_dim as f32).sqrt(),
            act: Activation::SwiGlu,
            embed_scale: 1.0,
            moe: self.moe.clone(),
        }
    }
}

/// Writes a GGUF of `p`'s family and shape with random weights to `path`.
pub fn write_family(p: &FamilyPreset, tokenizer: &SynthTokenizer, path: impl AsRef<Path>) -> Result<()> {
    let mut p = p.clone();
    let mut w = GgufWriter::new();
    match tokenizer {
        SynthTokenizer::Builtin => builtin_tokenizer(&mut w, p.shape.vocab)?,
        SynthTokenizer::From(src) => p.shape.vocab = borrowed_tokenizer(&mut w, src)?,
    }
    p.shape.validate()?;
    let def = p.def()?;
    let c = p.config();
    let a = p.arch;
    let u = |v: usize| Value::U32(v as u32);
    w.add_metadata("general.architecture", Value::String(a.into()));
    // llama.cpp special-cases names containing "phi3" (token attributes a
    // byte-level vocabulary lacks); real files say "Phi 3".
    let family = if a == "phi3" { "Phi 3" } else { a };
    w.add_metadata("general.name", Value::String(format!("synthetic {family} {}", p.shape.ty)));
    for (k, v) in [
        ("context_length", c.n_ctx_train),
        ("embedding_length", c.dim),
        ("block_count", c.n_layers),
        ("feed_forward_length", c.ffn_dim),
        ("attention.head_count", c.n_heads),
        ("attention.head_count_kv", c.n_kv_heads),
        ("attention.key_length", c.head_dim),
        ("attention.value_length", c.head_dim),
        ("rope.dimension_count", c.head_dim),
        ("vocab_size", c.vocab),
    ] {
        w.add_metadata(&format!("{a}.{k}"), u(v));
    }
    w.add_metadata(&format!("{a}.rope.freq_base"), Value::F32(p.rope_base));
    w.add_metadata(&format!("{a}.attention.layer_norm_rms_epsilon"), Value::F32(c.rms_eps));
    if let Some(m) = &c.moe {
        w.add_metadata(&format!("{a}.expert_count"), u(m.n_experts));
        w.add_metadata(&format!("{a}.expert_used_count"), u(m.n_used));
        w.add_metadata(&format!("{a}.expert_feed_forward_length"), u(m.expert_ffn));
    }
    let mut seeds = Rng::new(p.shape.seed);
    let mut vecs = Rng::new(p.shape.seed ^ 0x6e6f_726d);
    let globals = def.tensors.iter().filter(|s| !s.role.per_layer());
    let layers = (0..c.n_layers).flat_map(|l| def.tensors.iter().filter(|s| s.role.per_layer()).map(move |s| (Some(l), s)));
    for (layer, spec) in globals.map(|s| (None, s)).chain(layers) {
        let written = match spec.need {
            Need::Required => true,
            Need::Optional => false,
            Need::TiedTo(_) => !p.tied,
        };
        if !written {
            continue;
        }
        let name = layer.map_or(spec.name.to_string(), |l| format!("blk.{l}.{}", spec.name));
        let dims = spec.shape(&c);
        let n: usize = dims.iter().product::<u64>() as usize;
        if spec.role.is_vector() {
            // Norm weights ≈ 1; biases small.
            let mut v = norm(n, &mut vecs);
            if matches!(spec.role, Role::Bq | Role::Bk | Role::Bv) {
                let f: &mut [f32] = bytemuck::cast_slice_mut(&mut v);
                f.iter_mut().for_each(|x| *x = (*x - 1.0) * 0.5);
            }
            w.add_tensor(&name, QuantType::F32, &dims, v)?;
        } else if spec.role == Role::Router {
            // The router stays F32 as converters write it.
            add_random(&mut w, &name, QuantType::F32, &dims, seeds.next_u64())?;
        } else {
            add_random(&mut w, &name, p.shape.ty, &dims, seeds.next_u64())?;
        }
    }
    w.write_to_path(path)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_exist_and_fit_their_blocks() {
        for name in FAMILY_PRESETS {
            let p = FamilyPreset::get(name, QuantType::Q4K).expect("preset");
            p.shape.validate().unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(p.def().is_ok(), "{name}");
        }
        assert!(FamilyPreset::get("qwen9", QuantType::Q4_0).is_none());
    }
}
