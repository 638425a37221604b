//! The backends of a session, from the offload plan: the CPU for the
//! layers (and experts) that stay there, the GPU for the rest; and the
//! fallback to the CPU when the GPU fails mid-run.

use std::sync::Arc;

use super::upload::GpuOffload;
use crate::arch::{Arch, HeadOutput, Logits};
use crate::backend::cpu::CpuBackend;
use crate::backend::gpu::GpuBackend;
use crate::backend::{Backend, Backends};
use crate::error::{EngineError, Result};
use crate::kv_cache::{CacheType, KvCache};
use crate::weights::WeightTable;

/// What a session's backends are built from.
#[derive(Clone, Copy)]
pub struct ExecModel<'a> {
    pub arch: &'a Arch,
    pub table: &'a Arc<WeightTable>,
    /// `None` runs everything on the CPU.
    pub gpu: Option<&'a GpuOffload>,
}

/// Sizes of a session's buffers.
#[derive(Debug, Clone, Copy)]
pub struct ExecParams {
    /// Sequences with a KV cache region each.
    pub n_seq: usize,
    /// Positions per sequence.
    pub n_ctx: usize,
    pub n_batch: usize,
    pub cache_type: CacheType,
}

/// The backends of a session: the CPU for the first layers (if any stay
/// there, or any layer's experts do), the GPU for the rest.
pub(crate) fn build_backends(m: ExecModel, p: ExecParams) -> Result<Backends> {
    let c = &m.arch.config;
    let n = c.n_layers;
    let on_gpu = |l: usize| m.gpu.is_some_and(|g| g.plan.on_gpu(l));
    let experts_on_gpu = |l: usize| m.gpu.is_some_and(|g| g.plan.experts_on_gpu(l));
    let moe = c.moe.is_some();
    let mut list: Vec<Box<dyn Backend>> = Vec::new();
    let mut plan = vec![0; n + 1];
    let mut moe_plan = vec![0; n];
    if (0..=n).any(|l| !on_gpu(l)) || (moe && (0..n).any(|l| !experts_on_gpu(l))) {
        let held: Vec<bool> = (0..n).map(|l| !on_gpu(l)).collect();
        let kv = KvCache::new(p.n_seq, p.n_ctx, c.kv_dim(), &held, p.cache_type);
        list.push(Box::new(CpuBackend::new(m.table.clone(), c.widths(), p.n_batch, kv)));
    }
    if let Some(g) = m.gpu {
        let held: Vec<bool> = (0..n).map(on_gpu).collect();
        let b = GpuBackend::new(g.weights.clone(), c.widths(), p.n_batch, (p.n_seq, p.n_ctx), &held)?;
        let idx = list.len();
        list.push(Box::new(b));
        for (l, slot) in plan.iter_mut().enumerate() {
            if on_gpu(l) {
                *slot = idx;
            }
        }
        for (l, slot) in moe_plan.iter_mut().enumerate() {
            if experts_on_gpu(l) {
                *slot = idx;
            }
        }
    }
    let mut bk = Backends::new(list, plan);
    if moe {
        bk.moe_plan = moe_plan;
    }
    Ok(bk)
}

/// Whether `e` is a GPU failure (device lost, timeout, out of memory) of
/// backends that include a GPU, so that the CPU can take over.
pub(crate) fn gpu_failed(e: &EngineError, bk: &Backends) -> bool {
    matches!(e, EngineError::Gpu(_)) && bk.list.iter().any(|b| b.name().starts_with("gpu"))
}

/// After a GPU failure: warns, replaces `bk` by CPU-only backends (keeping
/// the hook), rebuilds their cache from the `cached` tokens, then runs
/// `chunk` after them into `out`. Slower, but the session goes on.
pub(crate) fn redo_on_cpu(
    err: &EngineError,
    m: ExecModel,
    p: ExecParams,
    bk: &mut Backends,
    (cached, chunk): (&[u32], &[u32]),
    which: Logits,
    out: &mut HeadOutput,
) -> Result<()> {
    eprintln!("warning: {err}; going on with every layer on the CPU (re-evaluating {} cached tokens)", cached.len());
    // The hook sees only the retried chunk, not the replay.
    let hook = bk.hook.take();
    *bk = build_backends(ExecModel { gpu: None, ..m }, p)?;
    let mut scratch = HeadOutput::default();
    for (i, c) in cached.chunks(p.n_batch).enumerate() {
        m.arch.forward(bk, m.table, c, i * p.n_batch, Logits::Last, &mut scratch)?;
    }
    bk.hook = hook;
    m.arch.forward(bk, m.table, chunk, cached.len(), which, out)
}
