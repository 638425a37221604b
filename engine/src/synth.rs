//! Synthetic llama-architecture models: a real model's shape with random
//! weights, for benchmarks on machines without a downloaded GGUF.
//!
//! Weights are valid quantized blocks of realistic scale (finite f16 scales
//! giving weights of a few hundredths, random quants), norms ≈ 1.0 in F32,
//! and an untied `output.weight`. Tensor bytes are streamed while the file is
//! written, so an 8B model needs no more memory than a small buffer.
//!
//! ```no_run
//! use infer_engine::synth::{write_synth, SynthConfig, SynthTokenizer};
//! use infer_gguf::QuantType;
//! let cfg = SynthConfig::preset("1b", QuantType::Q4_0).expect("known preset");
//! write_synth(&cfg, &SynthTokenizer::Builtin, "/tmp/synth-1b-q4_0.gguf")?;
//! # Ok::<(), infer_engine::EngineError>(())
//! ```

use std::io::Write;
use std::path::{Path, PathBuf};

use half::f16;
use infer_gguf::{Gguf, GgufWriter, QuantType, Value};

use crate::error::{EngineError, Result};

/// The shape and weight type of a synthetic model.
#[derive(Debug, Clone, PartialEq)]
pub struct SynthConfig {
    /// Residual stream width.
    pub dim: usize,
    pub n_layers: usize,
    pub ffn_dim: usize,
    pub n_heads: usize,
    pub n_kv_heads: usize,
    /// Per-head width; `dim / n_heads` in the presets.
    pub head_dim: usize,
    /// Vocabulary size; replaced by the token count of a borrowed tokenizer.
    pub vocab: usize,
    /// Type of every 2-D weight, the embeddings and output head included.
    pub ty: QuantType,
    /// Written as `llama.context_length`.
    pub n_ctx_train: usize,
    /// Seed of the weight generator (same seed, same file).
    pub seed: u64,
}

/// Preset names accepted by [`SynthConfig::preset`].
pub const PRESETS: &[&str] = &["135m", "1b", "3b", "8b"];

impl SynthConfig {
    /// The shape of SmolLM2 135M, Llama 3.2 1B / 3B or Llama 3.1 8B with a
    /// 49152-token vocabulary (SmolLM2's own).
    pub fn preset(name: &str, ty: QuantType) -> Option<Self> {
        // (dim, layers, ffn, heads, kv heads)
        let (dim, n_layers, ffn_dim, n_heads, n_kv_heads) = match name {
            "135m" => (576, 30, 1536, 9, 3),
            "1b" => (2048, 16, 8192, 32, 8),
            "3b" => (3072, 28, 8192, 24, 8),
            "8b" => (4096, 32, 14336, 32, 8),
            _ => return None,
        };
        Some(SynthConfig {
            dim,
            n_layers,
            ffn_dim,
            n_heads,
            n_kv_heads,
            head_dim: dim / n_heads,
            vocab: 49152,
            ty,
            n_ctx_train: 8192,
            seed: 0x5eed,
        })
    }

    /// Total parameters.
    pub fn n_params(&self) -> u64 {
        let (d, q, kv, f) = (self.dim as u64, self.q_dim() as u64, self.kv_dim() as u64, self.ffn_dim as u64);
        let layer = d * (q + 2 * kv) + q * d + 3 * d * f + 2 * d;
        2 * d * self.vocab as u64 + d + self.n_layers as u64 * layer
    }

    fn q_dim(&self) -> usize {
        self.n_heads * self.head_dim
    }
    fn kv_dim(&self) -> usize {
        self.n_kv_heads * self.head_dim
    }

    /// Checks what the llama forward pass and the block layout need.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(EngineError::InvalidParam(format!("synthetic model: {m}")));
        if !supported(self.ty) {
            return bad(format!("weight type {} is not supported (use {})", self.ty, SUPPORTED_NAMES));
        }
        if [self.dim, self.n_layers, self.ffn_dim, self.n_heads, self.n_kv_heads, self.head_dim, self.vocab]
            .contains(&0)
        {
            return bad(format!("zero in shape {self:?}"));
        }
        if !self.n_heads.is_multiple_of(self.n_kv_heads) || !self.head_dim.is_multiple_of(2) {
            return bad(format!("{} heads over {} KV heads of width {}", self.n_heads, self.n_kv_heads, self.head_dim));
        }
        let bs = self.ty.block_size();
        for (what, cols) in [("dim", self.dim), ("ffn_dim", self.ffn_dim), ("n_heads * head_dim", self.q_dim())] {
            if cols % bs != 0 {
                return bad(format!("{what} = {cols} is not a multiple of the {} block size {bs}", self.ty));
            }
        }
        Ok(())
    }
}

/// Where the tokenizer of a synthetic model comes from.
#[derive(Debug, Clone)]
pub enum SynthTokenizer {
    /// A byte-level BPE vocabulary: 256 byte tokens, a few specials, no
    /// merges, padded with unused tokens to the model's vocabulary size.
    Builtin,
    /// Every `tokenizer.*` key of another GGUF file.
    From(PathBuf),
}

const SUPPORTED: &[QuantType] = &[
    QuantType::F32,
    QuantType::F16,
    QuantType::Q4_0,
    QuantType::Q4_1,
    QuantType::Q5_0,
    QuantType::Q5_1,
    QuantType::Q8_0,
    QuantType::Q4K,
    QuantType::Q5K,
    QuantType::Q6K,
];
const SUPPORTED_NAMES: &str = "f32, f16, q4_0, q4_1, q5_0, q5_1, q8_0, q4_k, q5_k, q6_k";

/// How the tensors of a synthetic model get their types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SynthRecipe {
    /// Every matrix in [`SynthConfig::ty`].
    Uniform,
    /// llama.cpp's `Q4_K_M`/`Q5_K_M` for a base type of Q4_K/Q5_K: the
    /// output head in Q6_K, and `attn_v` and `ffn_down` in Q6_K in the
    /// layers its `use_more_bits` picks (the first and last eighth and
    /// every third in between), the base type elsewhere.
    KMedium,
}

impl SynthRecipe {
    /// The type of tensor `name` (`attn_v`, `ffn_down`, `output`, …) of layer
    /// `layer` (of `n_layers`; ignored for tensors outside the layers).
    pub fn tensor_type(self, base: QuantType, name: &str, layer: usize, n_layers: usize) -> QuantType {
        match self {
            SynthRecipe::Uniform => base,
            SynthRecipe::KMedium => match name {
                "output" => QuantType::Q6K,
                "attn_v" | "ffn_down" if use_more_bits(layer, n_layers) => QuantType::Q6K,
                _ => base,
            },
        }
    }
}

/// llama.cpp's choice of the layers that get more bits in the `_M` mixes.
fn use_more_bits(layer: usize, n_layers: usize) -> bool {
    let (i, n) = (layer as i64, n_layers as i64);
    i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2
}

/// Parses `infer synth --type`: a weight type name (`q4_0`, `q4_k`, …) for
/// a uniform model, or `q4_k_m`/`q5_k_m` for llama.cpp's mixes.
pub fn parse_recipe(name: &str) -> Result<(QuantType, SynthRecipe)> {
    match name.to_ascii_lowercase().as_str() {
        "q4_k_m" => Ok((QuantType::Q4K, SynthRecipe::KMedium)),
        "q5_k_m" => Ok((QuantType::Q5K, SynthRecipe::KMedium)),
        _ => parse_type(name).map(|t| (t, SynthRecipe::Uniform)),
    }
}

/// Whether [`random_blocks`] can make blocks of `ty`.
pub fn supported(ty: QuantType) -> bool {
    SUPPORTED.contains(&ty)
}

/// Parses a weight type name as `infer synth --type` takes it (`q4_0`, `q4_k`, …).
pub fn parse_type(name: &str) -> Result<QuantType> {
    let lower = name.to_ascii_lowercase();
    SUPPORTED
        .iter()
        .copied()
        .find(|t| t.name().to_ascii_lowercase() == lower)
        .ok_or_else(|| EngineError::InvalidParam(format!("unknown weight type \"{name}\"; supported: {SUPPORTED_NAMES}")))
}

/// llama.cpp's `general.file_type` for a model whose weights are all `ty`
/// (so llama-bench prints the right type name).
fn file_type(ty: QuantType, recipe: SynthRecipe) -> u32 {
    match (ty, recipe) {
        (QuantType::Q4K, SynthRecipe::KMedium) => return 15,
        (QuantType::Q5K, SynthRecipe::KMedium) => return 17,
        _ => {}
    }
    match ty {
        QuantType::F32 => 0,
        QuantType::F16 => 1,
        QuantType::Q4_0 => 2,
        QuantType::Q4_1 => 3,
        QuantType::Q8_0 => 7,
        QuantType::Q5_0 => 8,
        QuantType::Q5_1 => 9,
        QuantType::Q4K => 14, // Q4_K_S: every tensor Q4_K
        QuantType::Q5K => 16, // Q5_K_S
        _ => 18,              // Q6_K
    }
}

/// SplitMix64: fast, and good enough for weights nobody reads.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }
    pub fn fill(&mut self, buf: &mut [u8]) {
        let mut chunks = buf.chunks_exact_mut(8);
        for c in &mut chunks {
            c.copy_from_slice(&self.next_u64().to_le_bytes());
        }
        let rest = chunks.into_remainder();
        let last = self.next_u64().to_le_bytes();
        rest.copy_from_slice(&last[..rest.len()]);
    }
}

/// Largest weight magnitude aimed at per block (real models: a few hundredths).
const AMAX: f32 = 0.05;

fn put_f16(b: &mut [u8], at: usize, v: f32) {
    b[at..at + 2].copy_from_slice(&f16::from_f32(v).to_le_bytes());
}

/// Fills `out` (a whole number of `ty` blocks) with random valid blocks:
/// random quants, scales set so that weights reach about ±`AMAX`.
pub fn random_blocks(ty: QuantType, out: &mut [u8], rng: &mut Rng) {
    let bb = ty.block_bytes();
    debug_assert_eq!(out.len() % bb, 0);
    if matches!(ty, QuantType::F32 | QuantType::F16) {
        for v in out.chunks_exact_mut(bb) {
            let w = (rng.unit() * 2.0 - 1.0) * AMAX;
            if ty == QuantType::F32 {
                v.copy_from_slice(&w.to_le_bytes());
            } else {
                put_f16(v, 0, w);
            }
        }
        return;
    }
    rng.fill(out);
    for b in out.chunks_exact_mut(bb) {
        // Jitter each block's scale in [0.5, 1) of the target.
        let a = AMAX * (0.5 + 0.5 * rng.unit());
        // Offsets and formulas from ggml-common.h's block structs.
        match ty {
            // w = d·(q − 8), q in 0..16
            QuantType::Q4_0 => put_f16(b, 0, a / 8.0),
            // w = d·(q − 16), q in 0..32
            QuantType::Q5_0 => put_f16(b, 0, a / 16.0),
            // w = d·q + m
            QuantType::Q4_1 => {
                put_f16(b, 0, 2.0 * a / 15.0);
                put_f16(b, 2, -a);
            }
            QuantType::Q5_1 => {
                put_f16(b, 0, 2.0 * a / 31.0);
                put_f16(b, 2, -a);
            }
            // w = d·q, q in −128..128
            QuantType::Q8_0 => put_f16(b, 0, a / 127.0),
            // w = d·sc·q − dmin·m with 6-bit sc, m (mean 32) and q < 16 (Q5_K: < 32)
            QuantType::Q4K => {
                put_f16(b, 0, a / (63.0 * 15.0));
                put_f16(b, 2, a / (63.0 * 2.0));
            }
            QuantType::Q5K => {
                put_f16(b, 0, a / (63.0 * 31.0));
                put_f16(b, 2, a / (63.0 * 2.0));
            }
            // w = d·sc·(q − 32), sc an i8, d last
            QuantType::Q6K => put_f16(b, 208, a / (64.0 * 32.0)),
            _ => unreachable!("random_blocks: {ty} is not in SUPPORTED"),
        }
    }
}

/// Bytes of random blocks per streamed write.
const CHUNK_BLOCKS: usize = 8192;

/// Adds a random `ty` tensor of `dims` (ggml order) whose bytes are made while writing.
pub(crate) fn add_random(w: &mut GgufWriter, name: &str, ty: QuantType, dims: &[u64], seed: u64) -> Result<()> {
    let n_blocks = (dims.iter().product::<u64>() / ty.block_size() as u64) as usize;
    let mut rng = Rng::new(seed);
    w.add_tensor_stream(name, ty, dims, move |out: &mut dyn Write| {
        let mut buf = vec![0u8; CHUNK_BLOCKS * ty.block_bytes()];
        let mut left = n_blocks;
        while left > 0 {
            let n = left.min(CHUNK_BLOCKS);
            let chunk = &mut buf[..n * ty.block_bytes()];
            random_blocks(ty, chunk, &mut rng);
            out.write_all(chunk)?;
            left -= n;
        }
        Ok(())
    })?;
    Ok(())
}

/// A norm weight: ≈ 1.0 with a little noise.
pub(crate) fn norm(n: usize, rng: &mut Rng) -> Vec<u8> {
    let v: Vec<f32> = (0..n).map(|_| 1.0 + (rng.unit() - 0.5) * 0.1).collect();
    bytemuck::cast_slice(&v).to_vec()
}

/// GPT-2's printable stand-in for each byte, as byte-level BPE vocabularies spell byte tokens.
fn gpt2_byte_char(b: u8) -> char {
    let printable = |b: u8| (33..=126).contains(&b) || (161..=172).contains(&b) || b >= 174;
    if printable(b) {
        return b as char;
    }
    // The others map to 256, 257, … in byte order.
    let rank = (0..b).filter(|&c| !printable(c)).count() as u32;
    char::from_u32(256 + rank).unwrap_or('?')
}

/// Writes the built-in byte-level tokenizer keys for `vocab` tokens.
pub(crate) fn builtin_tokenizer(w: &mut GgufWriter, vocab: usize) -> Result<()> {
    const SPECIALS: [&str; 3] = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"];
    if vocab < 256 + SPECIALS.len() {
        return Err(EngineError::InvalidParam(format!(
            "synthetic model: the built-in tokenizer needs a vocabulary of at least {}, not {vocab}",
            256 + SPECIALS.len()
        )));
    }
    let mut tokens: Vec<String> = (0..=255u8).map(|b| gpt2_byte_char(b).to_string()).collect();
    // GGUF token types: 1 normal, 3 control, 5 unused.
    let mut types = vec![1i32; 256];
    for s in SPECIALS {
        tokens.push(s.to_string());
        types.push(3);
    }
    for i in tokens.len()..vocab {
        tokens.push(format!("<unused_{i}>"));
        types.push(5);
    }
    let eos = 256u32;
    w.add_metadata("tokenizer.ggml.model", Value::String("gpt2".into()));
    w.add_metadata("tokenizer.ggml.pre", Value::String("default".into()));
    w.add_metadata("tokenizer.ggml.tokens", Value::str_array(&tokens));
    w.add_metadata("tokenizer.ggml.token_type", Value::i32_array(&types));
    w.add_metadata("tokenizer.ggml.merges", Value::str_array::<&str>(&[]));
    w.add_metadata("tokenizer.ggml.bos_token_id", Value::U32(eos));
    w.add_metadata("tokenizer.ggml.eos_token_id", Value::U32(eos));
    w.add_metadata("tokenizer.ggml.add_bos_token", Value::Bool(false));
    Ok(())
}

/// Copies every `tokenizer.*` key of `src`; returns its vocabulary size.
pub(crate) fn borrowed_tokenizer(w: &mut GgufWriter, src: &Path) -> Result<usize> {
    let g = Gguf::open(src)?;
    let vocab = g.array("tokenizer.ggml.tokens")?.len();
    for (k, v) in g.metadata() {
        if k.starts_with("tokenizer.") {
            w.add_metadata(k, v.clone());
        }
    }
    Ok(vocab)
}

/// Writes a llama-architecture GGUF of `cfg`'s shape with random weights to
/// `path`, every matrix in `cfg.ty`. With a borrowed tokenizer the
/// vocabulary is the tokenizer's.
pub fn write_synth(cfg: &SynthConfig, tokenizer: &SynthTokenizer, path: impl AsRef<Path>) -> Result<()> {
    write_synth_with(cfg, SynthRecipe::Uniform, tokenizer, path)
}

/// [`write_synth`] with the tensor types of `recipe`.
pub fn write_synth_with(
    cfg: &SynthConfig,
    recipe: SynthRecipe,
    tokenizer: &SynthTokenizer,
    path: impl AsRef<Path>,
) -> Result<()> {
    if recipe == SynthRecipe::KMedium && !matches!(cfg.ty, QuantType::Q4K | QuantType::Q5K) {
        return Err(EngineError::InvalidParam(format!("the _M mix takes Q4_K or Q5_K, not {}", cfg.ty)));
    }
    let mut cfg = cfg.clone();
    let mut w = GgufWriter::new();
    match tokenizer {
        SynthTokenizer::Builtin => builtin_tokenizer(&mut w, cfg.vocab)?,
        SynthTokenizer::From(src) => cfg.vocab = borrowed_tokenizer(&mut w, src)?,
    }
    cfg.validate()?;
    let c = &cfg;
    let u = |v: usize| Value::U32(v as u32);
    w.add_metadata("general.architecture", Value::String("llama".into()));
    let mix = if recipe == SynthRecipe::KMedium { "_M" } else { "" };
    w.add_metadata("general.name", Value::String(format!("synthetic llama {}{mix}", c.ty)));
    w.add_metadata("general.file_type", Value::U32(file_type(c.ty, recipe)));
    w.add_metadata("llama.context_length", u(c.n_ctx_train));
    w.add_metadata("llama.embedding_length", u(c.dim));
    w.add_metadata("llama.block_count", u(c.n_layers));
    w.add_metadata("llama.feed_forward_length", u(c.ffn_dim));
    w.add_metadata("llama.attention.head_count", u(c.n_heads));
    w.add_metadata("llama.attention.head_count_kv", u(c.n_kv_heads));
    w.add_metadata("llama.attention.key_length", u(c.head_dim));
    w.add_metadata("llama.attention.value_length", u(c.head_dim));
    w.add_metadata("llama.rope.dimension_count", u(c.head_dim));
    w.add_metadata("llama.rope.freq_base", Value::F32(500_000.0));
    w.add_metadata("llama.attention.layer_norm_rms_epsilon", Value::F32(1e-5));
    w.add_metadata("llama.vocab_size", u(c.vocab));

    let (d, q, kv, f, v) = (c.dim as u64, c.q_dim() as u64, c.kv_dim() as u64, c.ffn_dim as u64, c.vocab as u64);
    // Each tensor gets its own seed so files do not repeat one block stream.
    let mut seeds = Rng::new(c.seed);
    let mut norms = Rng::new(c.seed ^ 0x6e6f_726d);
    add_random(&mut w, "token_embd.weight", c.ty, &[d, v], seeds.next_u64())?;
    for l in 0..c.n_layers {
        let n = |s: &str| format!("blk.{l}.{s}.weight");
        w.add_tensor(&n("attn_norm"), QuantType::F32, &[d], norm(c.dim, &mut norms))?;
        for (name, dims) in [("attn_q", [d, q]), ("attn_k", [d, kv]), ("attn_v", [d, kv]), ("attn_output", [q, d])] {
            add_random(&mut w, &n(name), recipe.tensor_type(c.ty, name, l, c.n_layers), &dims, seeds.next_u64())?;
        }
        w.add_tensor(&n("ffn_norm"), QuantType::F32, &[d], norm(c.dim, &mut norms))?;
        for (name, dims) in [("ffn_gate", [d, f]), ("ffn_up", [d, f]), ("ffn_down", [f, d])] {
            add_random(&mut w, &n(name), recipe.tensor_type(c.ty, name, l, c.n_layers), &dims, seeds.next_u64())?;
        }
    }
    w.add_tensor("output_norm.weight", QuantType::F32, &[d], norm(c.dim, &mut norms))?;
    add_random(&mut w, "output.weight", recipe.tensor_type(c.ty, "output", 0, c.n_layers), &[d, v], seeds.next_u64())?;
    w.write_to_path(path)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_blocks_dequantize_to_small_finite_weights() {
        let mut rng = Rng::new(1);
        for &ty in SUPPORTED {
            let n = 4 * infer_gguf::QK_K;
            let mut bytes = vec![0u8; n / ty.block_size() * ty.block_bytes()];
            random_blocks(ty, &mut bytes, &mut rng);
            let mut w = vec![0f32; n];
            infer_kernels::dequant::dequantize(ty, &bytes, &mut w).expect("supported type");
            let amax = w.iter().fold(0f32, |m, x| m.max(x.abs()));
            assert!(w.iter().all(|x| x.is_finite()), "{ty}");
            assert!(amax > 0.005 && amax < 0.2, "{ty}: amax {amax}");
        }
    }

    #[test]
    fn byte_chars_are_distinct() {
        let set: std::collections::HashSet<char> = (0..=255u8).map(gpt2_byte_char).collect();
        assert_eq!(set.len(), 256);
        assert_eq!(gpt2_byte_char(b' '), 'Ġ');
    }

    #[test]
    fn presets_have_the_advertised_size() {
        let c = SynthConfig::preset("8b", QuantType::Q4_0).expect("preset");
        assert!((7.0e9..8.5e9).contains(&(c.n_params() as f64)), "{}", c.n_params());
        assert!(parse_type("Q4_K").is_ok() && parse_type("iq9").is_err());
    }

    #[test]
    fn k_medium_follows_llama_cpp_use_more_bits() {
        // llama.cpp's Q4_K_M of a 16-layer model: attn_v/ffn_down in Q6_K in
        // layers 0, 1 (first eighth), 4, 7, 10, 13 (every third), 14, 15 (last eighth).
        let more: Vec<usize> = (0..16).filter(|&l| use_more_bits(l, 16)).collect();
        assert_eq!(more, [0, 1, 4, 7, 10, 13, 14, 15]);
        let r = SynthRecipe::KMedium;
        assert_eq!(r.tensor_type(QuantType::Q4K, "attn_v", 4, 16), QuantType::Q6K);
        assert_eq!(r.tensor_type(QuantType::Q4K, "ffn_down", 5, 16), QuantType::Q4K);
        assert_eq!(r.tensor_type(QuantType::Q5K, "attn_q", 0, 16), QuantType::Q5K);
        assert_eq!(r.tensor_type(QuantType::Q4K, "output", 0, 16), QuantType::Q6K);
        assert_eq!(parse_recipe("Q5_K_M").expect("known"), (QuantType::Q5K, r));
        assert_eq!(parse_recipe("q8_0").expect("known"), (QuantType::Q8_0, SynthRecipe::Uniform));
    }

    #[test]
    fn k_medium_file_has_the_mix() {
        let cfg = SynthConfig {
            dim: 256,
            n_layers: 8,
            ffn_dim: 256,
            n_heads: 2,
            n_kv_heads: 1,
            head_dim: 128,
            vocab: 512,
            ty: QuantType::Q4K,
            n_ctx_train: 64,
            seed: 1,
        };
        let path = std::env::temp_dir().join(format!("infer-synth-kmedium-{}.gguf", std::process::id()));
        write_synth_with(&cfg, SynthRecipe::KMedium, &SynthTokenizer::Builtin, &path).expect("write");
        let g = Gguf::open(&path).expect("read back");
        let ty = |name: &str| g.tensors().iter().find(|t| t.name == name).map(|t| t.ty);
        assert_eq!(ty("output.weight"), Some(QuantType::Q6K));
        assert_eq!(ty("token_embd.weight"), Some(QuantType::Q4K));
        // 8 layers: use_more_bits picks 0 (first eighth), 3, 6 (every third), 7 (last eighth).
        for l in 0..8 {
            let want = if [0, 3, 6, 7].contains(&l) { QuantType::Q6K } else { QuantType::Q4K };
            assert_eq!(ty(&format!("blk.{l}.attn_v.weight")), Some(want), "layer {l}");
            assert_eq!(ty(&format!("blk.{l}.ffn_down.weight")), Some(want), "layer {l}");
            assert_eq!(ty(&format!("blk.{l}.attn_q.weight")), Some(QuantType::Q4K), "layer {l}");
        }
        std::fs::remove_file(&path).expect("remove the temporary file");
        let q8 = SynthConfig { ty: QuantType::Q8_0, ..cfg };
        assert!(write_synth_with(&q8, SynthRecipe::KMedium, &SynthTokenizer::Builtin, &path).is_err());
    }
}
