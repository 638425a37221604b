//! Teacher-forced scoring: evaluate a sequence once and report, per
//! position, the top logits and the log-sum-exp (`infer logits`; engine
//! comparisons and conversion checks).

use crate::arch::Logits;
use crate::error::{EngineError, Result};
use crate::session::Session;

/// The logits after one position of a sequence.
#[derive(Debug, Clone, PartialEq)]
pub struct PositionScores {
    pub pos: usize,
    /// The token at this position.
    pub token: u32,
    /// The `n` highest logits, `(id, logit)`, best first (lower id first on ties).
    pub top: Vec<(u32, f32)>,
    /// `ln Σ exp(logit)` over the vocabulary: `logit - logsumexp` is a log-probability.
    pub logsumexp: f32,
}

/// The `n` highest `(id, value)` pairs of `row`, best first.
pub fn top_n(row: &[f32], n: usize) -> Vec<(u32, f32)> {
    let mut idx: Vec<u32> = (0..row.len() as u32).collect();
    let n = n.min(row.len());
    if n == 0 {
        return Vec::new();
    }
    let cmp = |a: &u32, b: &u32| row[*b as usize].total_cmp(&row[*a as usize]).then(a.cmp(b));
    idx.select_nth_unstable_by(n - 1, cmp);
    idx.truncate(n);
    idx.sort_by(cmp);
    idx.into_iter().map(|i| (i, row[i as usize])).collect()
}

/// `ln Σ exp(x)`, computed stably.
pub fn log_sum_exp(row: &[f32]) -> f32 {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    if !max.is_finite() {
        return max;
    }
    max + row.iter().map(|&v| ((v - max) as f64).exp()).sum::<f64>().ln() as f32
}

/// Evaluates `ids` from an empty cache and scores every position: the
/// logits after `ids[p]` predict `ids[p + 1]`.
///
/// ```no_run
/// # use infer_engine::{Model, ModelOptions, SessionParams};
/// let model = Model::load("model.gguf", ModelOptions::default())?;
/// let mut session = model.session(SessionParams::default())?;
/// let ids = model.prompt_tokens("The capital of France is")?;
/// for p in infer_engine::scoring::score(&mut session, &ids, 5)? {
///     println!("{} {:?} {}", p.token, p.top, p.logsumexp);
/// }
/// # Ok::<(), infer_engine::EngineError>(())
/// ```
pub fn score(session: &mut Session, ids: &[u32], n_top: usize) -> Result<Vec<PositionScores>> {
    if ids.is_empty() {
        return Err(EngineError::EmptyPrompt);
    }
    session.clear();
    let vocab = session.model().config().vocab;
    let logits = session.eval(ids, Logits::All)?;
    Ok(logits
        .chunks(vocab)
        .zip(ids)
        .enumerate()
        .map(|(pos, (row, &token))| PositionScores { pos, token, top: top_n(row, n_top), logsumexp: log_sum_exp(row) })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_n_orders_and_breaks_ties_by_id() {
        let row = [0.5, 2.0, -1.0, 2.0, 1.0];
        assert_eq!(top_n(&row, 3), vec![(1, 2.0), (3, 2.0), (4, 1.0)]);
        assert_eq!(top_n(&row, 9).len(), 5);
        assert!(top_n(&row, 0).is_empty());
    }

    #[test]
    fn log_sum_exp_is_stable() {
        let v = log_sum_exp(&[1000.0, 1000.0]);
        assert!((v - (1000.0 + 2f32.ln())).abs() < 1e-3, "{v}");
        assert!((log_sum_exp(&[0.0; 4]) - 4f32.ln()).abs() < 1e-6);
    }
}
