//! x86-64 kernels for the interleaved K-quant layouts ([`BlockQ4Kx8`],
//! [`BlockQ5Kx8`], [`BlockQ6Kx8`]): eight rows of a super-block against a
//! tile of `T` tokens, each 4-byte activation chunk broadcast against the
//! eight rows' chunk. Scales and mins are read once per super-block for the
//! whole tile; integer sums are exact, one float update per super-block.
//! Entry points are `unsafe`: the caller must have detected the features.

use std::arch::x86_64::*;

use half::f16;

use super::repack::PACK_ROWS;
use super::repack_k::{BlockQ4Kx8, BlockQ5Kx8, BlockQ6Kx8, BlockQ8KAct};
use super::x86::{Avx2, Dot, Vnni};
use super::x86_packed::{tiles, FifthBits};

#[inline(always)]
unsafe fn f16x8(h: &[f16; PACK_ROWS]) -> __m256 {
    _mm256_cvtph_ps(_mm_loadu_si128(h.as_ptr() as *const __m128i))
}

/// The fields of a Q4_K or Q5_K interleaved block.
pub(crate) trait K4x8 {
    fn d(&self) -> &[f16; PACK_ROWS];
    fn dmin(&self) -> &[f16; PACK_ROWS];
    fn scales(&self) -> &[u8; 64];
    fn mins(&self) -> &[u8; 64];
    fn qs(&self) -> &[u8; 1024];
    /// Q5_K's fifth bits.
    fn qh(&self) -> Option<&[u32; 64]>;
}

macro_rules! k4x8 {
    ($B:ty $(, $qh:ident)?) => {
        impl K4x8 for $B {
            #[inline(always)]
            fn d(&self) -> &[f16; PACK_ROWS] {
                &self.d
            }
            #[inline(always)]
            fn dmin(&self) -> &[f16; PACK_ROWS] {
                &self.dmin
            }
            #[inline(always)]
            fn scales(&self) -> &[u8; 64] {
                &self.scales
            }
            #[inline(always)]
            fn mins(&self) -> &[u8; 64] {
                &self.mins
            }
            #[inline(always)]
            fn qs(&self) -> &[u8; 1024] {
                &self.qs
            }
            #[inline(always)]
            fn qh(&self) -> Option<&[u32; 64]> {
                None $(.or(Some(&self.$qh)))?
            }
        }
    };
}

k4x8!(BlockQ4Kx8);
k4x8!(BlockQ5Kx8, qh);

/// Q4_K and Q5_K: `out[t * 8 + r] = row r · x[t]` for `t < T`. Per group
/// of 32 the chunk sums are exact `u8 × i8` sums (weights ≤ 31), scaled by
/// the eight rows' 6-bit scales in i32; the mins meet the activations' sums
/// of 32 in `i16` pairs.
#[inline(always)]
#[allow(clippy::needless_range_loop)] // t indexes both x and the accumulators
unsafe fn tile_k4<D: Dot + FifthBits, W: K4x8, const T: usize>(w: &[W], x: &[BlockQ8KAct], out: &mut [f32]) {
    let nb = w.len();
    let m4 = _mm256_set1_epi8(0xF);
    // With one or two tokens, a second chain per group hides the dot latency.
    let split = T <= 2;
    let mut acc = [_mm256_setzero_ps(); T];
    for (b, wb) in w.iter().enumerate() {
        let xs: [&BlockQ8KAct; T] = std::array::from_fn(|t| x.get_unchecked(t * nb + b));
        let qs = wb.qs().as_ptr() as *const __m256i;
        let mut isum = [_mm256_setzero_si256(); T];
        for g in 0..8 {
            let sc = _mm256_cvtepu8_epi32(_mm_loadl_epi64(wb.scales().as_ptr().add(8 * g) as *const __m128i));
            let mut sumi = [[_mm256_setzero_si256(); T]; 2];
            for k in 0..8 {
                let v = _mm256_loadu_si256(qs.add(8 * (g / 2) + k));
                let mut q =
                    if g % 2 == 0 { _mm256_and_si256(v, m4) } else { _mm256_and_si256(_mm256_srli_epi16(v, 4), m4) };
                if let Some(qh) = wb.qh() {
                    q = _mm256_or_si256(q, D::expand(qh[8 * g + k]));
                }
                let c = if split { k % 2 } else { 0 };
                for t in 0..T {
                    let xq = xs[t].qs.as_ptr().add(32 * g + 4 * k) as *const i32;
                    sumi[c][t] = D::dot_u8i8(sumi[c][t], q, _mm256_set1_epi32(xq.read_unaligned()));
                }
            }
            for t in 0..T {
                let s = if split { _mm256_add_epi32(sumi[0][t], sumi[1][t]) } else { sumi[0][t] };
                isum[t] = _mm256_add_epi32(isum[t], _mm256_mullo_epi32(s, sc));
            }
        }
        let (d, dmin) = (f16x8(wb.d()), f16x8(wb.dmin()));
        let mins = wb.mins().as_ptr() as *const __m128i;
        let mv: [__m256i; 4] = std::array::from_fn(|q| _mm256_cvtepu8_epi16(_mm_loadu_si128(mins.add(q))));
        for t in 0..T {
            let gs = xs[t].gsums.as_ptr() as *const i32;
            let mut ms = _mm256_setzero_si256();
            for q in 0..4 {
                ms = D::dot_i16(ms, mv[q], _mm256_set1_epi32(gs.add(q).read_unaligned()));
            }
            let xd = _mm256_set1_ps(xs[t].d);
            acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum[t]), _mm256_mul_ps(d, xd), acc[t]);
            acc[t] = _mm256_fnmadd_ps(_mm256_cvtepi32_ps(ms), _mm256_mul_ps(dmin, xd), acc[t]);
        }
    }
    for (t, a) in acc.iter().enumerate() {
        _mm256_storeu_ps(out.as_mut_ptr().add(t * PACK_ROWS), *a);
    }
}

/// `vpshufb` patterns that copy i16 lane `2r + e` of each row pair into
/// both lanes `2r`, `2r + 1` (`e` = 0, 1).
const DUP_EVEN: [u8; 32] = dup_pattern(0);
const DUP_ODD: [u8; 32] = dup_pattern(2);

const fn dup_pattern(e: u8) -> [u8; 32] {
    let mut p = [0u8; 32];
    let mut i = 0;
    while i < 32 {
        let pair = (i % 16) / 4;
        p[i] = (4 * pair) as u8 + e + (i % 2) as u8;
        i += 1;
    }
    p
}

/// Q6_K: `out[t * 8 + r] = row r · x[t]` for `t < T`. Weights (`q + 32` ≤
/// 63) meet the activations in `vpmaddubsw` (pair sums ≤ 16128, no
/// saturation), then the rows' signed scales in `i16` pairs; the −32
/// offset comes from the activations' sums of 16.
#[inline(always)]
#[allow(clippy::needless_range_loop)] // t indexes both x and the accumulators
unsafe fn tile_q6k<D: Dot, const T: usize>(w: &[BlockQ6Kx8], x: &[BlockQ8KAct], out: &mut [f32]) {
    let nb = w.len();
    let m4 = _mm256_set1_epi8(0xF);
    let m30 = _mm256_set1_epi8(0x30);
    let dup = [
        _mm256_loadu_si256(DUP_EVEN.as_ptr() as *const __m256i),
        _mm256_loadu_si256(DUP_ODD.as_ptr() as *const __m256i),
    ];
    // Accumulator chains per token: about eight in all, so that few tokens
    // do not wait on the dot latency.
    let chains = if T <= 2 { 4 } else if T <= 4 { 2 } else { 1 };
    let mut acc = [_mm256_setzero_ps(); T];
    for (b, wb) in w.iter().enumerate() {
        let xs: [&BlockQ8KAct; T] = std::array::from_fn(|t| x.get_unchecked(t * nb + b));
        let ql = wb.ql.as_ptr() as *const __m256i;
        let qh = wb.qh.as_ptr() as *const __m256i;
        let scp = wb.scales.as_ptr() as *const __m128i;
        let mut isum = [[_mm256_setzero_si256(); T]; 4];
        for h in 0..4 {
            // Chunks v + 16s (v = 4h + k) are in groups h + 4s: their scales
            // with each row's in both lanes of its i16 pair.
            let sc: [__m256i; 4] = std::array::from_fn(|s| {
                let g = h + 4 * s;
                _mm256_shuffle_epi8(_mm256_cvtepi8_epi16(_mm_loadu_si128(scp.add(g / 2))), dup[g % 2])
            });
            for k in 0..4 {
                let v = 4 * h + k;
                let hb = _mm256_loadu_si256(qh.add(v));
                let l0 = _mm256_loadu_si256(ql.add(v));
                let l1 = _mm256_loadu_si256(ql.add(v + 16));
                let q = [
                    _mm256_or_si256(_mm256_and_si256(l0, m4), _mm256_and_si256(_mm256_slli_epi16(hb, 4), m30)),
                    _mm256_or_si256(_mm256_and_si256(l1, m4), _mm256_and_si256(_mm256_slli_epi16(hb, 2), m30)),
                    _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), m4), _mm256_and_si256(hb, m30)),
                    _mm256_or_si256(
                        _mm256_and_si256(_mm256_srli_epi16(l1, 4), m4),
                        _mm256_and_si256(_mm256_srli_epi16(hb, 2), m30),
                    ),
                ];
                for t in 0..T {
                    let xq = xs[t].qs.as_ptr() as *const i32;
                    for s in 0..4 {
                        let p = _mm256_maddubs_epi16(q[s], _mm256_set1_epi32(xq.add(v + 16 * s).read_unaligned()));
                        let c = s % chains;
                        isum[c][t] = D::dot_i16(isum[c][t], p, sc[s]);
                    }
                }
            }
        }
        let d = f16x8(&wb.d);
        for t in 0..T {
            let bs = xs[t].bsums.as_ptr() as *const i32;
            let mut off = _mm256_setzero_si256();
            for q in 0..8 {
                let sc = _mm256_cvtepi8_epi16(_mm_loadu_si128(scp.add(q)));
                off = D::dot_i16(off, sc, _mm256_set1_epi32(bs.add(q).read_unaligned()));
            }
            let mut si = isum[0][t];
            for c in 1..chains {
                si = _mm256_add_epi32(si, isum[c][t]);
            }
            let si = _mm256_sub_epi32(si, _mm256_slli_epi32(off, 5));
            acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(si), _mm256_mul_ps(d, _mm256_set1_ps(xs[t].d)), acc[t]);
        }
    }
    for (t, a) in acc.iter().enumerate() {
        _mm256_storeu_ps(out.as_mut_ptr().add(t * PACK_ROWS), *a);
    }
}

#[inline(always)]
unsafe fn tile_q4k<D: Dot + FifthBits, const T: usize>(w: &[BlockQ4Kx8], x: &[BlockQ8KAct], out: &mut [f32]) {
    tile_k4::<D, BlockQ4Kx8, T>(w, x, out)
}

#[inline(always)]
unsafe fn tile_q5k<D: Dot + FifthBits, const T: usize>(w: &[BlockQ5Kx8], x: &[BlockQ8KAct], out: &mut [f32]) {
    tile_k4::<D, BlockQ5Kx8, T>(w, x, out)
}

macro_rules! entry_points {
    ($($avx2:ident, $vnni:ident: $B:ty => $tile:ident;)*) => {$(
        /// AVX2 + FMA + F16C; `out` holds `nt * 8` values.
        #[target_feature(enable = "avx2,fma,f16c")]
        pub(crate) unsafe fn $avx2(w: &[$B], x: &[BlockQ8KAct], nt: usize, out: &mut [f32]) {
            tiles!($tile, Avx2, 4, w, x, nt, out)
        }

        /// The same with AVX-512 VNNI on 256-bit registers (32 of them: 8 tokens).
        #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
        pub(crate) unsafe fn $vnni(w: &[$B], x: &[BlockQ8KAct], nt: usize, out: &mut [f32]) {
            tiles!($tile, Vnni, 8, w, x, nt, out)
        }
    )*};
}

entry_points! {
    avx2_q4_kx8, vnni_q4_kx8: BlockQ4Kx8 => tile_q4k;
    avx2_q5_kx8, vnni_q5_kx8: BlockQ5Kx8 => tile_q5k;
    avx2_q6_kx8, vnni_q6_kx8: BlockQ6Kx8 => tile_q6k;
}
