//! The offload plan: which layers (and which layers' experts) run on the
//! GPU, and what that costs in memory. It reads the architecture's tensor
//! table and the weight table only; the upload ([`super::upload`]) and the
//! backends of a session ([`super::exec`]) follow from it.
//!
//! As in llama.cpp, the last layers go to the GPU first and the output head
//! counts as one layer: with `N` blocks there are `N + 1` layers, `-ngl 1`
//! puts only the head on the GPU and `-ngl N+1` puts everything there. The
//! first layers run on the CPU, so the hidden state crosses once per step.

use std::fmt;

use crate::arch::Arch;
use crate::backend::gpu::GpuBackend;
use crate::backend::{Op, Slot};
use crate::error::{EngineError, Result};
use crate::kv_cache::CacheType;
use crate::weights::WeightTable;

/// Batch size assumed by the estimate (the session default).
pub(crate) const EST_BATCH: usize = 256;

/// The GPU offload slider: how many layers go to the GPU. As in llama.cpp,
/// the last layers go first and the output head counts as one layer.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum GpuLayers {
    /// Everything on the CPU.
    #[default]
    None,
    /// This many layers (the output head first, then the last blocks).
    Count(usize),
    /// A fraction 0.0..=1.0 of all layers (blocks + output head).
    Ratio(f32),
    /// Every layer.
    All,
    /// As many as fit in the VRAM budget.
    Auto,
}

impl std::str::FromStr for GpuLayers {
    type Err = String;
    /// Parses `all`, `auto`, `none` or a layer count.
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "all" | "max" => Ok(GpuLayers::All),
            "auto" => Ok(GpuLayers::Auto),
            "none" => Ok(GpuLayers::None),
            n => n
                .parse::<usize>()
                .map(|n| if n == 0 { GpuLayers::None } else { GpuLayers::Count(n) })
                .map_err(|_| format!("--gpu-layers takes a number, \"all\" or \"auto\", not \"{n}\"")),
        }
    }
}

/// Which layers keep their MoE expert weights on the CPU while the rest of
/// the layer is offloaded (llama.cpp's `--cpu-moe` / `--n-cpu-moe N`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CpuMoe {
    /// Experts go where their layer goes.
    #[default]
    None,
    /// Every layer's experts stay on the CPU.
    All,
    /// The experts of the first N layers stay on the CPU.
    First(usize),
}

impl CpuMoe {
    /// Whether layer `l`'s experts are kept on the CPU.
    pub fn keeps(self, l: usize) -> bool {
        match self {
            CpuMoe::None => false,
            CpuMoe::All => true,
            CpuMoe::First(n) => l < n,
        }
    }
}

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
    /// Layers asked for the GPU, counted from the head backwards.
    pub n_gpu: usize,
    /// Layers in that range that stay on the CPU: a weight type the GPU
    /// kernels do not run ([`GpuBackend::supports`]).
    pub cpu_fallback: Vec<usize>,
    /// Whose experts stay on the CPU.
    pub cpu_moe: CpuMoe,
    pub estimate: OffloadEstimate,
}

impl OffloadPlan {
    /// A plan of `n_gpu` layers (counted from the head) with nothing else kept back.
    pub fn new(n_layers: usize, n_gpu: usize, estimate: OffloadEstimate) -> Self {
        OffloadPlan { n_layers, n_gpu, cpu_fallback: Vec::new(), cpu_moe: CpuMoe::None, estimate }
    }
    /// Whether layer `l` (`n_layers` = the output head) runs on the GPU.
    pub fn on_gpu(&self, l: usize) -> bool {
        l + self.n_gpu > self.n_layers && !self.cpu_fallback.contains(&l)
    }
    /// Whether layer `l`'s experts (if any) run on the GPU.
    pub fn experts_on_gpu(&self, l: usize) -> bool {
        self.on_gpu(l) && !self.cpu_moe.keeps(l)
    }
}

/// The first tensor of layer `l` the GPU cannot run, as `(name, type)`.
pub fn gpu_unsupported(t: &WeightTable, arch: &Arch, l: usize) -> Option<(String, infer_gguf::QuantType)> {
    arch.weights.layer_tensors(l).into_iter().find_map(|(role, id)| {
        let i = t.info(id);
        let op = if role.is_vector() { Op::Vector } else { Op::Matmul };
        (!GpuBackend::supports(op, i.ty)).then(|| (i.name.clone(), i.ty))
    })
}

/// Bytes of layer `l`'s weights (quantized as in the file, vectors as
/// f32) split into what goes with the layer and what its experts hold.
fn layer_bytes(t: &WeightTable, arch: &Arch, l: usize) -> (u64, u64) {
    let (mut layer, mut experts) = (0, 0);
    for (role, id) in arch.weights.layer_tensors(l) {
        let i = t.info(id);
        if role.is_vector() {
            layer += (i.rows * i.cols * 4) as u64;
        } else if role.is_expert() {
            experts += i.n_bytes as u64;
        } else {
            layer += i.n_bytes as u64;
        }
    }
    (layer, experts)
}

/// Bytes layer `l` puts on the GPU when offloaded (its experts unless
/// `cpu_moe` keeps them back), and the experts' bytes left on the CPU.
pub(crate) fn gpu_layer_bytes(t: &WeightTable, arch: &Arch, l: usize, cpu_moe: CpuMoe) -> (u64, u64) {
    let (layer, experts) = layer_bytes(t, arch, l);
    if cpu_moe.keeps(l) && l < arch.config.n_layers {
        (layer, experts)
    } else {
        (layer + experts, 0)
    }
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
pub(crate) fn scratch_bytes(arch: &Arch, n_batch: usize, head: bool) -> u64 {
    let w = arch.config.widths();
    let per_tok: usize = Slot::ALL.iter().filter(|&&s| s != Slot::Logits).map(|&s| w.width(s)).sum();
    let logits = if head { w.vocab } else { 0 };
    ((per_tok + logits) * n_batch * 4) as u64
}

/// The estimate of `plan`'s placement (its own estimate is not read).
pub(crate) fn estimate(table: &WeightTable, arch: &Arch, n_ctx: usize, cache: CacheType, plan: &OffloadPlan) -> OffloadEstimate {
    let c = &arch.config;
    let n = c.n_layers;
    let n_gpu = (0..=n).filter(|&l| plan.on_gpu(l)).count();
    let kv_f16 = (2 * n_ctx * c.kv_dim() * 2) as u64;
    let kv_cpu = if cache == CacheType::F32 { 2 * kv_f16 } else { kv_f16 };
    let (mut gpu, mut cpu) = (MemSplit::default(), MemSplit::default());
    for l in 0..=n {
        let (layer, experts) = layer_bytes(table, arch, l);
        let (side, kv) = if plan.on_gpu(l) { (&mut gpu, kv_f16) } else { (&mut cpu, kv_cpu) };
        side.weights += layer;
        if l < n {
            side.kv += kv;
        }
        if plan.experts_on_gpu(l) { gpu.weights += experts } else { cpu.weights += experts }
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

pub(crate) fn empty_estimate(n_total: usize, n_ctx: usize) -> OffloadEstimate {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_take_the_last_layers_first() {
        let plan = |n_gpu| OffloadPlan::new(4, n_gpu, empty_estimate(5, 16));
        assert!(plan(1).on_gpu(4) && !plan(1).on_gpu(3));
        assert!((0..=4).all(|l| plan(5).on_gpu(l)));
        assert!((0..=4).all(|l| !plan(0).on_gpu(l)));
        assert!(plan(2).on_gpu(3) && !plan(2).on_gpu(2));
        // A layer the GPU cannot run stays behind; --n-cpu-moe keeps experts back.
        let mut p = plan(5);
        p.cpu_fallback = vec![1];
        p.cpu_moe = CpuMoe::First(3);
        assert!(!p.on_gpu(1) && p.on_gpu(2) && !p.experts_on_gpu(2) && p.experts_on_gpu(3));
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
