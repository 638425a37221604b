//! The llama architecture (Llama 2/3, SmolLM, Mistral-style models):
//! RMSNorm, RoPE with adjacent pairs, grouped-query attention, SwiGLU, an
//! output head tied to the embeddings when `output.weight` is absent.

use infer_gguf::Gguf;

use super::{common_config, output_head, Arch, ArchKind, HeadOutput, KeyDefaults, Logits, ModelConfig};
use crate::backend::{Activation, AttnParams, Backends, RopeParams, Slot};
use crate::error::Result;
use crate::weights::WeightTable;

/// Reads `llama.*` hyper-parameters.
pub fn config(g: &Gguf) -> Result<ModelConfig> {
    common_config(g, ArchKind::Llama, KeyDefaults { n_ctx_train: 4096, rms_eps: 1e-5, rope_base: 10_000.0 })
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
    let (dim, q_dim, kv_dim, ffn) = (c.dim, c.q_dim(), c.kv_dim(), c.ffn_dim);
    let rope = |n_heads| RopeParams {
        n_heads,
        head_dim: c.head_dim,
        base: c.rope_base,
        freq_scale: c.rope_freq_scale,
        neox: c.rope_neox,
    };
    let attn = AttnParams {
        n_heads: c.n_heads,
        n_kv_heads: c.n_kv_heads,
        head_dim: c.head_dim,
        scale: c.attn_scale,
        window: 0,
    };

    // x = token_embd[tokens]                                  [n, dim]
    bk.begin(table, w.token_embd, tokens, pos0, 1.0)?;

    for (l, lw) in w.layers.iter().enumerate() {
        let mut b = bk.for_layer(l, dim)?;
        // Attention block: xn = rmsnorm(x); q,k,v projections; RoPE on q, k.
        b.rmsnorm(Slot::X, lw.attn_norm, Slot::Xn, dim, dim, c.rms_eps)?;
        b.record(l, "attn_norm", Slot::Xn, dim)?;
        // q [n, q_dim], k and v [n, kv_dim]
        b.matmul_multi(&[(lw.wq, Slot::Q), (lw.wk, Slot::K), (lw.wv, Slot::V)], Slot::Xn)?;
        b.rope_qk(Slot::Q, Slot::K, &rope(c.n_heads), &rope(c.n_kv_heads))?;
        b.record(l, "q_rope", Slot::Q, q_dim)?;
        b.record(l, "k_rope", Slot::K, kv_dim)?;
        // Causal grouped-query attention over the cache, then the output projection.
        b.attention(l, Slot::Q, Slot::K, Slot::V, Slot::Att, &attn)?;
        b.record(l, "attn", Slot::Att, q_dim)?;
        b.matmul(lw.wo, Slot::Att, Slot::Out)?; //               [n, dim]
                                                // x += attn_out, then the feed-forward block's norm: xn = rmsnorm(x).
        b.add_rmsnorm(Slot::X, Slot::Out, lw.ffn_norm, Slot::Xn, dim, c.rms_eps)?;
        b.record(l, "attn_residual", Slot::X, dim)?;
        // Feed-forward block: x += down(silu(gate(xn)) * up(xn)).
        b.matmul_multi(&[(lw.gate, Slot::Gate), (lw.up, Slot::Up)], Slot::Xn)?; // [n, ffn] each
        b.gated(Slot::Gate, Slot::Up, Activation::SwiGlu, ffn)?;
        b.matmul(lw.down, Slot::Gate, Slot::Out)?; //            [n, dim]
        b.add(Slot::X, Slot::Out, dim)?;
        b.record(l, "ffn_residual", Slot::X, dim)?;
    }

    // Output head: rmsnorm, then logits = x · outputᵀ           [n_out, vocab]
    output_head(arch, bk, which, out)
}
