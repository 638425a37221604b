//! What `infer bench` reports about the GPU part of a test: per token, the
//! dispatches and submits, the host's recording and encoding time, the
//! time spent waiting for the GPU and, with `--gpu-profile`, each kernel's
//! GPU time and the weight bandwidth it reached. Together they say whether
//! decode is bound by the host, by launches, or by a kernel's bandwidth.

use std::time::Duration;

use infer_kernels::gpu::{GpuStats, KernelTime};
use serde_json::{json, Value};

/// The GPU side of one bench test.
#[derive(Debug, Clone, Default)]
pub struct GpuReport {
    /// Tokens the counters cover (all measured repetitions).
    pub tokens: usize,
    pub stats: GpuStats,
    /// Per-kernel GPU times over `profiled_tokens` extra decode steps.
    pub profile: Vec<KernelTime>,
    pub profiled_tokens: usize,
}

impl GpuReport {
    fn per_token(&self, d: Duration) -> f64 {
        d.as_secs_f64() * 1e3 / self.tokens.max(1) as f64
    }

    fn profile_total(&self) -> Duration {
        self.profile.iter().map(|k| k.gpu_time).sum()
    }

    pub fn to_json(&self) -> Value {
        let n = self.tokens.max(1) as f64;
        let pn = self.profiled_tokens.max(1) as f64;
        let total = self.profile_total().as_secs_f64().max(1e-12);
        let profile: Vec<Value> = self
            .profile
            .iter()
            .map(|k| {
                json!({
                    "kernel": k.kernel,
                    "calls_per_token": k.calls as f64 / pn,
                    "us_per_token": k.gpu_time.as_secs_f64() * 1e6 / pn,
                    "share": k.gpu_time.as_secs_f64() / total,
                    "weight_gb_s": k.weight_gb_s(),
                })
            })
            .collect();
        json!({
            "tokens": self.tokens,
            "dispatches_per_token": self.stats.dispatches as f64 / n,
            "submits_per_token": self.stats.submits as f64 / n,
            "record_ms_per_token": self.per_token(self.stats.record),
            "encode_ms_per_token": self.per_token(self.stats.encode),
            "wait_ms_per_token": self.per_token(self.stats.wait),
            "profiled_tokens": self.profiled_tokens,
            "profile": profile,
        })
    }

    /// A summary line and, when profiled, a per-kernel table.
    pub fn print(&self, test: &str) {
        let n = self.tokens.max(1) as f64;
        println!(
            "\nGPU, {test}, per token: {:.0} dispatches in {:.1} submits; host {:.3} ms recording + {:.3} ms \
             encoding; {:.3} ms submitting and waiting",
            self.stats.dispatches as f64 / n,
            self.stats.submits as f64 / n,
            self.per_token(self.stats.record),
            self.per_token(self.stats.encode),
            self.per_token(self.stats.wait),
        );
        if self.profile.is_empty() {
            return;
        }
        let pn = self.profiled_tokens.max(1) as f64;
        let total = self.profile_total();
        println!(
            "\nGPU time per kernel over {} profiled tokens ({:.3} ms of kernels per token):\n",
            self.profiled_tokens,
            total.as_secs_f64() * 1e3 / pn
        );
        println!("| kernel | calls/token | µs/token | share | weight GB/s |");
        println!("| --- | ---: | ---: | ---: | ---: |");
        for k in &self.profile {
            let gb_s = if k.weight_bytes > 0 { format!("{:.1}", k.weight_gb_s()) } else { "-".into() };
            println!(
                "| {} | {:.1} | {:.1} | {:.1}% | {gb_s} |",
                k.kernel,
                k.calls as f64 / pn,
                k.gpu_time.as_secs_f64() * 1e6 / pn,
                100.0 * k.gpu_time.as_secs_f64() / total.as_secs_f64().max(1e-12),
            );
        }
    }
}
