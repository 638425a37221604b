//! The gemma3 architecture: embeddings scaled by √dim, RMS-normed queries
//! and keys, post-attention and post-feed-forward norms, GELU(tanh) gating,
//! and a sliding window on five of every six layers, which also use their own
//! RoPE base. (Facts as in llama.cpp's gemma3 graph; the code is ours.)

use infer_gguf::Gguf;

use super::{common_config, output_head, Arch, ArchKind, HeadOutput, KeyDefaults, Logits, ModelConfig};
use crate::backend::{Activation, AttnParams, Backends, RopeParams, Slot};
use crate::error::Result;
use crate::weights::WeightTable;

/// Every `SWA_PATTERN`-th layer (the last of each group) attends globally.
const SWA_PATTERN: usize = 6;
/// RoPE base of the sliding-window layers (not stored in the file).
const ROPE_BASE_SWA: f32 = 10_000.0;

/// Reads `gemma3.*` hyper-parameters.
pub fn config(g: &Gguf) -> Result<ModelConfig> {
    let mut c =
        common_config(g, ArchKind::Gemma3, KeyDefaults { n_ctx_train: 32768, rms_eps: 1e-6, rope_base: 1_000_000.0 })?;
    let pattern = g.arch_u32_opt("attention.sliding_window_pattern")?.map_or(SWA_PATTERN, |v| v as usize).max(1);
    c.rope_base_swa = ROPE_BASE_SWA;
    c.rope_neox = true;
    c.sliding_window = g.arch_u32_opt("attention.sliding_window")?.unwrap_or(0) as usize;
    c.swa_layers = (0..c.n_layers).map(|l| l % pattern < pattern - 1).collect();
    // The attention scale comes from the key length (set by common_config), not dim / n_heads.
    Ok(c)
}

/// One forward step over `tokens` at positions `pos0..`.
pub fn forward(
    arch: &Arch,
    bk: &mut Backends,
    table: &WeightTable,
    tokens: &[u32],
    pos0: usize,
    which: Logits,
    out: &mut HeadOutput,
) -> Result<()> {
    let c = &arch.config;
    let w = &arch.weights;
    let (dim, q_dim, kv_dim, ffn, hd) = (c.dim, c.q_dim(), c.kv_dim(), c.ffn_dim, c.head_dim);

    // x = token_embd[tokens] * √dim                           [n, dim]
    bk.begin(table, w.token_embd, tokens, pos0, (dim as f32).sqrt())?;

    for (l, lw) in w.layers.iter().enumerate() {
        let swa = c.swa_layers[l] && c.sliding_window > 0;
        let rope = |n_heads| RopeParams {
            n_heads,
            head_dim: hd,
            base: if swa { c.rope_base_swa } else { c.rope_base },
            freq_scale: if swa { 1.0 } else { c.rope_freq_scale },
            neox: true,
        };
        let attn = AttnParams {
            n_heads: c.n_heads,
            n_kv_heads: c.n_kv_heads,
            head_dim: hd,
            scale: c.attn_scale,
            window: if swa { c.sliding_window } else { 0 },
        };
        let mut b = bk.for_layer(l, dim)?;
        // Attention block: xn = rmsnorm(x); q,k,v; per-head RMSNorm of q and k; RoPE (NEOX).
        b.rmsnorm(Slot::X, lw.attn_norm, Slot::Xn, dim, dim, c.rms_eps)?;
        b.record(l, "attn_norm", Slot::Xn, dim)?;
        // q [n, q_dim], k and v [n, kv_dim]
        b.matmul_multi(&[(lw.wq, Slot::Q), (lw.wk, Slot::K), (lw.wv, Slot::V)], Slot::Xn)?;
        if let (Some(qn), Some(kn)) = (lw.q_norm, lw.k_norm) {
            b.rmsnorm(Slot::Q, qn, Slot::Q, q_dim, hd, c.rms_eps)?;
            b.rmsnorm(Slot::K, kn, Slot::K, kv_dim, hd, c.rms_eps)?;
        }
        b.rope_qk(Slot::Q, Slot::K, &rope(c.n_heads), &rope(c.n_kv_heads))?;
        b.record(l, "q_rope", Slot::Q, q_dim)?;
        b.record(l, "k_rope", Slot::K, kv_dim)?;
        // Attention (windowed on SWA layers), output projection, post-attention norm.
        b.attention(l, Slot::Q, Slot::K, Slot::V, Slot::Att, &attn)?;
        b.record(l, "attn", Slot::Att, q_dim)?;
        b.matmul(lw.wo, Slot::Att, Slot::Out)?; //               [n, dim]
        if let Some(pn) = lw.post_attn_norm {
            b.rmsnorm(Slot::Out, pn, Slot::Out, dim, dim, c.rms_eps)?;
        }
        // x += attn_out, then the feed-forward block's norm: xn = rmsnorm(x).
        b.add_rmsnorm(Slot::X, Slot::Out, lw.ffn_norm, Slot::Xn, dim, c.rms_eps)?;
        b.record(l, "attn_residual", Slot::X, dim)?;
        // Feed-forward block: x += post_norm(down(gelu(gate(xn)) * up(xn))).
        b.matmul_multi(&[(lw.gate, Slot::Gate), (lw.up, Slot::Up)], Slot::Xn)?; // [n, ffn] each
        b.gated(Slot::Gate, Slot::Up, Activation::GeGlu, ffn)?;
        b.matmul(lw.down, Slot::Gate, Slot::Out)?; //            [n, dim]
        if let Some(pn) = lw.post_ffn_norm {
            b.rmsnorm(Slot::Out, pn, Slot::Out, dim, dim, c.rms_eps)?;
        }
        b.add(Slot::X, Slot::Out, dim)?;
        b.record(l, "ffn_residual", Slot::X, dim)?;
    }

    // Output head: rmsnorm, then logits = x · outputᵀ           [n_out, vocab]
    output_head(arch, bk, which, out)
}
