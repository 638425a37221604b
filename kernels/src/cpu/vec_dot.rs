//! Scalar dot products of one weight row with one quantized activation row:
//! the portable fallback and the twins the SIMD kernels are tested against.
//! Each block's dot is an exact integer; only the f32 accumulation order
//! differs from the SIMD versions.

use infer_gguf::blocks::{BlockQ4K, BlockQ4_0, BlockQ4_1, BlockQ5K, BlockQ5_0, BlockQ5_1, BlockQ6K, BlockQ8K, BlockQ8_0};

use super::quantize::BlockQ8Act;
use crate::dequant::get_scale_min_k4;

/// Σ over a block of `w[i] * x[i]`, weights given by index.
#[inline]
fn idot32(w: impl Fn(usize) -> i32, x: &[i8; 32]) -> i32 {
    (0..32).map(|i| w(i) * x[i] as i32).sum()
}

/// Nibble `i` of a Q4/Q5 block: low nibbles are weights 0..16, high 16..32.
#[inline]
fn nibble(qs: &[u8; 16], i: usize) -> i32 {
    if i < 16 { (qs[i] & 0xF) as i32 } else { (qs[i - 16] >> 4) as i32 }
}

/// Fifth bit of weight `i` of a Q5_0/Q5_1 block (bit i of `qh`), as 0 or 16.
#[inline]
fn bit5(qh: &[u8; 4], i: usize) -> i32 {
    (((u32::from_le_bytes(*qh) >> i) & 1) << 4) as i32
}

pub fn vec_dot_q4_0_q8(w: &[BlockQ4_0], x: &[BlockQ8Act]) -> f32 {
    w.iter().zip(x).map(|(w, x)| (w.d.to_f32() * x.d) * idot32(|i| nibble(&w.qs, i) - 8, &x.qs) as f32).sum()
}

pub fn vec_dot_q4_1_q8(w: &[BlockQ4_1], x: &[BlockQ8Act]) -> f32 {
    w.iter()
        .zip(x)
        .map(|(w, x)| (w.d.to_f32() * x.d) * idot32(|i| nibble(&w.qs, i), &x.qs) as f32 + w.m.to_f32() * x.s)
        .sum()
}

pub fn vec_dot_q5_0_q8(w: &[BlockQ5_0], x: &[BlockQ8Act]) -> f32 {
    w.iter()
        .zip(x)
        .map(|(w, x)| (w.d.to_f32() * x.d) * idot32(|i| (nibble(&w.qs, i) | bit5(&w.qh, i)) - 16, &x.qs) as f32)
        .sum()
}

pub fn vec_dot_q5_1_q8(w: &[BlockQ5_1], x: &[BlockQ8Act]) -> f32 {
    w.iter()
        .zip(x)
        .map(|(w, x)| {
            (w.d.to_f32() * x.d) * idot32(|i| nibble(&w.qs, i) | bit5(&w.qh, i), &x.qs) as f32 + w.m.to_f32() * x.s
        })
        .sum()
}

pub fn vec_dot_q8_0_q8(w: &[BlockQ8_0], x: &[BlockQ8Act]) -> f32 {
    w.iter().zip(x).map(|(w, x)| (w.d.to_f32() * x.d) * idot32(|i| w.qs[i] as i32, &x.qs) as f32).sum()
}

/// Σ_g m_g · (x sum over group g of 32), from the per-16 sums of Q8_K.
#[inline]
fn mins_dot(mins: &[u8; 8], bsums: &[i16; 16]) -> i32 {
    (0..8).map(|g| mins[g] as i32 * (bsums[2 * g] as i32 + bsums[2 * g + 1] as i32)).sum()
}

/// Q4_K/Q5_K: `Σ w x = d_x (d Σ_g sc_g Σ q x − dmin Σ_g m_g Σ x)`.
#[inline]
fn k4_block(w_d: f32, w_dmin: f32, scales: &[u8; 12], q: impl Fn(usize) -> i32, x: &BlockQ8K) -> f32 {
    let (mut sc, mut mn) = ([0u8; 8], [0u8; 8]);
    for g in 0..8 {
        (sc[g], mn[g]) = get_scale_min_k4(g, scales);
    }
    let isum: i32 = (0..8)
        .map(|g| sc[g] as i32 * (0..32).map(|l| q(32 * g + l) * x.qs[32 * g + l] as i32).sum::<i32>())
        .sum();
    (w_d * x.d) * isum as f32 - (w_dmin * x.d) * mins_dot(&mn, &x.bsums) as f32
}

pub fn vec_dot_q4_k_q8k(w: &[BlockQ4K], x: &[BlockQ8K]) -> f32 {
    w.iter()
        .zip(x)
        .map(|(w, x)| {
            // Weight i: group g = i / 32; groups 2p, 2p+1 share qs[32p..32p+32].
            let q = |i: usize| {
                let (g, l) = (i / 32, i % 32);
                let b = w.qs[32 * (g / 2) + l];
                (if g % 2 == 0 { b & 0xF } else { b >> 4 }) as i32
            };
            k4_block(w.d.to_f32(), w.dmin.to_f32(), &w.scales, q, x)
        })
        .sum()
}

pub fn vec_dot_q5_k_q8k(w: &[BlockQ5K], x: &[BlockQ8K]) -> f32 {
    w.iter()
        .zip(x)
        .map(|(w, x)| {
            let q = |i: usize| {
                let (g, l) = (i / 32, i % 32);
                let b = w.qs[32 * (g / 2) + l];
                let lo = if g % 2 == 0 { b & 0xF } else { b >> 4 };
                (lo | (((w.qh[l] >> g) & 1) << 4)) as i32
            };
            k4_block(w.d.to_f32(), w.dmin.to_f32(), &w.scales, q, x)
        })
        .sum()
}

/// Q6_K weight `i` (0..256) before the −32 offset; layout as `dequantize_q6_k`.
#[inline]
pub(crate) fn q6_k_quant(w: &BlockQ6K, i: usize) -> i32 {
    let (n, j) = (i / 128, i % 128);
    let (quarter, l) = (j / 32, j % 32);
    let ql = w.ql[64 * n + 32 * (quarter % 2) + l];
    let low = if quarter < 2 { ql & 0xF } else { ql >> 4 };
    let high = (w.qh[32 * n + l] >> (2 * quarter)) & 3;
    (low | (high << 4)) as i32
}

pub fn vec_dot_q6_k_q8k(w: &[BlockQ6K], x: &[BlockQ8K]) -> f32 {
    w.iter()
        .zip(x)
        .map(|(w, x)| {
            let isum: i32 = (0..16)
                .map(|g| {
                    let dot: i32 = (0..16).map(|l| q6_k_quant(w, 16 * g + l) * x.qs[16 * g + l] as i32).sum();
                    w.scales[g] as i32 * (dot - 32 * x.bsums[g] as i32)
                })
                .sum();
            (w.d.to_f32() * x.d) * isum as f32
        })
        .sum()
}
