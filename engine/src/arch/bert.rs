//! The bert architecture (BERT encoders such as all-MiniLM-L6-v2): learned
//! position and token-type embeddings with a LayerNorm, then post-norm
//! blocks — bidirectional attention with biases, `x = LN(x + attn)`, a GELU
//! feed-forward with biases, `x = LN(x + ffn)`. No KV cache and no output
//! head: [`encode`] returns the last hidden states, which
//! [`crate::embed`] pools into sentence vectors.
//!
//! A batch is several texts at once, each a segment of the flat batch
//! (positions from 0); attention stays inside a segment, so no padding is
//! computed and no mask is needed.

use infer_gguf::Gguf;

use super::table::{t, Dim::*, Need::*, Role::*, TensorSpec};
use super::{common_config, Arch, ArchDef, HeadOutput, KeyDefaults, ModelConfig, Step};
use crate::backend::{AttnParams, Backends, Segment, Slot};
use crate::error::{EngineError, Result};
use crate::weights::WeightTable;

pub const ARCH: ArchDef = ArchDef { name: "bert", config, tensors: TENSORS, forward };

const TENSORS: &[TensorSpec] = &[
    t(TokenEmbd, "token_embd.weight", &[Model, Vocab], Required),
    t(PosEmbd, "position_embd.weight", &[Model, Ctx], Required),
    t(TokenTypes, "token_types.weight", &[Model, TypeVocab], Optional),
    t(TokenEmbdNorm, "token_embd_norm.weight", &[Model], Required),
    t(TokenEmbdNormB, "token_embd_norm.bias", &[Model], Required),
    // No output head: the table's head roles point at the embedding tensors
    // (which is what the offload plan's head layer lists); never multiplied.
    t(OutputNorm, "output_norm.weight", &[Model], TiedTo(TokenEmbdNorm)),
    t(Output, "output.weight", &[Model, Vocab], TiedTo(TokenEmbd)),
    t(Wq, "attn_q.weight", &[Model, Q], Required),
    t(Bq, "attn_q.bias", &[Q], Required),
    t(Wk, "attn_k.weight", &[Model, Kv], Required),
    t(Bk, "attn_k.bias", &[Kv], Required),
    t(Wv, "attn_v.weight", &[Model, Kv], Required),
    t(Bv, "attn_v.bias", &[Kv], Required),
    t(Wo, "attn_output.weight", &[Q, Model], Required),
    t(Bo, "attn_output.bias", &[Model], Required),
    t(AttnOutNorm, "attn_output_norm.weight", &[Model], Required),
    t(AttnOutNormB, "attn_output_norm.bias", &[Model], Required),
    t(Up, "ffn_up.weight", &[Model, Ffn], Required),
    t(UpB, "ffn_up.bias", &[Ffn], Required),
    t(Down, "ffn_down.weight", &[Ffn, Model], Required),
    t(DownB, "ffn_down.bias", &[Model], Required),
    t(LayerOutNorm, "layer_output_norm.weight", &[Model], Required),
    t(LayerOutNormB, "layer_output_norm.bias", &[Model], Required),
];

/// Reads `bert.*`: the shared sizes, the LayerNorm epsilon
/// (`attention.layer_norm_epsilon`, kept in `rms_eps`), and refuses a
/// causal file (`attention.causal`), which this encoder does not run.
fn config(g: &Gguf) -> Result<ModelConfig> {
    let mut c = common_config(g, "bert", KeyDefaults { n_ctx_train: 512, rms_eps: 1e-12, rope_base: 10000.0, neox: false })?;
    if let Some(eps) = g.arch_f32_opt("attention.layer_norm_epsilon")? {
        c.rms_eps = eps;
    }
    if g.opt(&g.arch_key("attention.causal")?, Gguf::bool)? == Some(true) {
        return Err(EngineError::Config {
            path: g.path().display().to_string(),
            detail: "bert.attention.causal is true; infer runs BERT as a bidirectional encoder only".into(),
        });
    }
    Ok(c)
}

/// BERT does not generate: a session's step is refused by name.
fn forward(_: &Arch, _: &mut Backends, _: &WeightTable, _: &Step, _: &mut HeadOutput) -> Result<()> {
    Err(EngineError::InvalidParam(
        "bert is an encoder: it embeds text (Model::embed, `infer embed`) and cannot generate".into(),
    ))
}

/// Runs the texts of `segments` (each at positions 0.., rows of `tokens`)
/// through the encoder; the last hidden states (`dim` per token) into `hidden`.
pub fn encode(a: &Arch, bk: &mut Backends, t: &WeightTable, tokens: &[u32], segments: &[Segment], hidden: &mut Vec<f32>) -> Result<()> {
    let (c, g) = (&a.config, &a.weights.global);
    let (dim, q_dim, kv_dim, ffn, eps) = (c.dim, c.q_dim(), c.kv_dim(), c.ffn_dim, c.rms_eps);
    // x = token_embd[tokens] + position_embd[pos] + token_types[0]   [n, dim]
    let mut x = Vec::new();
    t.embed_rows(a.weights.token_embd, tokens, 1.0, &mut x)?;
    let pos = t.f32s(g.req(PosEmbd)?)?;
    let types = g.get(TokenTypes).map(|id| t.f32s(id)).transpose()?;
    for s in segments {
        if s.pos0 + s.len > c.n_ctx_train {
            return Err(EngineError::PromptTooLong { n_tokens: s.pos0 + s.len, n_ctx: c.n_ctx_train });
        }
        for i in 0..s.len {
            let row = &mut x[(s.start + i) * dim..][..dim];
            let p = &pos[(s.pos0 + i) * dim..][..dim];
            row.iter_mut().zip(p).for_each(|(v, &pv)| *v += pv);
            if let Some(ty) = &types {
                row.iter_mut().zip(&ty[..dim]).for_each(|(v, &tv)| *v += tv);
            }
        }
    }
    // x = LN(x), on the host with the embeddings (no backend holds the
    // embedding norm; an offloaded encoder starts from its output).
    let (nw, nb) = (t.f32s(g.req(TokenEmbdNorm)?)?, t.f32s(g.req(TokenEmbdNormB)?)?);
    infer_kernels::cpu::encoder::layernorm_rows(&mut x, &nw, &nb, eps)?;
    bk.begin_embedded(&x, tokens.len(), segments)?;
    let mut b = bk.for_layer(0, dim)?;
    b.record(0, "embd_norm", Slot::X, dim)?;
    let attn = AttnParams { n_heads: c.n_heads, n_kv_heads: c.n_kv_heads, head_dim: c.head_dim, scale: c.attn_scale, window: 0 };
    drop(b);
    for (l, lw) in a.weights.layers.iter().enumerate() {
        let mut b = bk.for_layer(l, dim)?;
        // q, k, v = W·x + bias                                      [n, q_dim], [n, kv_dim]
        let (wq, wk, wv) = (lw.req(Wq)?, lw.req(Wk)?, lw.req(Wv)?);
        // The biases are the products' starting sums on the CPU (no pass after).
        let qkv_bias = [Some((lw.req(Bq)?, q_dim)), Some((lw.req(Bk)?, kv_dim)), Some((lw.req(Bv)?, kv_dim))];
        b.matmul_multi_bias(&[(wq, Slot::Q), (wk, Slot::K), (wv, Slot::V)], &qkv_bias, Slot::X)?;
        // Each token attends to every token of its own text.
        b.attention_full(Slot::Q, Slot::K, Slot::V, Slot::Att, &attn)?;
        b.record(l, "attn", Slot::Att, q_dim)?;
        // x = LN(x + wo·att + bo)
        b.matmul_multi_bias(&[(lw.req(Wo)?, Slot::Out)], &[Some((lw.req(Bo)?, dim))], Slot::Att)?;
        b.add(Slot::X, Slot::Out, dim)?;
        b.layernorm(Slot::X, lw.req(AttnOutNorm)?, lw.req(AttnOutNormB)?, dim, eps)?;
        b.record(l, "attn_residual", Slot::X, dim)?;
        // x = LN(x + down·gelu(up·x + bu) + bd)                      up: [n, ffn]
        b.matmul_multi_bias(&[(lw.req(Up)?, Slot::Up)], &[Some((lw.req(UpB)?, ffn))], Slot::X)?;
        b.gelu(Slot::Up, ffn)?;
        b.matmul_multi_bias(&[(lw.req(Down)?, Slot::Out)], &[Some((lw.req(DownB)?, dim))], Slot::Up)?;
        b.add(Slot::X, Slot::Out, dim)?;
        b.layernorm(Slot::X, lw.req(LayerOutNorm)?, lw.req(LayerOutNormB)?, dim, eps)?;
        b.record(l, "layer_output", Slot::X, dim)?;
    }
    let mut b = bk.for_layer(c.n_layers.saturating_sub(1), dim)?;
    hidden.resize(tokens.len() * dim, 0.0);
    b.read(Slot::X, hidden)
}
