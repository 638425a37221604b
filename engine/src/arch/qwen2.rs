//! The qwen2 architecture (Qwen 2, Qwen 2.5): llama's block with biases on
//! the q, k and v projections and NEOX RoPE; the head tied or not.

use infer_gguf::Gguf;

use super::table::{t, Dim::*, Need::*, Role::*, TensorSpec};
use super::{blocks, common_config, Arch, ArchDef, HeadOutput, KeyDefaults, ModelConfig, Step};
use crate::backend::Backends;
use crate::error::Result;
use crate::weights::WeightTable;

pub const ARCH: ArchDef = ArchDef { name: "qwen2", config, tensors: TENSORS, forward };

const TENSORS: &[TensorSpec] = &[
    t(TokenEmbd, "token_embd.weight", &[Model, Vocab], Required),
    t(OutputNorm, "output_norm.weight", &[Model], Required),
    t(Output, "output.weight", &[Model, Vocab], TiedTo(TokenEmbd)),
    t(AttnNorm, "attn_norm.weight", &[Model], Required),
    t(Wq, "attn_q.weight", &[Model, Q], Required),
    t(Wk, "attn_k.weight", &[Model, Kv], Required),
    t(Wv, "attn_v.weight", &[Model, Kv], Required),
    t(Bq, "attn_q.bias", &[Q], Required),
    t(Bk, "attn_k.bias", &[Kv], Required),
    t(Bv, "attn_v.bias", &[Kv], Required),
    t(Wo, "attn_output.weight", &[Q, Model], Required),
    t(FfnNorm, "ffn_norm.weight", &[Model], Required),
    t(Gate, "ffn_gate.weight", &[Model, Ffn], Required),
    t(Up, "ffn_up.weight", &[Model, Ffn], Required),
    t(Down, "ffn_down.weight", &[Ffn, Model], Required),
];

/// Reads `qwen2.*` hyper-parameters.
fn config(g: &Gguf) -> Result<ModelConfig> {
    common_config(g, "qwen2", KeyDefaults { n_ctx_train: 32768, rms_eps: 1e-6, rope_base: 1_000_000.0, neox: true })
}

/// One forward step over a batch (segments of sequences).
fn forward(a: &Arch, bk: &mut Backends, t: &WeightTable, step: &Step, out: &mut HeadOutput) -> Result<()> {
    let c = &a.config;
    // x = token_embd[tokens]                                      [n, dim]
    blocks::embed(a, bk, t, step)?;
    for (l, lw) in a.weights.layers.iter().enumerate() {
        let mut b = bk.for_layer(l, c.dim)?;
        // x += wo · attention(rope(wq·xn + bq), rope(wk·xn + bk), wv·xn + bv)
        blocks::attention(&mut b, c, l, lw)?;
        // x += down(silu(gate·xn) * up·xn)
        blocks::ffn(&mut b, c, l, lw)?;
    }
    // logits = output · output_norm(x)                            [n_out, vocab]
    blocks::output_head(a, bk, step, out)
}
