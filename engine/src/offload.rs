//! The offload plan: which layers run on the GPU, what that costs in
//! memory, the upload of their weights at model load, and the backends of a
//! session.
//!
//! As in llama.cpp, the last layers go to the GPU first and the output head
//! counts as one layer: with `N` blocks there are `N + 1` layers, `-ngl 1`
//! puts only the head on the GPU and `-ngl N+1` puts everything there. The
//! first layers run on the CPU, so the hidden state crosses once per step.

use std::fmt;
use std::sync::Arc;

use infer_kernels::gpu::GpuContext;

use crate::arch::{Arch, ModelWeights};
use crate::backend::cpu::CpuBackend;
use crate::backend::gpu::{GpuBackend, GpuWeights};
use crate::backend::{Backend, Backends, Slot};
use crate::error::{EngineError, Result};
use crate::kv_cache::{CacheType, KvCache};
use crate::model::{GpuLayers, Model, ModelOptions};
use crate::weights::{WeightId, WeightTable};

/// Headroom left from what the adapter reports when no budget is given
/// (wgpu cannot query free memory).
const DEFAULT_MARGIN: f64 = 0.10;
/// Batch size assumed by the estimate (the session default).
const EST_BATCH: usize = 256;

/// Bytes of one kind of memory use.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MemSplit {
    pub weights: u64,
    pub kv: u64,
    pub scratch: u64,
}

impl MemSplit {
    pub fn total(&self) -> u64 {
        self.weights + self.kv + self.scratch
    }
}

/// What an offload will hold on the GPU and on the CPU, printed before the
/// weights are uploaded.
#[derive(Debug, Clone)]
pub struct OffloadEstimate {
    /// The adapter, when one was opened.
    pub device: Option<String>,
    /// Layers on the GPU (blocks + head) out of `n_total`.
    pub n_gpu: usize,
    pub n_total: usize,
    pub n_ctx: usize,
    pub gpu: MemSplit,
    pub cpu: MemSplit,
    pub budget: Option<u64>,
}

fn mib(b: u64) -> String {
    format!("{:.1} MiB", b as f64 / (1024.0 * 1024.0))
}

impl fmt::Display for OffloadEstimate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let split = |m: &MemSplit| {
            format!("{} weights + {} KV + {} scratch = {}", mib(m.weights), mib(m.kv), mib(m.scratch), mib(m.total()))
        };
        write!(f, "offload: {}/{} layers on the GPU (context {})", self.n_gpu, self.n_total, self.n_ctx)?;
        if let Some(d) = &self.device {
            write!(f, " on {d}")?;
        }
        write!(f, "\n  GPU: {}", split(&self.gpu))?;
        if let Some(b) = self.budget {
            write!(f, " (budget {})", mib(b))?;
        }
        write!(f, "\n  CPU: {}", split(&self.cpu))
    }
}

/// The layers chosen and the estimate behind the choice.
#[derive(Debug, Clone)]
pub struct OffloadPlan {
    /// Transformer blocks (the head is layer `n_layers`).
    pub n_layers: usize,
    /// Layers on the GPU, counted from the head backwards.
    pub n_gpu: usize,
    pub estimate: OffloadEstimate,
}

impl OffloadPlan {
    /// Whether layer `l` (`n_layers` = the output head) runs on the GPU.
    pub fn on_gpu(&self, l: usize) -> bool {
        l + self.n_gpu > self.n_layers
    }
}

/// A model's GPU side: the context, the uploaded weights, the plan.
#[derive(Debug)]
pub struct GpuOffload {
    pub weights: Arc<GpuWeights>,
    pub plan: OffloadPlan,
}

/// The matrices and norm vectors of layer `l` (`n_layers` = the head).
pub fn layer_tensors(w: &ModelWeights, l: usize) -> (Vec<WeightId>, Vec<WeightId>) {
    match w.layers.get(l) {
        Some(lw) => (
            vec![lw.wq, lw.wk, lw.wv, lw.wo, lw.gate, lw.up, lw.down],
            [Some(lw.attn_norm), Some(lw.ffn_norm), lw.q_norm, lw.k_norm, lw.post_attn_norm, lw.post_ffn_norm]
                .into_iter()
                .flatten()
                .collect(),
        ),
        None => (vec![w.output], vec![w.output_norm]),
    }
}

/// Bytes of layer `l`'s weights on the GPU (quantized as in the file, norms as f32).
fn layer_weight_bytes(t: &WeightTable, w: &ModelWeights, l: usize) -> u64 {
    let (mats, norms) = layer_tensors(w, l);
    let m: u64 = mats.iter().map(|&id| t.info(id).n_bytes as u64).sum();
    let n: u64 = norms.iter().map(|&id| (t.info(id).rows * t.info(id).cols * 4) as u64).sum();
    m + n
}

fn layer_name(l: usize, n_layers: usize) -> String {
    if l == n_layers {
        "the output head".into()
    } else {
        format!("layer {l}")
    }
}

/// Chooses how many layers go to the GPU. `costs[l]` is layer `l`'s bytes
/// on the GPU (head last), `fixed` what any offload needs (scratch). An
/// explicit count that does not fit an explicit budget is an error naming
/// the first layer that does not fit.
pub fn choose_gpu_layers(req: GpuLayers, costs: &[u64], fixed: u64, budget: u64, strict: bool) -> Result<usize> {
    let total = costs.len();
    let n = match req {
        GpuLayers::None => return Ok(0),
        GpuLayers::Count(k) => k.min(total),
        GpuLayers::All => total,
        GpuLayers::Ratio(r) => {
            if !(0.0..=1.0).contains(&r) || r.is_nan() {
                return Err(EngineError::InvalidParam(format!("--offload {r} is not within 0.0..=1.0")));
            }
            (r as f64 * total as f64).round() as usize
        }
        GpuLayers::Auto => {
            let mut used = fixed;
            let mut k = 0;
            for &c in costs.iter().rev() {
                if used + c > budget {
                    break;
                }
                used += c;
                k += 1;
            }
            return Ok(k);
        }
    };
    if strict && n > 0 {
        let mut used = fixed;
        for l in (total - n..total).rev() {
            used += costs[l];
            if used > budget {
                return Err(EngineError::Gpu(format!(
                    "{} does not fit: the {n} layers asked need {} by then, over the VRAM budget of {}; \
                     lower --gpu-layers, use --gpu-layers auto, or raise --vram-budget",
                    layer_name(l, total - 1),
                    mib(used),
                    mib(budget)
                )));
            }
        }
    }
    Ok(n)
}

/// Bytes of one backend's activation slots for `n_batch` tokens (logits
/// for the whole batch when it runs the head).
fn scratch_bytes(arch: &Arch, n_batch: usize, head: bool) -> u64 {
    let w = arch.config.widths();
    let per_tok: usize = Slot::ALL.iter().filter(|&&s| s != Slot::Logits).map(|&s| w.width(s)).sum();
    let logits = if head { w.vocab } else { 0 };
    ((per_tok + logits) * n_batch * 4) as u64
}

/// The estimate for `n_gpu` layers on the GPU.
fn estimate(table: &WeightTable, arch: &Arch, n_ctx: usize, cache: CacheType, n_gpu: usize) -> OffloadEstimate {
    let c = &arch.config;
    let n = c.n_layers;
    let on_gpu = |l: usize| l + n_gpu > n;
    let kv_f16 = (2 * n_ctx * c.kv_dim() * 2) as u64;
    let kv_cpu = if cache == CacheType::F32 { 2 * kv_f16 } else { kv_f16 };
    let (mut gpu, mut cpu) = (MemSplit::default(), MemSplit::default());
    for l in 0..=n {
        let wb = layer_weight_bytes(table, &arch.weights, l);
        let (side, kv) = if on_gpu(l) { (&mut gpu, kv_f16) } else { (&mut cpu, kv_cpu) };
        side.weights += wb;
        if l < n {
            side.kv += kv;
        }
    }
    // The embeddings stay in the mmap and are read on the CPU.
    cpu.weights += table.info(arch.weights.token_embd).n_bytes as u64;
    if n_gpu > 0 {
        gpu.scratch = scratch_bytes(arch, EST_BATCH, true);
    }
    if n_gpu < n + 1 {
        cpu.scratch = scratch_bytes(arch, EST_BATCH, n_gpu == 0);
    }
    OffloadEstimate { n_gpu, ..empty_estimate(n + 1, n_ctx) }.with(gpu, cpu)
}

fn empty_estimate(n_total: usize, n_ctx: usize) -> OffloadEstimate {
    OffloadEstimate {
        device: None,
        n_gpu: 0,
        n_total,
        n_ctx,
        gpu: MemSplit::default(),
        cpu: MemSplit::default(),
        budget: None,
    }
}

impl OffloadEstimate {
    fn with(mut self, gpu: MemSplit, cpu: MemSplit) -> Self {
        self.gpu = gpu;
        self.cpu = cpu;
        self
    }
}

/// The context length a session gets for `n_ctx` (0 = min(4096, trained)).
pub fn session_ctx(arch: &Arch, n_ctx: usize) -> usize {
    if n_ctx == 0 {
        arch.config.n_ctx_train.min(4096)
    } else {
        n_ctx
    }
}

/// Plans the offload for `options` and uploads the chosen layers' weights.
/// `on_estimate` sees the estimate before any upload. Returns `None` when
/// nothing goes to the GPU, including when no adapter can be opened (with a
/// warning on stderr: the model then runs on the CPU).
pub fn prepare(
    table: &WeightTable,
    arch: &Arch,
    options: &ModelOptions,
    on_estimate: &mut dyn FnMut(&OffloadEstimate),
    progress: &mut dyn FnMut(f32),
) -> Result<Option<GpuOffload>> {
    if options.gpu_layers == GpuLayers::None {
        return Ok(None);
    }
    if arch.config.rope_freq_scale <= 0.0 {
        return Err(EngineError::InvalidParam(format!("RoPE frequency scale {}", arch.config.rope_freq_scale)));
    }
    let ctx = match GpuContext::new() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("warning: no GPU ({e}); running every layer on the CPU");
            return Ok(None);
        }
    };
    let n = arch.config.n_layers;
    let n_ctx = session_ctx(arch, options.n_ctx);
    let lim = ctx.limits();
    let strict = options.vram_budget.is_some();
    let budget = options
        .vram_budget
        .unwrap_or_else(|| (lim.max_buffer_size as f64 * (1.0 - DEFAULT_MARGIN)) as u64);
    let kv = (2 * n_ctx * arch.config.kv_dim() * 2) as u64;
    let costs: Vec<u64> =
        (0..=n).map(|l| layer_weight_bytes(table, &arch.weights, l) + if l < n { kv } else { 0 }).collect();
    let fixed = scratch_bytes(arch, EST_BATCH, true);
    let n_gpu = choose_gpu_layers(options.gpu_layers, &costs, fixed, budget, strict)?;
    let mut est = estimate(table, arch, n_ctx, CacheType::F16, n_gpu);
    est.device = Some(ctx.info());
    est.budget = Some(budget);
    on_estimate(&est);
    if n_gpu == 0 {
        return Ok(None);
    }
    let plan = OffloadPlan { n_layers: n, n_gpu, estimate: est };
    let mut w = GpuWeights::new(ctx.clone(), table.infos().len());
    let gpu_layers: Vec<usize> = (0..=n).filter(|&l| plan.on_gpu(l)).collect();
    for (i, &l) in gpu_layers.iter().enumerate() {
        let (mats, norms) = layer_tensors(&arch.weights, l);
        for id in mats {
            w.upload_matrix(table, id)?;
        }
        for id in norms {
            w.upload_norm(table, id)?;
        }
        progress(0.1 + 0.9 * (i + 1) as f32 / gpu_layers.len() as f32);
    }
    // Surface allocation errors now rather than at the first token.
    let probe = ctx.buffer(4).map_err(|e| EngineError::Gpu(e.to_string()))?;
    if let Err(e) = ctx.download_f32(&probe) {
        eprintln!("warning: uploading the weights to the GPU failed ({e}); running every layer on the CPU");
        return Ok(None);
    }
    Ok(Some(GpuOffload { weights: Arc::new(w), plan }))
}

/// The backends of a session: the CPU for the first layers (if any stay
/// there), the GPU for the rest. `cpu_only` ignores the offload.
pub(crate) fn build_backends(
    model: &Model,
    n_ctx: usize,
    n_batch: usize,
    cache_type: CacheType,
    cpu_only: bool,
) -> Result<Backends> {
    let c = model.config();
    let n = c.n_layers;
    let gpu = if cpu_only { None } else { model.offload() };
    let on_gpu = |l: usize| gpu.is_some_and(|g| g.plan.on_gpu(l));
    let mut list: Vec<Box<dyn Backend>> = Vec::new();
    let mut plan = vec![0; n + 1];
    if (0..=n).any(|l| !on_gpu(l)) {
        let held: Vec<bool> = (0..n).map(|l| !on_gpu(l)).collect();
        let kv = KvCache::new(n_ctx, c.kv_dim(), &held, cache_type);
        list.push(Box::new(CpuBackend::new(model.weights().clone(), c.widths(), n_batch, kv)));
    }
    if let Some(g) = gpu {
        let held: Vec<bool> = (0..n).map(on_gpu).collect();
        let b = GpuBackend::new(g.weights.clone(), c.widths(), n_batch, n_ctx, &held)?;
        let idx = list.len();
        list.push(Box::new(b));
        for (l, p) in plan.iter_mut().enumerate() {
            if on_gpu(l) {
                *p = idx;
            }
        }
    }
    Ok(Backends::new(list, plan))
}

/// Whether `e` is a GPU failure (device lost, timeout, out of memory) of
/// backends that include a GPU, so that the CPU can take over.
pub(crate) fn gpu_failed(e: &EngineError, bk: &Backends) -> bool {
    matches!(e, EngineError::Gpu(_)) && bk.list.iter().any(|b| b.name().starts_with("gpu"))
}

/// After a GPU failure: warns, replaces `bk` by CPU-only backends (keeping
/// the hook), rebuilds their cache from the `cached` tokens, then runs
/// `chunk` at `pos0` into `logits`. Slower, but the session goes on.
#[allow(clippy::too_many_arguments)]
pub(crate) fn redo_on_cpu(
    err: &EngineError,
    model: &Model,
    bk: &mut Backends,
    cached: &[u32],
    chunk: &[u32],
    which: crate::arch::Logits,
    out: &mut crate::arch::HeadOutput,
    (n_ctx, n_batch, cache_type): (usize, usize, CacheType),
) -> Result<()> {
    eprintln!("warning: {err}; going on with every layer on the CPU (re-evaluating {} cached tokens)", cached.len());
    // The hook sees only the retried chunk, not the replay.
    let hook = bk.hook.take();
    *bk = build_backends(model, n_ctx, n_batch, cache_type, true)?;
    let (arch, table) = (model.arch(), model.weights());
    let mut scratch = crate::arch::HeadOutput::default();
    for (i, c) in cached.chunks(n_batch).enumerate() {
        arch.forward(bk, table, c, i * n_batch, crate::arch::Logits::Last, &mut scratch)?;
    }
    bk.hook = hook;
    arch.forward(bk, table, chunk, cached.len(), which, out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_take_the_last_layers_first() {
        let plan = |n_gpu| OffloadPlan { n_layers: 4, n_gpu, estimate: empty_estimate(5, 16) };
        assert!(plan(1).on_gpu(4) && !plan(1).on_gpu(3));
        assert!((0..=4).all(|l| plan(5).on_gpu(l)));
        assert!((0..=4).all(|l| !plan(0).on_gpu(l)));
        assert!(plan(2).on_gpu(3) && !plan(2).on_gpu(2));
    }

    #[test]
    fn choice_follows_the_request_and_the_budget() {
        let costs = [10, 10, 10, 10, 30];
        assert_eq!(choose_gpu_layers(GpuLayers::All, &costs, 5, 1000, true).unwrap(), 5);
        assert_eq!(choose_gpu_layers(GpuLayers::Count(99), &costs, 5, 1000, true).unwrap(), 5);
        assert_eq!(choose_gpu_layers(GpuLayers::Ratio(0.4), &costs, 5, 1000, true).unwrap(), 2);
        assert_eq!(choose_gpu_layers(GpuLayers::None, &costs, 5, 0, true).unwrap(), 0);
        // Auto: head (30) + fixed (5) = 35, then blocks of 10 while they fit in 58.
        assert_eq!(choose_gpu_layers(GpuLayers::Auto, &costs, 5, 58, false).unwrap(), 3);
        assert_eq!(choose_gpu_layers(GpuLayers::Auto, &costs, 5, 20, false).unwrap(), 0);
        let e = choose_gpu_layers(GpuLayers::Count(3), &costs, 5, 50, true).unwrap_err().to_string();
        assert!(e.contains("layer 2 does not fit"), "{e}");
        // Without an explicit budget the count is taken as asked.
        assert_eq!(choose_gpu_layers(GpuLayers::Count(3), &costs, 5, 50, false).unwrap(), 3);
        assert!(choose_gpu_layers(GpuLayers::Ratio(1.5), &costs, 5, 50, false).is_err());
    }
}
