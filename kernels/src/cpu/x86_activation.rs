//! AVX-512 SwiGLU gating: `gate = silu(gate) · up` sixteen lanes at a
//! time. `exp` runs in f64 (range reduction by ln 2 in two parts, a
//! degree-12 Taylor polynomial, `vscalefpd` for the power of two) and is
//! rounded once to f32, so it is the correctly rounded value that libm's
//! `expf` (≤ 0.502 ulp) also returns but for rare halfway cases; silu then
//! divides in f32 exactly as the scalar path. Greedy decoding sits on
//! near-ties that a few-ulp `exp` tips (an f32 polynomial moved SmolLM2's
//! first token on one of llama.cpp's reference prompts), so accuracy is
//! kept over the last factor of speed. The scalar path called `expf` per
//! value and took about 4 % of a prefill. The entry point is `unsafe`: the
//! caller must have detected AVX-512 F.

use std::arch::x86_64::*;

/// `e^x` per lane, to about 1e-16 relative for |x| ≤ 104 (beyond, the
/// power of two saturates to 0 or ∞ as f32 does).
#[inline(always)]
unsafe fn exp8(x: __m512d) -> __m512d {
    let x = _mm512_min_pd(_mm512_max_pd(x, _mm512_set1_pd(-104.0)), _mm512_set1_pd(104.0));
    let n = _mm512_roundscale_pd::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(_mm512_mul_pd(
        x,
        _mm512_set1_pd(std::f64::consts::LOG2_E),
    ));
    // ln 2 = LN2_HI + LN2_LO with LN2_HI's low bits zero, so n · LN2_HI is exact.
    #[allow(clippy::excessive_precision)]
    const LN2_HI: f64 = 0.693_147_180_369_123_816_49;
    const LN2_LO: f64 = 1.908_214_929_270_587_7e-10;
    let r = _mm512_fnmadd_pd(n, _mm512_set1_pd(LN2_HI), x);
    let r = _mm512_fnmadd_pd(n, _mm512_set1_pd(LN2_LO), r);
    // Σ r^k / k! for k ≤ 12: the remainder is below 2e-17 for |r| ≤ ln 2 / 2.
    let mut p = _mm512_set1_pd(1.0 / 479_001_600.0);
    let mut fact = 479_001_600.0f64;
    for k in (0..12).rev() {
        fact /= (k + 1) as f64;
        p = _mm512_fmadd_pd(p, r, _mm512_set1_pd(1.0 / fact));
    }
    _mm512_scalef_pd(p, n)
}

/// `e^x` for sixteen f32 lanes, rounded once from f64.
#[inline(always)]
unsafe fn exp16(x: __m512) -> __m512 {
    let lo = _mm512_cvtpd_ps(exp8(_mm512_cvtps_pd(_mm512_castps512_ps256(x))));
    let hi = _mm512_cvtpd_ps(exp8(_mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(x))))));
    _mm512_castpd_ps(_mm512_insertf64x4::<1>(_mm512_castps_pd(_mm512_castps256_ps512(lo)), _mm256_castps_pd(hi)))
}

/// `gate[i] = silu(gate[i]) · up[i]` for `i < gate.len()` (`up` at least as long).
#[target_feature(enable = "avx2,fma,avx512f")]
pub(crate) unsafe fn swiglu(gate: &mut [f32], up: &[f32]) {
    let n = gate.len().min(up.len());
    let (g, u) = (gate.as_mut_ptr(), up.as_ptr());
    let one = _mm512_set1_ps(1.0);
    let mut i = 0;
    while i + 16 <= n {
        let x = _mm512_loadu_ps(g.add(i));
        let e = exp16(_mm512_sub_ps(_mm512_setzero_ps(), x));
        let s = _mm512_div_ps(x, _mm512_add_ps(one, e));
        _mm512_storeu_ps(g.add(i), _mm512_mul_ps(s, _mm512_loadu_ps(u.add(i))));
        i += 16;
    }
    if i < n {
        let m: __mmask16 = (1u32 << (n - i)).wrapping_sub(1) as __mmask16;
        let x = _mm512_maskz_loadu_ps(m, g.add(i));
        let e = exp16(_mm512_sub_ps(_mm512_setzero_ps(), x));
        let s = _mm512_div_ps(x, _mm512_add_ps(one, e));
        _mm512_mask_storeu_ps(g.add(i), m, _mm512_mul_ps(s, _mm512_maskz_loadu_ps(m, u.add(i))));
    }
}
