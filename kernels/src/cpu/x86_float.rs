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
    if R * T % 8 == 0 {
        // Eight sums at a time, transposed: a third of the shuffles and
        // adds of eight single reductions, each sum in the same order.
        let flat: [__m512; 24] = std::array::from_fn(|j| if j < R * T { acc[j / T][j % T] } else { _mm512_setzero_ps() });
        for g in 0..R * T / 8 {
            let mut sums = [0f32; 16];
            _mm512_storeu_ps(sums.as_mut_ptr(), reduce8(std::array::from_fn(|j| flat[8 * g + j])));
            for j in 0..8 {
                let (i, t) = ((8 * g + j) / T, (8 * g + j) % T);
                // reduce8 leaves vector L (< 4) at 4L and vector 4 + L at 4L + 1.
                tile[i][t] = sums[if j < 4 { 4 * j } else { 4 * (j - 4) + 1 }];
            }
        }
    } else {
        for i in 0..R {
            for t in 0..T {
                tile[i][t] = reduce1(acc[i][t]);
            }
        }
    }
}

/// The horizontal sum of `v` as a tree: `s8[i] = v[i] + v[i + 8]`, then
/// `s4[i] = s8[i] + s8[i + 4]`, `s2[i] = s4[i] + s4[i + 2]`, `s2[0] + s2[1]`
/// — the order [`reduce8`] keeps, so a sum does not depend on its tile.
#[inline(always)]
unsafe fn reduce1(v: __m512) -> f32 {
    let s8 = _mm256_add_ps(_mm512_castps512_ps256(v), _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(v))));
    let s4 = _mm_add_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps::<1>(s8));
    let s2 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
    _mm_cvtss_f32(s2) + _mm_cvtss_f32(_mm_shuffle_ps::<0b01>(s2, s2))
}

/// The horizontal sums of eight vectors in [`reduce1`]'s order: vector
/// `L < 4` ends at lane `4L`, vector `4 + L` at lane `4L + 1`.
#[inline(always)]
unsafe fn reduce8(v: [__m512; 8]) -> __m512 {
    // s8 of two vectors per register: 128-bit lanes [a.0, a.1, b.0, b.1] + [a.2, a.3, b.2, b.3].
    let c: [__m512; 4] = std::array::from_fn(|j| {
        let (a, b) = (v[2 * j], v[2 * j + 1]);
        _mm512_add_ps(_mm512_shuffle_f32x4::<0x44>(a, b), _mm512_shuffle_f32x4::<0xEE>(a, b))
    });
    // s4 of four vectors per register, one per 128-bit lane.
    let e: [__m512; 2] = std::array::from_fn(|j| {
        let (a, b) = (c[2 * j], c[2 * j + 1]);
        _mm512_add_ps(_mm512_shuffle_f32x4::<0x88>(a, b), _mm512_shuffle_f32x4::<0xDD>(a, b))
    });
    // s2: lane L holds [v_L.s2[0], v_L.s2[1], v_{4+L}.s2[0], v_{4+L}.s2[1]].
    let g = _mm512_add_ps(_mm512_shuffle_ps::<0x44>(e[0], e[1]), _mm512_shuffle_ps::<0xEE>(e[0], e[1]));
    _mm512_add_ps(_mm512_shuffle_ps::<0x88>(g, g), _mm512_shuffle_ps::<0xDD>(g, g))
}

#[cfg(test)]
mod tests {
    use super::super::{matmul, matmul_ref, QMatrix};
    use infer_gguf::QuantType;

    /// Weights as F32, F16 and BF16 bytes.
    fn weights(ty: QuantType, vals: &[f32]) -> Vec<u8> {
        match ty {
            QuantType::F16 => vals.iter().flat_map(|v| half::f16::from_f32(*v).to_le_bytes()).collect(),
            QuantType::BF16 => vals.iter().flat_map(|v| half::bf16::from_f32(*v).to_le_bytes()).collect(),
            _ => vals.iter().flat_map(|v| v.to_le_bytes()).collect(),
        }
    }

    /// Through the dispatch (this kernel where AVX-512 is, the fallback
    /// elsewhere): every token's row is close to the reference, and equal
    /// bit for bit to what the token gives alone, whatever its tile —
    /// partial tasks (37 rows), a masked column tail (100) and token
    /// remainders (13 = 2 × 6 + 1).
    #[test]
    fn float_matmul_is_batch_invariant_and_matches_reference() {
        let (rows, cols, n) = (37, 100, 13);
        let vals: Vec<f32> = (0..rows * cols).map(|i| ((i * 7919 % 257) as f32 - 128.0) / 64.0).collect();
        let x: Vec<f32> = (0..n * cols).map(|i| ((i * 104_729 % 211) as f32 - 105.0) / 50.0).collect();
        for ty in [QuantType::F32, QuantType::F16, QuantType::BF16] {
            let data = weights(ty, &vals);
            let w = QMatrix::new(ty, &data, rows, cols).expect("matrix");
            let (mut got, mut want) = (vec![0.0; n * rows], vec![0.0; n * rows]);
            matmul(&w, &x, n, &mut got).expect("matmul");
            matmul_ref(&w, &x, n, &mut want).expect("reference");
            for (i, (g, r)) in got.iter().zip(&want).enumerate() {
                assert!((g - r).abs() <= 1e-4 * r.abs().max(1.0), "{ty} [{i}]: {g} vs {r}");
            }
            for t in 0..n {
                let mut one = vec![0.0; rows];
                matmul(&w, &x[t * cols..(t + 1) * cols], 1, &mut one).expect("one token");
                assert_eq!(&got[t * rows..(t + 1) * rows], &one[..], "{ty}: token {t} alone differs");
            }
        }
    }
}
