//! Repacked K-quants (Q4_K, Q5_K, Q6_K): eight rows of one 256-weight
//! super-block interleaved, as [`super::repack`] does for the 32-weight
//! types, so one integer dot product serves eight rows and each
//! super-block's scales are read once for all tokens of a pass.
//!
//! Layouts (row `r < 8`, 4-byte column chunks; weights as in ggml-common.h):
//! - [`BlockQ4Kx8`]: f16 `d` and `dmin` of the eight rows; `scales[8g + r]`
//!   the 6-bit scale of row `r`'s group `g` (of 32 weights) and
//!   `mins[16q + 2r + e]` the min of group `2q + e`, unpacked to bytes
//!   (2.8 % more than ggml's 12 packed bytes per row, no per-row decoding);
//!   `qs[32(8p + k) + 4r + j]` is row `r`'s byte `qs[32p + 4k + j]`, whose
//!   low nibble is weight `64p + 4k + j` (group `2p`) and high nibble weight
//!   `64p + 32 + 4k + j` (group `2p + 1`).
//! - [`BlockQ5Kx8`]: as Q4_K plus `qh[8g + k]`, whose bit `4r + j` is the
//!   fifth bit of row `r`'s weight `32g + 4k + j`.
//! - [`BlockQ6Kx8`]: f16 `d`; `scales[16q + 2r + e]` row `r`'s signed scale
//!   of group `2q + e` (of 16 weights); chunk `c < 64` holds weights
//!   `4c..4c + 4`: its low 4 bits are the low (`c < 32`) or high nibbles of
//!   `ql[32(c % 32) + 4r + j]`, its top 2 bits bits `2(c / 16)..` of
//!   `qh[32(c % 16) + 4r + j]` (the same size as the original).
//!
//! Every layout stores unsigned weights; the kernels take the mins (Q4_K,
//! Q5_K) and Q6_K's −32 offset from per-group sums of the activations
//! ([`BlockQ8KAct`]).

use bytemuck::{Pod, Zeroable};
use half::f16;
use infer_gguf::blocks::{BlockQ4K, BlockQ5K, BlockQ6K, BlockQ8K};
use infer_gguf::QK_K;

use super::quantize::quantize_q8_k;
use super::repack::PACK_ROWS;
use crate::dequant::get_scale_min_k4;

/// One super-block of eight Q4_K rows, interleaved (see the module docs).
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct BlockQ4Kx8 {
    pub d: [f16; PACK_ROWS],
    pub dmin: [f16; PACK_ROWS],
    pub scales: [u8; 8 * PACK_ROWS],
    pub mins: [u8; 8 * PACK_ROWS],
    pub qs: [u8; QK_K / 2 * PACK_ROWS],
}

/// One super-block of eight Q5_K rows, interleaved (see the module docs).
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct BlockQ5Kx8 {
    pub d: [f16; PACK_ROWS],
    pub dmin: [f16; PACK_ROWS],
    pub scales: [u8; 8 * PACK_ROWS],
    pub mins: [u8; 8 * PACK_ROWS],
    pub qh: [u32; 64],
    pub qs: [u8; QK_K / 2 * PACK_ROWS],
}

/// One super-block of eight Q6_K rows, interleaved (see the module docs).
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct BlockQ6Kx8 {
    pub d: [f16; PACK_ROWS],
    pub scales: [i8; 16 * PACK_ROWS],
    pub ql: [u8; QK_K / 2 * PACK_ROWS],
    pub qh: [u8; QK_K / 4 * PACK_ROWS],
}

const _: () = assert!(std::mem::size_of::<BlockQ6Kx8>() == PACK_ROWS * std::mem::size_of::<BlockQ6K>());

/// 256 activations for the packed K-quant kernels: ggml's Q8_K plus the
/// sums of each 32 (`gsums`, ≤ 32·128 in magnitude), which the Q4_K/Q5_K
/// mins multiply. Pairs of `bsums`/`gsums` are read as one `i32`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct BlockQ8KAct {
    pub d: f32,
    pub qs: [i8; QK_K],
    pub bsums: [i16; QK_K / 16],
    pub gsums: [i16; QK_K / 32],
}

/// Quantizes `x` (a multiple of 256 long) as [`quantize_q8_k`] does, adding `gsums`.
pub fn quantize_q8_k_act(x: &[f32], out: &mut [BlockQ8KAct]) {
    let mut k = [BlockQ8K { d: 0.0, qs: [0; QK_K], bsums: [0; QK_K / 16] }];
    for (xb, o) in x.chunks_exact(QK_K).zip(out.iter_mut()) {
        quantize_q8_k(xb, &mut k);
        (o.d, o.qs, o.bsums) = (k[0].d, k[0].qs, k[0].bsums);
        for (g, s) in o.gsums.iter_mut().enumerate() {
            *s = o.bsums[2 * g] + o.bsums[2 * g + 1];
        }
    }
}

/// The scale/min bytes of [`BlockQ4Kx8`] and [`BlockQ5Kx8`] for row `r`.
fn put_k4_scales(src: &[u8; 12], scales: &mut [u8; 64], mins: &mut [u8; 64], r: usize) {
    for g in 0..8 {
        let (sc, m) = get_scale_min_k4(g, src);
        scales[8 * g + r] = sc;
        mins[16 * (g / 2) + 2 * r + g % 2] = m;
    }
}

/// Row `r`'s `qs` into its 4-byte chunks of an interleaved block.
fn put_k4_qs(src: &[u8; QK_K / 2], qs: &mut [u8; QK_K / 2 * PACK_ROWS], r: usize) {
    for p in 0..4 {
        for k in 0..8 {
            let at = 32 * (8 * p + k) + 4 * r;
            qs[at..at + 4].copy_from_slice(&src[32 * p + 4 * k..32 * p + 4 * k + 4]);
        }
    }
}

/// Copies row `r`'s block into an interleaved Q4_K block.
pub(crate) fn put_q4_k(s: &BlockQ4K, pb: &mut BlockQ4Kx8, r: usize) {
    (pb.d[r], pb.dmin[r]) = (s.d, s.dmin);
    put_k4_scales(&s.scales, &mut pb.scales, &mut pb.mins, r);
    put_k4_qs(&s.qs, &mut pb.qs, r);
}

/// Copies row `r`'s block into an interleaved Q5_K block.
pub(crate) fn put_q5_k(s: &BlockQ5K, pb: &mut BlockQ5Kx8, r: usize) {
    (pb.d[r], pb.dmin[r]) = (s.d, s.dmin);
    put_k4_scales(&s.scales, &mut pb.scales, &mut pb.mins, r);
    put_k4_qs(&s.qs, &mut pb.qs, r);
    for g in 0..8 {
        for k in 0..8 {
            for j in 0..4 {
                let bit = (s.qh[4 * k + j] >> g) & 1;
                pb.qh[8 * g + k] |= (bit as u32) << (4 * r + j);
            }
        }
    }
}

/// Copies row `r`'s block into an interleaved Q6_K block (each packed byte
/// written once: the copy runs over the whole matrix at load time).
pub(crate) fn put_q6_k(s: &BlockQ6K, pb: &mut BlockQ6Kx8, r: usize) {
    pb.d[r] = s.d;
    for g in 0..16 {
        pb.scales[16 * (g / 2) + 2 * r + g % 2] = s.scales[g];
    }
    // The 6-bit weights `q + 32` in order (ggml's `dequantize_row_q6_K`).
    let mut q = [0u8; QK_K];
    for n in 0..2 {
        let (ql, qh) = (&s.ql[64 * n..64 * n + 64], &s.qh[32 * n..32 * n + 32]);
        let out = &mut q[128 * n..128 * n + 128];
        for l in 0..32 {
            let h = qh[l];
            out[l] = (ql[l] & 0xF) | (h & 3) << 4;
            out[l + 32] = (ql[l + 32] & 0xF) | ((h >> 2) & 3) << 4;
            out[l + 64] = (ql[l] >> 4) | ((h >> 4) & 3) << 4;
            out[l + 96] = (ql[l + 32] >> 4) | ((h >> 6) & 3) << 4;
        }
    }
    for u in 0..32 {
        for j in 0..4 {
            pb.ql[32 * u + 4 * r + j] = (q[4 * u + j] & 0xF) | (q[128 + 4 * u + j] & 0xF) << 4;
        }
    }
    for v in 0..16 {
        for j in 0..4 {
            let top = |s: usize| (q[4 * (v + 16 * s) + j] >> 4) << (2 * s);
            pb.qh[32 * v + 4 * r + j] = top(0) | top(1) | top(2) | top(3);
        }
    }
}

/// Row `r`'s 4-bit part of weight `i` of an interleaved Q4_K/Q5_K block.
fn k4_nibble(qs: &[u8; QK_K / 2 * PACK_ROWS], r: usize, i: usize) -> i32 {
    let (g, l) = (i / 32, i % 32);
    let byte = qs[32 * (8 * (g / 2) + l / 4) + 4 * r + l % 4];
    (if g % 2 == 0 { byte & 0xF } else { byte >> 4 }) as i32
}

/// The shared loop of the Q4_K/Q5_K specs: per super-block and row
/// `d_x (d Σ_g sc_g Σ q x − dmin Σ_g m_g Σ x)` from exact integer sums.
#[allow(clippy::too_many_arguments)]
fn k4_spec<B>(
    w: &[B],
    x: &[BlockQ8KAct],
    nt: usize,
    out: &mut [f32],
    fields: impl Fn(&B) -> (&[f16; 8], &[f16; 8], &[u8; 64], &[u8; 64]),
    q: impl Fn(&B, usize, usize) -> i32,
) {
    let nb = w.len();
    for t in 0..nt {
        let mut acc = [0.0f32; PACK_ROWS];
        for (b, wb) in w.iter().enumerate() {
            let xb = &x[t * nb + b];
            let (d, dmin, scales, mins) = fields(wb);
            for (r, a) in acc.iter_mut().enumerate() {
                let mut isum = 0i32;
                let mut msum = 0i32;
                for g in 0..8 {
                    let dot: i32 = (0..32).map(|l| q(wb, r, 32 * g + l) * xb.qs[32 * g + l] as i32).sum();
                    isum += scales[8 * g + r] as i32 * dot;
                    msum += mins[16 * (g / 2) + 2 * r + g % 2] as i32 * xb.gsums[g] as i32;
                }
                *a += (d[r].to_f32() * xb.d) * isum as f32 - (dmin[r].to_f32() * xb.d) * msum as f32;
            }
        }
        out[t * PACK_ROWS..(t + 1) * PACK_ROWS].copy_from_slice(&acc);
    }
}

/// The specification of the packed Q4_K kernels: `out[t * 8 + r]` = row
/// `r` of the group dotted with token `t`, accumulated over super-blocks in order.
pub fn vec_dot_q4_kx8(w: &[BlockQ4Kx8], x: &[BlockQ8KAct], nt: usize, out: &mut [f32]) {
    k4_spec(w, x, nt, out, |b| (&b.d, &b.dmin, &b.scales, &b.mins), |b, r, i| k4_nibble(&b.qs, r, i))
}

/// The specification of the packed Q5_K kernels, as [`vec_dot_q4_kx8`].
pub fn vec_dot_q5_kx8(w: &[BlockQ5Kx8], x: &[BlockQ8KAct], nt: usize, out: &mut [f32]) {
    k4_spec(w, x, nt, out, |b| (&b.d, &b.dmin, &b.scales, &b.mins), |b, r, i| {
        let (g, l) = (i / 32, i % 32);
        let bit = (b.qh[8 * g + l / 4] >> (4 * r + l % 4)) & 1;
        k4_nibble(&b.qs, r, i) | (bit << 4) as i32
    })
}

/// Row `r`'s stored weight `i` (`q + 32`, 0..64) of an interleaved Q6_K block.
fn q6_kx8_quant(b: &BlockQ6Kx8, r: usize, i: usize) -> i32 {
    let (c, j) = (i / 4, i % 4);
    let ql = b.ql[32 * (c % 32) + 4 * r + j];
    let lo = if c < 32 { ql & 0xF } else { ql >> 4 };
    let hi = (b.qh[32 * (c % 16) + 4 * r + j] >> (2 * (c / 16))) & 3;
    (lo | hi << 4) as i32
}

/// The specification of the packed Q6_K kernels: per super-block and row
/// `d d_x Σ_g sc_g (Σ q x − 32 Σ x)`, as [`vec_dot_q4_kx8`].
pub fn vec_dot_q6_kx8(w: &[BlockQ6Kx8], x: &[BlockQ8KAct], nt: usize, out: &mut [f32]) {
    let nb = w.len();
    for t in 0..nt {
        let mut acc = [0.0f32; PACK_ROWS];
        for (b, wb) in w.iter().enumerate() {
            let xb = &x[t * nb + b];
            for (r, a) in acc.iter_mut().enumerate() {
                let isum: i32 = (0..16)
                    .map(|g| {
                        let dot: i32 =
                            (0..16).map(|l| q6_kx8_quant(wb, r, 16 * g + l) * xb.qs[16 * g + l] as i32).sum();
                        wb.scales[16 * (g / 2) + 2 * r + g % 2] as i32 * (dot - 32 * xb.bsums[g] as i32)
                    })
                    .sum();
                *a += (wb.d[r].to_f32() * xb.d) * isum as f32;
            }
        }
        out[t * PACK_ROWS..(t + 1) * PACK_ROWS].copy_from_slice(&acc);
    }
}
