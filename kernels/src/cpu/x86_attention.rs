//! AVX-512 attention of one head over one segment (an encoder's text):
//! the segment's keys transposed once into 16-key lanes, so a query's
//! scores are `head_dim` multiply-adds per 16 keys (no horizontal sums);
//! softmax in registers with a vector `exp` (the polynomial of
//! [`super::encoder::exp_fast`]); the values summed 16 dimensions at a time.
//! Texts are short (tens of tokens): the scalar loops this replaces spent
//! most of their time on the remainders of 8-lane vectors and on `expf`.

use std::arch::x86_64::*;

use super::encoder::{HeadScratch, SegmentHead};
use super::OutPtr;

/// Score vectors kept in registers per pass over the head's dimensions.
const SCORE_REGS: usize = 4;

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

/// [`SegmentHead::attend`] with sixteen keys or dimensions per instruction.
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
    scores.resize(lanes, 0.0);
    for j in 0..len {
        let kj = h.k.as_ptr().add((h.start + j) * h.kv_dim + h.kv_off);
        for d in 0..hd {
            *kt.get_unchecked_mut(d * lanes + j) = *kj.add(d);
        }
    }
    let (ktp, sp) = (kt.as_ptr(), scores.as_mut_ptr());
    let scale = _mm512_set1_ps(h.scale);
    let last: __mmask16 = ((1u32 << (len - (lanes - 16))) - 1) as u16;
    let n_vec = lanes / 16;
    for i in 0..len {
        let row = h.start + i;
        let qi = h.q.as_ptr().add(row * h.q_dim + h.q_off);
        // scores = (q_i · k_j) · scale, SCORE_REGS vectors of 16 keys per pass.
        let mut c0 = 0;
        while c0 < n_vec {
            let nc = SCORE_REGS.min(n_vec - c0);
            let mut acc = [_mm512_setzero_ps(); SCORE_REGS];
            for d in 0..hd {
                let qd = _mm512_set1_ps(*qi.add(d));
                for c in 0..nc {
                    acc[c] = _mm512_fmadd_ps(qd, _mm512_loadu_ps(ktp.add(d * lanes + (c0 + c) * 16)), acc[c]);
                }
            }
            for c in 0..nc {
                _mm512_storeu_ps(sp.add((c0 + c) * 16), _mm512_mul_ps(acc[c], scale));
            }
            c0 += nc;
        }
        let mut maxv = _mm512_set1_ps(f32::NEG_INFINITY);
        for c in 0..n_vec {
            let m = if c + 1 == n_vec { last } else { 0xFFFF };
            maxv = _mm512_mask_max_ps(maxv, m, maxv, _mm512_loadu_ps(sp.add(c * 16)));
        }
        let max = _mm512_set1_ps(_mm512_reduce_max_ps(maxv));
        let mut sumv = _mm512_setzero_ps();
        for c in 0..n_vec {
            let m = if c + 1 == n_vec { last } else { 0xFFFF };
            let e = _mm512_maskz_mov_ps(m, exp16(_mm512_sub_ps(_mm512_loadu_ps(sp.add(c * 16)), max)));
            _mm512_storeu_ps(sp.add(c * 16), e);
            sumv = _mm512_add_ps(sumv, e);
        }
        let inv = _mm512_set1_ps(1.0 / _mm512_reduce_add_ps(sumv));
        // o = Σ_j p_j · v_j, 16 dimensions per register.
        let o = out.0.add(row * h.q_dim + h.q_off);
        let mut d0 = 0;
        while d0 < hd {
            let mut acc = [_mm512_setzero_ps(); 2];
            let nd = if hd - d0 >= 32 { 2 } else { 1 };
            for j in 0..len {
                let p = _mm512_set1_ps(*sp.add(j));
                let vj = h.v.as_ptr().add((h.start + j) * h.kv_dim + h.kv_off + d0);
                for m in 0..nd {
                    acc[m] = _mm512_fmadd_ps(p, _mm512_loadu_ps(vj.add(16 * m)), acc[m]);
                }
            }
            for m in 0..nd {
                _mm512_storeu_ps(o.add(d0 + 16 * m), _mm512_mul_ps(acc[m], inv));
            }
            d0 += 16 * nd;
        }
    }
}
