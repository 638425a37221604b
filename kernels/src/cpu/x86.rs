//! x86-64 kernels: one weight row against a tile of `T` quantized
//! activation rows, integer products per block, f32 accumulation.
//!
//! The code is written once, generic over [`Dot`]: [`Avx2`] builds the
//! products from `vpmaddubsw` + `vpmaddwd` (AVX2 + FMA + F16C); [`Vnni`]
//! uses AVX-512 VNNI's `vpdpbusd`/`vpdpwssd` on 256-bit registers and, with
//! AVX-512VL's 32 registers, a wider token tile. Every public entry point
//! below is `unsafe`: the caller must have detected its features.
//!
//! Block layouts and element orders follow ggml-common.h (see `dequant`).

use std::arch::x86_64::*;

use half::f16;
use infer_gguf::blocks::{BlockQ4K, BlockQ4_0, BlockQ4_1, BlockQ5K, BlockQ5_0, BlockQ5_1, BlockQ6K, BlockQ8K, BlockQ8_0};

use super::quantize::BlockQ8Act;
use crate::dequant::get_scale_min_k4;

/// The integer product primitives.
pub(crate) trait Dot {
    /// `acc` + sums of 4 adjacent `u8 × i8` products per i32 lane. Callers
    /// keep `u ≤ 128` so the AVX2 version's i16 pair sums cannot saturate.
    unsafe fn dot_u8i8(acc: __m256i, u: __m256i, s: __m256i) -> __m256i;
    /// `acc` + sums of 2 adjacent `i16 × i16` products per i32 lane.
    unsafe fn dot_i16(acc: __m256i, a: __m256i, b: __m256i) -> __m256i;
}

pub(crate) struct Avx2;
pub(crate) struct Vnni;

impl Dot for Avx2 {
    #[inline(always)]
    unsafe fn dot_u8i8(acc: __m256i, u: __m256i, s: __m256i) -> __m256i {
        let p = _mm256_maddubs_epi16(u, s);
        _mm256_add_epi32(acc, _mm256_madd_epi16(p, _mm256_set1_epi16(1)))
    }
    #[inline(always)]
    unsafe fn dot_i16(acc: __m256i, a: __m256i, b: __m256i) -> __m256i {
        _mm256_add_epi32(acc, _mm256_madd_epi16(a, b))
    }
}

impl Dot for Vnni {
    #[inline(always)]
    unsafe fn dot_u8i8(acc: __m256i, u: __m256i, s: __m256i) -> __m256i {
        _mm256_dpbusd_epi32(acc, u, s)
    }
    #[inline(always)]
    unsafe fn dot_i16(acc: __m256i, a: __m256i, b: __m256i) -> __m256i {
        _mm256_dpwssd_epi32(acc, a, b)
    }
}

#[inline(always)]
unsafe fn f16_to_f32(h: f16) -> f32 {
    _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(h.to_bits() as i32)))
}

#[inline(always)]
unsafe fn hsum(v: __m256) -> f32 {
    let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)))
}

#[inline(always)]
unsafe fn load(p: &[u8]) -> __m256i {
    debug_assert!(p.len() >= 32);
    _mm256_loadu_si256(p.as_ptr() as *const __m256i)
}

#[inline(always)]
unsafe fn load_i8(p: &[i8]) -> __m256i {
    debug_assert!(p.len() >= 32);
    _mm256_loadu_si256(p.as_ptr() as *const __m256i)
}

/// 16 bytes of nibbles to 32 bytes: low nibbles (weights 0..16) in the low
/// lane, high nibbles (weights 16..32) in the high lane.
#[inline(always)]
unsafe fn nibbles32(qs: &[u8; 16]) -> __m256i {
    let t = _mm_loadu_si128(qs.as_ptr() as *const __m128i);
    let b = _mm256_set_m128i(_mm_srli_epi16(t, 4), t);
    _mm256_and_si256(b, _mm256_set1_epi8(0xF))
}

/// The 32 bits of `qh` to 32 bytes, 0xFF where the bit is set.
#[inline(always)]
unsafe fn bits32(qh: &[u8; 4]) -> __m256i {
    let shuf = _mm256_set_epi64x(0x0303030303030303, 0x0202020202020202, 0x0101010101010101, 0);
    let bytes = _mm256_shuffle_epi8(_mm256_set1_epi32(i32::from_le_bytes(*qh)), shuf);
    // Byte j of each 8 keeps only bit j clear; all ones means bit j was set.
    let bytes = _mm256_or_si256(bytes, _mm256_set1_epi64x(0x7fbfdfeff7fbfdfe));
    _mm256_cmpeq_epi8(bytes, _mm256_set1_epi64x(-1))
}

/// A 32-weight block: its weights as bytes, scale and min.
pub(crate) trait W32 {
    /// `unpack` gives i8 weights (`w = d q`) rather than u8 (`w = d q + m`).
    const SIGNED: bool;
    unsafe fn unpack(&self) -> (__m256i, f32, f32);
}

impl W32 for BlockQ4_0 {
    const SIGNED: bool = true;
    #[inline(always)]
    unsafe fn unpack(&self) -> (__m256i, f32, f32) {
        (_mm256_sub_epi8(nibbles32(&self.qs), _mm256_set1_epi8(8)), f16_to_f32(self.d), 0.0)
    }
}

impl W32 for BlockQ4_1 {
    const SIGNED: bool = false;
    #[inline(always)]
    unsafe fn unpack(&self) -> (__m256i, f32, f32) {
        (nibbles32(&self.qs), f16_to_f32(self.d), f16_to_f32(self.m))
    }
}

impl W32 for BlockQ5_0 {
    const SIGNED: bool = true;
    #[inline(always)]
    unsafe fn unpack(&self) -> (__m256i, f32, f32) {
        // nibble | 0xF0 where the fifth bit is clear is exactly q - 16 as i8.
        let hi = _mm256_andnot_si256(bits32(&self.qh), _mm256_set1_epi8(0xF0u8 as i8));
        (_mm256_or_si256(nibbles32(&self.qs), hi), f16_to_f32(self.d), 0.0)
    }
}

impl W32 for BlockQ5_1 {
    const SIGNED: bool = false;
    #[inline(always)]
    unsafe fn unpack(&self) -> (__m256i, f32, f32) {
        let hi = _mm256_and_si256(bits32(&self.qh), _mm256_set1_epi8(0x10));
        (_mm256_or_si256(nibbles32(&self.qs), hi), f16_to_f32(self.d), f16_to_f32(self.m))
    }
}

impl W32 for BlockQ8_0 {
    const SIGNED: bool = true;
    #[inline(always)]
    unsafe fn unpack(&self) -> (__m256i, f32, f32) {
        (load_i8(&self.qs), f16_to_f32(self.d), 0.0)
    }
}

/// One block of [`tile32`] into the accumulators of one chain.
#[inline(always)]
unsafe fn block32<D: Dot, W: W32, const T: usize>(
    wb: &W,
    x: &[BlockQ8Act],
    nb: usize,
    b: usize,
    acc: &mut [__m256; T],
    accm: &mut [f32; T],
) {
    let (q, d, m) = wb.unpack();
    let u = if W::SIGNED { _mm256_sign_epi8(q, q) } else { q };
    for t in 0..T {
        let xb = x.get_unchecked(t * nb + b);
        let xv = load_i8(&xb.qs);
        let s = if W::SIGNED { _mm256_sign_epi8(xv, q) } else { xv };
        let p = D::dot_u8i8(_mm256_setzero_si256(), u, s);
        acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_set1_ps(d * xb.d), acc[t]);
        if !W::SIGNED {
            accm[t] += m * xb.s;
        }
    }
}

/// `out[t] = Σ_b w[b] · x[t * nb + b]` for `t < T`, 32-weight blocks.
/// Signed weights use the sign trick: `|w| · (x · sign(w))`. Even and odd
/// blocks feed separate accumulator chains (so the FMA and min-term
/// latencies do not bound the loop) for every tile size alike: a row's sum
/// is the same whatever batch it is in, so batched and single-sequence
/// steps agree bit for bit.
#[inline(always)]
unsafe fn tile32<D: Dot, W: W32, const T: usize>(w: &[W], x: &[BlockQ8Act], out: &mut [f32]) {
    let nb = w.len();
    let (mut acc, mut acc2) = ([_mm256_setzero_ps(); T], [_mm256_setzero_ps(); T]);
    let (mut accm, mut accm2) = ([0.0f32; T], [0.0f32; T]);
    let mut b = 0;
    while b + 2 <= nb {
        block32::<D, W, T>(w.get_unchecked(b), x, nb, b, &mut acc, &mut accm);
        block32::<D, W, T>(w.get_unchecked(b + 1), x, nb, b + 1, &mut acc2, &mut accm2);
        b += 2;
    }
    while b < nb {
        block32::<D, W, T>(w.get_unchecked(b), x, nb, b, &mut acc, &mut accm);
        b += 1;
    }
    for t in 0..T {
        out[t] = hsum(_mm256_add_ps(acc[t], acc2[t])) + (accm[t] + accm2[t]);
    }
}

/// Q4_K scales and mins of a block, the mins repeated per 16 to pair with `bsums`.
#[inline(always)]
unsafe fn k4_scales(scales: &[u8; 12]) -> ([i16; 8], __m256i) {
    let mut sc = [0i16; 8];
    let mut mn = [0i16; 16];
    for g in 0..8 {
        let (s, m) = get_scale_min_k4(g, scales);
        sc[g] = s as i16;
        mn[2 * g] = m as i16;
        mn[2 * g + 1] = m as i16;
    }
    (sc, _mm256_loadu_si256(mn.as_ptr() as *const __m256i))
}

/// The fields of a Q4_K or Q5_K block.
pub(crate) trait K4 {
    fn d_dmin(&self) -> (f16, f16);
    fn scales(&self) -> &[u8; 12];
    fn qs(&self) -> &[u8; 128];
    /// Q5_K's fifth bits.
    fn qh(&self) -> Option<&[u8; 32]>;
}

impl K4 for BlockQ4K {
    #[inline(always)]
    fn d_dmin(&self) -> (f16, f16) {
        (self.d, self.dmin)
    }
    #[inline(always)]
    fn scales(&self) -> &[u8; 12] {
        &self.scales
    }
    #[inline(always)]
    fn qs(&self) -> &[u8; 128] {
        &self.qs
    }
    #[inline(always)]
    fn qh(&self) -> Option<&[u8; 32]> {
        None
    }
}

impl K4 for BlockQ5K {
    #[inline(always)]
    fn d_dmin(&self) -> (f16, f16) {
        (self.d, self.dmin)
    }
    #[inline(always)]
    fn scales(&self) -> &[u8; 12] {
        &self.scales
    }
    #[inline(always)]
    fn qs(&self) -> &[u8; 128] {
        &self.qs
    }
    #[inline(always)]
    fn qh(&self) -> Option<&[u8; 32]> {
        Some(&self.qh)
    }
}

/// Q4_K and Q5_K: `out[t] = Σ_b w[b] · x[t * nb + b]`, the mins through `bsums`.
#[allow(clippy::needless_range_loop)] // t indexes both x and the accumulators
#[inline(always)]
unsafe fn tile_k4<D: Dot, W: K4, const T: usize>(w: &[W], x: &[BlockQ8K], out: &mut [f32]) {
    let nb = w.len();
    let m4 = _mm256_set1_epi8(0xF);
    let m1 = _mm256_set1_epi8(1);
    let mut acc = [_mm256_setzero_ps(); T];
    for (b, wb) in w.iter().enumerate() {
        let (d, dmin) = wb.d_dmin();
        let (d, dmin) = (f16_to_f32(d), f16_to_f32(dmin));
        let (sc, mins) = k4_scales(wb.scales());
        let qs = wb.qs();
        let mut sumi = [_mm256_setzero_si256(); T];
        let mut hb = match wb.qh() {
            Some(qh) => load(qh),
            None => _mm256_setzero_si256(),
        };
        for j in 0..4 {
            let qb = load(&qs[32 * j..]);
            let mut lo = _mm256_and_si256(qb, m4);
            let mut hi = _mm256_and_si256(_mm256_srli_epi16(qb, 4), m4);
            if wb.qh().is_some() {
                // Bit 2j of qh[l] is the fifth bit of group 2j, bit 2j+1 of group 2j+1.
                lo = _mm256_or_si256(lo, _mm256_slli_epi16(_mm256_and_si256(hb, m1), 4));
                hi = _mm256_or_si256(hi, _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, 1), m1), 4));
                hb = _mm256_srli_epi16(hb, 2);
            }
            let (s_lo, s_hi) = (_mm256_set1_epi16(sc[2 * j]), _mm256_set1_epi16(sc[2 * j + 1]));
            for t in 0..T {
                let xq = &x.get_unchecked(t * nb + b).qs;
                let p_lo = _mm256_maddubs_epi16(lo, load_i8(&xq[64 * j..]));
                let p_hi = _mm256_maddubs_epi16(hi, load_i8(&xq[64 * j + 32..]));
                sumi[t] = D::dot_i16(D::dot_i16(sumi[t], p_lo, s_lo), p_hi, s_hi);
            }
        }
        for t in 0..T {
            let xb = x.get_unchecked(t * nb + b);
            let bs = _mm256_loadu_si256(xb.bsums.as_ptr() as *const __m256i);
            let mn = _mm256_madd_epi16(mins, bs);
            acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sumi[t]), _mm256_set1_ps(d * xb.d), acc[t]);
            acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(mn), _mm256_set1_ps(-dmin * xb.d), acc[t]);
        }
    }
    for t in 0..T {
        out[t] = hsum(acc[t]);
    }
}

#[inline(always)]
unsafe fn tile_q4k<D: Dot, const T: usize>(w: &[BlockQ4K], x: &[BlockQ8K], out: &mut [f32]) {
    tile_k4::<D, BlockQ4K, T>(w, x, out)
}

#[inline(always)]
unsafe fn tile_q5k<D: Dot, const T: usize>(w: &[BlockQ5K], x: &[BlockQ8K], out: &mut [f32]) {
    tile_k4::<D, BlockQ5K, T>(w, x, out)
}

/// Q6_K: `out[t] = Σ_b w[b] · x[t * nb + b]`; the −32 offset is applied
/// through `bsums`.
#[allow(clippy::needless_range_loop)] // t indexes both x and the accumulators
#[inline(always)]
unsafe fn tile_q6k<D: Dot, const T: usize>(w: &[BlockQ6K], x: &[BlockQ8K], out: &mut [f32]) {
    let nb = w.len();
    let m4 = _mm256_set1_epi8(0xF);
    let m3 = _mm256_set1_epi8(3);
    let mut acc = [_mm256_setzero_ps(); T];
    for (b, wb) in w.iter().enumerate() {
        let d = f16_to_f32(wb.d);
        let mut sc = [0i16; 16];
        for (s, &v) in sc.iter_mut().zip(&wb.scales) {
            *s = v as i16;
        }
        let sc16 = _mm256_loadu_si256(sc.as_ptr() as *const __m256i);
        let mut sumi = [_mm256_setzero_si256(); T];
        for n in 0..2 {
            let ql0 = load(&wb.ql[64 * n..]);
            let ql1 = load(&wb.ql[64 * n + 32..]);
            let qh = load(&wb.qh[32 * n..]);
            let q = [
                _mm256_or_si256(_mm256_and_si256(ql0, m4), _mm256_slli_epi16(_mm256_and_si256(qh, m3), 4)),
                _mm256_or_si256(
                    _mm256_and_si256(ql1, m4),
                    _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 2), m3), 4),
                ),
                _mm256_or_si256(
                    _mm256_and_si256(_mm256_srli_epi16(ql0, 4), m4),
                    _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 4), m3), 4),
                ),
                _mm256_or_si256(
                    _mm256_and_si256(_mm256_srli_epi16(ql1, 4), m4),
                    _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 6), m3), 4),
                ),
            ];
            // Quarter i covers groups 8n + 2i (bytes 0..16) and 8n + 2i + 1.
            let s: [__m256i; 4] = std::array::from_fn(|i| {
                let g = 8 * n + 2 * i;
                _mm256_set_m128i(_mm_set1_epi16(sc[g + 1]), _mm_set1_epi16(sc[g]))
            });
            for t in 0..T {
                let xq = &x.get_unchecked(t * nb + b).qs;
                for i in 0..4 {
                    let p = _mm256_maddubs_epi16(q[i], load_i8(&xq[128 * n + 32 * i..]));
                    sumi[t] = D::dot_i16(sumi[t], p, s[i]);
                }
            }
        }
        for t in 0..T {
            let xb = x.get_unchecked(t * nb + b);
            let bs = _mm256_loadu_si256(xb.bsums.as_ptr() as *const __m256i);
            let off = _mm256_slli_epi32(_mm256_madd_epi16(sc16, bs), 5);
            let si = _mm256_sub_epi32(sumi[t], off);
            acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(si), _mm256_set1_ps(d * xb.d), acc[t]);
        }
    }
    for t in 0..T {
        out[t] = hsum(acc[t]);
    }
}

/// Splits `nt` tokens into tiles of `TILE` (4 for AVX2's 16 vector
/// registers, 8 for AVX-512VL's 32), then 4, 2, 1.
macro_rules! tiled {
    ($tile:ident, $D:ty, $TILE:literal, $w:expr, $x:expr, $nt:expr, $out:expr) => {{
        let (w, x, nt, out) = ($w, $x, $nt, $out);
        let nb = w.len();
        let mut t0 = 0;
        while nt - t0 >= $TILE {
            $tile::<$D, $TILE>(w, &x[t0 * nb..], &mut out[t0..]);
            t0 += $TILE;
        }
        for step in [4, 2, 1] {
            if step < $TILE && nt - t0 >= step {
                match step {
                    4 => $tile::<$D, 4>(w, &x[t0 * nb..], &mut out[t0..]),
                    2 => $tile::<$D, 2>(w, &x[t0 * nb..], &mut out[t0..]),
                    _ => $tile::<$D, 1>(w, &x[t0 * nb..], &mut out[t0..]),
                }
                t0 += step;
            }
        }
    }};
}

macro_rules! entry_points {
    ($($name:ident: $W:ty, $A:ty => $tile:ident;)*) => {
        /// AVX2 + FMA + F16C kernels: `out[t] = w · x[t]` for `t < nt`,
        /// `x` holding `nt` rows of `w.len()` blocks.
        pub(crate) mod avx2 {
            use super::*;
            $(
                #[target_feature(enable = "avx2,fma,f16c")]
                pub(crate) unsafe fn $name(w: &[$W], x: &[$A], nt: usize, out: &mut [f32]) {
                    tiled!($tile, Avx2, 4, w, x, nt, out)
                }
            )*
        }
        /// The same with AVX-512 VNNI on 256-bit registers.
        pub(crate) mod vnni {
            use super::*;
            $(
                #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
                pub(crate) unsafe fn $name(w: &[$W], x: &[$A], nt: usize, out: &mut [f32]) {
                    tiled!($tile, Vnni, 8, w, x, nt, out)
                }
            )*
        }
    };
}

#[inline(always)]
unsafe fn tile_q4_0<D: Dot, const T: usize>(w: &[BlockQ4_0], x: &[BlockQ8Act], out: &mut [f32]) {
    tile32::<D, BlockQ4_0, T>(w, x, out)
}
#[inline(always)]
unsafe fn tile_q4_1<D: Dot, const T: usize>(w: &[BlockQ4_1], x: &[BlockQ8Act], out: &mut [f32]) {
    tile32::<D, BlockQ4_1, T>(w, x, out)
}
#[inline(always)]
unsafe fn tile_q5_0<D: Dot, const T: usize>(w: &[BlockQ5_0], x: &[BlockQ8Act], out: &mut [f32]) {
    tile32::<D, BlockQ5_0, T>(w, x, out)
}
#[inline(always)]
unsafe fn tile_q5_1<D: Dot, const T: usize>(w: &[BlockQ5_1], x: &[BlockQ8Act], out: &mut [f32]) {
    tile32::<D, BlockQ5_1, T>(w, x, out)
}
#[inline(always)]
unsafe fn tile_q8_0<D: Dot, const T: usize>(w: &[BlockQ8_0], x: &[BlockQ8Act], out: &mut [f32]) {
    tile32::<D, BlockQ8_0, T>(w, x, out)
}

entry_points! {
    q4_0: BlockQ4_0, BlockQ8Act => tile_q4_0;
    q4_1: BlockQ4_1, BlockQ8Act => tile_q4_1;
    q5_0: BlockQ5_0, BlockQ8Act => tile_q5_0;
    q5_1: BlockQ5_1, BlockQ8Act => tile_q5_1;
    q8_0: BlockQ8_0, BlockQ8Act => tile_q8_0;
    q4_k: BlockQ4K, BlockQ8K => tile_q4k;
    q5_k: BlockQ5K, BlockQ8K => tile_q5k;
    q6_k: BlockQ6K, BlockQ8K => tile_q6k;
}
