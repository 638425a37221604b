//! Activation quantization: `x` rows to 8-bit blocks, once per matmul, so
//! the dot products with quantized weights run on integers.

use bytemuck::{Pod, Zeroable};
use infer_gguf::blocks::BlockQ8K;
use infer_gguf::QK_K;

/// 32 activations as `x ≈ d * q`, with `s = d * Σq` for the weight types
/// that carry a min (Q4_1, Q5_1): like ggml's `block_q8_1` but with f32
/// scales, which cost nothing here and lose less.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct BlockQ8Act {
    pub d: f32,
    pub s: f32,
    pub qs: [i8; 32],
}

/// The scale and its inverse for a block whose largest magnitude is `amax`:
/// `q = round(x / d)` lands in [-127, 127] (never -128, so the sign trick
/// of the SIMD kernels cannot overflow).
#[inline]
fn scale(amax: f32) -> (f32, f32) {
    let d = amax / 127.0;
    (d, if d != 0.0 { 1.0 / d } else { 0.0 })
}

#[inline]
fn q8(v: f32, id: f32) -> i8 {
    (v * id).round().clamp(-127.0, 127.0) as i8
}

/// Quantizes `x` (a multiple of 32 long) into `out` (`x.len() / 32` blocks).
pub fn quantize_q8_act(x: &[f32], out: &mut [BlockQ8Act]) {
    for (xb, b) in x.chunks_exact(32).zip(out.iter_mut()) {
        let amax = xb.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let (d, id) = scale(amax);
        let mut sum = 0i32;
        for (q, &v) in b.qs.iter_mut().zip(xb) {
            *q = q8(v, id);
            sum += *q as i32;
        }
        b.d = d;
        b.s = d * sum as f32;
    }
}

/// Quantizes `x` (a multiple of 256 long) into ggml's Q8_K layout: one f32
/// scale per 256 values and the sums of each 16 (`bsums`), which carry the
/// min and offset terms of the K-quant dot products.
pub fn quantize_q8_k(x: &[f32], out: &mut [BlockQ8K]) {
    for (xb, b) in x.chunks_exact(QK_K).zip(out.iter_mut()) {
        let amax = xb.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let (d, id) = scale(amax);
        for (q, &v) in b.qs.iter_mut().zip(xb) {
            *q = q8(v, id);
        }
        for (s, qs) in b.bsums.iter_mut().zip(b.qs.chunks_exact(16)) {
            *s = qs.iter().map(|&q| q as i16).sum();
        }
        b.d = d;
    }
}
