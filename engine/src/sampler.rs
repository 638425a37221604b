//! Token sampling.
//!
//! The chain runs in llama.cpp's order:
//! 1. repetition penalty over the last `repeat_last_n` tokens,
//! 2. top-k, 3. top-p (nucleus), 4. min-p — each on the softmax of the
//!    penalized logits,
//! 5. temperature, 6. a draw from the remaining candidates.
//!
//! `temperature <= 0` is greedy: the highest logit after the penalty.

use crate::constraint::ConstraintState;
use crate::error::{EngineError, Result};

/// Sampling parameters (llama.cpp's defaults).
#[derive(Debug, Clone, PartialEq)]
pub struct SamplerParams {
    pub temperature: f32,
    /// Keep the `top_k` most likely tokens (0 = all).
    pub top_k: usize,
    /// Keep the smallest set whose probability reaches `top_p` (1.0 = all).
    pub top_p: f32,
    /// Drop tokens less likely than `min_p` × the most likely one (0 = off).
    pub min_p: f32,
    /// Divide positive logits (multiply negative ones) of recent tokens (1.0 = off).
    pub repeat_penalty: f32,
    pub repeat_last_n: usize,
    pub seed: u64,
}

impl Default for SamplerParams {
    fn default() -> Self {
        SamplerParams {
            temperature: 0.8,
            top_k: 40,
            top_p: 0.95,
            min_p: 0.05,
            repeat_penalty: 1.0,
            repeat_last_n: 64,
            seed: 0x5EED,
        }
    }
}

impl SamplerParams {
    /// Greedy decoding.
    pub fn greedy() -> Self {
        SamplerParams { temperature: 0.0, ..Default::default() }
    }

    /// Checks ranges; errors name the parameter.
    pub fn validate(&self) -> Result<()> {
        let bad = |s: String| Err(EngineError::InvalidParam(s));
        if !self.temperature.is_finite() {
            return bad(format!("--temp {} is not a number", self.temperature));
        }
        if !(0.0..=1.0).contains(&self.top_p) {
            return bad(format!("--top-p {} must be between 0 and 1", self.top_p));
        }
        if !(0.0..=1.0).contains(&self.min_p) {
            return bad(format!("--min-p {} must be between 0 and 1", self.min_p));
        }
        if !(self.repeat_penalty > 0.0) || !self.repeat_penalty.is_finite() {
            return bad(format!("--repeat-penalty {} must be positive", self.repeat_penalty));
        }
        Ok(())
    }
}

/// A seeded sampler (same seed, same draws).
#[derive(Debug, Clone)]
pub struct Sampler {
    pub params: SamplerParams,
    rng: SplitMix64,
    cand: Vec<(u32, f32)>,
}

impl Sampler {
    pub fn new(params: SamplerParams) -> Result<Self> {
        params.validate()?;
        let rng = SplitMix64(params.seed);
        Ok(Sampler { params, rng, cand: Vec::new() })
    }

    /// Picks the next token from `logits` given the tokens so far.
    pub fn sample(&mut self, logits: &[f32], history: &[u32]) -> u32 {
        self.cand.clear();
        self.cand.extend(logits.iter().enumerate().map(|(i, &l)| (i as u32, l)));
        self.pick(history)
    }

    /// Like [`Sampler::sample`], but only among the tokens `constraint`
    /// allows next, and the pick is accepted into `constraint`.
    pub fn sample_constrained(&mut self, logits: &[f32], history: &[u32], constraint: &mut ConstraintState) -> Result<u32> {
        self.cand.clear();
        let cand = &mut self.cand;
        constraint.for_each_allowed(logits.len(), |id| cand.push((id, logits[id as usize])))?;
        if self.cand.is_empty() {
            return Err(EngineError::Constraint("no token within the model's logits is allowed".into()));
        }
        let id = self.pick(history);
        constraint.accept(id)?;
        Ok(id)
    }

    /// Runs the chain on the candidates in `self.cand`.
    fn pick(&mut self, history: &[u32]) -> u32 {
        let p = &self.params;
        apply_repeat_penalty(&mut self.cand, history, p.repeat_penalty, p.repeat_last_n);
        if p.temperature <= 0.0 {
            return argmax(&self.cand);
        }
        top_k(&mut self.cand, p.top_k);
        top_p(&mut self.cand, p.top_p);
        min_p(&mut self.cand, p.min_p);
        for c in self.cand.iter_mut() {
            c.1 /= p.temperature;
        }
        let probs = softmax(&self.cand);
        let r = self.rng.next_f32();
        let mut acc = 0.0;
        for (c, pr) in self.cand.iter().zip(&probs) {
            acc += pr;
            if r < acc {
                return c.0;
            }
        }
        self.cand.last().map_or(0, |c| c.0)
    }
}

/// The token with the highest logit (lowest id on ties).
pub fn argmax(cand: &[(u32, f32)]) -> u32 {
    let mut best = (cand.first().map_or(0, |c| c.0), f32::NEG_INFINITY);
    for &(id, l) in cand {
        if l > best.1 {
            best = (id, l);
        }
    }
    best.0
}

/// The index of the highest value of a logits row: the first of equal
/// values, NaN never (0 when nothing beats −∞). What every backend's greedy
/// choice matches.
pub fn argmax_row(row: &[f32]) -> u32 {
    let mut best = (0u32, f32::NEG_INFINITY);
    for (i, &v) in row.iter().enumerate() {
        if v > best.1 {
            best = (i as u32, v);
        }
    }
    best.0
}

/// Penalizes tokens seen in the last `last_n` of `history`.
pub fn apply_repeat_penalty(cand: &mut [(u32, f32)], history: &[u32], penalty: f32, last_n: usize) {
    if penalty == 1.0 || last_n == 0 {
        return;
    }
    let recent = &history[history.len().saturating_sub(last_n)..];
    let mut seen: Vec<u32> = recent.to_vec();
    seen.sort_unstable();
    seen.dedup();
    for c in cand.iter_mut() {
        if seen.binary_search(&c.0).is_ok() {
            c.1 = if c.1 > 0.0 { c.1 / penalty } else { c.1 * penalty };
        }
    }
}

/// Softmax of the candidates' logits.
pub fn softmax(cand: &[(u32, f32)]) -> Vec<f32> {
    let max = cand.iter().map(|c| c.1).fold(f32::NEG_INFINITY, f32::max);
    let e: Vec<f32> = cand.iter().map(|c| (c.1 - max).exp()).collect();
    let s: f32 = e.iter().sum();
    e.into_iter().map(|v| v / s).collect()
}

fn sort_desc(cand: &mut [(u32, f32)]) {
    cand.sort_unstable_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
}

/// Keeps the `k` highest logits (sorted, highest first). `k = 0` keeps all.
pub fn top_k(cand: &mut Vec<(u32, f32)>, k: usize) {
    if k > 0 && k < cand.len() {
        cand.select_nth_unstable_by(k - 1, |a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        cand.truncate(k);
    }
    sort_desc(cand);
}

/// Keeps the smallest prefix (by probability) whose mass reaches `p`.
pub fn top_p(cand: &mut Vec<(u32, f32)>, p: f32) {
    if p >= 1.0 || cand.is_empty() {
        return;
    }
    sort_desc(cand);
    let probs = softmax(cand);
    let mut acc = 0.0;
    let mut keep = cand.len();
    for (i, pr) in probs.iter().enumerate() {
        acc += pr;
        if acc >= p {
            keep = i + 1;
            break;
        }
    }
    cand.truncate(keep.max(1));
}

/// Drops tokens whose probability is below `p` × the highest probability.
pub fn min_p(cand: &mut Vec<(u32, f32)>, p: f32) {
    if p <= 0.0 || cand.is_empty() {
        return;
    }
    let max = cand.iter().map(|c| c.1).fold(f32::NEG_INFINITY, f32::max);
    // prob_i / prob_max = exp(l_i - l_max) >= p  ⇔  l_i >= l_max + ln p
    let min_logit = max + p.ln();
    cand.retain(|c| c.1 >= min_logit);
}

/// OpenAI's presence and frequency penalties: each token already generated
/// `c` times loses `c × frequency + presence` from its logit (`generated` is
/// the completion so far, not the prompt).
pub fn apply_presence_frequency(logits: &mut [f32], generated: &[u32], presence: f32, frequency: f32) {
    if presence == 0.0 && frequency == 0.0 {
        return;
    }
    let mut counts: Vec<u32> = generated.to_vec();
    counts.sort_unstable();
    for run in counts.chunk_by(|a, b| a == b) {
        if let Some(l) = logits.get_mut(run[0] as usize) {
            *l -= run.len() as f32 * frequency + presence;
        }
    }
}

/// Adds a bias to chosen tokens' logits (OpenAI's `logit_bias`; −100 about
/// bans a token, +100 about forces it). Ids past the vocabulary are ignored.
pub fn apply_logit_bias(logits: &mut [f32], bias: &[(u32, f32)]) {
    for &(id, b) in bias {
        if let Some(l) = logits.get_mut(id as usize) {
            *l += b;
        }
    }
}

/// The natural-log probability of every token: `logits − logsumexp(logits)`.
pub fn log_softmax(logits: &[f32]) -> Vec<f32> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f32 = logits.iter().map(|&l| (l - max).exp()).sum();
    let log_z = max + sum.ln();
    logits.iter().map(|&l| l - log_z).collect()
}

/// The `k` most likely tokens of a log-probability row, most likely first
/// (lowest id on ties).
pub fn top_logprobs(logprobs: &[f32], k: usize) -> Vec<(u32, f32)> {
    let mut cand: Vec<(u32, f32)> = logprobs.iter().enumerate().map(|(i, &l)| (i as u32, l)).collect();
    top_k(&mut cand, k.max(1));
    cand.truncate(k);
    cand
}

/// SplitMix64: small, seedable, good enough for sampling.
#[derive(Debug, Clone)]
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn next_f32(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cands(l: &[f32]) -> Vec<(u32, f32)> {
        l.iter().enumerate().map(|(i, &v)| (i as u32, v)).collect()
    }

    #[test]
    fn greedy_picks_the_highest_logit() {
        let mut s = Sampler::new(SamplerParams::greedy()).unwrap();
        assert_eq!(s.sample(&[0.1, 3.0, 2.0, -1.0], &[]), 1);
    }

    #[test]
    fn repeat_penalty_divides_positive_and_multiplies_negative() {
        let mut c = cands(&[2.0, -2.0, 1.0]);
        apply_repeat_penalty(&mut c, &[0, 1], 2.0, 64);
        assert_eq!(c, vec![(0, 1.0), (1, -4.0), (2, 1.0)]);
        // Only the last n tokens count.
        let mut c = cands(&[2.0, 2.0]);
        apply_repeat_penalty(&mut c, &[0, 1], 2.0, 1);
        assert_eq!(c, vec![(0, 2.0), (1, 1.0)]);
        // The penalty can change the greedy choice.
        let mut s = Sampler::new(SamplerParams { repeat_penalty: 2.0, ..SamplerParams::greedy() }).unwrap();
        assert_eq!(s.sample(&[3.0, 2.0], &[0]), 1);
    }

    #[test]
    fn top_k_keeps_the_k_best_sorted() {
        let mut c = cands(&[0.5, 3.0, 1.0, 2.0]);
        top_k(&mut c, 2);
        assert_eq!(c, vec![(1, 3.0), (3, 2.0)]);
    }

    #[test]
    fn top_p_keeps_the_smallest_set_reaching_p() {
        // probabilities ~ [0.665, 0.245, 0.090]
        let mut c = cands(&[2.0, 1.0, 0.0]);
        top_p(&mut c, 0.5);
        assert_eq!(c.len(), 1);
        let mut c = cands(&[2.0, 1.0, 0.0]);
        top_p(&mut c, 0.8);
        assert_eq!(c.iter().map(|c| c.0).collect::<Vec<_>>(), vec![0, 1]);
    }

    #[test]
    fn min_p_drops_unlikely_tokens() {
        let mut c = cands(&[0.0, -1.0, -5.0]);
        min_p(&mut c, 0.1); // exp(-1)=0.37 kept, exp(-5)=0.0067 dropped
        assert_eq!(c.iter().map(|c| c.0).collect::<Vec<_>>(), vec![0, 1]);
    }

    #[test]
    fn temperature_sharpens_and_seed_repeats() {
        let logits = [1.0, 0.9, 0.8, 0.7];
        let draw = |temp: f32, seed: u64| {
            let p = SamplerParams { temperature: temp, top_k: 0, top_p: 1.0, min_p: 0.0, seed, ..Default::default() };
            let mut s = Sampler::new(p).unwrap();
            (0..400).map(|_| s.sample(&logits, &[])).collect::<Vec<_>>()
        };
        assert_eq!(draw(1.0, 7), draw(1.0, 7));
        assert_ne!(draw(1.0, 7), draw(1.0, 8));
        let hot = draw(1.0, 1).iter().filter(|&&t| t == 0).count();
        let cold = draw(0.02, 1).iter().filter(|&&t| t == 0).count();
        assert!(cold > hot, "low temperature should favour the top token ({cold} vs {hot})");
        assert!(cold > 380);
        assert!(draw(1.0, 3).iter().any(|&t| t == 3));
    }

    #[test]
    fn presence_and_frequency_penalties_count_generated_tokens() {
        let mut l = vec![1.0, 1.0, 1.0];
        apply_presence_frequency(&mut l, &[2, 0, 2], 0.5, 0.25);
        assert_eq!(l, vec![0.25, 1.0, 0.0]);
    }

    #[test]
    fn logit_bias_and_logprobs() {
        let mut l = vec![0.0, 0.0, 0.0];
        apply_logit_bias(&mut l, &[(1, 2.0), (99, 5.0)]);
        assert_eq!(l, vec![0.0, 2.0, 0.0]);
        let lp = log_softmax(&l);
        let total: f32 = lp.iter().map(|v| v.exp()).sum();
        assert!((total - 1.0).abs() < 1e-5);
        let top = top_logprobs(&lp, 2);
        assert_eq!(top.iter().map(|t| t.0).collect::<Vec<_>>(), vec![1, 0]);
        assert!(top_logprobs(&lp, 0).is_empty());
    }

    #[test]
    fn invalid_params_are_rejected() {
        assert!(Sampler::new(SamplerParams { top_p: 1.5, ..Default::default() }).is_err());
        assert!(Sampler::new(SamplerParams { repeat_penalty: 0.0, ..Default::default() }).is_err());
    }
}
