//! x86-64 kernels for the interleaved 32-weight layouts ([`BlockQ4_0x8`],
//! [`BlockQ4_1x8`], [`BlockQ5_0x8`], [`BlockQ5_1x8`], [`BlockQ8_0x8`]; the
//! K-quants are in `x86_packed_k`): eight interleaved rows against a
//! tile of `T` tokens. The activation's 4-byte groups are broadcast and
//! multiplied with eight rows' nibbles at once; each block's integer sums
//! (one lane per row) are converted and scaled once per eight rows.
//! Entry points are `unsafe`: the caller must have detected the features.

use std::arch::x86_64::*;

use super::quantize::BlockQ8Act;
use super::repack::{BlockQ4_0x8, BlockQ4_1x8, BlockQ5_0x8, BlockQ5_1x8, BlockQ8_0x8, PACK_ROWS};
use super::x86::{Avx2, Dot, Vnni};

/// As [`tile`] for Q8_0: eight 4-byte groups of `q + 128`, no unpacking.
#[inline(always)]
#[allow(clippy::needless_range_loop)] // t indexes both x and the accumulators
unsafe fn tile_q8<D: Dot, const T: usize>(w: &[BlockQ8_0x8], x: &[BlockQ8Act], out: &mut [f32]) {
    let nb = w.len();
    let mut acc = [_mm256_setzero_ps(); T];
    for (b, wb) in w.iter().enumerate() {
        let dw = _mm256_cvtph_ps(_mm_loadu_si128(wb.d.as_ptr() as *const __m128i));
        let q = wb.qs.as_ptr() as *const __m256i;
        for t in 0..T {
            let xb = x.get_unchecked(t * nb + b);
            let xq = xb.qs.as_ptr() as *const i32;
            // Two independent chains (integer sums: the split is exact).
            let (mut s, mut s2) = (_mm256_setzero_si256(), _mm256_setzero_si256());
            for g in 0..4 {
                s = D::dot_u8i8(s, _mm256_loadu_si256(q.add(2 * g)), _mm256_set1_epi32(xq.add(2 * g).read_unaligned()));
                s2 = D::dot_u8i8(
                    s2,
                    _mm256_loadu_si256(q.add(2 * g + 1)),
                    _mm256_set1_epi32(xq.add(2 * g + 1).read_unaligned()),
                );
            }
            let s = _mm256_add_epi32(s, s2);
            // Weights are q + 128: subtract 128 Σx (exact in f32).
            let v = _mm256_sub_ps(_mm256_cvtepi32_ps(s), _mm256_set1_ps(xb.s));
            acc[t] = _mm256_fmadd_ps(v, _mm256_mul_ps(dw, _mm256_set1_ps(xb.d)), acc[t]);
        }
    }
    for (t, a) in acc.iter().enumerate() {
        _mm256_storeu_ps(out.as_mut_ptr().add(t * PACK_ROWS), *a);
    }
}

/// 32 bits to 32 bytes: 0x10 where the bit is set, 0 elsewhere.
pub(crate) trait FifthBits {
    unsafe fn expand(word: u32) -> __m256i;
}

impl FifthBits for Avx2 {
    #[inline(always)]
    unsafe fn expand(word: u32) -> __m256i {
        let shuf = _mm256_set_epi64x(0x0303030303030303, 0x0202020202020202, 0x0101010101010101, 0);
        let bytes = _mm256_shuffle_epi8(_mm256_set1_epi32(word as i32), shuf);
        // Byte j of each 8 keeps only bit j clear; all ones means bit j was set.
        let bytes = _mm256_or_si256(bytes, _mm256_set1_epi64x(0x7fbfdfeff7fbfdfe));
        _mm256_and_si256(_mm256_cmpeq_epi8(bytes, _mm256_set1_epi64x(-1)), _mm256_set1_epi8(0x10))
    }
}

impl FifthBits for Vnni {
    #[inline(always)]
    unsafe fn expand(word: u32) -> __m256i {
        _mm256_maskz_mov_epi8(word, _mm256_set1_epi8(0x10))
    }
}

/// Interleaved 4-bit (and 5-bit) blocks: eight rows' scales and, per
/// 4-byte group `g < 4`, the 32-byte registers of weights `4g..` (`lo`) and
/// `16 + 4g..` (`hi`), stored unsigned (`q + 8`, `q + 16`, or `q` for the
/// types with a min).
pub(crate) trait Nibbles {
    /// `w = d q + m` (Q4_1, Q5_1) rather than `w = d (q − offset)`.
    const MIN: bool;
    fn scales(&self) -> &[half::f16; PACK_ROWS];
    /// The mins of the [`Nibbles::MIN`] types (the scales otherwise, unused).
    fn mins(&self) -> &[half::f16; PACK_ROWS];
    unsafe fn unpack<F: FifthBits>(&self) -> ([__m256i; 4], [__m256i; 4]);
}

/// Adds the fifth bits (one `u32` per register, see `repack`) to the nibbles.
#[inline(always)]
unsafe fn add_fifth_bits<F: FifthBits>(lo: &mut [__m256i; 4], hi: &mut [__m256i; 4], qh: &[u32; PACK_ROWS]) {
    for g in 0..4 {
        lo[g] = _mm256_or_si256(lo[g], F::expand(qh[2 * g]));
        hi[g] = _mm256_or_si256(hi[g], F::expand(qh[2 * g + 1]));
    }
}

#[inline(always)]
unsafe fn nibble_groups(qs: &[u8; 16 * PACK_ROWS]) -> ([__m256i; 4], [__m256i; 4]) {
    let m4 = _mm256_set1_epi8(0x0F);
    let mut lo = [_mm256_setzero_si256(); 4];
    let mut hi = [_mm256_setzero_si256(); 4];
    for g in 0..4 {
        let v = _mm256_loadu_si256(qs.as_ptr().add(32 * g) as *const __m256i);
        lo[g] = _mm256_and_si256(v, m4);
        hi[g] = _mm256_and_si256(_mm256_srli_epi16(v, 4), m4);
    }
    (lo, hi)
}

/// Implements [`Nibbles`] for a layout: `min` names its mins field, `qh`
/// its fifth bits.
macro_rules! nibbles {
    ($B:ty, $MIN:literal, $mins:ident $(, $qh:ident)?) => {
        impl Nibbles for $B {
            const MIN: bool = $MIN;
            #[inline(always)]
            fn scales(&self) -> &[half::f16; PACK_ROWS] {
                &self.d
            }
            #[inline(always)]
            fn mins(&self) -> &[half::f16; PACK_ROWS] {
                &self.$mins
            }
            #[inline(always)]
            #[allow(unused_mut)]
            unsafe fn unpack<F: FifthBits>(&self) -> ([__m256i; 4], [__m256i; 4]) {
                let (mut lo, mut hi) = nibble_groups(&self.qs);
                $(add_fifth_bits::<F>(&mut lo, &mut hi, &self.$qh);)?
                (lo, hi)
            }
        }
    };
}

nibbles!(BlockQ4_0x8, false, d);
nibbles!(BlockQ4_1x8, true, m);
nibbles!(BlockQ5_0x8, false, d, qh);
nibbles!(BlockQ5_1x8, true, m, qh);

/// One block of [`tile`] into the accumulators `acc` (scaled sums) and
/// `accm` (the min terms of [`Nibbles::MIN`] types).
#[inline(always)]
unsafe fn tile_block<D: Dot + FifthBits, W: Nibbles, const T: usize>(
    wb: &W,
    x: &[BlockQ8Act],
    nb: usize,
    b: usize,
    acc: &mut [__m256; T],
    accm: &mut [__m256; T],
) {
    let dw = _mm256_cvtph_ps(_mm_loadu_si128(wb.scales().as_ptr() as *const __m128i));
    let mw = if W::MIN { _mm256_cvtph_ps(_mm_loadu_si128(wb.mins().as_ptr() as *const __m128i)) } else { dw };
    let (lo, hi) = wb.unpack::<D>();
    for t in 0..T {
        let xb = x.get_unchecked(t * nb + b);
        let xq = xb.qs.as_ptr() as *const i32;
        // Two independent chains (integer sums: the split is exact).
        let (mut s, mut s2) = (_mm256_setzero_si256(), _mm256_setzero_si256());
        for g in 0..4 {
            s = D::dot_u8i8(s, lo[g], _mm256_set1_epi32(xq.add(g).read_unaligned()));
            s2 = D::dot_u8i8(s2, hi[g], _mm256_set1_epi32(xq.add(4 + g).read_unaligned()));
        }
        let s = _mm256_cvtepi32_ps(_mm256_add_epi32(s, s2));
        if W::MIN {
            acc[t] = _mm256_fmadd_ps(s, _mm256_mul_ps(dw, _mm256_set1_ps(xb.d)), acc[t]);
            accm[t] = _mm256_fmadd_ps(mw, _mm256_set1_ps(xb.s), accm[t]);
        } else {
            // Weights are stored as q + offset: subtract offset · Σx (exact in f32).
            let v = _mm256_sub_ps(s, _mm256_set1_ps(xb.s));
            acc[t] = _mm256_fmadd_ps(v, _mm256_mul_ps(dw, _mm256_set1_ps(xb.d)), acc[t]);
        }
    }
}

/// Interleaved 32-weight blocks (144–176 bytes) the decode tiles prefetch ahead.
const AHEAD_BLOCKS: usize = 8;

/// Prefetches the cache lines of `len` bytes at `p`.
#[inline(always)]
pub(crate) unsafe fn prefetch_lines(p: *const u8, len: usize) {
    let end = p as usize + len;
    let mut line = (p as usize) & !63;
    while line < end {
        _mm_prefetch::<_MM_HINT_T0>(line as *const i8);
        line += 64;
    }
}

/// `out[t * 8 + r] = row r · x[t]` for `t < T`, 4- or 5-bit weights;
/// `x[t * nb + b]` holds token `t`'s block `b` with `s = offset · Σq` (or
/// `d · Σq` for the types with a min). One accumulator chain per token for
/// every tile size, as the two-group AVX-512 kernel has: a row's sum is the
/// same whatever batch (and whichever of the two kernels) it goes through,
/// so batched and single-sequence steps agree bit for bit.
#[inline(always)]
#[allow(clippy::needless_range_loop)] // t indexes both x and the accumulators
pub(crate) unsafe fn tile<D: Dot + FifthBits, W: Nibbles, const T: usize>(w: &[W], x: &[BlockQ8Act], out: &mut [f32]) {
    let nb = w.len();
    let z = [_mm256_setzero_ps(); T];
    let (mut acc, mut accm) = (z, z);
    for b in 0..nb {
        if T <= 2 {
            // Few tokens read the weights once: ask for the lines ahead
            // (the hardware prefetcher alone leaves these loads waiting).
            prefetch_lines(w.as_ptr().add((b + AHEAD_BLOCKS).min(nb - 1)) as *const u8, std::mem::size_of::<W>());
        }
        tile_block::<D, W, T>(w.get_unchecked(b), x, nb, b, &mut acc, &mut accm);
    }
    for t in 0..T {
        let mut a = acc[t];
        if W::MIN {
            a = _mm256_add_ps(a, accm[t]);
        }
        _mm256_storeu_ps(out.as_mut_ptr().add(t * PACK_ROWS), a);
    }
}

#[inline(always)]
unsafe fn tile_q4<D: Dot + FifthBits, const T: usize>(w: &[BlockQ4_0x8], x: &[BlockQ8Act], out: &mut [f32]) {
    tile::<D, BlockQ4_0x8, T>(w, x, out)
}

#[inline(always)]
unsafe fn tile_q4_1<D: Dot + FifthBits, const T: usize>(w: &[BlockQ4_1x8], x: &[BlockQ8Act], out: &mut [f32]) {
    tile::<D, BlockQ4_1x8, T>(w, x, out)
}

#[inline(always)]
unsafe fn tile_q5_1<D: Dot + FifthBits, const T: usize>(w: &[BlockQ5_1x8], x: &[BlockQ8Act], out: &mut [f32]) {
    tile::<D, BlockQ5_1x8, T>(w, x, out)
}

#[inline(always)]
unsafe fn tile_q5<D: Dot + FifthBits, const T: usize>(w: &[BlockQ5_0x8], x: &[BlockQ8Act], out: &mut [f32]) {
    tile::<D, BlockQ5_0x8, T>(w, x, out)
}

/// Splits `nt` tokens into register tiles of `TILE`, then 4, 2, 1.
macro_rules! tiles {
    ($tile:ident, $D:ty, $TILE:literal, $w:expr, $x:expr, $nt:expr, $out:expr) => {{
        let (w, x, nt, out) = ($w, $x, $nt, $out);
        let nb = w.len();
        let mut t0 = 0;
        while nt - t0 >= $TILE {
            $tile::<$D, $TILE>(w, &x[t0 * nb..], &mut out[t0 * PACK_ROWS..]);
            t0 += $TILE;
        }
        for step in [4, 2, 1] {
            if step < $TILE && nt - t0 >= step {
                match step {
                    4 => $tile::<$D, 4>(w, &x[t0 * nb..], &mut out[t0 * PACK_ROWS..]),
                    2 => $tile::<$D, 2>(w, &x[t0 * nb..], &mut out[t0 * PACK_ROWS..]),
                    _ => $tile::<$D, 1>(w, &x[t0 * nb..], &mut out[t0 * PACK_ROWS..]),
                }
                t0 += step;
            }
        }
    }};
}

/// AVX2 + FMA + F16C; `out` holds `nt * 8` values.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn avx2_q4_0x8(w: &[BlockQ4_0x8], x: &[BlockQ8Act], nt: usize, out: &mut [f32]) {
    tiles!(tile_q4, Avx2, 4, w, x, nt, out)
}

/// The same with AVX-512 VNNI on 256-bit registers (32 of them: 8 tokens).
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
pub(crate) unsafe fn vnni_q4_0x8(w: &[BlockQ4_0x8], x: &[BlockQ8Act], nt: usize, out: &mut [f32]) {
    tiles!(tile_q4, Vnni, 8, w, x, nt, out)
}

/// Q4_1, AVX2 + FMA + F16C.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn avx2_q4_1x8(w: &[BlockQ4_1x8], x: &[BlockQ8Act], nt: usize, out: &mut [f32]) {
    tiles!(tile_q4_1, Avx2, 4, w, x, nt, out)
}

/// Q4_1 with AVX-512 VNNI.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
pub(crate) unsafe fn vnni_q4_1x8(w: &[BlockQ4_1x8], x: &[BlockQ8Act], nt: usize, out: &mut [f32]) {
    tiles!(tile_q4_1, Vnni, 8, w, x, nt, out)
}

/// Q5_1, AVX2 + FMA + F16C (weights ≤ 31).
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn avx2_q5_1x8(w: &[BlockQ5_1x8], x: &[BlockQ8Act], nt: usize, out: &mut [f32]) {
    tiles!(tile_q5_1, Avx2, 4, w, x, nt, out)
}

/// Q5_1 with AVX-512 VNNI.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
pub(crate) unsafe fn vnni_q5_1x8(w: &[BlockQ5_1x8], x: &[BlockQ8Act], nt: usize, out: &mut [f32]) {
    tiles!(tile_q5_1, Vnni, 8, w, x, nt, out)
}

/// Q5_0, AVX2 + FMA + F16C (weights ≤ 31: `vpmaddubsw` cannot saturate).
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn avx2_q5_0x8(w: &[BlockQ5_0x8], x: &[BlockQ8Act], nt: usize, out: &mut [f32]) {
    tiles!(tile_q5, Avx2, 4, w, x, nt, out)
}

/// Q5_0 with AVX-512 VNNI; the fifth bits through a byte mask.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
pub(crate) unsafe fn vnni_q5_0x8(w: &[BlockQ5_0x8], x: &[BlockQ8Act], nt: usize, out: &mut [f32]) {
    tiles!(tile_q5, Vnni, 8, w, x, nt, out)
}

/// Q8_0, AVX2 + FMA + F16C. The weights (`q + 128` ≤ 255) as the unsigned
/// operand: `vpmaddubsw` may saturate its i16 pair sums (255·127·2 > 32767),
/// so AVX2 takes the exact i16 route instead.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn avx2_q8_0x8(w: &[BlockQ8_0x8], x: &[BlockQ8Act], nt: usize, out: &mut [f32]) {
    tiles!(tile_q8, Avx2Exact, 4, w, x, nt, out)
}

/// Q8_0 with AVX-512 VNNI (`vpdpbusd` does not saturate).
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
pub(crate) unsafe fn vnni_q8_0x8(w: &[BlockQ8_0x8], x: &[BlockQ8Act], nt: usize, out: &mut [f32]) {
    tiles!(tile_q8, Vnni, 8, w, x, nt, out)
}

/// `u8 × i8` sums for AVX2 without saturation: both halves widened to i16
/// and summed with `vpmaddwd`.
struct Avx2Exact;

impl Dot for Avx2Exact {
    #[inline(always)]
    unsafe fn dot_u8i8(acc: __m256i, u: __m256i, s: __m256i) -> __m256i {
        // Even and odd bytes as i16: u zero-extended, s sign-extended.
        let u_even = _mm256_and_si256(u, _mm256_set1_epi16(0xFF));
        let u_odd = _mm256_srli_epi16(u, 8);
        let s_even = _mm256_srai_epi16(_mm256_slli_epi16(s, 8), 8);
        let s_odd = _mm256_srai_epi16(s, 8);
        let acc = _mm256_add_epi32(acc, _mm256_madd_epi16(u_even, s_even));
        _mm256_add_epi32(acc, _mm256_madd_epi16(u_odd, s_odd))
    }
    #[inline(always)]
    unsafe fn dot_i16(acc: __m256i, a: __m256i, b: __m256i) -> __m256i {
        _mm256_add_epi32(acc, _mm256_madd_epi16(a, b))
    }
}

pub(crate) use tiles;
pub(crate) use super::x86_packed_k::{avx2_q4_kx8, avx2_q5_kx8, avx2_q6_kx8, vnni_q4_kx8, vnni_q5_kx8, vnni_q6_kx8};
