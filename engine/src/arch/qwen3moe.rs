//! The qwen3moe architecture (Qwen3-30B-A3B style): qwen3's attention
//! (per-head q/k norms, NEOX RoPE, `key_length` heads) and a mixture of
//! experts in every layer: router softmax, top-k, the chosen weights
//! renormalised (llama.cpp always renormalises for qwen3moe; the file has no
//! key for it), each expert a SwiGLU of width `expert_feed_forward_length`.

use infer_gguf::Gguf;

use super::table::{t, Dim::*, Need::*, Role::*, TensorSpec};
use super::{blocks, common_config, moe_config, Arch, ArchDef, HeadOutput, KeyDefaults, ModelConfig, Step};
use crate::backend::Backends;
use crate::error::Result;
use crate::weights::WeightTable;

pub const ARCH: ArchDef = ArchDef { name: "qwen3moe", config, tensors: TENSORS, forward };

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
    t(FfnNorm, "ffn_norm.weight", &[Model], Required),
    t(Router, "ffn_gate_inp.weight", &[Model, Experts], Required),
    t(GateExps, "ffn_gate_exps.weight", &[Model, ExpertFfn, Experts], Required),
    t(UpExps, "ffn_up_exps.weight", &[Model, ExpertFfn, Experts], Required),
    t(DownExps, "ffn_down_exps.weight", &[ExpertFfn, Model, Experts], Required),
];

/// Reads `qwen3moe.*` hyper-parameters and the expert keys.
fn config(g: &Gguf) -> Result<ModelConfig> {
    let d = KeyDefaults { n_ctx_train: 40960, rms_eps: 1e-6, rope_base: 1_000_000.0, neox: true };
    let mut c = common_config(g, "qwen3moe", d)?;
    c.moe = Some(moe_config(g, true)?);
    Ok(c)
}

/// One forward step over a batch (segments of sequences).
fn forward(a: &Arch, bk: &mut Backends, t: &WeightTable, step: &Step, out: &mut HeadOutput) -> Result<()> {
    let c = &a.config;
    // x = token_embd[tokens]                                      [n, dim]
    blocks::embed(a, bk, t, step)?;
    for (l, lw) in a.weights.layers.iter().enumerate() {
        let mut b = bk.for_layer(l, c.dim)?;
        // x += wo · attention(rope(q_norm(wq·xn)), rope(k_norm(wk·xn)), wv·xn)
        blocks::attention(&mut b, c, l, lw)?;
        // x += Σ over the top-k experts e: w_e · down_e(silu(gate_e·xn) * up_e·xn)
        blocks::moe(&mut b, c, l, lw)?;
    }
    // logits = output · output_norm(x)                            [n_out, vocab]
    blocks::output_head(a, bk, step, out)
}
