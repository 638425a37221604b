//! `infer verify`: runs a prompt on the CPU and with the model's offload,
//! records every named intermediate (`"{layer}.{stage}"`) of both, and
//! compares them stage by stage.
//!
//! The measure is the relative max-abs error `max|gpu - cpu| / max|cpu|`
//! of each recorded tensor, with a tolerance per stage kind. The GPU
//! computes matrix products in f32 on dequantized weights while the CPU
//! quantizes activations to 8 bits first (as ggml does), so the two differ
//! by about 1% per product; the tolerances leave room for that, growing
//! with the depth of the computation, and catch real kernel bugs (wrong
//! rows, positions, heads), which give errors of order 1.

use std::fmt;
use std::sync::{Arc, Mutex};

use crate::arch::Logits;
use crate::error::{EngineError, Result};
use crate::model::Model;
use crate::session::{Session, SessionParams};

/// Tolerance of a stage kind (the part after the layer number).
pub fn tolerance(kind: &str) -> f32 {
    match kind {
        "attn_norm" => 0.08,
        // gemma3 RMS-normalizes each head of q and k, which scales the
        // error of a small head up to the size of the large ones.
        "q_rope" | "k_rope" => 0.15,
        // A sharp softmax amplifies the small differences of q and k; what
        // reaches the residual stream stays small (see attn_residual).
        "attn" => 0.25,
        "attn_residual" | "ffn_residual" => 0.08,
        "logits" => 0.10,
        _ => 0.10,
    }
}

/// One compared intermediate.
#[derive(Debug, Clone)]
pub struct StageDiff {
    /// `"{layer}.{stage}"`, prefixed with `"decode{i}:"` for decode steps.
    pub name: String,
    pub kind: String,
    /// `max|gpu - cpu| / max|cpu|`.
    pub rel: f32,
    pub tol: f32,
}

/// Every compared stage, in the order the forward pass produced them.
#[derive(Debug, Clone)]
pub struct VerifyReport {
    pub stages: Vec<StageDiff>,
    /// Index in `stages` of the first stage over its tolerance.
    pub first_divergent: Option<usize>,
    /// Layers on the GPU / all layers (blocks + head).
    pub n_gpu: usize,
    pub n_total: usize,
}

impl VerifyReport {
    pub fn ok(&self) -> bool {
        self.first_divergent.is_none()
    }

    /// The stage kinds with their largest error over all layers and steps.
    pub fn by_kind(&self) -> Vec<(String, f32, f32)> {
        let mut out: Vec<(String, f32, f32)> = Vec::new();
        for s in &self.stages {
            match out.iter_mut().find(|(k, _, _)| *k == s.kind) {
                Some(e) => e.1 = e.1.max(s.rel),
                None => out.push((s.kind.clone(), s.rel, s.tol)),
            }
        }
        out
    }
}

impl fmt::Display for VerifyReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{}/{} layers on the GPU; {} intermediates compared", self.n_gpu, self.n_total, self.stages.len())?;
        if let Some(i) = self.first_divergent {
            let s = &self.stages[i];
            writeln!(f, "FIRST DIVERGENT STAGE: {} (max rel error {:.3e} > tolerance {:.1e})", s.name, s.rel, s.tol)?;
        }
        writeln!(f, "{:<24} {:>14} {:>10}", "stage", "max rel error", "tolerance")?;
        for s in &self.stages {
            let mark = if s.rel > s.tol { "  <-- over" } else { "" };
            writeln!(f, "{:<24} {:>14.3e} {:>10.1e}{mark}", s.name, s.rel, s.tol)?;
        }
        Ok(())
    }
}

type Records = Arc<Mutex<Vec<(String, Vec<f32>)>>>;

fn record_into(s: &mut Session) -> Records {
    let rec: Records = Arc::new(Mutex::new(Vec::new()));
    let sink = rec.clone();
    s.set_hook(Some(Box::new(move |name: &str, v: &[f32]| {
        if let Ok(mut g) = sink.lock() {
            g.push((name.to_string(), v.to_vec()));
        }
    })));
    rec
}

fn take(r: &Records) -> Vec<(String, Vec<f32>)> {
    r.lock().map(|mut g| std::mem::take(&mut *g)).unwrap_or_default()
}

/// `max|a - b| / max|b|` (b is the reference).
pub fn rel_error(a: &[f32], b: &[f32]) -> f32 {
    let scale = b.iter().fold(0.0f32, |m, v| m.max(v.abs())).max(1e-6);
    let diff = a.iter().zip(b).fold(0.0f32, |m, (x, y)| m.max((x - y).abs()));
    if a.len() != b.len() || a.iter().any(|v| !v.is_finite()) {
        return f32::INFINITY;
    }
    diff / scale
}

/// Runs `prompt` then `n_decode` greedy decode steps (tokens chosen by the
/// CPU side, fed to both) on the CPU and with the model's offload, and
/// compares every named intermediate and the logits.
pub fn verify(model: &Arc<Model>, prompt: &[u32], n_decode: usize) -> Result<VerifyReport> {
    let off = model
        .offload()
        .ok_or_else(|| EngineError::InvalidParam("nothing is offloaded to a GPU: pass --gpu-layers N|all|auto".into()))?;
    let (n_gpu, n_total) = (off.plan.n_gpu, off.plan.n_layers + 1);
    let params = SessionParams { n_ctx: (prompt.len() + n_decode + 1).max(16), ..Default::default() };
    let mut cpu = model.session_on_cpu(params.clone())?;
    let mut gpu = model.session(params)?;
    let (rc, rg) = (record_into(&mut cpu), record_into(&mut gpu));
    let mut stages = Vec::new();
    let mut input = prompt.to_vec();
    for step in 0..=n_decode {
        let next = {
            let l = cpu.eval(&input, Logits::Last)?;
            crate::sampler::argmax_row(l)
        };
        gpu.eval(&input, Logits::Last)?;
        let (a, b) = (take(&rg), take(&rc));
        if a.len() != b.len() {
            return Err(EngineError::Gpu(format!("the GPU run recorded {} intermediates, the CPU run {}", a.len(), b.len())));
        }
        for ((ga, gv), (ca, cv)) in a.iter().zip(&b) {
            if ga != ca {
                return Err(EngineError::Gpu(format!("intermediates out of order: GPU {ga}, CPU {ca}")));
            }
            let kind = ga.split_once('.').map_or(ga.as_str(), |(_, k)| k).to_string();
            let name = if step == 0 { ga.clone() } else { format!("decode{step}:{ga}") };
            let tol = tolerance(&kind);
            stages.push(StageDiff { name, kind, rel: rel_error(gv, cv), tol });
        }
        input = vec![next];
    }
    let first_divergent = stages.iter().position(|s| !(s.rel <= s.tol));
    Ok(VerifyReport { stages, first_divergent, n_gpu, n_total })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_error_is_scaled_by_the_reference() {
        assert_eq!(rel_error(&[1.0, 2.0], &[1.0, 2.0]), 0.0);
        assert!((rel_error(&[1.0, 2.2], &[1.0, 2.0]) - 0.1).abs() < 1e-6);
        assert_eq!(rel_error(&[f32::NAN], &[1.0]), f32::INFINITY);
        assert_eq!(rel_error(&[1.0], &[1.0, 2.0]), f32::INFINITY);
    }
}
