//! The GPU ops of encoder models (BERT): LayerNorm with bias, exact GELU
//! and bidirectional attention inside one segment of the batch. Their
//! references are [`crate::ops::layernorm_ref`], [`crate::ops::gelu_erf`]
//! and [`crate::ops::attention_segments_ref`]; `kernels/tests/gpu_encoder.rs`
//! compares them. Each params struct is the twin of the WGSL struct of the
//! same name in `kernels/src/wgsl/encoder_*.wgsl`.

use bytemuck::{Pod, Zeroable};

use super::ops::{need, shape_err, u32_of};
use super::shaders::Kernel;
use super::{GpuBuffer, GpuStep};
use crate::KernelError;

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct NormParams {
    rows: u32,
    dim: u32,
    eps: f32,
    _pad0: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct GeluParams {
    n: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct EncAttnParams {
    n: u32,
    n_heads: u32,
    n_kv_heads: u32,
    head_dim: u32,
    tok0: u32,
    scale: f32,
    _pad0: u32,
    _pad1: u32,
}

/// Keys of one segment the attention kernel holds in workgroup memory
/// (`MAX_KEYS` in `encoder_attention.wgsl`); BERT's context is 512.
pub const ENCODER_MAX_KEYS: usize = 1024;
/// Largest head the attention kernel stages (`MAX_HEAD_DIM`).
const MAX_HEAD_DIM: usize = 256;

/// One segment of an encoder attention: rows `tok0..tok0 + n` of q, k, v
/// and out, every query seeing every key of the segment.
#[derive(Debug, Clone, Copy)]
pub struct SegmentAttn {
    pub tok0: usize,
    pub n: usize,
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub head_dim: usize,
    /// Usually `1 / sqrt(head_dim)`.
    pub scale: f32,
}

impl GpuStep {
    /// LayerNorm with bias of `rows` rows of `dim` values of `x`, in place:
    /// `(x - mean) / sqrt(var + eps) * weight + bias`.
    pub fn layernorm(
        &mut self,
        x: &GpuBuffer,
        weight: &GpuBuffer,
        bias: &GpuBuffer,
        (rows, dim): (usize, usize),
        eps: f32,
    ) -> Result<(), KernelError> {
        const OP: &str = "gpu layernorm";
        need(OP, "weight", weight, dim)?;
        need(OP, "bias", bias, dim)?;
        need(OP, "x", x, rows * dim)?;
        let p = NormParams { rows: u32_of(OP, rows)?, dim: u32_of(OP, dim)?, eps, _pad0: 0 };
        let groups = self.groups_2d(rows)?;
        self.dispatch(Kernel::LayerNorm, &p, &[(1, x.raw()), (2, weight.raw()), (3, bias.raw())], groups)
    }

    /// Exact GELU in place on the first `n` values of `x`.
    pub fn gelu(&mut self, x: &GpuBuffer, n: usize) -> Result<(), KernelError> {
        const OP: &str = "gpu gelu";
        need(OP, "x", x, n)?;
        let p = GeluParams { n: u32_of(OP, n)?, _pad0: 0, _pad1: 0, _pad2: 0 };
        let groups = self.groups_2d(n.div_ceil(64))?;
        self.dispatch(Kernel::Gelu, &p, &[(1, x.raw())], groups)
    }

    /// Bidirectional attention of one segment (`s`) into `out`.
    pub fn segment_attention(
        &mut self,
        q: &GpuBuffer,
        k: &GpuBuffer,
        v: &GpuBuffer,
        out: &GpuBuffer,
        s: SegmentAttn,
    ) -> Result<(), KernelError> {
        const OP: &str = "gpu segment_attention";
        if s.n > ENCODER_MAX_KEYS
            || s.head_dim > MAX_HEAD_DIM
            || s.n_kv_heads == 0
            || s.n_heads % s.n_kv_heads != 0
        {
            return Err(shape_err(
                OP,
                format!(
                    "a segment of {} rows (at most {ENCODER_MAX_KEYS}), {} heads over {} KV heads of {} (at most {MAX_HEAD_DIM})",
                    s.n, s.n_heads, s.n_kv_heads, s.head_dim
                ),
            ));
        }
        let end = s.tok0 + s.n;
        need(OP, "q", q, end * s.n_heads * s.head_dim)?;
        need(OP, "out", out, end * s.n_heads * s.head_dim)?;
        need(OP, "k", k, end * s.n_kv_heads * s.head_dim)?;
        need(OP, "v", v, end * s.n_kv_heads * s.head_dim)?;
        let p = EncAttnParams {
            n: u32_of(OP, s.n)?,
            n_heads: u32_of(OP, s.n_heads)?,
            n_kv_heads: u32_of(OP, s.n_kv_heads)?,
            head_dim: u32_of(OP, s.head_dim)?,
            tok0: u32_of(OP, s.tok0)?,
            scale: s.scale,
            _pad0: 0,
            _pad1: 0,
        };
        let groups = [u32_of(OP, s.n)?, u32_of(OP, s.n_heads)?, 1];
        self.dispatch(
            Kernel::SegmentAttention,
            &p,
            &[(1, q.raw()), (2, k.raw()), (3, v.raw()), (4, out.raw())],
            groups,
        )
    }
}
