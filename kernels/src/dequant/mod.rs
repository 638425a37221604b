//! Reference dequantization: one plain-Rust function per block type, the
//! specification the fast kernels and the WGSL shaders are tested against.
//!
//! Every function reproduces ggml's `dequantize_row_*` (ggml-quants.c) bit for
//! bit, including the order of the float operations (`(d * sc) * q - (dmin * m)`,
//! never fused), so the outputs can be compared as f32 bits.

mod k_quants;
mod legacy;

use half::{bf16, f16};
use infer_gguf::blocks::{as_blocks, Block};
use infer_gguf::QuantType;

use crate::KernelError;

pub use k_quants::{
    dequantize_iq4_xs, dequantize_q2_k, dequantize_q3_k, dequantize_q4_k, dequantize_q5_k, dequantize_q6_k,
    get_scale_min_k4, q3_k_scales,
};
pub use legacy::{
    dequantize_iq4_nl, dequantize_q4_0, dequantize_q4_1, dequantize_q5_0, dequantize_q5_1, dequantize_q8_0,
    KVALUES_IQ4NL,
};

/// Whether [`dequantize`] handles `ty`.
pub fn supports(ty: QuantType) -> bool {
    use QuantType::*;
    matches!(
        ty,
        F32 | F16 | BF16 | Q4_0 | Q4_1 | Q5_0 | Q5_1 | Q8_0 | Q2K | Q3K | Q4K | Q5K | Q6K | IQ4_NL | IQ4_XS
    )
}

/// Dequantizes `dst.len()` elements of type `ty` from `src`, which must hold
/// exactly the bytes for them.
///
/// `src` need not be aligned for the block type: a misaligned slice (e.g. a
/// sub-slice of a byte buffer) is copied into aligned blocks first.
pub fn dequantize(ty: QuantType, src: &[u8], dst: &mut [f32]) -> Result<(), KernelError> {
    if !supports(ty) {
        return Err(KernelError::Unsupported(ty, "dequantize"));
    }
    let n = dst.len();
    if n % ty.block_size() != 0 {
        return Err(KernelError::Shape {
            op: "dequantize",
            detail: format!("{n} elements is not a multiple of the {ty} block size {}", ty.block_size()),
        });
    }
    let want = n / ty.block_size() * ty.block_bytes();
    if src.len() != want {
        return Err(KernelError::Shape {
            op: "dequantize",
            detail: format!("{n} {ty} elements need {want} bytes, got {}", src.len()),
        });
    }
    use QuantType::*;
    match ty {
        F32 => dequantize_f32(src, dst),
        F16 => dequantize_f16(src, dst),
        BF16 => dequantize_bf16(src, dst),
        Q4_0 => with_blocks(src, |b| dequantize_q4_0(b, dst)),
        Q4_1 => with_blocks(src, |b| dequantize_q4_1(b, dst)),
        Q5_0 => with_blocks(src, |b| dequantize_q5_0(b, dst)),
        Q5_1 => with_blocks(src, |b| dequantize_q5_1(b, dst)),
        Q8_0 => with_blocks(src, |b| dequantize_q8_0(b, dst)),
        Q2K => with_blocks(src, |b| dequantize_q2_k(b, dst)),
        Q3K => with_blocks(src, |b| dequantize_q3_k(b, dst)),
        Q4K => with_blocks(src, |b| dequantize_q4_k(b, dst)),
        Q5K => with_blocks(src, |b| dequantize_q5_k(b, dst)),
        Q6K => with_blocks(src, |b| dequantize_q6_k(b, dst)),
        IQ4_NL => with_blocks(src, |b| dequantize_iq4_nl(b, dst)),
        IQ4_XS => with_blocks(src, |b| dequantize_iq4_xs(b, dst)),
        _ => return Err(KernelError::Unsupported(ty, "dequantize")),
    }
    Ok(())
}

/// Runs `f` on `src` viewed as blocks, copying into an aligned buffer only
/// when `src` is not aligned for `B` (the length was checked by the caller).
pub(crate) fn with_blocks<B: Block, R>(src: &[u8], f: impl FnOnce(&[B]) -> R) -> R {
    match as_blocks::<B>(src) {
        Some(blocks) => f(blocks),
        None => f(&bytemuck::pod_collect_to_vec::<u8, B>(src)),
    }
}

/// F32 from little-endian bytes (`src.len() == 4 * dst.len()`).
pub fn dequantize_f32(src: &[u8], dst: &mut [f32]) {
    for (d, s) in dst.iter_mut().zip(src.chunks_exact(4)) {
        *d = f32::from_le_bytes([s[0], s[1], s[2], s[3]]);
    }
}

/// IEEE half floats, exactly widened.
pub fn dequantize_f16(src: &[u8], dst: &mut [f32]) {
    for (d, s) in dst.iter_mut().zip(src.chunks_exact(2)) {
        *d = f16::from_le_bytes([s[0], s[1]]).to_f32();
    }
}

/// bfloat16: the high half of an f32.
pub fn dequantize_bf16(src: &[u8], dst: &mut [f32]) {
    for (d, s) in dst.iter_mut().zip(src.chunks_exact(2)) {
        *d = bf16::from_le_bytes([s[0], s[1]]).to_f32();
    }
}
