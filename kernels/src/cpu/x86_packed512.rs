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
const ROWS: usize = 2 * PACK_ROWS;

/// Bytes `[a; 32]` in the low half, `[b; 32]` in the high half.
#[inline(always)]
unsafe fn halves(a: *const u8, b: *const u8) -> __m512i {
    let lo = _mm512_castsi256_si512(_mm256_loadu_si256(a as *const __m256i));
    _mm512_inserti64x4(lo, _mm256_loadu_si256(b as *const __m256i), 1)
}

/// 16 bytes of `a` then 16 of `b`.
#[inline(always)]
unsafe fn halves16(a: *const u8, b: *const u8) -> __m256i {
    _mm256_set_m128i(_mm_loadu_si128(b as *const __m128i), _mm_loadu_si128(a as *const __m128i))
}

#[inline(always)]
unsafe fn f16x16(a: &[f16; PACK_ROWS], b: &[f16; PACK_ROWS]) -> __m512 {
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
    let split = T <= 2;
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
                let c = if split { k % 2 } else { 0 };
                for t in 0..T {
                    let xq = xs[t].qs.as_ptr().add(32 * g + 4 * k) as *const i32;
                    sumi[c][t] = _mm512_dpbusd_epi32(sumi[c][t], q, _mm512_set1_epi32(xq.read_unaligned()));
                }
            }
            for t in 0..T {
                let s = if split { _mm512_add_epi32(sumi[0][t], sumi[1][t]) } else { sumi[0][t] };
                isum[t] = _mm512_add_epi32(isum[t], _mm512_mullo_epi32(s, sc));
            }
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

/// Q6_K: per group of 16 the chunk sums are exact `u8 × i8` sums of the
/// stored `q + 32` (≤ 63), scaled by the rows' signed scales in i32; the −32
/// offset comes from the activations' sums of 16. The scales are widened
/// once per super-block into a small table the multiplies read from L1
/// (kept in registers they spilled, with the accumulators of eight tokens),
/// and the chunk rows `s` are compile-time so the bit assembly has no branch.
#[inline(always)]
#[allow(clippy::needless_range_loop)] // t indexes both x and the accumulators
unsafe fn tile_q6k<const T: usize>(wa: &[BlockQ6Kx8], wb: &[BlockQ6Kx8], x: &[BlockQ8KAct], out: &mut [f32]) {
    let nb = wa.len();
    let mut acc = [_mm512_setzero_ps(); T];
    // sc[g]: i32 lane r = row r's scale of group g; pairs[q]: i16 lane 2r + e = group 2q + e's.
    let mut sc = [[0i32; 16]; 16];
    let mut pairs = [[0i16; 32]; 8];
    for b in 0..nb {
        let (ba, bb) = (wa.get_unchecked(b), wb.get_unchecked(b));
        let xs: [&BlockQ8KAct; T] = std::array::from_fn(|t| x.get_unchecked(t * nb + b));
        let (sa, sb) = (ba.scales.as_ptr() as *const u8, bb.scales.as_ptr() as *const u8);
        for q in 0..8 {
            let v = _mm512_cvtepi8_epi16(halves16(sa.add(16 * q), sb.add(16 * q)));
            _mm512_storeu_si512(pairs[q].as_mut_ptr() as *mut __m512i, v);
            _mm512_storeu_si512(sc[2 * q].as_mut_ptr() as *mut __m512i, _mm512_srai_epi32(_mm512_slli_epi32(v, 16), 16));
            _mm512_storeu_si512(sc[2 * q + 1].as_mut_ptr() as *mut __m512i, _mm512_srai_epi32(v, 16));
        }
        let ahead = (b + AHEAD).min(nb - 1);
        if T <= PREFETCH_TOKENS {
            for i in 0..16 {
                prefetch_part(wa.as_ptr().add(ahead), i, 16);
                prefetch_part(wb.as_ptr().add(ahead), i, 16);
            }
        }
        let mut isum = [_mm512_setzero_si512(); T];
        q6k_row::<0, T>(ba, bb, &xs, &sc, &mut isum);
        q6k_row::<1, T>(ba, bb, &xs, &sc, &mut isum);
        q6k_row::<2, T>(ba, bb, &xs, &sc, &mut isum);
        q6k_row::<3, T>(ba, bb, &xs, &sc, &mut isum);
        let d = f16x16(&ba.d, &bb.d);
        for t in 0..T {
            let bs = xs[t].bsums.as_ptr() as *const i32;
            let mut off = _mm512_setzero_si512();
            for q in 0..8 {
                let pv = _mm512_loadu_si512(pairs[q].as_ptr() as *const __m512i);
                off = _mm512_dpwssd_epi32(off, pv, _mm512_set1_epi32(bs.add(q).read_unaligned()));
            }
            let si = _mm512_sub_epi32(isum[t], _mm512_slli_epi32(off, 5));
            acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(si), _mm512_mul_ps(d, _mm512_set1_ps(xs[t].d)), acc[t]);
        }
    }
    for (t, a) in acc.iter().enumerate() {
        _mm512_storeu_ps(out.as_mut_ptr().add(t * ROWS), *a);
    }
}

/// Groups `h + 4S` (h < 4) of one Q6_K super-block pair: chunks `v + 16S`,
/// `v = 4h + k`, whose low bits are the low (`S < 2`) or high nibbles of
/// `ql` chunk `v + 16 (S % 2)` and top bits `qh` chunk `v` shifted by `2S`.
#[inline(always)]
#[allow(clippy::needless_range_loop)]
unsafe fn q6k_row<const S: usize, const T: usize>(
    ba: &BlockQ6Kx8,
    bb: &BlockQ6Kx8,
    xs: &[&BlockQ8KAct; T],
    sc: &[[i32; 16]; 16],
    isum: &mut [__m512i; T],
) {
    let m4 = _mm512_set1_epi8(0xF);
    let m30 = _mm512_set1_epi8(0x30);
    let (la, lb) = (ba.ql.as_ptr(), bb.ql.as_ptr());
    let (ha, hb) = (ba.qh.as_ptr(), bb.qh.as_ptr());
    let split = T <= 2;
    for h in 0..4 {
        let mut sumi = [[_mm512_setzero_si512(); T]; 2];
        for k in 0..4 {
            let v = 4 * h + k;
            let l = halves(la.add(32 * (v + 16 * (S % 2))), lb.add(32 * (v + 16 * (S % 2))));
            let hv = halves(ha.add(32 * v), hb.add(32 * v));
            let lo = if S < 2 { _mm512_and_si512(l, m4) } else { _mm512_and_si512(_mm512_srli_epi16(l, 4), m4) };
            let hi = match S {
                0 => _mm512_slli_epi16(hv, 4),
                1 => _mm512_slli_epi16(hv, 2),
                2 => hv,
                _ => _mm512_srli_epi16(hv, 2),
            };
            let q = _mm512_or_si512(lo, _mm512_and_si512(hi, m30));
            let c = if split { k % 2 } else { 0 };
            for t in 0..T {
                let xq = xs[t].qs.as_ptr() as *const i32;
                let xv = _mm512_set1_epi32(xq.add(v + 16 * S).read_unaligned());
                sumi[c][t] = _mm512_dpbusd_epi32(sumi[c][t], q, xv);
            }
        }
        let scale = _mm512_loadu_si512(sc[h + 4 * S].as_ptr() as *const __m512i);
        for t in 0..T {
            let si = if split { _mm512_add_epi32(sumi[0][t], sumi[1][t]) } else { sumi[0][t] };
            isum[t] = _mm512_add_epi32(isum[t], _mm512_mullo_epi32(si, scale));
        }
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
