//! AVX-512 kernels for the interleaved layouts (K-quants and the 4/5-bit
//! 32-weight types): two row groups
//! (16 rows) per 512-bit register, the halves loaded from the two groups'
//! blocks. On Intel server cores the 512-bit integer multiplies issue on
//! two ports like the 256-bit ones, so each `vpdpbusd`/`vpmaddubsw` does
//! twice the work; the per-token activation broadcasts stay 4-byte loads.
//! The arithmetic is that of `x86_packed_k` (exact integer sums, one float
//! update per super-block). Entry points are `unsafe`: the caller must
//! have detected AVX-512 F/BW/VL/VNNI.

use std::arch::x86_64::*;

use half::f16;

use super::quantize::BlockQ8Act;
use super::repack::{BlockQ4_0x8, BlockQ4_1x8, BlockQ5_0x8, BlockQ5_1x8, PACK_ROWS};
use super::repack_k::{BlockQ4Kx8, BlockQ5Kx8, BlockQ6Kx8, BlockQ8KAct};
use super::x86::Vnni;
use super::x86_packed::{prefetch_lines, tile, Nibbles};
use super::x86_packed_k::K4x8;

/// Rows per call: two interleaved groups.
pub(super) const ROWS: usize = 2 * PACK_ROWS;

/// Bytes `[a; 32]` in the low half, `[b; 32]` in the high half.
#[inline(always)]
pub(super) unsafe fn halves(a: *const u8, b: *const u8) -> __m512i {
    let lo = _mm512_castsi256_si512(_mm256_loadu_si256(a as *const __m256i));
    _mm512_inserti64x4(lo, _mm256_loadu_si256(b as *const __m256i), 1)
}

/// 16 bytes of `a` then 16 of `b`.
#[inline(always)]
pub(super) unsafe fn halves16(a: *const u8, b: *const u8) -> __m256i {
    _mm256_set_m128i(_mm_loadu_si128(b as *const __m128i), _mm_loadu_si128(a as *const __m128i))
}

#[inline(always)]
pub(super) unsafe fn f16x16(a: &[f16; PACK_ROWS], b: &[f16; PACK_ROWS]) -> __m512 {
    _mm512_cvtph_ps(halves16(a.as_ptr() as *const u8, b.as_ptr() as *const u8))
}

/// Super-blocks ahead that the K-quant kernels prefetch. The two groups'
/// streams (four with two threads) leave the hardware prefetcher behind:
/// without it Q6_K decode reached 63 % of the read bandwidth, with it 97 %.
const AHEAD: usize = 2;

/// Token tiles up to this size prefetch; larger ones reuse each block for
/// enough tokens that the loads are not what they wait on.
const PREFETCH_TOKENS: usize = 2;

/// Prefetches part `i` of `n` of the block at `p` (whole cache lines), so a
/// kernel can spread one block's prefetches over its loop.
#[inline(always)]
unsafe fn prefetch_part<B>(p: *const B, i: usize, n: usize) {
    let size = std::mem::size_of::<B>();
    let per = size.div_ceil(n).div_ceil(64) * 64;
    let off = (i * per).min(size);
    prefetch_lines((p as *const u8).add(off), per.min(size - off));
}

/// Q4_K and Q5_K: `out[t * 16 + r]` = row `r` of groups `wa` (rows 0..8)
/// and `wb` (8..16) dotted with token `t < T`.
#[inline(always)]
#[allow(clippy::needless_range_loop)] // t indexes both x and the accumulators
unsafe fn tile_k4<W: K4x8, const T: usize>(wa: &[W], wb: &[W], x: &[BlockQ8KAct], out: &mut [f32]) {
    let nb = wa.len();
    let m4 = _mm512_set1_epi8(0xF);
    let bit5 = _mm512_set1_epi8(0x10);
    let mut acc = [_mm512_setzero_ps(); T];
    for b in 0..nb {
        let (ba, bb) = (wa.get_unchecked(b), wb.get_unchecked(b));
        let xs: [&BlockQ8KAct; T] = std::array::from_fn(|t| x.get_unchecked(t * nb + b));
        let (qa, qb) = (ba.qs().as_ptr(), bb.qs().as_ptr());
        let mut isum = [_mm512_setzero_si512(); T];
        let ahead = (b + AHEAD).min(nb - 1);
        for g in 0..8 {
            if T <= PREFETCH_TOKENS {
                prefetch_part(wa.as_ptr().add(ahead), g, 8);
                prefetch_part(wb.as_ptr().add(ahead), g, 8);
            }
            let sc = _mm512_cvtepu8_epi32(_mm_unpacklo_epi64(
                _mm_loadl_epi64(ba.scales().as_ptr().add(8 * g) as *const __m128i),
                _mm_loadl_epi64(bb.scales().as_ptr().add(8 * g) as *const __m128i),
            ));
            let mut sumi = [[_mm512_setzero_si512(); T]; 2];
            for k in 0..8 {
                let at = 32 * (8 * (g / 2) + k);
                let v = halves(qa.add(at), qb.add(at));
                let mut q =
                    if g % 2 == 0 { _mm512_and_si512(v, m4) } else { _mm512_and_si512(_mm512_srli_epi16(v, 4), m4) };
                if let (Some(ha), Some(hb)) = (ba.qh(), bb.qh()) {
                    let mask = ha[8 * g + k] as u64 | (hb[8 * g + k] as u64) << 32;
                    q = _mm512_or_si512(q, _mm512_maskz_mov_epi8(mask, bit5));
                }
                k4_chunk::<T>(q, g, k, &xs, &mut sumi);
            }
            k4_scaled::<T>(&sumi, sc, &mut isum);
        }
        let (d, dmin) = (f16x16(ba.d(), bb.d()), f16x16(ba.dmin(), bb.dmin()));
        let (ma, mb) = (ba.mins().as_ptr(), bb.mins().as_ptr());
        let mv: [__m512i; 4] = std::array::from_fn(|q| _mm512_cvtepu8_epi16(halves16(ma.add(16 * q), mb.add(16 * q))));
        for t in 0..T {
            let gs = xs[t].gsums.as_ptr() as *const i32;
            let mut ms = _mm512_setzero_si512();
            for q in 0..4 {
                ms = _mm512_dpwssd_epi32(ms, mv[q], _mm512_set1_epi32(gs.add(q).read_unaligned()));
            }
            let xd = _mm512_set1_ps(xs[t].d);
            acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum[t]), _mm512_mul_ps(d, xd), acc[t]);
            acc[t] = _mm512_fnmadd_ps(_mm512_cvtepi32_ps(ms), _mm512_mul_ps(dmin, xd), acc[t]);
        }
    }
    for (t, a) in acc.iter().enumerate() {
        _mm512_storeu_ps(out.as_mut_ptr().add(t * ROWS), *a);
    }
}

/// Adds chunk `k` of sub-block `g` (`q`: 16 rows × 4 weights) dotted with
/// each token's activations to `sumi` (alternate chains for few tokens).
#[inline(always)]
#[allow(clippy::needless_range_loop)]
pub(super) unsafe fn k4_chunk<const T: usize>(
    q: __m512i,
    g: usize,
    k: usize,
    xs: &[&BlockQ8KAct; T],
    sumi: &mut [[__m512i; T]; 2],
) {
    let c = if T <= 2 { k % 2 } else { 0 };
    for t in 0..T {
        let xq = xs[t].qs.as_ptr().add(32 * g + 4 * k) as *const i32;
        sumi[c][t] = _mm512_dpbusd_epi32(sumi[c][t], q, _mm512_set1_epi32(xq.read_unaligned()));
    }
}

/// Adds a sub-block's chunk sums times the rows' scales `sc` to `isum`
/// (exact in i32).
#[inline(always)]
#[allow(clippy::needless_range_loop)]
pub(super) unsafe fn k4_scaled<const T: usize>(sumi: &[[__m512i; T]; 2], sc: __m512i, isum: &mut [__m512i; T]) {
    for t in 0..T {
        let s = if T <= 2 { _mm512_add_epi32(sumi[0][t], sumi[1][t]) } else { sumi[0][t] };
        isum[t] = _mm512_add_epi32(isum[t], _mm512_mullo_epi32(s, sc));
    }
}

/// Q6_K: per group of 16 the chunk sums are exact `u8 × i8` sums of the
/// stored `q + 32` (≤ 63); each group's sum is converted and multiplied by
/// the rows' `d · scale` in f32 (one convert and one FMA: the i32 multiply
/// it replaces is two µops on the busiest port and cost a third of the
/// tile). The −32 offset comes from the activations' sums of 16, exact in
/// i32, and starts the sum. The float scales are built once per super-block
/// into a table the FMAs read from L1, and the chunk rows `s` are
/// compile-time so the bit assembly has no branch. Every tile size, and the
/// prefill panel (`x86_panel512`), adds the same terms in the same
/// order, so a row's result does not depend on its batch.
#[inline(always)]
#[allow(clippy::needless_range_loop)] // t indexes both x and the accumulators
unsafe fn tile_q6k<const T: usize>(wa: &[BlockQ6Kx8], wb: &[BlockQ6Kx8], x: &[BlockQ8KAct], out: &mut [f32]) {
    let nb = wa.len();
    let mut acc = [_mm512_setzero_ps(); T];
    let mut fsc = [[0f32; 16]; 16];
    let mut pairs = [[0i16; 32]; 8];
    for b in 0..nb {
        let (ba, bb) = (wa.get_unchecked(b), wb.get_unchecked(b));
        let xs: [&BlockQ8KAct; T] = std::array::from_fn(|t| x.get_unchecked(t * nb + b));
        let d = q6k_scales(ba, bb, &mut fsc, &mut pairs);
        let ahead = (b + AHEAD).min(nb - 1);
        if T <= PREFETCH_TOKENS {
            for i in 0..16 {
                prefetch_part(wa.as_ptr().add(ahead), i, 16);
                prefetch_part(wb.as_ptr().add(ahead), i, 16);
            }
        }
        let mut sum = [_mm512_setzero_ps(); T];
        for t in 0..T {
            sum[t] = q6k_offset(&pairs, xs[t], d);
        }
        q6k_superblock::<T>(ba, bb, &xs, &fsc, &mut sum);
        for t in 0..T {
            acc[t] = _mm512_fmadd_ps(sum[t], _mm512_set1_ps(xs[t].d), acc[t]);
        }
    }
    for (t, a) in acc.iter().enumerate() {
        _mm512_storeu_ps(out.as_mut_ptr().add(t * ROWS), *a);
    }
}

/// The rows' `d` of a Q6_K super-block pair; fills `fsc[g]` (f32 lane `r` =
/// row `r`'s `d · scale` of group `g`) and `pairs[q]` (i16 lane `2r + e` =
/// group `2q + e`'s scale).
#[inline(always)]
pub(super) unsafe fn q6k_scales(
    ba: &BlockQ6Kx8,
    bb: &BlockQ6Kx8,
    fsc: &mut [[f32; 16]; 16],
    pairs: &mut [[i16; 32]; 8],
) -> __m512 {
    let (sa, sb) = (ba.scales.as_ptr() as *const u8, bb.scales.as_ptr() as *const u8);
    let d = f16x16(&ba.d, &bb.d);
    for q in 0..8 {
        let v = _mm512_cvtepi8_epi16(halves16(sa.add(16 * q), sb.add(16 * q)));
        _mm512_storeu_si512(pairs[q].as_mut_ptr() as *mut __m512i, v);
        let even = _mm512_cvtepi32_ps(_mm512_srai_epi32(_mm512_slli_epi32(v, 16), 16));
        let odd = _mm512_cvtepi32_ps(_mm512_srai_epi32(v, 16));
        _mm512_storeu_ps(fsc[2 * q].as_mut_ptr(), _mm512_mul_ps(even, d));
        _mm512_storeu_ps(fsc[2 * q + 1].as_mut_ptr(), _mm512_mul_ps(odd, d));
    }
    d
}

/// `−32 · d · Σ_g scale_g · bsum_g` for one token: the offset of the stored
/// `q + 32`, exact in i32 until the one conversion.
#[inline(always)]
pub(super) unsafe fn q6k_offset(pairs: &[[i16; 32]; 8], x: &BlockQ8KAct, d: __m512) -> __m512 {
    let bs = x.bsums.as_ptr() as *const i32;
    let mut off = _mm512_setzero_si512();
    for q in 0..8 {
        let pv = _mm512_loadu_si512(pairs[q].as_ptr() as *const __m512i);
        off = _mm512_dpwssd_epi32(off, pv, _mm512_set1_epi32(bs.add(q).read_unaligned()));
    }
    _mm512_mul_ps(_mm512_cvtepi32_ps(off), _mm512_mul_ps(d, _mm512_set1_ps(-32.0)))
}

/// The group sums of one Q6_K super-block pair, added to `sum`. Not
/// inlined: on its own the register allocator keeps the chunk sums and
/// float sums of eight tokens in registers, where inside the tile loop
/// (with the accumulators live) it spilled them.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
#[inline(never)]
unsafe fn q6k_superblock<const T: usize>(
    ba: &BlockQ6Kx8,
    bb: &BlockQ6Kx8,
    xs: &[&BlockQ8KAct; T],
    fsc: &[[f32; 16]; 16],
    sum: &mut [__m512; T],
) {
    q6k_row::<0, T>(ba, bb, xs, fsc, sum);
    q6k_row::<1, T>(ba, bb, xs, fsc, sum);
    q6k_row::<2, T>(ba, bb, xs, fsc, sum);
    q6k_row::<3, T>(ba, bb, xs, fsc, sum);
}

/// Chunk `v + 16S` (weights `4 (v + 16S)..+4` of the 16 rows) of a Q6_K
/// super-block pair as bytes `q + 32`: the low (`S < 2`) or high nibbles of
/// `ql` chunk `v + 16 (S % 2)`, top bits from `qh` chunk `v` shifted by `2S`.
#[inline(always)]
pub(super) unsafe fn q6k_chunk<const S: usize>(ba: &BlockQ6Kx8, bb: &BlockQ6Kx8, v: usize) -> __m512i {
    let (m4, m30) = (_mm512_set1_epi8(0xF), _mm512_set1_epi8(0x30));
    let l = halves(ba.ql.as_ptr().add(32 * (v + 16 * (S % 2))), bb.ql.as_ptr().add(32 * (v + 16 * (S % 2))));
    let hv = halves(ba.qh.as_ptr().add(32 * v), bb.qh.as_ptr().add(32 * v));
    let lo = if S < 2 { _mm512_and_si512(l, m4) } else { _mm512_and_si512(_mm512_srli_epi16(l, 4), m4) };
    let hi = match S {
        0 => _mm512_slli_epi16(hv, 4),
        1 => _mm512_slli_epi16(hv, 2),
        2 => hv,
        _ => _mm512_srli_epi16(hv, 2),
    };
    _mm512_or_si512(lo, _mm512_and_si512(hi, m30))
}

/// Adds group `g`'s sums to `sum`: chunks `q[k]` (`4g + k`) dotted with each
/// token's activations, two chains for few tokens so the sum does not wait
/// on one, then scaled by `scale`.
#[inline(always)]
#[allow(clippy::needless_range_loop)]
pub(super) unsafe fn q6k_group<const T: usize>(
    q: &[__m512i; 4],
    g: usize,
    scale: __m512,
    xs: &[&BlockQ8KAct; T],
    sum: &mut [__m512; T],
) {
    let split = T <= 2;
    let mut sumi = [[_mm512_setzero_si512(); T]; 2];
    for k in 0..4 {
        let c = if split { k % 2 } else { 0 };
        for t in 0..T {
            let xq = xs[t].qs.as_ptr() as *const i32;
            let xv = _mm512_set1_epi32(xq.add(4 * g + k).read_unaligned());
            sumi[c][t] = _mm512_dpbusd_epi32(sumi[c][t], q[k], xv);
        }
    }
    for t in 0..T {
        let si = if split { _mm512_add_epi32(sumi[0][t], sumi[1][t]) } else { sumi[0][t] };
        sum[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(si), scale, sum[t]);
    }
}

/// Groups `h + 4S` (h < 4) of one Q6_K super-block pair, assembled from the
/// packed bits.
#[inline(always)]
unsafe fn q6k_row<const S: usize, const T: usize>(
    ba: &BlockQ6Kx8,
    bb: &BlockQ6Kx8,
    xs: &[&BlockQ8KAct; T],
    fsc: &[[f32; 16]; 16],
    sum: &mut [__m512; T],
) {
    for h in 0..4 {
        let mut q = [_mm512_setzero_si512(); 4];
        for k in 0..4 {
            q[k] = q6k_chunk::<S>(ba, bb, 4 * h + k);
        }
        let scale = _mm512_loadu_ps(fsc[h + 4 * S].as_ptr());
        q6k_group::<T>(&q, h + 4 * S, scale, xs, sum);
    }
}

/// 4- and 5-bit 32-weight types: `out[t * 16 + r]` for groups `wa`, `wb`
/// and tokens `t < T`, as `x86_packed::tile` does for one group (the
/// unpacked 256-bit registers of the two groups joined into one).
#[inline(always)]
#[allow(clippy::needless_range_loop)] // t indexes both x and the accumulators
unsafe fn tile32<W: Nibbles, const T: usize>(wa: &[W], wb: &[W], x: &[BlockQ8Act], out: &mut [f32]) {
    let nb = wa.len();
    let (mut acc, mut accm) = ([_mm512_setzero_ps(); T], [_mm512_setzero_ps(); T]);
    for b in 0..nb {
        let (ba, bb) = (wa.get_unchecked(b), wb.get_unchecked(b));
        let dw = _mm512_cvtph_ps(halves16(ba.scales().as_ptr() as *const u8, bb.scales().as_ptr() as *const u8));
        let mw = if W::MIN {
            _mm512_cvtph_ps(halves16(ba.mins().as_ptr() as *const u8, bb.mins().as_ptr() as *const u8))
        } else {
            dw
        };
        let ((la, ha), (lb, hb)) = (ba.unpack::<Vnni>(), bb.unpack::<Vnni>());
        let join = |a: __m256i, b: __m256i| _mm512_inserti64x4(_mm512_castsi256_si512(a), b, 1);
        let lo: [__m512i; 4] = std::array::from_fn(|g| join(la[g], lb[g]));
        let hi: [__m512i; 4] = std::array::from_fn(|g| join(ha[g], hb[g]));
        for t in 0..T {
            let xb = x.get_unchecked(t * nb + b);
            let xq = xb.qs.as_ptr() as *const i32;
            let (mut s, mut s2) = (_mm512_setzero_si512(), _mm512_setzero_si512());
            for g in 0..4 {
                s = _mm512_dpbusd_epi32(s, lo[g], _mm512_set1_epi32(xq.add(g).read_unaligned()));
                s2 = _mm512_dpbusd_epi32(s2, hi[g], _mm512_set1_epi32(xq.add(4 + g).read_unaligned()));
            }
            let s = _mm512_cvtepi32_ps(_mm512_add_epi32(s, s2));
            let scale = _mm512_mul_ps(dw, _mm512_set1_ps(xb.d));
            if W::MIN {
                acc[t] = _mm512_fmadd_ps(s, scale, acc[t]);
                accm[t] = _mm512_fmadd_ps(mw, _mm512_set1_ps(xb.s), accm[t]);
            } else {
                acc[t] = _mm512_fmadd_ps(_mm512_sub_ps(s, _mm512_set1_ps(xb.s)), scale, acc[t]);
            }
        }
    }
    for t in 0..T {
        let a = if W::MIN { _mm512_add_ps(acc[t], accm[t]) } else { acc[t] };
        _mm512_storeu_ps(out.as_mut_ptr().add(t * ROWS), a);
    }
}

/// One token through the one-group kernel twice (for decode the joined
/// registers do not pay: the join costs what the wider multiply saves).
#[inline(always)]
unsafe fn one_token32<W: Nibbles>(wa: &[W], wb: &[W], x: &[BlockQ8Act], out: &mut [f32]) {
    tile::<Vnni, W, 1>(wa, x, &mut out[..PACK_ROWS]);
    tile::<Vnni, W, 1>(wb, x, &mut out[PACK_ROWS..ROWS]);
}

/// Splits `nt` tokens into register tiles of 8, 4, 2, 1 for a two-group kernel.
macro_rules! tiles16 {
    ($tile:ident $(::<$W:ty>)?, $wa:expr, $wb:expr, $x:expr, $nt:expr, $out:expr) => {{
        let (wa, wb, x, nt, out) = ($wa, $wb, $x, $nt, $out);
        let nb = wa.len();
        let mut t0 = 0;
        while nt - t0 >= 8 {
            $tile::<$($W,)? 8>(wa, wb, &x[t0 * nb..], &mut out[t0 * ROWS..]);
            t0 += 8;
        }
        for step in [4, 2, 1] {
            if nt - t0 >= step {
                match step {
                    4 => $tile::<$($W,)? 4>(wa, wb, &x[t0 * nb..], &mut out[t0 * ROWS..]),
                    2 => $tile::<$($W,)? 2>(wa, wb, &x[t0 * nb..], &mut out[t0 * ROWS..]),
                    _ => $tile::<$($W,)? 1>(wa, wb, &x[t0 * nb..], &mut out[t0 * ROWS..]),
                }
                t0 += step;
            }
        }
    }};
}

/// Q4_K, two row groups; `out` holds `nt * 16` values.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
pub(crate) unsafe fn vnni_q4_kx16(wa: &[BlockQ4Kx8], wb: &[BlockQ4Kx8], x: &[BlockQ8KAct], nt: usize, out: &mut [f32]) {
    tiles16!(tile_k4::<BlockQ4Kx8>, wa, wb, x, nt, out)
}

/// Q5_K, two row groups.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
pub(crate) unsafe fn vnni_q5_kx16(wa: &[BlockQ5Kx8], wb: &[BlockQ5Kx8], x: &[BlockQ8KAct], nt: usize, out: &mut [f32]) {
    tiles16!(tile_k4::<BlockQ5Kx8>, wa, wb, x, nt, out)
}

/// Q6_K, two row groups.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
pub(crate) unsafe fn vnni_q6_kx16(wa: &[BlockQ6Kx8], wb: &[BlockQ6Kx8], x: &[BlockQ8KAct], nt: usize, out: &mut [f32]) {
    tiles16!(tile_q6k, wa, wb, x, nt, out)
}

/// Implements the two-group entry points of the 32-weight layouts.
macro_rules! entry_points32 {
    ($($name:ident: $B:ty;)*) => {$(
        /// Two row groups; `out` holds `nt * 16` values.
        #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
        pub(crate) unsafe fn $name(wa: &[$B], wb: &[$B], x: &[BlockQ8Act], nt: usize, out: &mut [f32]) {
            if nt == 1 {
                one_token32(wa, wb, x, out)
            } else {
                tiles16!(tile32::<$B>, wa, wb, x, nt, out)
            }
        }
    )*};
}

entry_points32! {
    vnni_q4_0x16: BlockQ4_0x8;
    vnni_q4_1x16: BlockQ4_1x8;
    vnni_q5_0x16: BlockQ5_0x8;
    vnni_q5_1x16: BlockQ5_1x8;
}
