//! aarch64 NEON kernels: one weight row against `nt` quantized activation
//! rows, integer products per block (`smull` + pairwise widening adds, so
//! baseline NEON without the dot-product extension), f32 accumulation.
//!
//! Each weight block is unpacked once to signed bytes and dotted with every
//! token of the pass. Block layouts follow ggml-common.h (see `dequant`).
//! NEON is part of every aarch64 target, so the entry points are safe to
//! call there.

use std::arch::aarch64::*;

use infer_gguf::blocks::{
    BlockQ4K, BlockQ4_0, BlockQ4_1, BlockQ5K, BlockQ5_0, BlockQ5_1, BlockQ6K, BlockQ8K, BlockQ8_0,
};

use super::quantize::BlockQ8Act;
use super::vec_dot::q6_k_quant;
use crate::dequant::get_scale_min_k4;

/// `Σ w[i] x[i]` over 32 signed bytes (`w` as two halves of 16).
#[inline(always)]
unsafe fn dot32(w0: int8x16_t, w1: int8x16_t, x: *const i8) -> i32 {
    let (x0, x1) = (vld1q_s8(x), vld1q_s8(x.add(16)));
    let mut acc = vpaddlq_s16(vmull_s8(vget_low_s8(w0), vget_low_s8(x0)));
    acc = vpadalq_s16(acc, vmull_high_s8(w0, x0));
    acc = vpadalq_s16(acc, vmull_s8(vget_low_s8(w1), vget_low_s8(x1)));
    acc = vpadalq_s16(acc, vmull_high_s8(w1, x1));
    vaddvq_s32(acc)
}

/// `Σ w[i] x[i]` over 16 signed bytes.
#[inline(always)]
unsafe fn dot16(w: int8x16_t, x: *const i8) -> i32 {
    let x0 = vld1q_s8(x);
    let acc = vpaddlq_s16(vmull_s8(vget_low_s8(w), vget_low_s8(x0)));
    vaddvq_s32(vpadalq_s16(acc, vmull_high_s8(w, x0)))
}

/// Nibbles of 16 bytes: (low nibbles, high nibbles) as bytes 0..16.
#[inline(always)]
unsafe fn nibbles(p: *const u8) -> (uint8x16_t, uint8x16_t) {
    let v = vld1q_u8(p);
    (vandq_u8(v, vdupq_n_u8(0x0F)), vshrq_n_u8::<4>(v))
}

/// Bits 0..16 (`lo`) and 16..32 (`hi`) of `qh` as bytes: 0x10 where set.
#[inline(always)]
unsafe fn fifth_bits(qh: [u8; 4]) -> (uint8x16_t, uint8x16_t) {
    const MASK: [u8; 16] = [1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128];
    let m = vld1q_u8(MASK.as_ptr());
    let spread = |a: u8, b: u8| vcombine_u8(vdup_n_u8(a), vdup_n_u8(b));
    let lo = vandq_u8(vtstq_u8(spread(qh[0], qh[1]), m), vdupq_n_u8(0x10));
    let hi = vandq_u8(vtstq_u8(spread(qh[2], qh[3]), m), vdupq_n_u8(0x10));
    (lo, hi)
}

/// A 32-weight block as signed bytes, its scale and min (`w = d q + m`).
pub(crate) trait W32 {
    unsafe fn unpack(&self) -> (int8x16_t, int8x16_t, f32, f32);
}

impl W32 for BlockQ4_0 {
    #[inline(always)]
    unsafe fn unpack(&self) -> (int8x16_t, int8x16_t, f32, f32) {
        let (lo, hi) = nibbles(self.qs.as_ptr());
        let eight = vdupq_n_s8(8);
        (vsubq_s8(vreinterpretq_s8_u8(lo), eight), vsubq_s8(vreinterpretq_s8_u8(hi), eight), self.d.to_f32(), 0.0)
    }
}

impl W32 for BlockQ4_1 {
    #[inline(always)]
    unsafe fn unpack(&self) -> (int8x16_t, int8x16_t, f32, f32) {
        let (lo, hi) = nibbles(self.qs.as_ptr());
        (vreinterpretq_s8_u8(lo), vreinterpretq_s8_u8(hi), self.d.to_f32(), self.m.to_f32())
    }
}

impl W32 for BlockQ5_0 {
    #[inline(always)]
    unsafe fn unpack(&self) -> (int8x16_t, int8x16_t, f32, f32) {
        let (lo, hi) = nibbles(self.qs.as_ptr());
        let (blo, bhi) = fifth_bits(self.qh);
        let sixteen = vdupq_n_s8(16);
        let w0 = vsubq_s8(vreinterpretq_s8_u8(vorrq_u8(lo, blo)), sixteen);
        let w1 = vsubq_s8(vreinterpretq_s8_u8(vorrq_u8(hi, bhi)), sixteen);
        (w0, w1, self.d.to_f32(), 0.0)
    }
}

impl W32 for BlockQ5_1 {
    #[inline(always)]
    unsafe fn unpack(&self) -> (int8x16_t, int8x16_t, f32, f32) {
        let (lo, hi) = nibbles(self.qs.as_ptr());
        let (blo, bhi) = fifth_bits(self.qh);
        let (w0, w1) = (vreinterpretq_s8_u8(vorrq_u8(lo, blo)), vreinterpretq_s8_u8(vorrq_u8(hi, bhi)));
        (w0, w1, self.d.to_f32(), self.m.to_f32())
    }
}

impl W32 for BlockQ8_0 {
    #[inline(always)]
    unsafe fn unpack(&self) -> (int8x16_t, int8x16_t, f32, f32) {
        (vld1q_s8(self.qs.as_ptr()), vld1q_s8(self.qs.as_ptr().add(16)), self.d.to_f32(), 0.0)
    }
}

/// `out[t] = Σ_b w[b] · x[t * nb + b]` for `t < nt`, 32-weight blocks.
fn tile32<W: W32>(w: &[W], x: &[BlockQ8Act], nt: usize, out: &mut [f32]) {
    let nb = w.len();
    out[..nt].fill(0.0);
    for (b, wb) in w.iter().enumerate() {
        // SAFETY: NEON is baseline on aarch64; every pointer read is 32 bytes
        // inside a block's `qs`.
        unsafe {
            let (w0, w1, d, m) = wb.unpack();
            for (t, o) in out[..nt].iter_mut().enumerate() {
                let xb = &x[t * nb + b];
                *o += d * xb.d * dot32(w0, w1, xb.qs.as_ptr()) as f32 + m * xb.s;
            }
        }
    }
}

/// Q4_K and Q5_K: per 32-weight sub-block `j` the weights are nibbles
/// (low for even `j`, high for odd) of `qs[32 (j/2)..]`, plus Q5_K's bit `j`
/// of `qh[l]`; `w = d·sc_j·q − dmin·m_j`, the mins through `bsums`.
fn tile_k4(
    d_dmin: (f32, f32),
    scales: &[u8; 12],
    qs: &[u8; 128],
    qh: Option<&[u8; 32]>,
    x: &[&BlockQ8K],
    out: &mut [f32],
) {
    let (d, dmin) = d_dmin;
    let mut sc = [0i32; 8];
    let mut mn = [0i32; 8];
    for j in 0..8 {
        let (s, m) = get_scale_min_k4(j, scales);
        (sc[j], mn[j]) = (s as i32, m as i32);
    }
    // SAFETY: NEON is baseline on aarch64; loads stay inside `qs`/`qh` (32
    // bytes at 32·p) and the activations' 256 `qs`.
    unsafe {
        let mut w = [[vdupq_n_s8(0); 2]; 8];
        for p in 0..4 {
            let (l0, h0) = nibbles(qs.as_ptr().add(32 * p));
            let (l1, h1) = nibbles(qs.as_ptr().add(32 * p + 16));
            let (mut e0, mut e1, mut o0, mut o1) = (l0, l1, h0, h1);
            if let Some(qh) = qh {
                let (q0, q1) = (vld1q_u8(qh.as_ptr()), vld1q_u8(qh.as_ptr().add(16)));
                let bit = |v: uint8x16_t, k: usize| {
                    let m = vdupq_n_u8(1u8 << k);
                    vandq_u8(vtstq_u8(v, m), vdupq_n_u8(0x10))
                };
                e0 = vorrq_u8(e0, bit(q0, 2 * p));
                e1 = vorrq_u8(e1, bit(q1, 2 * p));
                o0 = vorrq_u8(o0, bit(q0, 2 * p + 1));
                o1 = vorrq_u8(o1, bit(q1, 2 * p + 1));
            }
            w[2 * p] = [vreinterpretq_s8_u8(e0), vreinterpretq_s8_u8(e1)];
            w[2 * p + 1] = [vreinterpretq_s8_u8(o0), vreinterpretq_s8_u8(o1)];
        }
        for (xb, o) in x.iter().zip(out.iter_mut()) {
            let mut isum = 0i32;
            let mut msum = 0i32;
            for j in 0..8 {
                isum += sc[j] * dot32(w[j][0], w[j][1], xb.qs.as_ptr().add(32 * j));
                msum += mn[j] * (xb.bsums[2 * j] as i32 + xb.bsums[2 * j + 1] as i32);
            }
            *o += d * xb.d * isum as f32 - dmin * xb.d * msum as f32;
        }
    }
}

fn run_k4(
    nt: usize,
    out: &mut [f32],
    nb: usize,
    x: &[BlockQ8K],
    mut block: impl FnMut(usize, &[&BlockQ8K], &mut [f32]),
) {
    out[..nt].fill(0.0);
    let mut xs: [&BlockQ8K; super::TOKENS_PER_PASS] = [&x[0]; super::TOKENS_PER_PASS];
    for b in 0..nb {
        for (t, slot) in xs[..nt].iter_mut().enumerate() {
            *slot = &x[t * nb + b];
        }
        block(b, &xs[..nt], &mut out[..nt]);
    }
}

/// Q6_K: 16 sub-blocks of 16 with i8 scales, `w = d·sc·(q − 32)`.
fn tile_q6k(w: &BlockQ6K, x: &[&BlockQ8K], out: &mut [f32]) {
    let mut q = [0i8; 256];
    for (i, v) in q.iter_mut().enumerate() {
        *v = (q6_k_quant(w, i) - 32) as i8;
    }
    let d = w.d.to_f32();
    // SAFETY: NEON is baseline on aarch64; loads stay inside `q` and the
    // activations' 256 `qs`.
    unsafe {
        let ws: [int8x16_t; 16] = std::array::from_fn(|s| vld1q_s8(q.as_ptr().add(16 * s)));
        for (xb, o) in x.iter().zip(out.iter_mut()) {
            let mut isum = 0i32;
            for (s, wv) in ws.iter().enumerate() {
                isum += w.scales[s] as i32 * dot16(*wv, xb.qs.as_ptr().add(16 * s));
            }
            *o += d * xb.d * isum as f32;
        }
    }
}

/// NEON entry points: `out[t] = w · x[t]` for `t < nt ≤ TOKENS_PER_PASS`,
/// `x` holding `nt` rows of `w.len()` blocks.
pub(crate) mod kernels {
    use super::*;

    pub(crate) fn q4_0(w: &[BlockQ4_0], x: &[BlockQ8Act], nt: usize, out: &mut [f32]) {
        tile32(w, x, nt, out)
    }
    pub(crate) fn q4_1(w: &[BlockQ4_1], x: &[BlockQ8Act], nt: usize, out: &mut [f32]) {
        tile32(w, x, nt, out)
    }
    pub(crate) fn q5_0(w: &[BlockQ5_0], x: &[BlockQ8Act], nt: usize, out: &mut [f32]) {
        tile32(w, x, nt, out)
    }
    pub(crate) fn q5_1(w: &[BlockQ5_1], x: &[BlockQ8Act], nt: usize, out: &mut [f32]) {
        tile32(w, x, nt, out)
    }
    pub(crate) fn q8_0(w: &[BlockQ8_0], x: &[BlockQ8Act], nt: usize, out: &mut [f32]) {
        tile32(w, x, nt, out)
    }
    pub(crate) fn q4_k(w: &[BlockQ4K], x: &[BlockQ8K], nt: usize, out: &mut [f32]) {
        run_k4(nt, out, w.len(), x, |b, xs, o| {
            let wb = &w[b];
            tile_k4((wb.d.to_f32(), wb.dmin.to_f32()), &wb.scales, &wb.qs, None, xs, o)
        })
    }
    pub(crate) fn q5_k(w: &[BlockQ5K], x: &[BlockQ8K], nt: usize, out: &mut [f32]) {
        run_k4(nt, out, w.len(), x, |b, xs, o| {
            let wb = &w[b];
            tile_k4((wb.d.to_f32(), wb.dmin.to_f32()), &wb.scales, &wb.qs, Some(&wb.qh), xs, o)
        })
    }
    pub(crate) fn q6_k(w: &[BlockQ6K], x: &[BlockQ8K], nt: usize, out: &mut [f32]) {
        run_k4(nt, out, w.len(), x, |b, xs, o| tile_q6k(&w[b], xs, o))
    }
}
