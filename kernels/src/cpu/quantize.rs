//! Activation quantization: `x` rows to 8-bit blocks, once per matmul, so
//! the dot products with quantized weights run on integers.

use bytemuck::{Pod, Zeroable};
use half::f16;
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

/// Rounds half to even, as `_mm256_round_ps(_MM_ROUND_NEAREST)` and ggml's
/// `nearest_int` do.
/// (Adding and removing 1.5·2^23 rounds in the FPU's default mode; valid for
/// |v| < 2^22, far above the ±127 range used here. `round_ties_even` would be
/// a libm call per value.)
#[inline(always)]
fn round_even(v: f32) -> f32 {
    const MAGIC: f32 = 12_582_912.0;
    (v + MAGIC) - MAGIC
}

/// Quantizes `x` (a multiple of 32 long) into `out` (`x.len() / 32` blocks)
/// exactly as ggml's x86 `quantize_row_q8_0`/`q8_1` do: `q = round(x · 127/amax)`
/// with the scale `amax/127` stored as f16 (and `s = f16(d · Σq)`), so the
/// integer dot products see the same numbers as llama.cpp's.
pub fn quantize_q8_act(x: &[f32], out: &mut [BlockQ8Act]) {
    #[cfg(target_arch = "x86_64")]
    if super::Isa::best() == super::Isa::Avx512Vnni {
        // SAFETY: AVX-512 F/BW/VL detected (within Avx512Vnni).
        return unsafe { super::x86_quantize::quantize_q8_act(x, out) };
    }
    quantize_q8_act_ref(x, out)
}

/// The scalar twin of [`quantize_q8_act`] (which runs SIMD where the CPU has it).
pub fn quantize_q8_act_ref(x: &[f32], out: &mut [BlockQ8Act]) {
    for (xb, b) in x.chunks_exact(32).zip(out.iter_mut()) {
        let amax = xb.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let d = amax / 127.0;
        let id = if amax != 0.0 { 127.0 / amax } else { 0.0 };
        let mut sum = 0i32;
        for (q, &v) in b.qs.iter_mut().zip(xb) {
            *q = round_even(v * id) as i8;
            sum += *q as i32;
        }
        b.d = f16::from_f32(d).to_f32();
        b.s = f16::from_f32(d * sum as f32).to_f32();
    }
}

/// Quantizes `x` (a multiple of 256 long) into ggml's Q8_K layout: one f32
/// scale per 256 values and the sums of each 16 (`bsums`), which carry the
/// min and offset terms of the K-quant dot products. As ggml's
/// `quantize_row_q8_K`: the scale is `-127/max` of the signed largest value.
pub fn quantize_q8_k(x: &[f32], out: &mut [BlockQ8K]) {
    #[cfg(target_arch = "x86_64")]
    if super::Isa::best() == super::Isa::Avx512Vnni {
        // SAFETY: AVX-512 F/BW/VL detected (within Avx512Vnni).
        return unsafe { super::x86_quantize::quantize_q8_k(x, out) };
    }
    quantize_q8_k_ref(x, out)
}

/// The scalar twin of [`quantize_q8_k`] (which runs SIMD where the CPU has it).
pub fn quantize_q8_k_ref(x: &[f32], out: &mut [BlockQ8K]) {
    for (xb, b) in x.chunks_exact(QK_K).zip(out.iter_mut()) {
        let (mut amax, mut max) = (0.0f32, 0.0f32);
        for &v in xb {
            if v.abs() > amax {
                amax = v.abs();
                max = v;
            }
        }
        if amax == 0.0 {
            b.d = 0.0;
            b.qs = [0; QK_K];
            b.bsums = [0; QK_K / 16];
            continue;
        }
        let iscale = -127.0 / max;
        for (q, &v) in b.qs.iter_mut().zip(xb) {
            *q = round_even(iscale * v).min(127.0) as i8;
        }
        for (s, qs) in b.bsums.iter_mut().zip(b.qs.chunks_exact(16)) {
            *s = qs.iter().map(|&q| q as i16).sum();
        }
        b.d = 1.0 / iscale;
    }
}
