//! The llama architecture (Llama 2/3.x, SmolLM, Mistral): RMSNorm, RoPE
//! with adjacent pairs (llama3 frequency factors from `rope_freqs` when the
//! file has them), grouped-query attention (windowed when the file sets
//! `attention.sliding_window`, as Mistral v0.1), SwiGLU, an output head tied
//! to the embeddings when `output.weight` is absent.

use infer_gguf::Gguf;

use super::table::{t, Dim::*, Need::*, Role::*, TensorSpec};
use super::{blocks, common_config, Arch, ArchDef, HeadOutput, KeyDefaults, ModelConfig, Step};
use crate::backend::Backends;
use crate::error::Result;
use crate::weights::WeightTable;

pub const ARCH: ArchDef = ArchDef { name: "llama", config, tensors: TENSORS, forward };

const TENSORS: &[TensorSpec] = &[
    t(TokenEmbd, "token_embd.weight", &[Model, Vocab], Required),
    t(OutputNorm, "output_norm.weight", &[Model], Required),
    t(Output, "output.weight", &[Model, Vocab], TiedTo(TokenEmbd)),
    t(RopeFreqs, "rope_freqs.weight", &[RopePairs], Optional),
    t(AttnNorm, "attn_norm.weight", &[Model], Required),
    t(Wq, "attn_q.weight", &[Model, Q], Required),
    t(Wk, "attn_k.weight", &[Model, Kv], Required),
    t(Wv, "attn_v.weight", &[Model, Kv], Required),
    t(Wo, "attn_output.weight", &[Q, Model], Required),
    t(FfnNorm, "ffn_norm.weight", &[Model], Required),
    t(Gate, "ffn_gate.weight", &[Model, Ffn], Required),
    t(Up, "ffn_up.weight", &[Model, Ffn], Required),
    t(Down, "ffn_down.weight", &[Ffn, Model], Required),
];

/// Reads `llama.*` hyper-parameters.
fn config(g: &Gguf) -> Result<ModelConfig> {
    common_config(g, "llama", KeyDefaults { n_ctx_train: 4096, rms_eps: 1e-5, rope_base: 10_000.0, neox: false })
}

/// One forward step over a batch (segments of sequences).
fn forward(a: &Arch, bk: &mut Backends, t: &WeightTable, step: &Step, out: &mut HeadOutput) -> Result<()> {
    let c = &a.config;
    // x = token_embd[tokens]                                      [n, dim]
    blocks::embed(a, bk, t, step)?;
    for (l, lw) in a.weights.layers.iter().enumerate() {
        let mut b = bk.for_layer(l, c.dim)?;
        // x += wo · attention(rope(wq·xn), rope(wk·xn), wv·xn), xn = attn_norm(x)
        blocks::attention(&mut b, c, l, lw)?;
        // x += down(silu(gate·xn) * up·xn), xn = ffn_norm(x)
        blocks::ffn(&mut b, c, l, lw)?;
    }
    // logits = output · output_norm(x)                            [n_out, vocab]
    blocks::output_head(a, bk, step, out)
}
