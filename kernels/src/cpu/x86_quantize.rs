//! AVX-512 activation quantizers: the same numbers as the scalar ones in
//! `quantize` (the same largest value, the same scale, rounding half to even
//! as the FPU's default mode does), sixteen values per instruction. The
//! quantizers run once per matmul over every token of a prompt, where the
//! scalar loops took about 5 % of a K-quant prefill. Entry points are
//! `unsafe`: the caller must have detected AVX-512 F/BW/VL.

use std::arch::x86_64::*;

use half::f16;
use infer_gguf::blocks::BlockQ8K;
use infer_gguf::QK_K;

use super::quantize::BlockQ8Act;

/// [`super::quantize::quantize_q8_k_ref`], sixteen lanes at a time: `max`
/// is the first value of the largest magnitude, as the scalar scan finds it.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl")]
pub(crate) unsafe fn quantize_q8_k(x: &[f32], out: &mut [BlockQ8K]) {
    for (xb, b) in x.chunks_exact(QK_K).zip(out.iter_mut()) {
        let p = xb.as_ptr();
        let mut vmax = _mm512_setzero_ps();
        for i in 0..QK_K / 16 {
            // abs first: a NaN lane leaves the running maximum as it was.
            vmax = _mm512_max_ps(_mm512_abs_ps(_mm512_loadu_ps(p.add(16 * i))), vmax);
        }
        let amax = _mm512_reduce_max_ps(vmax);
        if amax == 0.0 {
            b.d = 0.0;
            b.qs = [0; QK_K];
            b.bsums = [0; QK_K / 16];
            continue;
        }
        let mut first = 0;
        for i in 0..QK_K / 16 {
            let hit =
                _mm512_cmp_ps_mask::<_CMP_EQ_OQ>(_mm512_abs_ps(_mm512_loadu_ps(p.add(16 * i))), _mm512_set1_ps(amax));
            if hit != 0 {
                first = 16 * i + hit.trailing_zeros() as usize;
                break;
            }
        }
        let iscale = -127.0 / *xb.get_unchecked(first);
        let (vs, top) = (_mm512_set1_ps(iscale), _mm512_set1_epi32(127));
        for i in 0..QK_K / 16 {
            let q = _mm512_min_epi32(_mm512_cvtps_epi32(_mm512_mul_ps(vs, _mm512_loadu_ps(p.add(16 * i)))), top);
            _mm_storeu_si128(b.qs.as_mut_ptr().add(16 * i) as *mut __m128i, _mm512_cvtepi32_epi8(q));
            b.bsums[i] = _mm512_reduce_add_epi32(q) as i16;
        }
        b.d = 1.0 / iscale;
    }
}

/// [`super::quantize::quantize_q8_act_ref`], two blocks of 32 per step of
/// sixteen-lane halves.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl")]
pub(crate) unsafe fn quantize_q8_act(x: &[f32], out: &mut [BlockQ8Act]) {
    for (xb, b) in x.chunks_exact(32).zip(out.iter_mut()) {
        let (lo, hi) = (_mm512_loadu_ps(xb.as_ptr()), _mm512_loadu_ps(xb.as_ptr().add(16)));
        let amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(lo), _mm512_abs_ps(hi)));
        let d = amax / 127.0;
        let id = if amax != 0.0 { 127.0 / amax } else { 0.0 };
        let vid = _mm512_set1_ps(id);
        let (ql, qh) = (_mm512_cvtps_epi32(_mm512_mul_ps(lo, vid)), _mm512_cvtps_epi32(_mm512_mul_ps(hi, vid)));
        let qs = b.qs.as_mut_ptr() as *mut __m128i;
        _mm_storeu_si128(qs, _mm512_cvtepi32_epi8(ql));
        _mm_storeu_si128(qs.add(1), _mm512_cvtepi32_epi8(qh));
        let sum = _mm512_reduce_add_epi32(_mm512_add_epi32(ql, qh));
        b.d = f16::from_f32(d).to_f32();
        b.s = f16::from_f32(d * sum as f32).to_f32();
    }
}
