//! The gemma3 architecture: embeddings scaled by √dim, RMS-normed queries
//! and keys, post-attention and post-feed-forward norms, GELU(tanh) gating,
//! and a sliding window on five of every six layers, which also use their own
//! RoPE base. (Facts as in llama.cpp's gemma3 graph; the code is ours.)

use infer_gguf::Gguf;

use super::table::{t, Dim::*, Need::*, Role::*, TensorSpec};
use super::{blocks, common_config, Arch, ArchDef, HeadOutput, KeyDefaults, ModelConfig, Step};
use crate::backend::{Activation, Backends};
use crate::error::Result;
use crate::weights::WeightTable;

pub const ARCH: ArchDef = ArchDef { name: "gemma3", config, tensors: TENSORS, forward };

/// Every `SWA_PATTERN`-th layer (the last of each group) attends globally.
const SWA_PATTERN: usize = 6;
/// RoPE base of the sliding-window layers (not stored in the file).
const ROPE_BASE_SWA: f32 = 10_000.0;

const TENSORS: &[TensorSpec] = &[
    t(TokenEmbd, "token_embd.weight", &[Model, Vocab], Required),
    t(OutputNorm, "output_norm.weight", &[Model], Required),
    t(Output, "output.weight", &[Model, Vocab], TiedTo(TokenEmbd)),
    t(AttnNorm, "attn_norm.weight", &[Model], Required),
    t(Wq, "attn_q.weight", &[Model, Q], Required),
    t(Wk, "attn_k.weight", &[Model, Kv], Required),
    t(Wv, "attn_v.weight", &[Model, Kv], Required),
    t(QNorm, "attn_q_norm.weight", &[Head], Required),
    t(KNorm, "attn_k_norm.weight", &[Head], Required),
    t(Wo, "attn_output.weight", &[Q, Model], Required),
    t(PostAttnNorm, "post_attention_norm.weight", &[Model], Required),
    t(FfnNorm, "ffn_norm.weight", &[Model], Required),
    t(Gate, "ffn_gate.weight", &[Model, Ffn], Required),
    t(Up, "ffn_up.weight", &[Model, Ffn], Required),
    t(Down, "ffn_down.weight", &[Ffn, Model], Required),
    t(PostFfnNorm, "post_ffw_norm.weight", &[Model], Required),
];

/// Reads `gemma3.*` hyper-parameters.
fn config(g: &Gguf) -> Result<ModelConfig> {
    let d = KeyDefaults { n_ctx_train: 32768, rms_eps: 1e-6, rope_base: 1_000_000.0, neox: true };
    let mut c = common_config(g, "gemma3", d)?;
    let pattern = g.arch_u32_opt("attention.sliding_window_pattern")?.map_or(SWA_PATTERN, |v| v as usize).max(1);
    c.rope.base_swa = ROPE_BASE_SWA;
    c.swa_layers = (0..c.n_layers).map(|l| l % pattern < pattern - 1).collect();
    c.act = Activation::GeGlu;
    c.embed_scale = (c.dim as f32).sqrt();
    // The attention scale comes from the key length (set by common_config), not dim / n_heads.
    Ok(c)
}

/// One forward step over a batch (segments of sequences).
fn forward(a: &Arch, bk: &mut Backends, t: &WeightTable, step: &Step, out: &mut HeadOutput) -> Result<()> {
    let c = &a.config;
    // x = token_embd[tokens] · √dim                               [n, dim]
    blocks::embed(a, bk, t, step)?;
    for (l, lw) in a.weights.layers.iter().enumerate() {
        let mut b = bk.for_layer(l, c.dim)?;
        // x += post_attn_norm(wo · attention(rope(q_norm(wq·xn)), rope(k_norm(wk·xn)), wv·xn)),
        // windowed with its own RoPE base on five of six layers
        blocks::attention(&mut b, c, l, lw)?;
        // x += post_ffw_norm(down(gelu(gate·xn) * up·xn))
        blocks::ffn(&mut b, c, l, lw)?;
    }
    // logits = output · output_norm(x)                            [n_out, vocab]
    blocks::output_head(a, bk, step, out)
}
