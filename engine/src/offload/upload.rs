//! The GPU side of a model: open the adapter, plan the layers against its
//! budget, upload the chosen layers' weights (still quantized) once at load.

use std::sync::Arc;

use infer_kernels::gpu::GpuContext;

use super::plan::{
    choose_gpu_layers, estimate, gpu_layer_bytes, gpu_unsupported, scratch_bytes, session_ctx, CpuMoe, GpuLayers,
    OffloadEstimate, OffloadPlan, EST_BATCH,
};
use crate::arch::Arch;
use crate::backend::gpu::GpuWeights;
use crate::error::{EngineError, Result};
use crate::kv_cache::CacheType;
use crate::arch::{LayerWeights, Role};
use crate::weights::{WeightId, WeightTable};

/// Headroom left from what the adapter reports when no budget is given
/// (wgpu cannot query free memory).
const DEFAULT_MARGIN: f64 = 0.10;

/// What the offload is asked to do.
#[derive(Debug, Clone, Copy, Default)]
pub struct OffloadRequest {
    pub gpu_layers: GpuLayers,
    /// GPU memory the offload may use; default: what the adapter reports, minus a margin.
    pub vram_budget: Option<u64>,
    /// Context the estimate assumes per session (0 = default).
    pub n_ctx: usize,
    pub cpu_moe: CpuMoe,
}

/// A model's GPU side: the uploaded weights and the plan.
#[derive(Debug)]
pub struct GpuOffload {
    pub weights: Arc<GpuWeights>,
    pub plan: OffloadPlan,
}

/// Plans the offload for `req` and uploads the chosen layers' weights.
/// `on_estimate` sees the estimate before any upload. Returns `None` when
/// nothing goes to the GPU, including when no adapter can be opened (said
/// in `warnings`: the model then runs on the CPU).
pub fn prepare(
    table: &WeightTable,
    arch: &Arch,
    req: &OffloadRequest,
    on_estimate: &mut dyn FnMut(&OffloadEstimate),
    progress: &mut dyn FnMut(f32),
    warnings: &mut Vec<String>,
) -> Result<Option<GpuOffload>> {
    if req.gpu_layers == GpuLayers::None {
        return Ok(None);
    }
    if arch.config.rope.freq_scale <= 0.0 {
        return Err(EngineError::InvalidParam(format!("RoPE frequency scale {}", arch.config.rope.freq_scale)));
    }
    let ctx = match GpuContext::new() {
        Ok(c) => c,
        Err(e) => {
            warnings.push(format!("no GPU ({e}); running every layer on the CPU"));
            return Ok(None);
        }
    };
    let n = arch.config.n_layers;
    let n_ctx = session_ctx(arch, req.n_ctx);
    let lim = ctx.limits();
    let strict = req.vram_budget.is_some();
    let budget = req.vram_budget.unwrap_or_else(|| (lim.max_buffer_size as f64 * (1.0 - DEFAULT_MARGIN)) as u64);
    let kv = (2 * n_ctx * arch.config.kv_dim() * 2) as u64;
    let costs: Vec<u64> =
        (0..=n).map(|l| gpu_layer_bytes(table, arch, l, req.cpu_moe).0 + if l < n { kv } else { 0 }).collect();
    let fixed = scratch_bytes(arch, EST_BATCH, true);
    let n_gpu = choose_gpu_layers(req.gpu_layers, &costs, fixed, budget, strict)?;
    let mut plan = OffloadPlan::new(n, n_gpu, super::plan::empty_estimate(n + 1, n_ctx));
    plan.cpu_moe = req.cpu_moe;
    // A layer holding a weight type without a GPU kernel stays on the CPU.
    plan.cpu_fallback = (0..=n).filter(|&l| plan.on_gpu(l) && gpu_unsupported(table, arch, l).is_some()).collect();
    let mut est = estimate(table, arch, n_ctx, CacheType::F16, &plan);
    est.device = Some(ctx.info());
    est.budget = Some(budget);
    plan.estimate = est.clone();
    on_estimate(&est);
    if !(0..=n).any(|l| plan.on_gpu(l)) {
        return Ok(None);
    }
    let mut w = GpuWeights::new(ctx.clone(), table.infos().len());
    let gpu_layers: Vec<usize> = (0..=n).filter(|&l| plan.on_gpu(l)).collect();
    for (i, &l) in gpu_layers.iter().enumerate() {
        let fused = match arch.weights.layers.get(l) {
            Some(lw) => upload_fused(&mut w, table, lw)?,
            None => Vec::new(),
        };
        for (role, id) in arch.weights.layer_tensors(l) {
            if role.is_vector() {
                w.upload_norm(table, id)?;
            } else if fused.contains(&id) {
                // Uploaded within a fused weight.
            } else if !role.is_expert() || plan.experts_on_gpu(l) {
                w.upload_matrix(table, id)?;
            }
        }
        progress(0.1 + 0.9 * (i + 1) as f32 / gpu_layers.len() as f32);
    }
    // Surface allocation errors now rather than at the first token.
    let probe = ctx.buffer(4).map_err(|e| EngineError::Gpu(e.to_string()))?;
    if let Err(e) = ctx.download_f32(&probe) {
        warnings.push(format!("uploading the weights to the GPU failed ({e}); running every layer on the CPU"));
        return Ok(None);
    }
    Ok(Some(GpuOffload { weights: Arc::new(w), plan }))
}

/// The matrices of one input that run as one product when fused: q|k|v and gate|up.
const FUSABLE: [&[Role]; 2] = [&[Role::Wq, Role::Wk, Role::Wv], &[Role::Gate, Role::Up]];

/// Uploads each run of consecutive fusable matrices of one type and row
/// length (two or three) of layer `lw` as one weight; returns their ids.
fn upload_fused(w: &mut GpuWeights, table: &WeightTable, lw: &LayerWeights) -> Result<Vec<WeightId>> {
    let mut done = Vec::new();
    for roles in FUSABLE {
        let ids: Vec<WeightId> = roles.iter().filter_map(|&r| lw.get(r)).collect();
        let key = |id: WeightId| (table.info(id).ty, table.info(id).cols);
        let mut start = 0;
        while start < ids.len() {
            let run = ids[start..].iter().take_while(|&&id| key(id) == key(ids[start])).count();
            if run >= 2 {
                // q|k|v biases (qwen2) ride with the fused weight when every matrix has one.
                let biases: Option<Vec<WeightId>> =
                    (roles[0] == Role::Wq && run == 3).then(|| [Role::Bq, Role::Bk, Role::Bv].iter().map(|&r| lw.get(r)).collect()).flatten();
                w.upload_fused(table, &ids[start..start + run], biases.as_deref())?;
                done.extend_from_slice(&ids[start..start + run]);
            }
            start += run;
        }
    }
    Ok(done)
}
