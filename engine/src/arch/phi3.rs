//! The phi3 architecture (Phi-3, 3.5, 4-mini): fused `attn_qkv` (rows
//! q | k | v) and fused `ffn_up` (rows gate | up), split into views at load;
//! NEOX RoPE over `rope.dimension_count` dims, with LongRoPE factors when
//! the file has them; an untied output head.

use infer_gguf::Gguf;

use super::table::{t, Dim::*, Need::*, Role::*, TensorSpec};
use super::{blocks, common_config, Arch, ArchDef, HeadOutput, KeyDefaults, ModelConfig, Step};
use crate::backend::Backends;
use crate::error::Result;
use crate::weights::WeightTable;

pub const ARCH: ArchDef = ArchDef { name: "phi3", config, tensors: TENSORS, forward };

const TENSORS: &[TensorSpec] = &[
    t(TokenEmbd, "token_embd.weight", &[Model, Vocab], Required),
    t(OutputNorm, "output_norm.weight", &[Model], Required),
    t(Output, "output.weight", &[Model, Vocab], TiedTo(TokenEmbd)),
    t(RopeFactorsLong, "rope_factors_long.weight", &[RopePairs], Optional),
    t(RopeFactorsShort, "rope_factors_short.weight", &[RopePairs], Optional),
    t(AttnNorm, "attn_norm.weight", &[Model], Required),
    t(Wqkv, "attn_qkv.weight", &[Model, Qkv], Required),
    t(Wo, "attn_output.weight", &[Q, Model], Required),
    t(FfnNorm, "ffn_norm.weight", &[Model], Required),
    t(GateUp, "ffn_up.weight", &[Model, Ffn2], Required),
    t(Down, "ffn_down.weight", &[Ffn, Model], Required),
];

/// Reads `phi3.*` hyper-parameters.
fn config(g: &Gguf) -> Result<ModelConfig> {
    common_config(g, "phi3", KeyDefaults { n_ctx_train: 4096, rms_eps: 1e-5, rope_base: 10_000.0, neox: true })
}

/// One forward step over a batch (segments of sequences).
fn forward(a: &Arch, bk: &mut Backends, t: &WeightTable, step: &Step, out: &mut HeadOutput) -> Result<()> {
    let c = &a.config;
    // x = token_embd[tokens]                                      [n, dim]
    blocks::embed(a, bk, t, step)?;
    for (l, lw) in a.weights.layers.iter().enumerate() {
        let mut b = bk.for_layer(l, c.dim)?;
        // q|k|v = attn_qkv · xn (three row views); x += wo · attention(rope(q), rope(k), v)
        blocks::attention(&mut b, c, l, lw)?;
        // gate|up = ffn_up · xn (two row views); x += down(silu(gate) * up)
        blocks::ffn(&mut b, c, l, lw)?;
    }
    // logits = output · output_norm(x)                            [n_out, vocab]
    blocks::output_head(a, bk, step, out)
}
