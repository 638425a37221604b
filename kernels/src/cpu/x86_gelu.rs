//! AVX-512 exact GELU, sixteen lanes at a time: [`super::encoder::erf_fast`]'s
//! rational function with the division replaced by a 14-bit reciprocal and
//! one Newton step (about 1e-8 relative; a 16-lane `vdivps` costs as much as
//! the whole polynomial).

use std::arch::x86_64::*;

/// `v = 0.5 v (1 + erf(v / √2))` for 16 lanes.
#[inline(always)]
unsafe fn gelu16(v: __m512) -> __m512 {
    let x = _mm512_mul_ps(v, _mm512_set1_ps(std::f32::consts::FRAC_1_SQRT_2));
    let x = _mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(-4.0)), _mm512_set1_ps(4.0));
    let x2 = _mm512_mul_ps(x, x);
    let c = _mm512_set1_ps;
    let mut p = _mm512_fmadd_ps(x2, c(-2.726_142_3e-10), c(2.770_681_4e-8));
    for k in [-2.101_024e-6, -5.692_506_4e-5, -7.349_906_3e-4, -2.954_6e-3, -1.609_603_3e-2] {
        p = _mm512_fmadd_ps(x2, p, c(k));
    }
    let p = _mm512_mul_ps(x, p);
    let mut q = _mm512_fmadd_ps(x2, c(-1.456_607_2e-5), c(-2.133_740_6e-4));
    for k in [-1.682_827e-3, -7.373_329e-3, -1.426_474e-2] {
        q = _mm512_fmadd_ps(x2, q, c(k));
    }
    // 1/q: the 14-bit estimate, then r' = r (2 - q r).
    let r = _mm512_rcp14_ps(q);
    let r = _mm512_mul_ps(r, _mm512_fnmadd_ps(q, r, c(2.0)));
    let erf = _mm512_mul_ps(p, r);
    _mm512_mul_ps(_mm512_mul_ps(c(0.5), v), _mm512_add_ps(c(1.0), erf))
}

/// Exact GELU in place.
///
/// # Safety
/// AVX-512 F is present.
#[target_feature(enable = "avx512f,fma")]
pub(crate) unsafe fn gelu(xs: &mut [f32]) {
    let (n, p) = (xs.len(), xs.as_mut_ptr());
    let mut i = 0;
    while i + 16 <= n {
        _mm512_storeu_ps(p.add(i), gelu16(_mm512_loadu_ps(p.add(i))));
        i += 16;
    }
    if i < n {
        let m: __mmask16 = ((1u32 << (n - i)) - 1) as u16;
        _mm512_mask_storeu_ps(p.add(i), m, gelu16(_mm512_maskz_loadu_ps(m, p.add(i))));
    }
}
