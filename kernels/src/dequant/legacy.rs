//! The 32-element block types: Q4_0, Q4_1, Q5_0, Q5_1, Q8_0 and IQ4_NL.
//! Layouts as in ggml-common.h; each function writes `32 * blocks.len()`
//! values (`dst` must be at least that long).

use infer_gguf::blocks::{BlockIQ4NL, BlockQ4_0, BlockQ4_1, BlockQ5_0, BlockQ5_1, BlockQ8_0};

/// The non-linear 4-bit codebook of IQ4_NL and IQ4_XS (`kvalues_iq4nl`).
pub const KVALUES_IQ4NL: [i8; 16] = [-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113];

/// Q4_0: `w = d * (q - 8)`; `qs[j]` low nibble is weight j, high nibble weight j + 16.
pub fn dequantize_q4_0(blocks: &[BlockQ4_0], dst: &mut [f32]) {
    for (b, y) in blocks.iter().zip(dst.chunks_exact_mut(32)) {
        let d = b.d.to_f32();
        for j in 0..16 {
            y[j] = ((b.qs[j] & 0xF) as i32 - 8) as f32 * d;
            y[j + 16] = ((b.qs[j] >> 4) as i32 - 8) as f32 * d;
        }
    }
}

/// Q4_1: `w = d * q + m`, nibbles as Q4_0.
pub fn dequantize_q4_1(blocks: &[BlockQ4_1], dst: &mut [f32]) {
    for (b, y) in blocks.iter().zip(dst.chunks_exact_mut(32)) {
        let (d, m) = (b.d.to_f32(), b.m.to_f32());
        for j in 0..16 {
            y[j] = (b.qs[j] & 0xF) as f32 * d + m;
            y[j + 16] = (b.qs[j] >> 4) as f32 * d + m;
        }
    }
}

/// The fifth bits of Q5_0/Q5_1 as `0x10` or 0 for weights j and j + 16:
/// bit j of the little-endian `qh` belongs to weight j.
#[inline]
fn q5_high(qh: u32, j: usize) -> (u8, u8) {
    ((((qh >> j) << 4) & 0x10) as u8, ((qh >> (j + 12)) & 0x10) as u8)
}

/// Q5_0: `w = d * (q - 16)`, q = nibble | fifth bit from `qh`.
pub fn dequantize_q5_0(blocks: &[BlockQ5_0], dst: &mut [f32]) {
    for (b, y) in blocks.iter().zip(dst.chunks_exact_mut(32)) {
        let d = b.d.to_f32();
        let qh = u32::from_le_bytes(b.qh);
        for j in 0..16 {
            let (h0, h1) = q5_high(qh, j);
            y[j] = (((b.qs[j] & 0xF) | h0) as i32 - 16) as f32 * d;
            y[j + 16] = (((b.qs[j] >> 4) | h1) as i32 - 16) as f32 * d;
        }
    }
}

/// Q5_1: `w = d * q + m`, q as Q5_0 without the offset.
pub fn dequantize_q5_1(blocks: &[BlockQ5_1], dst: &mut [f32]) {
    for (b, y) in blocks.iter().zip(dst.chunks_exact_mut(32)) {
        let (d, m) = (b.d.to_f32(), b.m.to_f32());
        let qh = u32::from_le_bytes(b.qh);
        for j in 0..16 {
            let (h0, h1) = q5_high(qh, j);
            y[j] = ((b.qs[j] & 0xF) | h0) as f32 * d + m;
            y[j + 16] = ((b.qs[j] >> 4) | h1) as f32 * d + m;
        }
    }
}

/// Q8_0: `w = d * q`.
pub fn dequantize_q8_0(blocks: &[BlockQ8_0], dst: &mut [f32]) {
    for (b, y) in blocks.iter().zip(dst.chunks_exact_mut(32)) {
        let d = b.d.to_f32();
        for (o, &q) in y.iter_mut().zip(&b.qs) {
            *o = q as f32 * d;
        }
    }
}

/// IQ4_NL: `w = d * KVALUES_IQ4NL[q]`, nibbles as Q4_0.
pub fn dequantize_iq4_nl(blocks: &[BlockIQ4NL], dst: &mut [f32]) {
    for (b, y) in blocks.iter().zip(dst.chunks_exact_mut(32)) {
        let d = b.d.to_f32();
        for j in 0..16 {
            y[j] = d * KVALUES_IQ4NL[(b.qs[j] & 0xF) as usize] as f32;
            y[j + 16] = d * KVALUES_IQ4NL[(b.qs[j] >> 4) as usize] as f32;
        }
    }
}
