//! CPU kernels of encoder models (BERT): LayerNorm with bias, exact GELU,
//! and bidirectional attention within the segments of a batch. Each has a
//! plain reference in [`crate::ops`] that the tests below compare against.

use rayon::prelude::*;

use super::OutPtr;
use crate::KernelError;

/// Values per rayon task of the element-wise kernels.
const CHUNK: usize = 4096;

/// [`crate::ops::layernorm_ref`] on every `dim`-wide row of `x`, in place, over rayon.
pub fn layernorm_rows(x: &mut [f32], weight: &[f32], bias: &[f32], eps: f32) -> Result<(), KernelError> {
    let dim = weight.len();
    if dim == 0 || bias.len() != dim || x.len() % dim != 0 {
        return Err(KernelError::Shape {
            op: "layernorm",
            detail: format!("{} values in rows of {dim} (weight), bias of {}", x.len(), bias.len()),
        });
    }
    #[cfg(target_arch = "x86_64")]
    let avx2 = is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma");
    x.par_chunks_mut(dim).for_each(|row| {
        #[cfg(target_arch = "x86_64")]
        if avx2 {
            // SAFETY: AVX2 and FMA were detected at run time.
            unsafe { layernorm_row_avx2(row, weight, bias, eps) };
            return;
        }
        layernorm_row(row, weight, bias, eps)
    });
    Ok(())
}

/// Σ f(v) over `xs` in eight interleaved partial sums (which vectorize,
/// where one running sum cannot), then those in order, then the tail.
#[inline(always)]
fn sum_lanes(xs: &[f32], f: impl Fn(f32) -> f32) -> f32 {
    let mut acc = [0.0f32; 8];
    let chunks = xs.chunks_exact(8);
    let tail: f32 = chunks.remainder().iter().map(|&v| f(v)).sum();
    for c in chunks {
        for i in 0..8 {
            acc[i] += f(c[i]);
        }
    }
    acc.iter().sum::<f32>() + tail
}

#[inline(always)]
fn layernorm_row(row: &mut [f32], weight: &[f32], bias: &[f32], eps: f32) {
    let n = row.len() as f32;
    let mean = sum_lanes(row, |v| v) / n;
    let var = sum_lanes(row, |v| (v - mean) * (v - mean)) / n;
    let inv = 1.0 / (var + eps).sqrt();
    for ((v, &w), &b) in row.iter_mut().zip(weight).zip(bias) {
        *v = (*v - mean) * inv * w + b;
    }
}

/// The same row compiled for AVX2 + FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn layernorm_row_avx2(row: &mut [f32], weight: &[f32], bias: &[f32], eps: f32) {
    layernorm_row(row, weight, bias, eps)
}

/// erf as a rational function on [-4, 4] (±1 beyond, to f32 precision):
/// only multiplies, adds and one division, so a loop of it vectorizes.
/// Coefficients from Eigen's `generic_fast_erf_float`; within 1e-6 of libm's.
#[inline(always)]
pub fn erf_fast(x: f32) -> f32 {
    let x = x.clamp(-4.0, 4.0);
    let x2 = x * x;
    let mut p = x2 * -2.726_142_3e-10 + 2.770_681_4e-8;
    p = x2 * p + -2.101_024e-6;
    p = x2 * p + -5.692_506_4e-5;
    p = x2 * p + -7.349_906_3e-4;
    p = x2 * p + -2.954_6e-3;
    p = x2 * p + -1.609_603_3e-2;
    let p = x * p;
    let mut q = x2 * -1.456_607_2e-5 + -2.133_740_6e-4;
    q = x2 * q + -1.682_827e-3;
    q = x2 * q + -7.373_329e-3;
    q = x2 * q + -1.426_474e-2;
    p / q
}

#[inline(always)]
fn gelu_slice(xs: &mut [f32]) {
    for v in xs {
        *v = 0.5 * *v * (1.0 + erf_fast(*v * std::f32::consts::FRAC_1_SQRT_2));
    }
}

/// The same loop compiled for AVX2 + FMA (eight lanes instead of four).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn gelu_slice_avx2(xs: &mut [f32]) {
    gelu_slice(xs)
}

/// Exact GELU ([`crate::ops::gelu_erf`]) in place, over rayon.
pub fn gelu_inplace(x: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    let avx2 = is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma");
    #[cfg(target_arch = "x86_64")]
    let avx512 = avx2 && is_x86_feature_detected!("avx512f");
    x.par_chunks_mut(CHUNK).for_each(|c| {
        #[cfg(target_arch = "x86_64")]
        if avx512 {
            // SAFETY: AVX-512 F and FMA were detected at run time.
            unsafe { super::x86_gelu::gelu(c) };
            return;
        }
        #[cfg(target_arch = "x86_64")]
        if avx2 {
            // SAFETY: AVX2 and FMA were detected at run time.
            unsafe { gelu_slice_avx2(c) };
            return;
        }
        gelu_slice(c)
    });
}

/// The shape of [`attention_segments`].
#[derive(Debug, Clone, Copy)]
pub struct SegAttn {
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub head_dim: usize,
    pub scale: f32,
}

/// [`crate::ops::attention_segments_ref`] over rayon, one task per (segment, head):
/// each query sees every key of its segment (`(start, len)` row ranges that
/// cover the batch in order) and none of another's.
pub fn attention_segments(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    segments: &[(usize, usize)],
    p: SegAttn,
    out: &mut [f32],
) -> Result<(), KernelError> {
    let hd = p.head_dim;
    let (q_dim, kv_dim) = (p.n_heads * hd, p.n_kv_heads * hd);
    let n: usize = segments.iter().map(|s| s.1).sum();
    let contiguous = segments.iter().try_fold(0usize, |at, &(s, l)| (s == at).then_some(at + l)).is_some();
    if p.n_kv_heads == 0
        || p.n_heads % p.n_kv_heads != 0
        || !contiguous
        || q.len() < n * q_dim
        || out.len() < n * q_dim
        || k.len() < n * kv_dim
        || v.len() < n * kv_dim
    {
        return Err(KernelError::Shape {
            op: "attention_segments",
            detail: format!("segments {segments:?}, {} heads over {} KV heads of {hd}", p.n_heads, p.n_kv_heads),
        });
    }
    #[cfg(target_arch = "x86_64")]
    let avx512 = is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("fma") && hd % 16 == 0;
    // One task per (segment, head): its keys transposed once, then each
    // query's scores over the segment as contiguous lanes.
    let tasks: Vec<(usize, usize, usize)> =
        segments.iter().flat_map(|&(start, len)| (0..p.n_heads).map(move |h| (start, len, h))).collect();
    let ptr = OutPtr(out.as_mut_ptr());
    tasks.into_par_iter().for_each_init(HeadScratch::default, |scratch, (start, len, h)| {
        let one = SegmentHead {
            q,
            k,
            v,
            start,
            len,
            q_off: h * hd,
            kv_off: h / (p.n_heads / p.n_kv_heads) * hd,
            q_dim,
            kv_dim,
            hd,
            scale: p.scale,
        };
        #[cfg(target_arch = "x86_64")]
        if avx512 {
            // SAFETY: AVX-512 F and FMA were detected at run time, the head
            // is whole vectors; as below.
            unsafe { super::x86_attention::attend(&one, scratch, ptr) };
            return;
        }
        // SAFETY: rows start..start + len exist in q, k, v and out (checked
        // above); this task alone writes columns h·hd..(h + 1)·hd of them.
        unsafe { one.attend(scratch, ptr) }
    });
    Ok(())
}

/// `e^x` as Cephes' `expf`: `x = n ln 2 + r`, a degree-6 polynomial in
/// `r`, `2^n` put in the exponent bits — within 2 ulp of libm's for
/// `x ≥ -87` (0 below), only multiplies and adds, so a loop vectorizes.
#[inline(always)]
pub fn exp_fast(x: f32) -> f32 {
    let x = x.clamp(-87.0, 88.0);
    // Round to nearest by the 1.5 · 2^23 trick (|x · log2 e| < 2^22).
    let n = (x * std::f32::consts::LOG2_E + 12_582_912.0) - 12_582_912.0;
    let r = x - n * 0.693_359_4 + n * 2.121_944_4e-4;
    let mut p = 1.987_569_1e-4f32;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 5.000_000_1e-1;
    let e = p * r * r + r + 1.0;
    e * f32::from_bits(((n as i32 + 127) as u32) << 23)
}

/// Per-thread buffers of [`SegmentHead::attend`]: the transposed keys, one
/// row of scores, one output row.
#[derive(Default)]
pub(crate) struct HeadScratch {
    pub(crate) kt: Vec<f32>,
    pub(crate) scores: Vec<f32>,
    pub(crate) o: Vec<f32>,
}

/// One head of one segment: queries, keys and values are its rows
/// `start..start + len`, the head's columns of each.
pub(crate) struct SegmentHead<'a> {
    pub(crate) q: &'a [f32],
    pub(crate) k: &'a [f32],
    pub(crate) v: &'a [f32],
    pub(crate) start: usize,
    pub(crate) len: usize,
    /// Where the head starts in a row of `q_dim` (queries, outputs) and of
    /// `kv_dim` (its KV head's keys and values).
    pub(crate) q_off: usize,
    pub(crate) kv_off: usize,
    pub(crate) q_dim: usize,
    pub(crate) kv_dim: usize,
    pub(crate) hd: usize,
    pub(crate) scale: f32,
}

impl SegmentHead<'_> {
    /// `out[row][head] = softmax(q_row · k_j · scale) · v_j` over the segment's rows `j`.
    ///
    /// # Safety
    /// `out` holds the batch's rows of `q_dim`, and no other task writes this
    /// head's columns of the segment's rows.
    #[inline(always)]
    pub(crate) unsafe fn attend(&self, scratch: &mut HeadScratch, out: OutPtr) {
        let (len, hd) = (self.len, self.hd);
        let HeadScratch { kt, scores, o } = scratch;
        // kt[d * len + j] = k_j[d]
        kt.resize(hd * len, 0.0);
        scores.resize(len, 0.0);
        o.resize(hd, 0.0);
        for j in 0..len {
            let kj = &self.k[(self.start + j) * self.kv_dim + self.kv_off..][..hd];
            for d in 0..hd {
                kt[d * len + j] = kj[d];
            }
        }
        for i in 0..len {
            let row = self.start + i;
            let qi = &self.q[row * self.q_dim + self.q_off..][..hd];
            scores.fill(0.0);
            for d in 0..hd {
                let qd = qi[d];
                for (s, &kv) in scores.iter_mut().zip(&kt[d * len..(d + 1) * len]) {
                    *s += qd * kv;
                }
            }
            let mut max = f32::NEG_INFINITY;
            for s in scores.iter_mut() {
                *s *= self.scale;
                max = max.max(*s);
            }
            let mut sum = 0.0;
            for s in scores.iter_mut() {
                *s = exp_fast(*s - max);
                sum += *s;
            }
            o.fill(0.0);
            for (j, &w) in scores.iter().enumerate() {
                for (ov, &x) in o.iter_mut().zip(&self.v[(self.start + j) * self.kv_dim + self.kv_off..][..hd]) {
                    *ov += w * x;
                }
            }
            let inv = 1.0 / sum;
            for (d, &ov) in o.iter().enumerate() {
                out.write(row * self.q_dim + self.q_off + d, ov * inv);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops;

    fn values(n: usize, seed: u32) -> Vec<f32> {
        let mut s = seed;
        (0..n)
            .map(|_| {
                s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                (s >> 8) as f32 / (1u32 << 24) as f32 * 4.0 - 2.0
            })
            .collect()
    }

    #[test]
    fn layernorm_matches_reference() {
        let dim = 48;
        let x = values(dim * 5, 1);
        let (w, b) = (values(dim, 2), values(dim, 3));
        let mut fast = x.clone();
        layernorm_rows(&mut fast, &w, &b, 1e-12).unwrap();
        let mut want = vec![0.0; x.len()];
        for (o, r) in want.chunks_mut(dim).zip(x.chunks(dim)) {
            ops::layernorm_ref(r, &w, &b, 1e-12, o);
        }
        for (a, b) in fast.iter().zip(&want) {
            assert!((a - b).abs() < 1e-5, "{a} vs {b}");
        }
        assert!(layernorm_rows(&mut fast[..7], &w, &b, 1e-12).is_err());
    }

    #[test]
    fn gelu_matches_exact_form() {
        // 2,405 values: whole 16-lane vectors and a masked tail.
        let mut x: Vec<f32> = (-1200..1205).map(|i| i as f32 / 100.0).collect();
        let want: Vec<f32> = x.iter().map(|&v| ops::gelu_erf(v)).collect();
        gelu_inplace(&mut x);
        for (a, b) in x.iter().zip(&want) {
            assert!((a - b).abs() < 2e-6 * b.abs().max(1.0), "{a} vs {b}");
        }
    }

    #[test]
    fn exp_fast_is_within_two_ulp_of_libm() {
        for i in -8700..=8800 {
            let x = i as f32 / 100.0;
            let (got, want) = (exp_fast(x), x.exp());
            assert!((got - want).abs() <= 2.5e-7 * want, "exp({x}): {got} vs {want}");
        }
        assert_eq!(exp_fast(-1000.0), exp_fast(-87.0));
    }

    /// Head sizes of the scalar path (8) and of the AVX-512 one (32, and 48
    /// with a half pass over the values); a text of 70 tokens needs two
    /// passes of score registers, one of a single token none.
    #[test]
    fn segment_attention_matches_reference() {
        for (nh, nkv, hd) in [(4, 2, 8), (2, 1, 32), (2, 2, 48)] {
            let segs = [(0, 3), (3, 70), (73, 1)];
            let n = 74;
            let (q, k, v) = (values(n * nh * hd, 4), values(n * nkv * hd, 5), values(n * nkv * hd, 6));
            let p = SegAttn { n_heads: nh, n_kv_heads: nkv, head_dim: hd, scale: 0.3 };
            let mut fast = vec![0.0; n * nh * hd];
            attention_segments(&q, &k, &v, &segs, p, &mut fast).unwrap();
            let mut want = vec![0.0; n * nh * hd];
            ops::attention_segments_ref(&q, &k, &v, &segs, nh, nkv, hd, 0.3, &mut want);
            for (i, (a, b)) in fast.iter().zip(&want).enumerate() {
                assert!((a - b).abs() < 1e-5, "head size {hd} [{i}]: {a} vs {b}");
            }
            assert!(attention_segments(&q, &k, &v, &[(1, 3)], p, &mut fast).is_err());
        }
    }
}
