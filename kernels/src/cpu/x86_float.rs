//! AVX-512 products of float weights (F32, F16, BF16) with f32
//! activations: register tiles of 4 rows × 6 tokens, 24 accumulators of 16
//! lanes each, weights widened to f32 in registers as they are loaded (no
//! converted copy of the matrix, and no row re-converted per token as
//! [`super::matmul_dequant`] does). This is the GEMM of an encoder's
//! batched passes (BERT's F16 matrices) and of F16/BF16 decoders' prompts.
//!
//! Every output is the same sum whatever tile it falls in: 16-lane partial
//! sums over the columns in order (a masked last chunk), then one fixed
//! horizontal reduction, so a row's value does not depend on the batch.

use std::arch::x86_64::*;

use rayon::prelude::*;

use super::{OutPtr, QMatrix};
use crate::error::KernelError;
use infer_gguf::QuantType;

/// Rows and tokens of a register tile.
const TILE_ROWS: usize = 4;
const TILE_TOKENS: usize = 6;
/// Rows per parallel task (their weights stay in L2 across token tiles).
const ROWS_PER_TASK: usize = 32;

/// Whether [`matmul_float`] takes this weight type.
pub(crate) fn takes(ty: QuantType) -> bool {
    matches!(ty, QuantType::F32 | QuantType::F16 | QuantType::BF16)
}

/// `out[t * rows + r] = w[r] · x[t]` for float weights.
///
/// # Safety
/// The CPU must have AVX-512 F/BW/VL (the caller checked `Isa::Avx512Vnni`).
pub(crate) unsafe fn matmul_float(w: &QMatrix, x: &[f32], n_tokens: usize, out: &mut [f32]) -> Result<(), KernelError> {
    super::check_matmul("matmul_float", w, x, n_tokens, out)?;
    if !takes(w.ty) {
        return Err(KernelError::Unsupported(w.ty, "matmul_float"));
    }
    let (rows, cols) = (w.rows, w.cols);
    let ptr = OutPtr(out.as_mut_ptr());
    let n_tasks = rows.div_ceil(ROWS_PER_TASK);
    (0..n_tasks).into_par_iter().for_each(|task| {
        let (r0, r1) = (task * ROWS_PER_TASK, ((task + 1) * ROWS_PER_TASK).min(rows));
        let mut t0 = 0;
        while t0 < n_tokens {
            let nt = TILE_TOKENS.min(n_tokens - t0);
            let mut r = r0;
            while r < r1 {
                let nr = TILE_ROWS.min(r1 - r);
                let mut tile = [[0f32; TILE_TOKENS]; TILE_ROWS];
                // SAFETY: rows r..r + nr and tokens t0..t0 + nt exist; the
                // caller guaranteed the instruction set.
                unsafe {
                    match (nr, nt) {
                        (TILE_ROWS, TILE_TOKENS) => tile_dot::<TILE_ROWS, TILE_TOKENS>(w, r, x, t0, cols, &mut tile),
                        (TILE_ROWS, _) => {
                            for t in 0..nt {
                                let mut one = [[0f32; 1]; TILE_ROWS];
                                tile_dot::<TILE_ROWS, 1>(w, r, x, t0 + t, cols, &mut one);
                                for i in 0..TILE_ROWS {
                                    tile[i][t] = one[i][0];
                                }
                            }
                        }
                        _ => {
                            for i in 0..nr {
                                for t in 0..nt {
                                    let mut one = [[0f32; 1]; 1];
                                    tile_dot::<1, 1>(w, r + i, x, t0 + t, cols, &mut one);
                                    tile[i][t] = one[0][0];
                                }
                            }
                        }
                    }
                }
                for (i, row) in tile.iter().enumerate().take(nr) {
                    for (t, v) in row.iter().enumerate().take(nt) {
                        // SAFETY: t0 + t < n_tokens, r + i < rows (checked
                        // shapes); the rows belong to this task alone.
                        unsafe { ptr.write((t0 + t) * rows + r + i, *v) };
                    }
                }
                r += nr;
            }
            t0 += nt;
        }
    });
    Ok(())
}

/// Weight element kinds (a const parameter, so the loads have no branch).
const KIND_F32: u8 = 0;
const KIND_F16: u8 = 1;
const KIND_BF16: u8 = 2;

/// 16 weights at `p` (fewer under `mask`) as f32.
#[inline(always)]
unsafe fn load_w<const KIND: u8>(p: *const u8, k: usize, mask: __mmask16) -> __m512 {
    match KIND {
        KIND_F16 => _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(mask, p.add(2 * k) as *const i16)),
        KIND_BF16 => {
            let h = _mm256_maskz_loadu_epi16(mask, p.add(2 * k) as *const i16);
            _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16))
        }
        _ => _mm512_maskz_loadu_ps(mask, p.add(4 * k) as *const f32),
    }
}

/// `tile[i][t] = w[r + i] · x[t0 + t]` for `i < R`, `t < T`.
#[inline(always)]
unsafe fn tile_dot<const R: usize, const T: usize>(
    w: &QMatrix,
    r: usize,
    x: &[f32],
    t0: usize,
    cols: usize,
    tile: &mut [[f32; T]; R],
) {
    let rows: [*const u8; R] = std::array::from_fn(|i| w.row_data(r + i).as_ptr());
    let xp = x.as_ptr().add(t0 * cols);
    match w.ty {
        QuantType::F16 => tile_dot_impl::<KIND_F16, R, T>(rows, xp, cols, tile),
        QuantType::BF16 => tile_dot_impl::<KIND_BF16, R, T>(rows, xp, cols, tile),
        _ => tile_dot_impl::<KIND_F32, R, T>(rows, xp, cols, tile),
    }
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl,f16c,fma")]
#[allow(clippy::needless_range_loop)]
unsafe fn tile_dot_impl<const KIND: u8, const R: usize, const T: usize>(
    rows: [*const u8; R],
    xp: *const f32,
    cols: usize,
    tile: &mut [[f32; T]; R],
) {
    let mut acc = [[_mm512_setzero_ps(); T]; R];
    let mut k = 0;
    while k + 16 <= cols {
        let ws: [__m512; R] = std::array::from_fn(|i| load_w::<KIND>(rows[i], k, 0xFFFF));
        for t in 0..T {
            let xv = _mm512_loadu_ps(xp.add(t * cols + k));
            for i in 0..R {
                acc[i][t] = _mm512_fmadd_ps(ws[i], xv, acc[i][t]);
            }
        }
        k += 16;
    }
    if k < cols {
        let mask: __mmask16 = ((1u32 << (cols - k)) - 1) as u16;
        let ws: [__m512; R] = std::array::from_fn(|i| load_w::<KIND>(rows[i], k, mask));
        for t in 0..T {
            let xv = _mm512_maskz_loadu_ps(mask, xp.add(t * cols + k));
            for i in 0..R {
                acc[i][t] = _mm512_fmadd_ps(ws[i], xv, acc[i][t]);
            }
        }
    }
    for i in 0..R {
        for t in 0..T {
            tile[i][t] = _mm512_reduce_add_ps(acc[i][t]);
        }
    }
}
