//! AVX-512 attention of one head over one segment (an encoder's text):
//! the segment's keys transposed once into 16-key lanes, so a query's
//! scores are `head_dim` multiply-adds per 16 keys (no horizontal sums);
//! softmax in registers with a vector `exp` (the polynomial of
//! [`super::encoder::exp_fast`]); the values summed 16 dimensions at a
//! time. Four queries go together, so each key or value load feeds four
//! multiply-adds instead of one. Texts are short (tens of tokens): the
//! scalar loops this replaces spent most of their time on the remainders of
//! 8-lane vectors and on `expf`.

use std::arch::x86_64::*;

use super::encoder::{HeadScratch, SegmentHead};
use super::OutPtr;

/// `e^x` per lane as [`super::encoder::exp_fast`] computes it.
#[inline(always)]
unsafe fn exp16(x: __m512) -> __m512 {
    let x = _mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(-87.0)), _mm512_set1_ps(88.0));
    let n = _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(_mm512_mul_ps(
        x,
        _mm512_set1_ps(std::f32::consts::LOG2_E),
    ));
    let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693_359_4), x);
    let r = _mm512_fmadd_ps(n, _mm512_set1_ps(2.121_944_4e-4), r);
    let mut p = _mm512_set1_ps(1.987_569_1e-4);
    for c in [1.398_199_9e-3, 8.333_452e-3, 4.166_579_6e-2, 1.666_666_5e-1, 5.000_000_1e-1] {
        p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(c));
    }
    let e = _mm512_add_ps(_mm512_fmadd_ps(p, _mm512_mul_ps(r, r), r), _mm512_set1_ps(1.0));
    _mm512_scalef_ps(e, n)
}

/// Queries that share each load of the keys and values.
const QUERIES: usize = 4;

/// [`SegmentHead::attend`] with sixteen keys or dimensions per instruction,
/// four queries at a time (each key or value load feeds four multiply-adds).
///
/// # Safety
/// AVX-512 F and FMA are present; `h.hd` is a multiple of 16; the rows of
/// `h` exist in its slices and in `out` (rows of `q_dim`), whose head columns
/// no other task writes.
#[target_feature(enable = "avx512f,fma")]
pub(crate) unsafe fn attend(h: &SegmentHead, scratch: &mut HeadScratch, out: OutPtr) {
    let (len, hd) = (h.len, h.hd);
    let lanes = len.div_ceil(16) * 16;
    let HeadScratch { kt, scores, .. } = scratch;
    // kt[d * lanes + j] = k_j[d] (keys past the segment are 0).
    kt.clear();
    kt.resize(hd * lanes, 0.0);
    scores.resize(QUERIES * lanes, 0.0);
    for j in 0..len {
        let kj = h.k.as_ptr().add((h.start + j) * h.kv_dim + h.kv_off);
        for d in 0..hd {
            *kt.get_unchecked_mut(d * lanes + j) = *kj.add(d);
        }
    }
    let g = Group { h, kt: kt.as_ptr(), scores: scores.as_mut_ptr(), lanes, out };
    let mut i = 0;
    while i + QUERIES <= len {
        g.queries::<QUERIES>(i);
        i += QUERIES;
    }
    match len - i {
        3 => g.queries::<3>(i),
        2 => g.queries::<2>(i),
        1 => g.queries::<1>(i),
        _ => {}
    }
}

/// One head's transposed keys and score rows (`lanes` apart) for a group of queries.
struct Group<'a, 'h> {
    h: &'a SegmentHead<'h>,
    kt: *const f32,
    scores: *mut f32,
    lanes: usize,
    out: OutPtr,
}

impl Group<'_, '_> {
    /// Scores of the queries at `qp` for keys `16 c0..16 (c0 + C)`.
    #[target_feature(enable = "avx512f,fma")]
    #[allow(clippy::needless_range_loop)]
    unsafe fn scores_of<const Q: usize, const C: usize>(&self, qp: &[*const f32; Q], c0: usize) {
        let (lanes, scale) = (self.lanes, _mm512_set1_ps(self.h.scale));
        let mut acc = [[_mm512_setzero_ps(); C]; Q];
        for d in 0..self.h.hd {
            let mut kv = [_mm512_setzero_ps(); C];
            for c in 0..C {
                kv[c] = _mm512_loadu_ps(self.kt.add(d * lanes + (c0 + c) * 16));
            }
            for q in 0..Q {
                let qd = _mm512_set1_ps(*qp[q].add(d));
                for c in 0..C {
                    acc[q][c] = _mm512_fmadd_ps(qd, kv[c], acc[q][c]);
                }
            }
        }
        for q in 0..Q {
            for c in 0..C {
                _mm512_storeu_ps(self.scores.add(q * lanes + (c0 + c) * 16), _mm512_mul_ps(acc[q][c], scale));
            }
        }
    }

    /// Outputs `d0..d0 + 16 D` of queries `i..i + Q`: the probabilities'
    /// sum of the values, times `inv` (1 / the probabilities' sum).
    #[target_feature(enable = "avx512f,fma")]
    #[allow(clippy::needless_range_loop)]
    unsafe fn values_of<const Q: usize, const D: usize>(&self, i: usize, d0: usize, inv: &[__m512; Q]) {
        let h = self.h;
        let mut acc = [[_mm512_setzero_ps(); D]; Q];
        for j in 0..h.len {
            let vj = h.v.as_ptr().add((h.start + j) * h.kv_dim + h.kv_off + d0);
            let mut vv = [_mm512_setzero_ps(); D];
            for m in 0..D {
                vv[m] = _mm512_loadu_ps(vj.add(16 * m));
            }
            for q in 0..Q {
                let p = _mm512_set1_ps(*self.scores.add(q * self.lanes + j));
                for m in 0..D {
                    acc[q][m] = _mm512_fmadd_ps(p, vv[m], acc[q][m]);
                }
            }
        }
        for q in 0..Q {
            let o = self.out.0.add((h.start + i + q) * h.q_dim + h.q_off + d0);
            for m in 0..D {
                _mm512_storeu_ps(o.add(16 * m), _mm512_mul_ps(acc[q][m], inv[q]));
            }
        }
    }

    /// Queries `i..i + Q` of the segment: scores, softmax, values. Built
    /// for AVX-512 itself: the intrinsics inline only into a function that
    /// has the features.
    #[target_feature(enable = "avx512f,fma")]
    #[allow(clippy::needless_range_loop)]
    unsafe fn queries<const Q: usize>(&self, i: usize) {
        let (h, lanes, sp) = (self.h, self.lanes, self.scores);
        let (len, hd) = (h.len, h.hd);
        let mut qp = [h.q.as_ptr(); Q];
        for q in 0..Q {
            qp[q] = h.q.as_ptr().add((h.start + i + q) * h.q_dim + h.q_off);
        }
        let n_vec = lanes / 16;
        // scores[q] = (q · k_j) · scale, two vectors of 16 keys per pass.
        let mut c0 = 0;
        while c0 < n_vec {
            if c0 + 1 < n_vec {
                self.scores_of::<Q, 2>(&qp, c0);
                c0 += 2;
            } else {
                self.scores_of::<Q, 1>(&qp, c0);
                c0 += 1;
            }
        }
        // Softmax numerators in place; 1 / their sum per query.
        let last: __mmask16 = ((1u32 << (len - (lanes - 16))) - 1) as u16;
        let mut inv = [_mm512_setzero_ps(); Q];
        for q in 0..Q {
            let row = sp.add(q * lanes);
            let mut maxv = _mm512_set1_ps(f32::NEG_INFINITY);
            for c in 0..n_vec {
                let m = if c + 1 == n_vec { last } else { 0xFFFF };
                maxv = _mm512_mask_max_ps(maxv, m, maxv, _mm512_loadu_ps(row.add(c * 16)));
            }
            let max = _mm512_set1_ps(_mm512_reduce_max_ps(maxv));
            let mut sumv = _mm512_setzero_ps();
            for c in 0..n_vec {
                let m = if c + 1 == n_vec { last } else { 0xFFFF };
                let e = _mm512_maskz_mov_ps(m, exp16(_mm512_sub_ps(_mm512_loadu_ps(row.add(c * 16)), max)));
                _mm512_storeu_ps(row.add(c * 16), e);
                sumv = _mm512_add_ps(sumv, e);
            }
            inv[q] = _mm512_set1_ps(1.0 / _mm512_reduce_add_ps(sumv));
        }
        // o[q] = Σ_j p_qj · v_j, 32 (or 16) dimensions per pass.
        let mut d0 = 0;
        while d0 < hd {
            if hd - d0 >= 32 {
                self.values_of::<Q, 2>(i, d0, &inv);
                d0 += 32;
            } else {
                self.values_of::<Q, 1>(i, d0, &inv);
                d0 += 16;
            }
        }
    }
}
