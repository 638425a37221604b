//! The blocks that architectures are built from. Each variation a family
//! may combine — q/k/v biases, per-head q/k norms, post-attention and
//! post-FFN norms, fused projections (split at load into views), the gating
//! activation, sliding windows, RoPE variants, a mixture of experts — is
//! switched on by the tensors the file has and the config, written once here.

use super::{Arch, HeadOutput, LayerWeights, ModelConfig, OutRows, Role, Step};
use crate::backend::{Active, AttnParams, Backends, MoeParams, MoeWeights, RopeParams, Slot};
use crate::error::Result;
use crate::weights::WeightTable;

/// `x = token_embd[tokens] · embed_scale` into the backend of layer 0.
pub fn embed(arch: &Arch, bk: &mut Backends, table: &WeightTable, step: &Step) -> Result<()> {
    bk.begin(table, arch.weights.token_embd, step.tokens, step.segments, arch.config.embed_scale)
}

/// Whether layer `l` attends through the sliding window.
fn windowed(c: &ModelConfig, l: usize) -> bool {
    c.sliding_window > 0 && c.swa_layers.get(l).copied().unwrap_or(false)
}

/// RoPE of layer `l` for `n_heads` heads. Sliding-window layers use their
/// own base and no scaling (gemma3).
pub fn rope_params(c: &ModelConfig, l: usize, n_heads: usize) -> RopeParams<'_> {
    let r = &c.rope;
    let swa = windowed(c, l) && r.base_swa != r.base;
    RopeParams {
        n_heads,
        head_dim: c.head_dim,
        n_rot: r.n_rot,
        base: if swa { r.base_swa } else { r.base },
        freq_scale: if swa { 1.0 } else { r.freq_scale },
        neox: r.neox,
        mult: if swa { None } else { r.mult.as_deref() },
        mscale: if swa { 1.0 } else { r.mscale },
    }
}

/// Attention of layer `l`: grouped-query, causal, windowed where the config says.
pub fn attn_params(c: &ModelConfig, l: usize) -> AttnParams {
    AttnParams {
        n_heads: c.n_heads,
        n_kv_heads: c.n_kv_heads,
        head_dim: c.head_dim,
        scale: c.attn_scale,
        window: if windowed(c, l) { c.sliding_window } else { 0 },
    }
}

/// The attention block of layer `l`, pre-norm:
/// `x += post_norm(wo · attention(rope(norm_h(wq·xn + bq)), rope(norm_h(wk·xn + bk)), wv·xn + bv))`
/// with `xn = attn_norm(x)`; optional parts where the file has their
/// tensors. Ends with `xn = ffn_norm(x)`, ready for the feed-forward block
/// (the residual add and that norm run as one op).
pub fn attention(b: &mut Active, c: &ModelConfig, l: usize, lw: &LayerWeights) -> Result<()> {
    let (dim, q_dim, kv_dim, hd, eps) = (c.dim, c.q_dim(), c.kv_dim(), c.head_dim, c.rms_eps);
    // xn = rmsnorm(x)                                          [n, dim]
    b.rmsnorm(Slot::X, lw.req(Role::AttnNorm)?, Slot::Xn, dim, dim, eps)?;
    b.record(l, "attn_norm", Slot::Xn, dim)?;
    // q [n, q_dim], k and v [n, kv_dim] (views of a fused qkv where the file fuses them)
    let (wq, wk, wv) = (lw.req(Role::Wq)?, lw.req(Role::Wk)?, lw.req(Role::Wv)?);
    let biases = [(Role::Bq, q_dim), (Role::Bk, kv_dim), (Role::Bv, kv_dim)].map(|(r, width)| lw.get(r).map(|id| (id, width)));
    b.matmul_multi_bias(&[(wq, Slot::Q), (wk, Slot::K), (wv, Slot::V)], &biases, Slot::Xn)?;
    // Per-head RMSNorm of q and k (over head_dim), before RoPE.
    if let Some(qn) = lw.get(Role::QNorm) {
        b.rmsnorm(Slot::Q, qn, Slot::Q, q_dim, hd, eps)?;
    }
    if let Some(kn) = lw.get(Role::KNorm) {
        b.rmsnorm(Slot::K, kn, Slot::K, kv_dim, hd, eps)?;
    }
    // RoPE, then attention over the cache (keys and values of this batch stored first).
    let (pq, pk) = (rope_params(c, l, c.n_heads), rope_params(c, l, c.n_kv_heads));
    b.rope_attention(l, (Slot::Q, Slot::K, Slot::V), Slot::Att, &pq, &pk, &attn_params(c, l))?;
    b.record(l, "q_rope", Slot::Q, q_dim)?;
    b.record(l, "k_rope", Slot::K, kv_dim)?;
    b.record(l, "attn", Slot::Att, q_dim)?;
    b.matmul(lw.req(Role::Wo)?, Slot::Att, Slot::Out)?; //         [n, dim]
    if let Some(pn) = lw.get(Role::PostAttnNorm) {
        b.rmsnorm(Slot::Out, pn, Slot::Out, dim, dim, eps)?;
    }
    // x += attn_out, then the feed-forward block's norm: xn = rmsnorm(x).
    b.add_rmsnorm(Slot::X, Slot::Out, lw.req(Role::FfnNorm)?, Slot::Xn, dim, eps)?;
    b.record(l, "attn_residual", Slot::X, dim)
}

/// The dense feed-forward block of layer `l` on `xn`:
/// `x += post_norm(down(act(gate·xn) * (up·xn)))`.
pub fn ffn(b: &mut Active, c: &ModelConfig, l: usize, lw: &LayerWeights) -> Result<()> {
    let (dim, ffn) = (c.dim, c.ffn_dim);
    let (gate, up) = (lw.req(Role::Gate)?, lw.req(Role::Up)?);
    // gate = act(gate·xn) * (up·xn)                                 [n, ffn]
    b.matmul_gated(gate, up, Slot::Xn, (Slot::Gate, Slot::Up), c.act, ffn)?;
    let down = lw.req(Role::Down)?;
    if let Some(pn) = lw.get(Role::PostFfnNorm) {
        b.matmul(down, Slot::Gate, Slot::Out)?; //                     [n, dim]
        b.rmsnorm(Slot::Out, pn, Slot::Out, dim, dim, c.rms_eps)?;
        b.add(Slot::X, Slot::Out, dim)?;
    } else {
        // x += down · gate                                           [n, dim]
        b.matmul_add(down, Slot::Gate, Slot::X, Slot::Out, dim)?;
    }
    b.record(l, "ffn_residual", Slot::X, dim)
}

/// The mixture-of-experts feed-forward block of layer `l` on `xn`: each
/// token's top-k experts by router softmax, `x += Σ_e w_e · down_e(act(gate_e·xn) * (up_e·xn))`.
pub fn moe(b: &mut Active, c: &ModelConfig, l: usize, lw: &LayerWeights) -> Result<()> {
    let Some(m) = c.moe.as_ref() else { return ffn(b, c, l, lw) };
    let w = MoeWeights { router: lw.req(Role::Router)?, experts: &lw.experts };
    let p = MoeParams { n_used: m.n_used, renorm: m.renorm, act: c.act, expert_ffn: m.expert_ffn };
    b.moe_ffn(Slot::Xn, Slot::Out, c.dim, &w, &p)?; //                 [n, dim]
    b.add(Slot::X, Slot::Out, c.dim)?;
    b.record(l, "ffn_residual", Slot::X, c.dim)
}

/// The output head shared by every architecture: final RMSNorm, then
/// `logits = x · outputᵀ` for the rows the step asks (the last, all, or
/// some), or only their most likely tokens, or (an embedder) the normed rows.
pub fn output_head(arch: &Arch, bk: &mut Backends, step: &Step, out: &mut HeadOutput) -> Result<()> {
    let (c, w) = (&arch.config, &arch.weights);
    if step.rows == OutRows::These(&[]) {
        // No row asked for logits (a prompt chunk before the last).
        out.logits.clear();
        out.tokens.clear();
        out.token = None;
        return Ok(());
    }
    let mut b = bk.for_layer(c.n_layers, c.dim)?;
    let n = b.n_tokens();
    match step.rows {
        OutRows::All => {}
        OutRows::Last => b.keep_rows(Slot::X, c.dim, &[n.saturating_sub(1)])?,
        OutRows::These(rows) => b.keep_rows(Slot::X, c.dim, rows)?,
    }
    if step.hidden {
        // An embedder reads the normed rows themselves.
        b.rmsnorm(Slot::X, w.output_norm, Slot::Xn, c.dim, c.dim, c.rms_eps)?;
        out.hidden.resize(b.n_tokens() * c.dim, 0.0);
        b.read(Slot::Xn, &mut out.hidden)?;
        out.logits.clear();
        out.tokens.clear();
        out.token = None;
        return Ok(());
    }
    b.rmsnorm_matmul(Slot::X, w.output_norm, w.output, (Slot::Xn, Slot::Logits), c.dim, c.rms_eps)?;
    b.record(c.n_layers, "logits", Slot::Logits, c.vocab)?;
    if step.greedy {
        b.argmax(Slot::Logits, c.vocab, &mut out.tokens)?;
        out.logits.clear();
        out.token = out.tokens.last().copied();
    } else {
        out.logits.resize(b.n_tokens() * c.vocab, 0.0);
        b.read(Slot::Logits, &mut out.logits)?;
        out.token = None;
        out.tokens.clear();
    }
    Ok(())
}
