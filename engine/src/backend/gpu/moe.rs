//! The mixture-of-experts feed-forward on the GPU: router logits on the
//! device, read back for the routing (a few values per token), then each
//! chosen expert once for all its tokens (their rows gathered by copies),
//! its weighted output added into each token's row.

use super::{gpu_err, sb, GpuBackend};
use crate::backend::{route, Activation, MoeParams, MoeWeights, Slot};
use crate::error::{EngineError, Result};

pub(super) fn moe_ffn(g: &mut GpuBackend, x: Slot, out: Slot, w: &MoeWeights, p: &MoeParams) -> Result<()> {
    let (n, dim, n_exp, f) = (g.n_tokens, g.widths.dim, w.experts.len(), p.expert_ffn);
    if n == 0 {
        return Ok(());
    }
    if f > g.widths.ffn_dim {
        return Err(EngineError::Gpu(format!("expert width {f} exceeds the gate slot's {}", g.widths.ffn_dim)));
    }
    let weights = g.w.clone();
    let router = weights.matrix(w.router)?;
    if router.rows() != n_exp || router.cols() != dim {
        return Err(EngineError::Gpu(format!("router is {}×{}, want {n_exp}×{dim}", router.rows(), router.cols())));
    }
    let [xa, d, lg] = match g.moe.take() {
        Some(s) if s[2].len() >= g.n_batch * n_exp => s,
        _ => {
            let b = |len: usize| g.ctx.buffer(len).map_err(gpu_err);
            [b(g.n_batch * dim)?, b(g.n_batch * dim)?, b(g.n_batch * n_exp)?]
        }
    };
    let r = run(g, x, out, w, p, (&xa, &d, &lg), router);
    g.moe = Some([xa, d, lg]);
    r
}

fn run(
    g: &mut GpuBackend,
    x: Slot,
    out: Slot,
    w: &MoeWeights,
    p: &MoeParams,
    (xa, d, lg): (&infer_kernels::gpu::GpuBuffer, &infer_kernels::gpu::GpuBuffer, &infer_kernels::gpu::GpuBuffer),
    router: &infer_kernels::gpu::GpuWeight,
) -> Result<()> {
    let (n, dim, n_exp, f) = (g.n_tokens, g.widths.dim, w.experts.len(), p.expert_ffn);
    // Router logits [n, n_experts], read back for the top-k.
    g.rec(|st, b, _, _| {
        st.matmul(router, sb(b, x)?, n, lg)?;
        st.read_n(lg, n * n_exp)
    })?;
    let reads = g.flush()?;
    let logits = reads.last().map(|r| r.f32()).unwrap_or_default();
    if logits.len() < n * n_exp {
        return Err(EngineError::Gpu(format!("router read returned {} values, {} asked", logits.len(), n * n_exp)));
    }
    let by_expert = route(&logits[..n * n_exp], n_exp, p);
    let weights = g.w.clone();
    let mut mats = Vec::new();
    for (e, toks) in by_expert.iter().enumerate().filter(|(_, t)| !t.is_empty()) {
        let ex = &w.experts[e];
        mats.push((weights.matrix(ex.gate)?, weights.matrix(ex.up)?, weights.matrix(ex.down)?, toks));
    }
    g.rec(|st, b, _, _| {
        let (xs, os, gs, us) = (sb(b, x)?, sb(b, out)?, sb(b, Slot::Gate)?, sb(b, Slot::Up)?);
        st.fill(os, 0.0, n * dim)?;
        for &(mg, mu, md, toks) in &mats {
            let m = toks.len();
            // One token needs no gather: its row is the whole input.
            let src = if n == 1 {
                xs
            } else {
                for (j, &(t, _)) in toks.iter().enumerate() {
                    st.copy(xs, t * dim, xa, j * dim, dim)?;
                }
                xa
            };
            st.matmul(mg, src, m, gs)?;
            st.matmul(mu, src, m, us)?;
            match p.act {
                Activation::SwiGlu => st.silu_mul(gs, us, m * f)?,
                Activation::GeGlu => st.gelu_mul(gs, us, m * f)?,
            }
            st.matmul(md, gs, m, d)?;
            for (j, &(t, wt)) in toks.iter().enumerate() {
                st.axpy(os, t * dim, d, j * dim, dim, wt)?;
            }
        }
        Ok(())
    })
}
