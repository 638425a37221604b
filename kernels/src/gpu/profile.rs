//! Where a GPU step's time goes: host-side counters kept for every submit
//! ([`GpuStats`]), and per-kernel GPU times from timestamp queries while
//! profiling is on ([`GpuContext::set_profiling`], [`KernelTime`]).
//!
//! ```no_run
//! use infer_kernels::gpu::GpuContext;
//! # fn main() -> Result<(), infer_kernels::KernelError> {
//! let ctx = GpuContext::new()?;
//! let before = ctx.stats();
//! ctx.set_profiling(true);
//! // ... record and submit steps ...
//! let spent = ctx.stats().since(&before);
//! println!("{} dispatches, {:?} waiting", spent.dispatches, spent.wait);
//! for k in ctx.take_profile() {
//!     println!("{}: {} calls, {:?}", k.kernel, k.calls, k.gpu_time);
//! }
//! # Ok(()) }
//! ```

use std::collections::HashMap;
use std::time::Duration;

use super::GpuContext;

/// What the host spent on GPU steps since the context was made.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct GpuStats {
    pub submits: u64,
    pub dispatches: u64,
    /// Recording ops into steps (from a step's first op to its submit).
    pub record: Duration,
    /// Turning a step into a command buffer (bind groups, passes).
    pub encode: Duration,
    /// Submitting and waiting for the GPU, read-backs included.
    pub wait: Duration,
}

impl GpuStats {
    /// The counts and times spent between `earlier` and `self`.
    pub fn since(&self, earlier: &GpuStats) -> GpuStats {
        GpuStats {
            submits: self.submits - earlier.submits,
            dispatches: self.dispatches - earlier.dispatches,
            record: self.record.saturating_sub(earlier.record),
            encode: self.encode.saturating_sub(earlier.encode),
            wait: self.wait.saturating_sub(earlier.wait),
        }
    }
}

/// GPU time of one kernel (and weight type) over the profiled steps.
#[derive(Debug, Clone, PartialEq)]
pub struct KernelTime {
    /// The kernel and its variant, e.g. `Matvec(Q4_0)`.
    pub kernel: String,
    pub calls: u64,
    pub gpu_time: Duration,
    /// Bytes of weights the calls read (matrix kernels; 0 for the others).
    pub weight_bytes: u64,
}

impl KernelTime {
    /// Weight bytes per second of GPU time (0 when not a matrix kernel).
    pub fn weight_gb_s(&self) -> f64 {
        if self.gpu_time.is_zero() {
            return 0.0;
        }
        self.weight_bytes as f64 / self.gpu_time.as_secs_f64() / 1e9
    }
}

/// Per-kernel sums while profiling.
#[derive(Default)]
pub(crate) struct Profile {
    pub on: bool,
    pub kernels: HashMap<String, KernelTime>,
}

impl Profile {
    pub fn add(&mut self, kernel: String, ns: f64, weight_bytes: u64) {
        let e = self.kernels.entry(kernel.clone()).or_insert(KernelTime {
            kernel,
            calls: 0,
            gpu_time: Duration::ZERO,
            weight_bytes: 0,
        });
        e.calls += 1;
        e.gpu_time += Duration::from_nanos(ns.max(0.0) as u64);
        e.weight_bytes += weight_bytes;
    }
}

impl GpuContext {
    /// Host-side counters of every submit so far.
    pub fn stats(&self) -> GpuStats {
        self.inner.stats.lock().map_or(GpuStats::default(), |s| *s)
    }

    /// Turns per-kernel GPU timing on or off. While on, every dispatch runs
    /// in its own pass with timestamps (a little slower). Returns whether the
    /// device can time kernels at all (`TIMESTAMP_QUERY`).
    pub fn set_profiling(&self, on: bool) -> bool {
        if let Ok(mut p) = self.inner.profile.lock() {
            p.on = on && self.inner.has_timestamps;
        }
        self.inner.has_timestamps
    }

    /// Whether kernel timing is on.
    pub fn is_profiling(&self) -> bool {
        self.inner.profile.lock().is_ok_and(|p| p.on)
    }

    /// The per-kernel times gathered so far, slowest first; clears them.
    pub fn take_profile(&self) -> Vec<KernelTime> {
        let mut v: Vec<KernelTime> = self
            .inner
            .profile
            .lock()
            .map(|mut p| p.kernels.drain().map(|(_, k)| k).collect())
            .unwrap_or_default();
        v.sort_by_key(|k| std::cmp::Reverse(k.gpu_time));
        v
    }
}
