//! RoPE variants and scalings, reduced to what every backend applies: a
//! per-pair frequency multiplier table and a magnitude scale.
//!
//! Pair `i` of a head rotates by `pos · base^(-2i/n_rot) · mult[i]` and its
//! cosine and sine are multiplied by `mscale`. Linear scaling is a constant
//! multiplier; llama3's `rope_freqs` and Phi-3's LongRoPE factors divide
//! the frequency; YaRN blends interpolation and extrapolation per pair
//! (facts from the YaRN paper and llama.cpp's `rope_yarn`; the code is ours).

use std::sync::Arc;

use infer_gguf::Gguf;

use crate::error::Result;

/// How a model rotates queries and keys.
#[derive(Debug, Clone)]
pub struct RopeConfig {
    /// Rotated dimensions per head (`rope.dimension_count`; ≤ head_dim).
    pub n_rot: usize,
    pub base: f32,
    /// RoPE base of sliding-window layers (gemma3: 10 000).
    pub base_swa: f32,
    /// Linear position scaling (1.0 = none).
    pub freq_scale: f32,
    /// NEOX ordering (`i` with `i + n_rot/2`) instead of adjacent pairs.
    pub neox: bool,
    /// Per-pair frequency multipliers (`n_rot / 2` values), when the model
    /// scales frequencies per pair.
    pub mult: Option<Arc<[f32]>>,
    /// Magnitude of cosine and sine (YaRN / LongRoPE attention factor).
    pub mscale: f32,
    /// Context the model was first trained for, before any RoPE scaling
    /// (Phi-3 picks its long factors past it).
    pub orig_ctx: usize,
}

impl RopeConfig {
    /// Unscaled RoPE over `n_rot` dimensions.
    pub fn plain(n_rot: usize, base: f32, neox: bool) -> Self {
        RopeConfig { n_rot, base, base_swa: base, freq_scale: 1.0, neox, mult: None, mscale: 1.0, orig_ctx: 0 }
    }
}

/// `rope.scaling.*` keys as the file states them.
#[derive(Debug, Clone, PartialEq)]
pub enum Scaling {
    None,
    Linear { factor: f32 },
    Yarn { factor: f32, orig_ctx: usize, ext_factor: f32, attn_factor: f32, beta_fast: f32, beta_slow: f32 },
}

/// Reads the scaling type and its parameters.
pub fn read_scaling(g: &Gguf, n_ctx_train: usize) -> Result<Scaling> {
    let key = g.arch_key("rope.scaling.type")?;
    let ty = match g.get(&key) {
        Some(_) => g.str(&key)?.to_string(),
        None => String::new(),
    };
    let factor = g.arch_f32_opt("rope.scaling.factor")?.filter(|&f| f > 0.0);
    Ok(match (ty.as_str(), factor) {
        ("yarn", Some(factor)) => Scaling::Yarn {
            factor,
            orig_ctx: g.arch_u32_opt("rope.scaling.original_context_length")?.map_or(n_ctx_train, |v| v as usize),
            ext_factor: 1.0,
            attn_factor: g.arch_f32_opt("rope.scaling.attn_factor")?.unwrap_or(1.0),
            beta_fast: g.arch_f32_opt("rope.scaling.yarn_beta_fast")?.unwrap_or(32.0),
            beta_slow: g.arch_f32_opt("rope.scaling.yarn_beta_slow")?.unwrap_or(1.0),
        },
        ("none", _) | (_, None) => Scaling::None,
        (_, Some(factor)) => Scaling::Linear { factor },
    })
}

/// Applies `scaling` to `rope`: linear scaling sets `freq_scale`; YaRN
/// fills the multiplier table (times any divisors already there) and the
/// magnitude.
pub fn apply_scaling(rope: &mut RopeConfig, scaling: &Scaling) {
    match *scaling {
        Scaling::None => {}
        Scaling::Linear { factor } => rope.freq_scale = 1.0 / factor,
        Scaling::Yarn { factor, orig_ctx, ext_factor, attn_factor, beta_fast, beta_slow } => {
            let freq_scale = 1.0 / factor;
            let (lo, hi) = yarn_corr_dims(rope.n_rot, orig_ctx, rope.base, beta_fast, beta_slow);
            let pairs = rope.n_rot / 2;
            let old = rope.mult.clone();
            let mult: Vec<f32> = (0..pairs)
                .map(|i| {
                    let ramp = 1.0 - ((i as f32 - lo) / (hi - lo).max(0.001)).clamp(0.0, 1.0);
                    let mix = ramp * ext_factor;
                    let m = freq_scale * (1.0 - mix) + mix;
                    m * old.as_ref().map_or(1.0, |o| o[i])
                })
                .collect();
            rope.mult = Some(mult.into());
            rope.mscale = attn_factor * (1.0 + 0.1 * (1.0 / freq_scale).ln());
        }
    }
}

/// The pair range where YaRN ramps from extrapolation to interpolation.
fn yarn_corr_dims(n_rot: usize, orig_ctx: usize, base: f32, beta_fast: f32, beta_slow: f32) -> (f32, f32) {
    let corr = |rotations: f32| {
        n_rot as f32 * (orig_ctx as f32 / (rotations * 2.0 * std::f32::consts::PI)).ln() / (2.0 * base.ln())
    };
    let lo = corr(beta_fast).floor().max(0.0);
    let hi = corr(beta_slow).ceil().min(n_rot as f32 - 1.0);
    (lo, hi)
}

/// Multiplier table from frequency divisors (`rope_freqs`, LongRoPE factors).
pub fn from_divisors(div: &[f32]) -> Arc<[f32]> {
    div.iter().map(|&d| if d != 0.0 { 1.0 / d } else { 1.0 }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yarn_keeps_high_frequencies_and_interpolates_low_ones() {
        let mut r = RopeConfig::plain(128, 10_000.0, true);
        let s = Scaling::Yarn {
            factor: 4.0,
            orig_ctx: 4096,
            ext_factor: 1.0,
            attn_factor: 1.0,
            beta_fast: 32.0,
            beta_slow: 1.0,
        };
        apply_scaling(&mut r, &s);
        let m = r.mult.expect("table");
        assert_eq!(m.len(), 64);
        // Fast-rotating pairs extrapolate (×1), slow ones interpolate (×1/4).
        assert!((m[0] - 1.0).abs() < 1e-6, "{}", m[0]);
        assert!((m[63] - 0.25).abs() < 1e-6, "{}", m[63]);
        assert!(m.windows(2).all(|w| w[1] <= w[0] + 1e-7));
        assert!((r.mscale - (1.0 + 0.1 * 4f32.ln())).abs() < 1e-6);
    }

    #[test]
    fn divisors_become_multipliers() {
        assert_eq!(&*from_divisors(&[1.0, 2.0, 8.0]), &[1.0, 0.5, 0.125]);
    }
}
