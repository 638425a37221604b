//! The AVX-512 kernel of [`super::float_panels`]: register tiles of 32 rows
//! (two registers) × 12 tokens (24 accumulators), one column per step.

use std::arch::x86_64::*;

use super::float_panels::{PanelData, Panels, PANEL_ROWS};
use super::OutPtr;
use infer_gguf::QuantType;

/// Tokens of the full register tile.
const TILE_TOKENS: usize = 12;

/// Weight element kinds (a const parameter, so the loads have no branch).
const KIND_F32: u8 = 0;
const KIND_F16: u8 = 1;
const KIND_BF16: u8 = 2;

/// Rows `32p..32p + 32` of tokens `t0..t1` into `out` (`rows` values per
/// token).
///
/// # Safety
/// AVX-512 F/BW/VL are present; panel `p` exists; `x` holds `t1` tokens;
/// `out` has `t1 × rows` values and no other task writes these.
pub(crate) unsafe fn panel_tokens(w: Panels, p: usize, x: &[f32], t0: usize, t1: usize, out: OutPtr) {
    let per_panel = PANEL_ROWS * w.cols;
    let (wp, kind) = match w.data {
        PanelData::Single(v) => (v.as_ptr().add(p * per_panel) as *const u8, KIND_F32),
        PanelData::Half(v) if w.ty == QuantType::BF16 => (v.as_ptr().add(p * per_panel) as *const u8, KIND_BF16),
        PanelData::Half(v) => (v.as_ptr().add(p * per_panel) as *const u8, KIND_F16),
    };
    let mut t = t0;
    while t < t1 {
        let nt = match t1 - t {
            n if n >= TILE_TOKENS => TILE_TOKENS,
            n if n >= 4 => 4,
            _ => 1,
        };
        let xp = x.as_ptr().add(t * w.cols);
        let op = out.0.add(t * w.rows + p * PANEL_ROWS);
        match (kind, nt) {
            (KIND_F16, TILE_TOKENS) => tile::<KIND_F16, TILE_TOKENS>(wp, xp, w.cols, op, w.rows),
            (KIND_F16, 4) => tile::<KIND_F16, 4>(wp, xp, w.cols, op, w.rows),
            (KIND_F16, _) => tile::<KIND_F16, 1>(wp, xp, w.cols, op, w.rows),
            (KIND_BF16, TILE_TOKENS) => tile::<KIND_BF16, TILE_TOKENS>(wp, xp, w.cols, op, w.rows),
            (KIND_BF16, 4) => tile::<KIND_BF16, 4>(wp, xp, w.cols, op, w.rows),
            (KIND_BF16, _) => tile::<KIND_BF16, 1>(wp, xp, w.cols, op, w.rows),
            (_, TILE_TOKENS) => tile::<KIND_F32, TILE_TOKENS>(wp, xp, w.cols, op, w.rows),
            (_, 4) => tile::<KIND_F32, 4>(wp, xp, w.cols, op, w.rows),
            _ => tile::<KIND_F32, 1>(wp, xp, w.cols, op, w.rows),
        }
        t += nt;
    }
}

/// The 32 weights of column `c` as two f32 registers.
#[inline(always)]
unsafe fn load_column<const KIND: u8>(wp: *const u8, c: usize) -> (__m512, __m512) {
    match KIND {
        KIND_F16 => {
            let p = wp.add(c * PANEL_ROWS * 2) as *const __m256i;
            (_mm512_cvtph_ps(_mm256_loadu_si256(p)), _mm512_cvtph_ps(_mm256_loadu_si256(p.add(1))))
        }
        KIND_BF16 => {
            let p = wp.add(c * PANEL_ROWS * 2) as *const __m256i;
            let (h0, h1) = (_mm256_loadu_si256(p), _mm256_loadu_si256(p.add(1)));
            (
                _mm512_castsi512_ps(_mm512_slli_epi32::<16>(_mm512_cvtepu16_epi32(h0))),
                _mm512_castsi512_ps(_mm512_slli_epi32::<16>(_mm512_cvtepu16_epi32(h1))),
            )
        }
        _ => {
            let p = wp.add(c * PANEL_ROWS * 4) as *const f32;
            (_mm512_loadu_ps(p), _mm512_loadu_ps(p.add(16)))
        }
    }
}

/// `out[j * rows + i] = Σ_c panel[c][i] · x[j * cols + c]` for `i < 32`,
/// `j < NT`: one FMA chain per output, columns in order.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,f16c,fma")]
#[allow(clippy::needless_range_loop)]
unsafe fn tile<const KIND: u8, const NT: usize>(wp: *const u8, xp: *const f32, cols: usize, op: *mut f32, rows: usize) {
    let mut lo = [_mm512_setzero_ps(); NT];
    let mut hi = [_mm512_setzero_ps(); NT];
    for c in 0..cols {
        let (w0, w1) = load_column::<KIND>(wp, c);
        for j in 0..NT {
            let xv = _mm512_set1_ps(*xp.add(j * cols + c));
            lo[j] = _mm512_fmadd_ps(w0, xv, lo[j]);
            hi[j] = _mm512_fmadd_ps(w1, xv, hi[j]);
        }
    }
    for j in 0..NT {
        _mm512_storeu_ps(op.add(j * rows), lo[j]);
        _mm512_storeu_ps(op.add(j * rows + 16), hi[j]);
    }
}
