//! The half-math kernel of [`super::float_panels`] on AVX-512 FP16: 32 rows
//! of f16 weights are one register, each token's f16 activation is
//! broadcast from memory into `vfmadd231ph` (32 multiply-adds per
//! instruction, twice `vfmadd231ps`), eight tokens per tile (four and one
//! for the rest). Every
//! [`HALF_RUN`] columns the f16 sums are widened and added into f32, so
//! rounding grows with a run, not with the whole row.
//!
//! Rust has no stable intrinsics for these instructions, so the column
//! loop is inline assembly; the rest is ordinary AVX-512.

use std::arch::asm;
use std::arch::x86_64::*;
use std::sync::OnceLock;

use rayon::prelude::*;

use super::float_panels::{PanelData, Panels, HALF_RUN, PANEL_ROWS};
use super::OutPtr;

/// Tokens of the full tile.
const TILE_TOKENS: usize = 8;

/// Whether this CPU runs AVX-512 FP16 (detected once).
pub(crate) fn available() -> bool {
    static HAS: OnceLock<bool> = OnceLock::new();
    *HAS.get_or_init(|| {
        is_x86_feature_detected!("avx512fp16")
            && is_x86_feature_detected!("avx512bw")
            && is_x86_feature_detected!("avx512dq")
    })
}

/// `out = x` rounded to f16 (to nearest even), in parallel chunks; a value
/// past f16's range becomes infinite, which the caller's finiteness check
/// catches.
pub(crate) fn to_half(x: &[f32], out: &mut [u16]) {
    out.par_chunks_mut(16 * 1024).zip(x.par_chunks(16 * 1024)).for_each(|(o, x)| {
        // SAFETY: `available()` (AVX-512 F) was checked by the caller.
        unsafe { to_half_chunk(x, o) }
    });
}

#[target_feature(enable = "avx512f")]
unsafe fn to_half_chunk(x: &[f32], out: &mut [u16]) {
    let mut i = 0;
    while i + 16 <= x.len() {
        let h =
            _mm512_cvtps_ph::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(_mm512_loadu_ps(x.as_ptr().add(i)));
        _mm256_storeu_si256(out.as_mut_ptr().add(i) as *mut __m256i, h);
        i += 16;
    }
    for (o, v) in out[i..].iter_mut().zip(&x[i..]) {
        *o = half::f16::from_f32(*v).to_bits();
    }
}

/// Rows `32p..32p + 32` of tokens `t0..t1` into `out`, from f16 activations
/// `xh` (`cols` per token); whether every value written is finite.
///
/// # Safety
/// AVX-512 F/BW/FP16 are present ([`available`]); the panels are F16; panel
/// `p` exists; `xh` holds `t1` tokens; `out` has `t1 × rows` values and no
/// other task writes these.
pub(crate) unsafe fn panel_tokens(w: Panels, p: usize, xh: &[u16], t0: usize, t1: usize, out: OutPtr) -> bool {
    let PanelData::Half(data) = w.data else { return false };
    let mut finite = true;
    let wp = data.as_ptr().add(p * PANEL_ROWS * w.cols);
    let mut t = t0;
    while t < t1 {
        let xp = xh.as_ptr().add(t * w.cols);
        let op = out.0.add(t * w.rows + p * PANEL_ROWS);
        if t1 - t >= TILE_TOKENS {
            finite &= tile8(wp, xp, w.cols, op, w.rows);
            t += TILE_TOKENS;
        } else if t1 - t >= 4 {
            finite &= tile4(wp, xp, w.cols, op, w.rows);
            t += 4;
        } else {
            finite &= tile1(wp, xp, w.cols, op);
            t += 1;
        }
    }
    finite
}

/// Eight tokens: `out[j * rows + i] = Σ_runs f32(Σ_run f16 products)`.
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512fp16")]
unsafe fn tile8(wp: *const u16, xp: *const u16, cols: usize, op: *mut f32, rows: usize) -> bool {
    let mut sums = [_mm512_setzero_ps(); 2 * TILE_TOKENS];
    let stride = cols * 2;
    let mut c0 = 0;
    while c0 < cols {
        let n = HALF_RUN.min(cols - c0);
        let mut a: [__m512i; TILE_TOKENS] = [_mm512_setzero_si512(); TILE_TOKENS];
        // SAFETY (of the loads): columns c0..c0 + n of the panel and of the
        // eight token rows exist.
        asm!(
            "2:",
            "vmovdqu16 zmm31, [{w}]",
            "vfmadd231ph {a0}, zmm31, word ptr [{x0}]{{1to32}}",
            "vfmadd231ph {a1}, zmm31, word ptr [{x0} + {s}]{{1to32}}",
            "vfmadd231ph {a2}, zmm31, word ptr [{x0} + 2*{s}]{{1to32}}",
            "vfmadd231ph {a3}, zmm31, word ptr [{x0} + {s3}]{{1to32}}",
            "vfmadd231ph {a4}, zmm31, word ptr [{x4}]{{1to32}}",
            "vfmadd231ph {a5}, zmm31, word ptr [{x4} + {s}]{{1to32}}",
            "vfmadd231ph {a6}, zmm31, word ptr [{x4} + 2*{s}]{{1to32}}",
            "vfmadd231ph {a7}, zmm31, word ptr [{x4} + {s3}]{{1to32}}",
            "add {w}, 64",
            "add {x0}, 2",
            "add {x4}, 2",
            "dec {n}",
            "jnz 2b",
            w = inout(reg) wp.add(c0 * PANEL_ROWS) => _,
            x0 = inout(reg) xp.add(c0) => _,
            x4 = inout(reg) xp.add(4 * cols + c0) => _,
            n = inout(reg) n => _,
            s = in(reg) stride,
            s3 = in(reg) 3 * stride,
            a0 = inout(zmm_reg) a[0],
            a1 = inout(zmm_reg) a[1],
            a2 = inout(zmm_reg) a[2],
            a3 = inout(zmm_reg) a[3],
            a4 = inout(zmm_reg) a[4],
            a5 = inout(zmm_reg) a[5],
            a6 = inout(zmm_reg) a[6],
            a7 = inout(zmm_reg) a[7],
            out("zmm31") _,
            options(nostack, readonly),
        );
        for j in 0..TILE_TOKENS {
            add_run(&mut sums[2 * j..2 * j + 2], a[j]);
        }
        c0 += n;
    }
    let mut bad: __mmask16 = 0;
    for j in 0..TILE_TOKENS {
        _mm512_storeu_ps(op.add(j * rows), sums[2 * j]);
        _mm512_storeu_ps(op.add(j * rows + 16), sums[2 * j + 1]);
        bad |= not_finite(sums[2 * j]) | not_finite(sums[2 * j + 1]);
    }
    bad == 0
}

/// Four tokens, the same sums as four lanes of [`tile8`].
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512fp16")]
unsafe fn tile4(wp: *const u16, xp: *const u16, cols: usize, op: *mut f32, rows: usize) -> bool {
    let mut sums = [_mm512_setzero_ps(); 8];
    let stride = cols * 2;
    let mut c0 = 0;
    while c0 < cols {
        let n = HALF_RUN.min(cols - c0);
        let mut a: [__m512i; 4] = [_mm512_setzero_si512(); 4];
        asm!(
            "2:",
            "vmovdqu16 zmm31, [{w}]",
            "vfmadd231ph {a0}, zmm31, word ptr [{x0}]{{1to32}}",
            "vfmadd231ph {a1}, zmm31, word ptr [{x0} + {s}]{{1to32}}",
            "vfmadd231ph {a2}, zmm31, word ptr [{x0} + 2*{s}]{{1to32}}",
            "vfmadd231ph {a3}, zmm31, word ptr [{x0} + {s3}]{{1to32}}",
            "add {w}, 64",
            "add {x0}, 2",
            "dec {n}",
            "jnz 2b",
            w = inout(reg) wp.add(c0 * PANEL_ROWS) => _,
            x0 = inout(reg) xp.add(c0) => _,
            n = inout(reg) n => _,
            s = in(reg) stride,
            s3 = in(reg) 3 * stride,
            a0 = inout(zmm_reg) a[0],
            a1 = inout(zmm_reg) a[1],
            a2 = inout(zmm_reg) a[2],
            a3 = inout(zmm_reg) a[3],
            out("zmm31") _,
            options(nostack, readonly),
        );
        for j in 0..4 {
            add_run(&mut sums[2 * j..2 * j + 2], a[j]);
        }
        c0 += n;
    }
    let mut bad: __mmask16 = 0;
    for j in 0..4 {
        _mm512_storeu_ps(op.add(j * rows), sums[2 * j]);
        _mm512_storeu_ps(op.add(j * rows + 16), sums[2 * j + 1]);
        bad |= not_finite(sums[2 * j]) | not_finite(sums[2 * j + 1]);
    }
    bad == 0
}

/// One token, the same sums as one lane of [`tile8`].
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512fp16")]
unsafe fn tile1(wp: *const u16, xp: *const u16, cols: usize, op: *mut f32) -> bool {
    let mut sums = [_mm512_setzero_ps(); 2];
    let mut c0 = 0;
    while c0 < cols {
        let n = HALF_RUN.min(cols - c0);
        let mut a = _mm512_setzero_si512();
        asm!(
            "2:",
            "vmovdqu16 zmm31, [{w}]",
            "vfmadd231ph {a0}, zmm31, word ptr [{x0}]{{1to32}}",
            "add {w}, 64",
            "add {x0}, 2",
            "dec {n}",
            "jnz 2b",
            w = inout(reg) wp.add(c0 * PANEL_ROWS) => _,
            x0 = inout(reg) xp.add(c0) => _,
            n = inout(reg) n => _,
            a0 = inout(zmm_reg) a,
            out("zmm31") _,
            options(nostack, readonly),
        );
        add_run(&mut sums, a);
        c0 += n;
    }
    _mm512_storeu_ps(op, sums[0]);
    _mm512_storeu_ps(op.add(16), sums[1]);
    not_finite(sums[0]) | not_finite(sums[1]) == 0
}

/// Lanes holding an infinity or a NaN (`vfpclassps`: QNaN, ±Inf, SNaN).
#[inline(always)]
unsafe fn not_finite(v: __m512) -> __mmask16 {
    _mm512_fpclass_ps_mask::<0x99>(v)
}

/// `sums[0..2] += f32(run)`: rows 0..16 from the low half, 16..32 from the high.
#[inline(always)]
unsafe fn add_run(sums: &mut [__m512], run: __m512i) {
    sums[0] = _mm512_add_ps(sums[0], _mm512_cvtph_ps(_mm512_castsi512_si256(run)));
    sums[1] = _mm512_add_ps(sums[1], _mm512_cvtph_ps(_mm512_extracti64x4_epi64::<1>(run)));
}
