//! AVX-512 prefill panels for the K-quants: a pair of row groups is
//! unpacked once into bytes (the weights as the integer dot product takes
//! them) and scale tables, in a per-thread scratch, then dotted with every
//! token of the prompt in tiles of eight. The direct kernels
//! (`x86_packed512`) assemble the bits again for each tile, which costs as
//! about as much as the dot products for Q5_K and Q6_K (Q4_K's nibbles are
//! cheap enough that a panel does not pay). The sums are those of the
//! direct kernels term for term, so a row's result does not depend on
//! whether its batch went through a panel. Entry points are `unsafe`: the
//! caller must have detected AVX-512 F/BW/VL/VNNI, and `x` must hold `nt`
//! rows of `wa.len()` blocks, with `wb.len() == wa.len()`.

use std::arch::x86_64::*;

use super::repack_k::{BlockQ5Kx8, BlockQ6Kx8, BlockQ8KAct};
use super::x86_packed512::{
    f16x16, halves, halves16, k4_chunk, k4_scaled, q6k_chunk, q6k_group, q6k_offset, q6k_scales, ROWS,
};
use super::x86_packed_k::K4x8;

/// Splits `nt` tokens into register tiles of 8, 4, 2, 1 over a panel.
macro_rules! panel_tiles {
    ($tile:ident, $panel:expr, $x:expr, $nt:expr, $out:expr) => {{
        let (panel, x, nt, out) = ($panel, $x, $nt, $out);
        let nb = panel.len();
        let mut t0 = 0;
        while nt - t0 >= 8 {
            $tile::<8>(panel, &x[t0 * nb..], &mut out[t0 * ROWS..]);
            t0 += 8;
        }
        for step in [4, 2, 1] {
            if nt - t0 >= step {
                match step {
                    4 => $tile::<4>(panel, &x[t0 * nb..], &mut out[t0 * ROWS..]),
                    2 => $tile::<2>(panel, &x[t0 * nb..], &mut out[t0 * ROWS..]),
                    _ => $tile::<1>(panel, &x[t0 * nb..], &mut out[t0 * ROWS..]),
                }
                t0 += step;
            }
        }
    }};
}

/// One Q6_K super-block pair unpacked for prefill: the 16 rows' `q + 32`
/// as bytes (chunk `j`, weights `4j..4j + 4` of every row, at `q[j]`), with
/// the tables of `q6k_scales`. A panel is unpacked once and dotted with
/// every token of the pass, where the direct kernel assembles the bits again
/// for each tile of eight.
#[repr(C, align(64))]
#[derive(Clone, Copy)]
pub(crate) struct Q6KPanel {
    q: [[u8; 64]; 64],
    fsc: [[f32; 16]; 16],
    pairs: [[i16; 32]; 8],
    d: [f32; 16],
}

thread_local! {
    /// Each thread's panel scratch, grown to the longest row seen.
    static Q6K_PANEL: std::cell::RefCell<Vec<Q6KPanel>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Q6_K, two row groups, any number of tokens (`out` holds `nt * 16`).
pub(crate) unsafe fn vnni_q6_kx16_panel(
    wa: &[BlockQ6Kx8],
    wb: &[BlockQ6Kx8],
    x: &[BlockQ8KAct],
    nt: usize,
    out: &mut [f32],
) {
    // Outside the target-feature functions: a closure there would not
    // inherit the features (and its intrinsics would become calls).
    Q6K_PANEL.with_borrow_mut(|panel| {
        let zero = Q6KPanel { q: [[0; 64]; 64], fsc: [[0.0; 16]; 16], pairs: [[0; 32]; 8], d: [0.0; 16] };
        if panel.len() < wa.len() {
            panel.resize(wa.len(), zero);
        }
        let panel = &mut panel[..wa.len()];
        // SAFETY: as this function's contract.
        unsafe {
            q6k_unpack(wa, wb, panel);
            q6k_panel_tiles(panel, x, nt, out);
        }
    })
}

#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn q6k_unpack(wa: &[BlockQ6Kx8], wb: &[BlockQ6Kx8], panel: &mut [Q6KPanel]) {
    for (b, p) in panel.iter_mut().enumerate() {
        let (ba, bb) = (wa.get_unchecked(b), wb.get_unchecked(b));
        let d = q6k_scales(ba, bb, &mut p.fsc, &mut p.pairs);
        _mm512_storeu_ps(p.d.as_mut_ptr(), d);
        for v in 0..16 {
            _mm512_storeu_si512(p.q[v].as_mut_ptr() as *mut __m512i, q6k_chunk::<0>(ba, bb, v));
            _mm512_storeu_si512(p.q[v + 16].as_mut_ptr() as *mut __m512i, q6k_chunk::<1>(ba, bb, v));
            _mm512_storeu_si512(p.q[v + 32].as_mut_ptr() as *mut __m512i, q6k_chunk::<2>(ba, bb, v));
            _mm512_storeu_si512(p.q[v + 48].as_mut_ptr() as *mut __m512i, q6k_chunk::<3>(ba, bb, v));
        }
    }
}

#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn q6k_panel_tiles(panel: &[Q6KPanel], x: &[BlockQ8KAct], nt: usize, out: &mut [f32]) {
    panel_tiles!(q6k_panel_tile, panel, x, nt, out)
}

#[inline(always)]
#[allow(clippy::needless_range_loop)]
unsafe fn q6k_panel_tile<const T: usize>(panel: &[Q6KPanel], x: &[BlockQ8KAct], out: &mut [f32]) {
    let nb = panel.len();
    let mut acc = [_mm512_setzero_ps(); T];
    for (b, p) in panel.iter().enumerate() {
        let xs: [&BlockQ8KAct; T] = std::array::from_fn(|t| x.get_unchecked(t * nb + b));
        let d = _mm512_loadu_ps(p.d.as_ptr());
        let mut sum = [_mm512_setzero_ps(); T];
        for t in 0..T {
            sum[t] = q6k_offset(&p.pairs, xs[t], d);
        }
        q6k_panel_superblock::<T>(p, &xs, &mut sum);
        for t in 0..T {
            acc[t] = _mm512_fmadd_ps(sum[t], _mm512_set1_ps(xs[t].d), acc[t]);
        }
    }
    for (t, a) in acc.iter().enumerate() {
        _mm512_storeu_ps(out.as_mut_ptr().add(t * ROWS), *a);
    }
}

/// The direct kernel's super-block sums over an unpacked panel.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
#[inline(never)]
#[allow(clippy::needless_range_loop)]
unsafe fn q6k_panel_superblock<const T: usize>(p: &Q6KPanel, xs: &[&BlockQ8KAct; T], sum: &mut [__m512; T]) {
    for g in 0..16 {
        let mut q = [_mm512_setzero_si512(); 4];
        for k in 0..4 {
            q[k] = _mm512_load_si512(p.q[4 * g + k].as_ptr() as *const __m512i);
        }
        q6k_group::<T>(&q, g, _mm512_loadu_ps(p.fsc[g].as_ptr()), xs, sum);
    }
}

/// One Q5_K super-block pair unpacked for prefill (the layout serves Q4_K
/// too, but Q4_K's bits unpack in two operations and its panel did not pay): the 16 rows'
/// 4- or 5-bit values as bytes (chunk `j = 8g + k` of sub-block `g`,
/// weights `4j..4j + 4` of every row, at `q[j]`), the sub-block scales as
/// i32 lanes, the mins as the i16 pairs `vpdpwssd` takes, `d` and `dmin`.
#[repr(C, align(64))]
#[derive(Clone, Copy)]
pub(crate) struct K4Panel {
    q: [[u8; 64]; 64],
    sc: [[i32; 16]; 8],
    mv: [[i16; 32]; 4],
    d: [f32; 16],
    dmin: [f32; 16],
}

thread_local! {
    static K4_PANEL: std::cell::RefCell<Vec<K4Panel>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Q5_K, two row groups, any number of tokens (`out` holds `nt * 16`).
pub(crate) unsafe fn vnni_q5_kx16_panel(
    wa: &[BlockQ5Kx8],
    wb: &[BlockQ5Kx8],
    x: &[BlockQ8KAct],
    nt: usize,
    out: &mut [f32],
) {
    k4_panel(wa, wb, x, nt, out)
}

unsafe fn k4_panel<W: K4x8>(wa: &[W], wb: &[W], x: &[BlockQ8KAct], nt: usize, out: &mut [f32]) {
    K4_PANEL.with_borrow_mut(|panel| {
        let zero = K4Panel { q: [[0; 64]; 64], sc: [[0; 16]; 8], mv: [[0; 32]; 4], d: [0.0; 16], dmin: [0.0; 16] };
        if panel.len() < wa.len() {
            panel.resize(wa.len(), zero);
        }
        let panel = &mut panel[..wa.len()];
        // SAFETY: as this module's contract.
        unsafe {
            k4_unpack(wa, wb, panel);
            k4_panel_tiles(panel, x, nt, out);
        }
    })
}

#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn k4_unpack<W: K4x8>(wa: &[W], wb: &[W], panel: &mut [K4Panel]) {
    let m4 = _mm512_set1_epi8(0xF);
    let bit5 = _mm512_set1_epi8(0x10);
    for (b, p) in panel.iter_mut().enumerate() {
        let (ba, bb) = (wa.get_unchecked(b), wb.get_unchecked(b));
        let (qa, qb) = (ba.qs().as_ptr(), bb.qs().as_ptr());
        for g in 0..8 {
            for k in 0..8 {
                let at = 32 * (8 * (g / 2) + k);
                let v = halves(qa.add(at), qb.add(at));
                let mut q =
                    if g % 2 == 0 { _mm512_and_si512(v, m4) } else { _mm512_and_si512(_mm512_srli_epi16(v, 4), m4) };
                if let (Some(ha), Some(hb)) = (ba.qh(), bb.qh()) {
                    let mask = ha[8 * g + k] as u64 | (hb[8 * g + k] as u64) << 32;
                    q = _mm512_or_si512(q, _mm512_maskz_mov_epi8(mask, bit5));
                }
                _mm512_store_si512(p.q[8 * g + k].as_mut_ptr() as *mut __m512i, q);
            }
            let sc = _mm512_cvtepu8_epi32(_mm_unpacklo_epi64(
                _mm_loadl_epi64(ba.scales().as_ptr().add(8 * g) as *const __m128i),
                _mm_loadl_epi64(bb.scales().as_ptr().add(8 * g) as *const __m128i),
            ));
            _mm512_storeu_si512(p.sc[g].as_mut_ptr() as *mut __m512i, sc);
        }
        let (ma, mb) = (ba.mins().as_ptr(), bb.mins().as_ptr());
        for q in 0..4 {
            let mv = _mm512_cvtepu8_epi16(halves16(ma.add(16 * q), mb.add(16 * q)));
            _mm512_storeu_si512(p.mv[q].as_mut_ptr() as *mut __m512i, mv);
        }
        _mm512_storeu_ps(p.d.as_mut_ptr(), f16x16(ba.d(), bb.d()));
        _mm512_storeu_ps(p.dmin.as_mut_ptr(), f16x16(ba.dmin(), bb.dmin()));
    }
}

#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn k4_panel_tiles(panel: &[K4Panel], x: &[BlockQ8KAct], nt: usize, out: &mut [f32]) {
    panel_tiles!(k4_panel_tile, panel, x, nt, out)
}

/// The float steps of the direct `tile_k4`, in its order.
#[inline(always)]
#[allow(clippy::needless_range_loop)]
unsafe fn k4_panel_tile<const T: usize>(panel: &[K4Panel], x: &[BlockQ8KAct], out: &mut [f32]) {
    let nb = panel.len();
    let mut acc = [_mm512_setzero_ps(); T];
    for (b, p) in panel.iter().enumerate() {
        let xs: [&BlockQ8KAct; T] = std::array::from_fn(|t| x.get_unchecked(t * nb + b));
        let mut isum = [_mm512_setzero_si512(); T];
        k4_panel_superblock::<T>(p, &xs, &mut isum);
        let (d, dmin) = (_mm512_loadu_ps(p.d.as_ptr()), _mm512_loadu_ps(p.dmin.as_ptr()));
        for t in 0..T {
            let gs = xs[t].gsums.as_ptr() as *const i32;
            let mut ms = _mm512_setzero_si512();
            for q in 0..4 {
                let mv = _mm512_loadu_si512(p.mv[q].as_ptr() as *const __m512i);
                ms = _mm512_dpwssd_epi32(ms, mv, _mm512_set1_epi32(gs.add(q).read_unaligned()));
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

/// The exact integer sums of one super-block pair: each sub-block's chunk
/// sums times its scales.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
#[inline(never)]
#[allow(clippy::needless_range_loop)]
unsafe fn k4_panel_superblock<const T: usize>(p: &K4Panel, xs: &[&BlockQ8KAct; T], isum: &mut [__m512i; T]) {
    for g in 0..8 {
        let sc = _mm512_loadu_si512(p.sc[g].as_ptr() as *const __m512i);
        let mut sumi = [[_mm512_setzero_si512(); T]; 2];
        for k in 0..8 {
            k4_chunk::<T>(_mm512_load_si512(p.q[8 * g + k].as_ptr() as *const __m512i), g, k, xs, &mut sumi);
        }
        k4_scaled::<T>(&sumi, sc, isum);
    }
}
