//! The 256-element super-block types: Q2_K … Q6_K and IQ4_XS.
//! Layouts as in ggml-common.h; element order as ggml's `dequantize_row_*`.
//! Each function writes `256 * blocks.len()` values.

use infer_gguf::blocks::{BlockIQ4XS, BlockQ2K, BlockQ3K, BlockQ4K, BlockQ5K, BlockQ6K};
use infer_gguf::QK_K;

use super::KVALUES_IQ4NL;

/// Q2_K: 16 groups of 16; `scales[g]` low nibble is the scale, high nibble
/// the min; `w = (d * sc) * q - (dmin * m)`. Each 32 bytes of `qs` hold four
/// 2-bit planes of 128 weights (shift 0, 2, 4, 6), 16 weights per group.
pub fn dequantize_q2_k(blocks: &[BlockQ2K], dst: &mut [f32]) {
    for (b, y) in blocks.iter().zip(dst.chunks_exact_mut(QK_K)) {
        let (d, dmin) = (b.d.to_f32(), b.dmin.to_f32());
        let mut out = y.iter_mut();
        let mut is = 0;
        for q in b.qs.chunks_exact(32) {
            for shift in [0, 2, 4, 6] {
                for half in q.chunks_exact(16) {
                    let sc = b.scales[is];
                    is += 1;
                    let (dl, ml) = (d * (sc & 0xF) as f32, dmin * (sc >> 4) as f32);
                    for (&qv, o) in half.iter().zip(out.by_ref()) {
                        *o = dl * ((qv >> shift) & 3) as f32 - ml;
                    }
                }
            }
        }
    }
}

/// Unpacks Q3_K's sixteen 6-bit scales from 12 bytes: low 4 bits in bytes
/// 0..8 (group g and g + 8 share byte g % 8), high 2 bits in bytes 8..12.
/// Returned with the offset 32 removed.
pub fn q3_k_scales(packed: &[u8; 12]) -> [i8; 16] {
    let mut out = [0i8; 16];
    for (g, o) in out.iter_mut().enumerate() {
        let low = if g < 8 { packed[g] & 0xF } else { packed[g - 8] >> 4 };
        let high = (packed[8 + g % 4] >> (2 * (g / 4))) & 3;
        *o = ((low | (high << 4)) as i32 - 32) as i8;
    }
    out
}

/// Q3_K: 16 groups of 16, `w = (d * sc) * q`, q = 2 low bits from `qs`
/// (planes as Q2_K) minus 4 when the weight's `hmask` bit is clear.
pub fn dequantize_q3_k(blocks: &[BlockQ3K], dst: &mut [f32]) {
    for (b, y) in blocks.iter().zip(dst.chunks_exact_mut(QK_K)) {
        let d = b.d.to_f32();
        let scales = q3_k_scales(&b.scales);
        let mut out = y.iter_mut();
        let mut is = 0;
        let mut m = 1u8;
        for q in b.qs.chunks_exact(32) {
            for shift in [0, 2, 4, 6] {
                for (h, half) in q.chunks_exact(16).enumerate() {
                    let dl = d * scales[is] as f32;
                    is += 1;
                    let hm = &b.hmask[16 * h..16 * h + 16];
                    for ((&qv, &hv), o) in half.iter().zip(hm).zip(out.by_ref()) {
                        let v = ((qv >> shift) & 3) as i32 - if hv & m != 0 { 0 } else { 4 };
                        *o = dl * v as f32;
                    }
                }
                m <<= 1;
            }
        }
    }
}

/// Scale and min of group `j` (0..8) of a Q4_K/Q5_K block: 6 bits each,
/// packed in 12 bytes (ggml's `get_scale_min_k4`).
#[inline]
pub fn get_scale_min_k4(j: usize, q: &[u8; 12]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        ((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4), (q[j + 4] >> 4) | ((q[j] >> 6) << 4))
    }
}

/// Q4_K: 8 groups of 32, `w = (d * sc) * q - (dmin * m)`. Each 32 bytes of
/// `qs` hold two groups: low nibbles then high nibbles.
pub fn dequantize_q4_k(blocks: &[BlockQ4K], dst: &mut [f32]) {
    for (b, y) in blocks.iter().zip(dst.chunks_exact_mut(QK_K)) {
        let (d, dmin) = (b.d.to_f32(), b.dmin.to_f32());
        for (p, (q, y)) in b.qs.chunks_exact(32).zip(y.chunks_exact_mut(64)).enumerate() {
            let (sc1, m1) = get_scale_min_k4(2 * p, &b.scales);
            let (sc2, m2) = get_scale_min_k4(2 * p + 1, &b.scales);
            let (d1, m1) = (d * sc1 as f32, dmin * m1 as f32);
            let (d2, m2) = (d * sc2 as f32, dmin * m2 as f32);
            for l in 0..32 {
                y[l] = d1 * (q[l] & 0xF) as f32 - m1;
                y[l + 32] = d2 * (q[l] >> 4) as f32 - m2;
            }
        }
    }
}

/// Q5_K: Q4_K plus a fifth bit: bit `2p` of `qh[l]` for weight l of group
/// 2p, bit `2p + 1` for group 2p + 1.
pub fn dequantize_q5_k(blocks: &[BlockQ5K], dst: &mut [f32]) {
    for (b, y) in blocks.iter().zip(dst.chunks_exact_mut(QK_K)) {
        let (d, dmin) = (b.d.to_f32(), b.dmin.to_f32());
        for (p, (q, y)) in b.qs.chunks_exact(32).zip(y.chunks_exact_mut(64)).enumerate() {
            let (sc1, m1) = get_scale_min_k4(2 * p, &b.scales);
            let (sc2, m2) = get_scale_min_k4(2 * p + 1, &b.scales);
            let (d1, m1) = (d * sc1 as f32, dmin * m1 as f32);
            let (d2, m2) = (d * sc2 as f32, dmin * m2 as f32);
            let (u1, u2) = (1u8 << (2 * p), 1u8 << (2 * p + 1));
            for l in 0..32 {
                let h1 = if b.qh[l] & u1 != 0 { 16 } else { 0 };
                let h2 = if b.qh[l] & u2 != 0 { 16 } else { 0 };
                y[l] = d1 * ((q[l] & 0xF) + h1) as f32 - m1;
                y[l + 32] = d2 * ((q[l] >> 4) + h2) as f32 - m2;
            }
        }
    }
}

/// Q6_K: 16 groups of 16 with signed 8-bit scales, `w = (d * sc) * (q - 32)`.
/// Per 128 weights: 64 bytes of `ql` (low nibbles: weights 0..32 and 64..96
/// from bytes 0..32, 32..64 and 96..128 from bytes 32..64) and 32 bytes of
/// `qh` (2 bits each, shifts 0/2/4/6 for the four quarters).
pub fn dequantize_q6_k(blocks: &[BlockQ6K], dst: &mut [f32]) {
    for (b, y) in blocks.iter().zip(dst.chunks_exact_mut(QK_K)) {
        let d = b.d.to_f32();
        for n in 0..2 {
            let ql = &b.ql[64 * n..64 * n + 64];
            let qh = &b.qh[32 * n..32 * n + 32];
            let sc = &b.scales[8 * n..8 * n + 8];
            let y = &mut y[128 * n..128 * n + 128];
            for l in 0..32 {
                let is = l / 16;
                let q1 = ((ql[l] & 0xF) | ((qh[l] & 3) << 4)) as i32 - 32;
                let q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) as i32 - 32;
                let q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) as i32 - 32;
                let q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) as i32 - 32;
                y[l] = d * sc[is] as f32 * q1 as f32;
                y[l + 32] = d * sc[is + 2] as f32 * q2 as f32;
                y[l + 64] = d * sc[is + 4] as f32 * q3 as f32;
                y[l + 96] = d * sc[is + 6] as f32 * q4 as f32;
            }
        }
    }
}

/// IQ4_XS: 8 groups of 32 with 6-bit scales (low 4 bits in `scales_l`,
/// nibble g % 2 of byte g / 2; high 2 bits at bit 2g of `scales_h`),
/// `w = (d * (ls - 32)) * KVALUES_IQ4NL[q]`, nibbles per group as Q4_0.
pub fn dequantize_iq4_xs(blocks: &[BlockIQ4XS], dst: &mut [f32]) {
    for (b, y) in blocks.iter().zip(dst.chunks_exact_mut(QK_K)) {
        let d = b.d.to_f32();
        for (g, (qs, y)) in b.qs.chunks_exact(16).zip(y.chunks_exact_mut(32)).enumerate() {
            let ls = ((b.scales_l[g / 2] >> (4 * (g % 2))) & 0xF) as i32 | ((((b.scales_h >> (2 * g)) & 3) as i32) << 4);
            let dl = d * (ls - 32) as f32;
            for j in 0..16 {
                y[j] = dl * KVALUES_IQ4NL[(qs[j] & 0xF) as usize] as f32;
                y[j + 16] = dl * KVALUES_IQ4NL[(qs[j] >> 4) as usize] as f32;
            }
        }
    }
}
