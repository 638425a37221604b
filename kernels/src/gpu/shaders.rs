//! The table of WGSL kernels: sources embedded with `include_str!`, their
//! bindings, and the small `#ifdef` preprocessor that builds each variant.

use crate::{KernelError, QuantType};

/// How a kernel binds one buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Bind {
    Uniform,
    Read,
    ReadWrite,
}

/// The gating activation of a GATED matrix epilogue.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GateAct {
    /// `silu(gate) * up` (SwiGLU).
    Silu,
    /// `gelu_tanh(gate) * up` (GeGLU).
    Gelu,
}

/// Where a matrix kernel puts each finished dot product (`mat_out.wgsl`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub(crate) enum Store {
    #[default]
    Set,
    /// Added to the output (a residual add).
    Acc,
    /// Rows split over up to three outputs (a q|k|v or gate|up weight).
    Split,
    /// `act(gate) * up` of a `[gate; up]` weight (decode kernels only).
    Gated(GateAct),
}

/// A matrix kernel's epilogue: the store and whether a per-row bias is
/// added; `norm`: the RMSNorm of x fused in before the product (the output
/// head of one token, plain store, no bias).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub(crate) struct Epilogue {
    pub store: Store,
    pub bias: bool,
    pub norm: bool,
}

impl std::fmt::Debug for Epilogue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let store = match self.store {
            Store::Set => "set",
            Store::Acc => "acc",
            Store::Split => "split",
            Store::Gated(GateAct::Silu) => "silu",
            Store::Gated(GateAct::Gelu) => "gelu",
        };
        write!(f, "{store}{}{}", if self.bias { "+bias" } else { "" }, if self.norm { "+norm" } else { "" })
    }
}

impl Epilogue {
    /// The `mat_out.wgsl` defines of this epilogue.
    fn defines(self) -> Vec<&'static str> {
        let mut d = match self.store {
            Store::Set => vec![],
            Store::Acc => vec!["ACC"],
            Store::Split => vec!["SPLIT"],
            Store::Gated(GateAct::Silu) => vec!["GATED", "SILU"],
            Store::Gated(GateAct::Gelu) => vec!["GATED"],
        };
        if self.bias {
            d.push("BIAS");
        }
        if self.norm {
            d.push("NORM");
        }
        d
    }

    /// The bindings of a matrix kernel with this epilogue; `ux`: x is read
    /// through a uniform window (the CPU-device kernels).
    fn bindings(self, ux: bool) -> &'static [(u32, Bind)] {
        if self.norm {
            return if ux { B_MAT_UX_NORM } else { B_MAT_NORM };
        }
        let split = self.store == Store::Split;
        match (ux, split, self.bias) {
            (false, false, false) => B_MAT,
            (false, false, true) => B_MAT_BIAS,
            (false, true, false) => B_MAT_SPLIT,
            (false, true, true) => B_MAT_SPLIT_BIAS,
            (true, false, false) => B_MAT_UX,
            (true, false, true) => B_MAT_UX_BIAS,
            (true, true, false) => B_MAT_UX_SPLIT,
            (true, true, true) => B_MAT_UX_SPLIT_BIAS,
        }
    }
}

/// A kernel family; the quantized matrix kernels take the weight type and
/// their epilogue as variant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Kernel {
    Matvec(QuantType, Epilogue),
    /// Matvec on int8-quantized activations (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0 weights).
    MatvecI8(QuantType, Epilogue),
    /// f32 activations to int8 blocks of 32 for [`Kernel::MatvecI8`].
    QuantizeQ8,
    /// Matvec with one row per thread, for CPU-emulated devices.
    MatvecRows(QuantType, Epilogue),
    /// Tiled matmul, 64 x 64 tiles (f16 tiles with shader-f16), for prefill.
    Matmul(QuantType, Epilogue),
    /// Tiled matmul, 64 x 16 f32 tiles, for batches of a few tokens.
    MatmulNarrow(QuantType, Epilogue),
    /// Matmul with one row x 4 tokens per thread, for CPU-emulated devices.
    MatmulRows(QuantType, Epilogue),
    GetRows(QuantType),
    RmsNorm,
    /// Residual add fused with the next RMSNorm.
    RmsNormAdd,
    /// [`Kernel::RmsNorm`] and [`Kernel::RmsNormAdd`] that also write their
    /// output as int8 blocks for [`Kernel::MatvecI8`].
    RmsNormQ8,
    RmsNormAddQ8,
    /// RMSNorm of a buffer in place.
    RmsNormInPlace,
    Rope,
    /// RoPE on queries and keys in one dispatch.
    RopePair,
    /// RopePair that also writes the keys and values into the KV cache.
    RopeKv,
    SiluMul,
    GeluMul,
    Add,
    Scale,
    /// `x[t] += bias` per row.
    AddBias,
    /// `out[o + i] += s * a[a + i]`.
    Axpy,
    /// `out[i] = value`.
    Fill,
    Softmax,
    Argmax,
    KvWrite,
    Attention,
    /// Attention in one split, writing the normalized output (no reduce pass).
    AttentionDirect,
    AttentionReduce,
    /// Encoders (`encoder_*.wgsl`): LayerNorm with bias in place, exact
    /// GELU in place, bidirectional attention within one segment.
    LayerNorm,
    Gelu,
    SegmentAttention,
    /// Attention with a KV head's query group per workgroup and K/V tiles
    /// in workgroup memory (`attention_tiled.wgsl`).
    AttentionTiled(AttnTile),
}

/// The variant of `attention_tiled.wgsl`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct AttnTile {
    /// head_dim up to 256 with 16-key tiles (else up to 128, 32-key tiles).
    pub hd256: bool,
    /// One split: the normalized output, no reduce pass.
    pub direct: bool,
}

/// Which optional device features a pipeline is built with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub(crate) struct Variant {
    pub subgroup: bool,
    pub f16: bool,
}

/// The assembled description of one kernel.
pub(crate) struct KernelSpec {
    pub label: &'static str,
    /// Source files, concatenated in order.
    pub parts: Vec<&'static str>,
    pub entry: &'static str,
    /// `(binding number, kind)` of group 0.
    pub bindings: &'static [(u32, Bind)],
    /// Whether the kernel has a subgroup / shader-f16 variant.
    pub uses_subgroup: bool,
    pub uses_f16: bool,
    /// Names the `#ifdef`s of the sources see as defined (beside the variant's).
    pub defines: Vec<&'static str>,
    /// Whether the kernel takes the matvec shape constants (`WG`, `NR`,
    /// `ONE_SUBGROUP` of `matvec.wgsl`), chosen per adapter.
    pub matvec_shape: bool,
}

const REDUCE: &str = include_str!("../wgsl/reduce.wgsl");
const QUANT: &str = include_str!("../wgsl/quant.wgsl");
const MAT_OUT: &str = include_str!("../wgsl/mat_out.wgsl");
const MATVEC: &str = include_str!("../wgsl/matvec.wgsl");
const MATVEC_ROWS: &str = include_str!("../wgsl/matvec_rows.wgsl");
const MATMUL: &str = include_str!("../wgsl/matmul.wgsl");
const MATMUL_LOAD: &str = include_str!("../wgsl/matmul_load.wgsl");
const MATMUL_ROWS: &str = include_str!("../wgsl/matmul_rows.wgsl");
const QUANTIZE_Q8: &str = include_str!("../wgsl/quantize_q8.wgsl");
const Q8_BLOCK: &str = include_str!("../wgsl/q8_block.wgsl");
const GET_ROWS: &str = include_str!("../wgsl/get_rows.wgsl");
const RMSNORM: &str = include_str!("../wgsl/rmsnorm.wgsl");
const ROPE: &str = include_str!("../wgsl/rope.wgsl");
const ELEMENTWISE: &str = include_str!("../wgsl/elementwise.wgsl");
const SOFTMAX: &str = include_str!("../wgsl/softmax.wgsl");
const ARGMAX: &str = include_str!("../wgsl/argmax.wgsl");
const KV_WRITE: &str = include_str!("../wgsl/kv_write.wgsl");
const ATTENTION: &str = include_str!("../wgsl/attention.wgsl");
const ATTENTION_REDUCE: &str = include_str!("../wgsl/attention_reduce.wgsl");
const ENCODER_LAYERNORM: &str = include_str!("../wgsl/encoder_layernorm.wgsl");
const ENCODER_GELU: &str = include_str!("../wgsl/encoder_gelu.wgsl");
const ENCODER_ATTENTION: &str = include_str!("../wgsl/encoder_attention.wgsl");
const ATTENTION_TILED: &str = include_str!("../wgsl/attention_tiled.wgsl");
const ATTENTION_PARAMS: &str = include_str!("../wgsl/attention_params.wgsl");

use Bind::{Read as R, ReadWrite as W, Uniform as U};
const B_MAT: &[(u32, Bind)] = &[(0, U), (1, R), (2, R), (3, W)];
/// As B_MAT with x read through a uniform window (the CPU-device kernels).
const B_MAT_UX: &[(u32, Bind)] = &[(0, U), (1, R), (2, U), (3, W)];
/// The matrix kernels' epilogues: SPLIT adds outputs 4 and 5, BIAS the bias at 6.
const B_MAT_BIAS: &[(u32, Bind)] = &[(0, U), (1, R), (2, R), (3, W), (6, R)];
const B_MAT_SPLIT: &[(u32, Bind)] = &[(0, U), (1, R), (2, R), (3, W), (4, W), (5, W)];
const B_MAT_SPLIT_BIAS: &[(u32, Bind)] = &[(0, U), (1, R), (2, R), (3, W), (4, W), (5, W), (6, R)];
const B_MAT_UX_BIAS: &[(u32, Bind)] = &[(0, U), (1, R), (2, U), (3, W), (6, R)];
const B_MAT_UX_SPLIT: &[(u32, Bind)] = &[(0, U), (1, R), (2, U), (3, W), (4, W), (5, W)];
const B_MAT_UX_SPLIT_BIAS: &[(u32, Bind)] = &[(0, U), (1, R), (2, U), (3, W), (4, W), (5, W), (6, R)];
/// NORM: the norm weight at 7, read like x (a uniform window for the CPU-device kernels).
const B_MAT_NORM: &[(u32, Bind)] = &[(0, U), (1, R), (2, R), (3, W), (7, R)];
const B_MAT_UX_NORM: &[(u32, Bind)] = &[(0, U), (1, R), (2, U), (3, W), (7, U)];
const B_ELT: &[(u32, Bind)] = &[(0, U), (1, R), (2, W)];
const B_INPLACE: &[(u32, Bind)] = &[(0, U), (2, W)];
const B_ONE: &[(u32, Bind)] = &[(0, U), (1, W)];
const B_ROPE: &[(u32, Bind)] = &[(0, U), (1, W), (3, R)];
const B_ROPE_PAIR: &[(u32, Bind)] = &[(0, U), (1, W), (2, W), (3, R)];
const B_ROPE_KV: &[(u32, Bind)] = &[(0, U), (1, W), (2, W), (3, R), (4, R), (5, W), (6, W)];
const B_TWO: &[(u32, Bind)] = &[(0, U), (1, R), (2, W)];
const B_KV: &[(u32, Bind)] = &[(0, U), (1, R), (2, R), (3, W), (4, W)];
const B_ATTN: &[(u32, Bind)] = &[(0, U), (1, R), (2, R), (3, R), (4, W)];
const B_NORM_ADD: &[(u32, Bind)] = &[(0, U), (1, R), (2, R), (3, W), (4, W)];
/// The norms with Q8: the int8 blocks at 5.
const B_NORM_Q8: &[(u32, Bind)] = &[(0, U), (1, R), (2, R), (3, W), (5, W)];
const B_NORM_ADD_Q8: &[(u32, Bind)] = &[(0, U), (1, R), (2, R), (3, W), (4, W), (5, W)];
const B_NORM_INPLACE: &[(u32, Bind)] = &[(0, U), (2, R), (3, W)];
const B_LAYERNORM: &[(u32, Bind)] = &[(0, U), (1, W), (2, R), (3, R)];

/// The `block_dot` snippet of `matvec_rows.wgsl` for a weight type: a
/// whole-block version where one is written, else the generic one over
/// `dq4` with its step `QB` in quads.
fn block_dot_source(ty: QuantType) -> Vec<&'static str> {
    const GENERIC: &str = include_str!("../wgsl/block_dot.wgsl");
    match ty {
        QuantType::Q4_0 => vec![include_str!("../wgsl/block_dot_q4_0.wgsl")],
        QuantType::Q4_1 => vec![include_str!("../wgsl/block_dot_q4_1.wgsl")],
        QuantType::Q8_0 => vec![include_str!("../wgsl/block_dot_q8_0.wgsl")],
        // Rows of F32/F16 are only multiples of 4 long.
        QuantType::F32 | QuantType::F16 | QuantType::BF16 => vec!["const QB: u32 = 1u;\n", GENERIC],
        _ => vec!["const QB: u32 = 8u;\n", GENERIC],
    }
}

/// The `matmul_load.wgsl` defines of the weight-tile loader of `ty`.
fn tile_loader(ty: QuantType) -> &'static [&'static str] {
    match ty {
        QuantType::F32 => &["W_F32"],
        QuantType::F16 => &["W_F16"],
        QuantType::Q4_0 => &["W_Q4_0"],
        QuantType::Q4_1 => &["W_Q4_1"],
        QuantType::Q5_0 => &["W_Q5_0"],
        QuantType::Q5_1 => &["W_Q5_1"],
        QuantType::Q8_0 => &["W_Q8_0"],
        QuantType::Q4K => &["W_Q4_K", "W_KMIN"],
        QuantType::Q5K => &["W_Q5_K", "W_KMIN"],
        QuantType::Q6K => &["W_Q6_K"],
        _ => &["W_GENERIC"],
    }
}

/// The unit snippets of `matvec.wgsl` for a weight type (`UQ`,
/// `unit_quad`, `unit_dot`): a kernel of its own for the common types, the
/// generic one over `dq4` for the rest.
fn matvec_unit_source(ty: QuantType) -> Vec<&'static str> {
    const CONTIG: &str = include_str!("../wgsl/matvec_contig.wgsl");
    const Q32: &str = include_str!("../wgsl/matvec_q32.wgsl");
    const K4: &str = include_str!("../wgsl/matvec_k4.wgsl");
    const Q5: &str = include_str!("../wgsl/matvec_q5.wgsl");
    match ty {
        QuantType::F16 => vec![CONTIG, include_str!("../wgsl/matvec_f16.wgsl")],
        QuantType::Q8_0 => vec![CONTIG, include_str!("../wgsl/matvec_q8_0.wgsl")],
        QuantType::Q4_0 => vec![Q32, include_str!("../wgsl/matvec_q4_0.wgsl")],
        QuantType::Q4_1 => vec![Q32, include_str!("../wgsl/matvec_q4_1.wgsl")],
        QuantType::Q5_0 | QuantType::Q5_1 => vec![Q32, Q5],
        QuantType::IQ4_NL => vec![Q32, include_str!("../wgsl/matvec_iq4_nl.wgsl")],
        QuantType::Q4K => vec![K4, include_str!("../wgsl/matvec_q4_k.wgsl")],
        QuantType::Q5K => vec![K4, include_str!("../wgsl/matvec_q5_k.wgsl")],
        QuantType::Q6K => vec![include_str!("../wgsl/matvec_q6_k.wgsl")],
        _ => vec![CONTIG, include_str!("../wgsl/matvec_generic.wgsl")],
    }
}

/// Whether the integer-dot matvec ([`Kernel::MatvecI8`]) takes weights of `ty`.
pub(crate) fn int_dot_supports(ty: QuantType) -> bool {
    matches!(ty, QuantType::Q4_0 | QuantType::Q4_1 | QuantType::Q5_0 | QuantType::Q5_1 | QuantType::Q8_0)
}

/// The dequantization snippet of a weight type, or `None` if the GPU path
/// does not handle that type.
pub(crate) fn quant_source(ty: QuantType) -> Option<&'static str> {
    Some(match ty {
        QuantType::F32 => include_str!("../wgsl/quant_f32.wgsl"),
        QuantType::F16 => include_str!("../wgsl/quant_f16.wgsl"),
        QuantType::BF16 => include_str!("../wgsl/quant_bf16.wgsl"),
        QuantType::Q4_0 => include_str!("../wgsl/quant_q4_0.wgsl"),
        QuantType::Q4_1 => include_str!("../wgsl/quant_q4_1.wgsl"),
        QuantType::Q5_0 => include_str!("../wgsl/quant_q5_0.wgsl"),
        QuantType::Q5_1 => include_str!("../wgsl/quant_q5_1.wgsl"),
        QuantType::Q8_0 => include_str!("../wgsl/quant_q8_0.wgsl"),
        QuantType::IQ4_NL => concat!(include_str!("../wgsl/quant_iq4_table.wgsl"), include_str!("../wgsl/quant_iq4_nl.wgsl")),
        QuantType::IQ4_XS => concat!(include_str!("../wgsl/quant_iq4_table.wgsl"), include_str!("../wgsl/quant_iq4_xs.wgsl")),
        QuantType::Q2K => include_str!("../wgsl/quant_q2_k.wgsl"),
        QuantType::Q3K => include_str!("../wgsl/quant_q3_k.wgsl"),
        QuantType::Q4K => include_str!("../wgsl/quant_q4_k.wgsl"),
        QuantType::Q5K => include_str!("../wgsl/quant_q5_k.wgsl"),
        QuantType::Q6K => include_str!("../wgsl/quant_q6_k.wgsl"),
        _ => return None,
    })
}

impl Kernel {
    pub(crate) fn spec(self) -> Result<KernelSpec, KernelError> {
        let quant =
            |ty: QuantType| quant_source(ty).ok_or(KernelError::Unsupported(ty, "the GPU kernels"));
        let spec = |label, parts, entry, bindings, uses_subgroup, uses_f16| KernelSpec {
            label,
            parts,
            entry,
            bindings,
            uses_subgroup,
            uses_f16,
            defines: Vec::new(),
            matvec_shape: false,
        };
        let mat = |label, parts, ux, uses_subgroup, e: Epilogue| KernelSpec {
            defines: e.defines(),
            ..spec(label, parts, "main", e.bindings(ux), uses_subgroup, false)
        };
        let not_gated = |e: Epilogue| {
            if matches!(e.store, Store::Gated(_)) {
                Err(KernelError::Gpu(format!("{self:?}: the matmul kernels have no gated epilogue")))
            } else {
                Ok(e)
            }
        };
        Ok(match self {
            Kernel::Matvec(ty, e) | Kernel::MatvecI8(ty, e) => {
                let int_dot = matches!(self, Kernel::MatvecI8(..));
                if int_dot && !int_dot_supports(ty) {
                    return Err(KernelError::Unsupported(ty, "the GPU integer-dot kernels"));
                }
                let label = if int_dot { "matvec_i8" } else { "matvec" };
                let mut k = mat(label, [vec![MATVEC, MAT_OUT, QUANT, quant(ty)?], matvec_unit_source(ty)].concat(), false, true, e);
                k.matvec_shape = true;
                if ty == QuantType::Q5_1 {
                    k.defines.push("Q5_1");
                }
                if int_dot {
                    k.defines.push("INT_DOT");
                }
                k
            }
            Kernel::QuantizeQ8 => spec("quantize_q8", vec![QUANTIZE_Q8, Q8_BLOCK], "main", B_TWO, false, false),
            Kernel::RmsNormQ8 => KernelSpec {
                defines: vec!["Q8"],
                ..spec("rmsnorm_q8", vec![RMSNORM, REDUCE, Q8_BLOCK], "main", B_NORM_Q8, true, false)
            },
            Kernel::RmsNormAddQ8 => KernelSpec {
                defines: vec!["Q8"],
                ..spec("add_rmsnorm_q8", vec![RMSNORM, REDUCE, Q8_BLOCK], "add_rmsnorm", B_NORM_ADD_Q8, true, false)
            },
            Kernel::MatvecRows(ty, e) => mat(
                "matvec_rows",
                [vec![MATVEC_ROWS, MAT_OUT, QUANT, quant(ty)?], block_dot_source(ty)].concat(),
                true,
                false,
                e,
            ),
            Kernel::MatmulRows(ty, e) => {
                mat("matmul_rows", vec![MATMUL_ROWS, MAT_OUT, QUANT, quant(ty)?], true, false, not_gated(e)?)
            }
            Kernel::Matmul(ty, e) | Kernel::MatmulNarrow(ty, e) => {
                let narrow = matches!(self, Kernel::MatmulNarrow(..));
                let mut k = mat("matmul", vec![MATMUL, MAT_OUT, QUANT, quant(ty)?, MATMUL_LOAD], false, false, not_gated(e)?);
                k.defines.extend_from_slice(tile_loader(ty));
                if narrow {
                    k.label = "matmul_narrow";
                    k.defines.push("NARROW");
                } else {
                    k.uses_f16 = true;
                }
                k
            }
            Kernel::GetRows(ty) => spec(
                "get_rows",
                vec![GET_ROWS, QUANT, quant(ty)?],
                "main",
                B_MAT,
                false,
                false,
            ),
            Kernel::RmsNorm => spec("rmsnorm", vec![RMSNORM, REDUCE], "main", B_MAT, true, false),
            Kernel::RmsNormAdd => spec(
                "add_rmsnorm",
                vec![RMSNORM, REDUCE],
                "add_rmsnorm",
                B_NORM_ADD,
                true,
                false,
            ),
            Kernel::RmsNormInPlace => spec(
                "rmsnorm_inplace",
                vec![RMSNORM, REDUCE],
                "rmsnorm_inplace",
                B_NORM_INPLACE,
                true,
                false,
            ),
            Kernel::Rope => spec("rope", vec![ROPE], "main", B_ROPE, false, false),
            Kernel::RopePair => spec("rope_pair", vec![ROPE], "rope_pair", B_ROPE_PAIR, false, false),
            Kernel::RopeKv => spec("rope_kv", vec![ROPE], "rope_kv", B_ROPE_KV, false, true),
            Kernel::SiluMul => spec(
                "silu_mul",
                vec![ELEMENTWISE],
                "silu_mul",
                B_ELT,
                false,
                false,
            ),
            Kernel::GeluMul => spec(
                "gelu_mul",
                vec![ELEMENTWISE],
                "gelu_mul",
                B_ELT,
                false,
                false,
            ),
            Kernel::Add => spec("add", vec![ELEMENTWISE], "add", B_ELT, false, false),
            Kernel::Scale => spec("scale", vec![ELEMENTWISE], "scale", B_INPLACE, false, false),
            Kernel::AddBias => spec("add_bias", vec![ELEMENTWISE], "add_bias", B_ELT, false, false),
            Kernel::Axpy => spec("axpy", vec![ELEMENTWISE], "axpy", B_ELT, false, false),
            Kernel::Fill => spec("fill", vec![ELEMENTWISE], "fill", B_INPLACE, false, false),
            Kernel::Softmax => spec("softmax", vec![SOFTMAX, REDUCE], "main", B_ONE, true, false),
            Kernel::Argmax => spec("argmax", vec![ARGMAX], "main", B_TWO, false, false),
            Kernel::KvWrite => spec("kv_write", vec![KV_WRITE], "main", B_KV, false, true),
            Kernel::Attention => spec(
                "attention",
                vec![ATTENTION_PARAMS, ATTENTION, REDUCE],
                "main",
                B_ATTN,
                true,
                true,
            ),
            Kernel::AttentionDirect => KernelSpec {
                defines: vec!["DIRECT"],
                ..spec("attention_direct", vec![ATTENTION_PARAMS, ATTENTION, REDUCE], "main", B_ATTN, true, true)
            },
            Kernel::AttentionTiled(t) => {
                let mut defines = Vec::new();
                if t.hd256 {
                    defines.push("HD256");
                }
                if t.direct {
                    defines.push("DIRECT");
                }
                KernelSpec { defines, ..spec("attention_tiled", vec![ATTENTION_PARAMS, ATTENTION_TILED], "main", B_ATTN, false, false) }
            }
            Kernel::AttentionReduce => spec(
                "attention_reduce",
                vec![ATTENTION_PARAMS, ATTENTION_REDUCE],
                "main",
                B_TWO,
                false,
                false,
            ),
            Kernel::LayerNorm => spec("layernorm", vec![ENCODER_LAYERNORM, REDUCE], "main", B_LAYERNORM, true, false),
            Kernel::Gelu => spec("gelu", vec![ENCODER_GELU], "main", B_ONE, false, false),
            Kernel::SegmentAttention => {
                spec("segment_attention", vec![ENCODER_ATTENTION, REDUCE], "main", B_ATTN, true, false)
            }
        })
    }
}

/// Concatenates the parts of `spec` and resolves `#ifdef NAME` / `#ifndef
/// NAME` / `#else` / `#endif` lines (nestable) for the defines of `variant`;
/// the F16 variant starts with `enable f16;`.
pub(crate) fn assemble(spec: &KernelSpec, variant: Variant) -> Result<String, KernelError> {
    let defined = |name: &str| match name {
        "SUBGROUP" => variant.subgroup,
        "F16" => variant.f16,
        _ => spec.defines.contains(&name),
    };
    let mut out = String::new();
    if variant.f16 {
        out.push_str("enable f16;\n");
    }
    // Each entry: (this branch is taken, some enclosing branch is skipped).
    let mut stack: Vec<(bool, bool)> = Vec::new();
    for part in &spec.parts {
        for line in part.lines() {
            let t = line.trim();
            let active = stack
                .last()
                .is_none_or(|&(taken, outer_off)| taken && !outer_off);
            if let Some(name) = t.strip_prefix("#ifdef ") {
                stack.push((defined(name.trim()), !active));
            } else if let Some(name) = t.strip_prefix("#ifndef ") {
                stack.push((!defined(name.trim()), !active));
            } else if t == "#else" {
                let top = stack
                    .last_mut()
                    .ok_or_else(|| pp_error(spec, "#else without #ifdef"))?;
                top.0 = !top.0;
            } else if t == "#endif" {
                stack
                    .pop()
                    .ok_or_else(|| pp_error(spec, "#endif without #ifdef"))?;
            } else if active {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    if !stack.is_empty() {
        return Err(pp_error(spec, "unterminated #ifdef"));
    }
    Ok(out)
}

fn pp_error(spec: &KernelSpec, what: &str) -> KernelError {
    KernelError::Gpu(format!("shader {}: {what}", spec.label))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preprocessor_picks_branches() {
        let spec = KernelSpec {
            label: "t",
            parts: vec![
                "a\n#ifdef SUBGROUP\nb\n#ifdef F16\nc\n#else\nd\n#endif\n#else\ne\n#endif\nf",
            ],
            entry: "main",
            bindings: &[],
            uses_subgroup: true,
            uses_f16: true,
            defines: Vec::new(),
            matvec_shape: false,
        };
        let sg = assemble(
            &spec,
            Variant {
                subgroup: true,
                f16: false,
            },
        )
        .unwrap();
        assert_eq!(sg, "a\nb\nd\nf\n");
        let none = assemble(&spec, Variant::default()).unwrap();
        assert_eq!(none, "a\ne\nf\n");
    }
}
