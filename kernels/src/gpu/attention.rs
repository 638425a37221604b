//! Attention over the f16 KV cache: the cache itself, the call's shape, and
//! the choice between the tiled kernel (a KV head's query group per
//! workgroup, `attention_tiled.wgsl`) and the per-head one (`attention.wgsl`),
//! with the split-key reduce of either.

use bytemuck::{Pod, Zeroable};

use super::ops::{need, shape_err, u32_of};
use super::shaders::{AttnTile, Kernel};
use super::{GpuBuffer, GpuContext, GpuStep};
use crate::KernelError;

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct AttnParams {
    n_q: u32,
    n_heads: u32,
    n_kv_heads: u32,
    head_dim: u32,
    pos0: u32,
    window: u32,
    n_splits: u32,
    span: u32,
    scale: f32,
    tok0: u32,
    kv_base: u32,
    /// `attention_tiled.wgsl`: heads of a group per workgroup, chunks of a
    /// group, query tokens per workgroup.
    hg: u32,
    head_chunks: u32,
    qt: u32,
    _pad0: u32,
    _pad1: u32,
}

/// Largest head_dim the attention kernel holds (64 threads x 8 dims each).
const MAX_HEAD_DIM: usize = 512;
/// Keys per split in decode: enough work per workgroup, enough workgroups.
const KEYS_PER_SPLIT: usize = 256;
const MAX_SPLITS: usize = 32;
/// Query rows (token x head of a group) one tiled-attention workgroup serves.
const TILED_ROWS: usize = 16;
/// Tiled attention: workgroups to aim for when splitting the keys (enough
/// to fill a large GPU), fewest keys per split (shorter contexts keep one
/// split and no reduce dispatch), most splits.
const TILED_TARGET_GROUPS: usize = 256;
const TILED_MIN_SPLIT_KEYS: usize = 256;
const TILED_MAX_SPLITS: usize = 64;

/// One layer's keys and values on the GPU, `max_ctx` rows of `kv_dim`
/// (= n_kv_heads * head_dim) values each, stored as f16.
#[derive(Debug)]
pub struct GpuKvCache {
    pub(super) k: wgpu::Buffer,
    pub(super) v: wgpu::Buffer,
    pub(super) max_ctx: usize,
    pub(super) kv_dim: usize,
}

impl GpuKvCache {
    /// Allocates a zeroed cache (`kv_dim` must be even).
    pub fn new(ctx: &GpuContext, max_ctx: usize, kv_dim: usize) -> Result<Self, KernelError> {
        if kv_dim == 0 || kv_dim % 2 != 0 {
            return Err(KernelError::Shape {
                op: "gpu kv cache",
                detail: format!("kv_dim {kv_dim} must be even"),
            });
        }
        let bytes = max_ctx as u64 * kv_dim as u64 * 2;
        let max = ctx.max_storage_binding();
        if bytes > max {
            let what = format!(
                "the KV cache of {max_ctx} rows x {kv_dim} f16 (K and V each; at most {} rows fit)",
                max / (kv_dim as u64 * 2)
            );
            return Err(super::context::over_binding(&what, bytes, max));
        }
        let make = |label| {
            ctx.inner.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(label),
                size: bytes.max(4),
                usage: wgpu::BufferUsages::STORAGE
                    | wgpu::BufferUsages::COPY_DST
                    | wgpu::BufferUsages::COPY_SRC,
                mapped_at_creation: false,
            })
        };
        Ok(Self {
            k: make("k cache"),
            v: make("v cache"),
            max_ctx,
            kv_dim,
        })
    }

    /// Rows the cache can hold.
    pub fn max_ctx(&self) -> usize {
        self.max_ctx
    }

    /// Values per row.
    pub fn kv_dim(&self) -> usize {
        self.kv_dim
    }
}

/// The shape of an attention call: `n_q` queries at positions
/// `pos0..pos0 + n_q`, each seeing cached keys at positions
/// `max(0, p - window + 1)..=p` (`window` 0 = unlimited).
#[derive(Debug, Clone, Copy, Default)]
pub struct AttnShape {
    pub n_q: usize,
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub head_dim: usize,
    pub pos0: usize,
    pub window: usize,
    /// Usually `1 / sqrt(head_dim)`.
    pub scale: f32,
    /// First row of `q` and `out` (one sequence's segment of a batch).
    pub tok0: usize,
    /// Cache row of the sequence's position 0.
    pub kv_base: usize,
}

impl GpuStep {
    /// Causal attention of `q` (`[n_q][n_heads][head_dim]`) over `cache`,
    /// which must already hold the keys/values of positions up to
    /// `pos0 + n_q - 1` (see [`GpuStep::kv_write`]); `out` has q's shape.
    /// Keys are split over workgroups with an online softmax, then reduced.
    pub fn attention(
        &mut self,
        q: &GpuBuffer,
        cache: &GpuKvCache,
        s: AttnShape,
        out: &GpuBuffer,
    ) -> Result<(), KernelError> {
        const OP: &str = "gpu attention";
        if s.n_kv_heads == 0
            || s.n_heads % s.n_kv_heads != 0
            || s.n_kv_heads * s.head_dim != cache.kv_dim
        {
            return Err(shape_err(
                OP,
                format!(
                    "{} heads over {} kv heads of {} (cache rows of {})",
                    s.n_heads, s.n_kv_heads, s.head_dim, cache.kv_dim
                ),
            ));
        }
        if s.head_dim > MAX_HEAD_DIM || s.head_dim % 2 != 0 {
            return Err(shape_err(
                OP,
                format!("head_dim {} (even, at most {MAX_HEAD_DIM})", s.head_dim),
            ));
        }
        let end = s.pos0 + s.n_q;
        if s.kv_base + end > cache.max_ctx {
            return Err(shape_err(
                OP,
                format!("positions up to {end} past the cache's {}", cache.max_ctx),
            ));
        }
        let n = (s.tok0 + s.n_q) * s.n_heads * s.head_dim;
        need(OP, "q", q, n)?;
        need(OP, "out", out, n)?;
        if let Some(tile) = self.tiled_attention(&s) {
            return self.attention_tiled(q, cache, s, out, tile);
        }
        // Few query workgroups (decode): split the keys for parallelism.
        let n_splits = if s.n_q * s.n_heads >= 64 {
            1
        } else {
            end.div_ceil(KEYS_PER_SPLIT).clamp(1, MAX_SPLITS)
        };
        let p = attn_params(OP, &s, n_splits, [0, 0, 0])?;
        let heads = u32_of(OP, s.n_heads)?;
        let nq = u32_of(OP, s.n_q)?;
        if n_splits == 1 {
            return self.dispatch(
                Kernel::AttentionDirect,
                &p,
                &[(1, q.raw()), (2, &cache.k), (3, &cache.v), (4, out.raw())],
                [heads, nq, 1],
            );
        }
        let part = self.attention_partials(&s, n_splits)?;
        self.dispatch(
            Kernel::Attention,
            &p,
            &[(1, q.raw()), (2, &cache.k), (3, &cache.v), (4, part.raw())],
            [heads, nq, n_splits as u32],
        )?;
        self.dispatch(
            Kernel::AttentionReduce,
            &p,
            &[(1, part.raw()), (2, out.raw())],
            [heads, nq, 1],
        )?;
        self.scratch.push(part);
        Ok(())
    }

    /// The partials buffer of a split attention: (m, l, acc[head_dim]) per
    /// query, head and split.
    fn attention_partials(&self, s: &AttnShape, n_splits: usize) -> Result<GpuBuffer, KernelError> {
        self.ctx.buffer(s.n_q * s.n_heads * n_splits * (s.head_dim + 2))
    }

    /// The variant of the tiled attention kernel for `s`, if it takes the
    /// shape (head_dim a multiple of 8, at most 256) and the device has its
    /// workgroup memory; CPU-device kernels keep the per-head kernel.
    fn tiled_attention(&self, s: &AttnShape) -> Option<AttnTile> {
        let hd256 = s.head_dim > 128;
        // Words of q_sh, kv_sh, s_sh and p_sh in attention_tiled.wgsl.
        let (hd_max, bkt) = if hd256 { (256, 16) } else { (128, 32) };
        let words = TILED_ROWS * (hd_max + 2) + bkt * (hd_max / 2 + 1) + 2 * TILED_ROWS * (bkt + 1);
        let fits = s.head_dim % 8 == 0
            && s.head_dim <= 256
            && (words * 4) as u64 <= self.ctx.inner.limits.max_compute_workgroup_storage_size as u64;
        (fits && !self.ctx.uses_cpu_device_kernels()).then_some(AttnTile { hd256, direct: false })
    }

    /// [`GpuStep::attention`] by `attention_tiled.wgsl`, shape checked.
    fn attention_tiled(
        &mut self,
        q: &GpuBuffer,
        cache: &GpuKvCache,
        s: AttnShape,
        out: &GpuBuffer,
        tile: AttnTile,
    ) -> Result<(), KernelError> {
        const OP: &str = "gpu attention";
        let group = s.n_heads / s.n_kv_heads;
        let hg = group.min(TILED_ROWS);
        let head_chunks = group.div_ceil(hg);
        let qt = (TILED_ROWS / hg).max(1);
        let q_blocks = s.n_q.div_ceil(qt);
        let groups = s.n_kv_heads * head_chunks * q_blocks;
        let end = s.pos0 + s.n_q;
        // Split the keys until the device has enough workgroups.
        let n_splits = TILED_TARGET_GROUPS
            .div_ceil(groups)
            .min(end.div_ceil(TILED_MIN_SPLIT_KEYS))
            .clamp(1, TILED_MAX_SPLITS);
        let p = attn_params(OP, &s, n_splits, [hg, head_chunks, qt])?;
        let grid = [u32_of(OP, s.n_kv_heads * head_chunks)?, u32_of(OP, q_blocks)?, n_splits as u32];
        if n_splits == 1 {
            let kernel = Kernel::AttentionTiled(AttnTile { direct: true, ..tile });
            return self.dispatch(kernel, &p, &[(1, q.raw()), (2, &cache.k), (3, &cache.v), (4, out.raw())], grid);
        }
        let part = self.attention_partials(&s, n_splits)?;
        self.dispatch(
            Kernel::AttentionTiled(tile),
            &p,
            &[(1, q.raw()), (2, &cache.k), (3, &cache.v), (4, part.raw())],
            grid,
        )?;
        self.dispatch(
            Kernel::AttentionReduce,
            &p,
            &[(1, part.raw()), (2, out.raw())],
            [u32_of(OP, s.n_heads)?, u32_of(OP, s.n_q)?, 1],
        )?;
        self.scratch.push(part);
        Ok(())
    }
}

/// The params of an attention dispatch over `n_splits` splits of the keys;
/// `[hg, head_chunks, qt]` for the tiled kernel.
fn attn_params(op: &'static str, s: &AttnShape, n_splits: usize, tiled: [usize; 3]) -> Result<AttnParams, KernelError> {
    let end = s.pos0 + s.n_q;
    Ok(AttnParams {
        n_q: u32_of(op, s.n_q)?,
        n_heads: u32_of(op, s.n_heads)?,
        n_kv_heads: u32_of(op, s.n_kv_heads)?,
        head_dim: u32_of(op, s.head_dim)?,
        pos0: u32_of(op, s.pos0)?,
        window: u32_of(op, s.window)?,
        n_splits: u32_of(op, n_splits)?,
        span: u32_of(op, end.div_ceil(n_splits))?,
        scale: s.scale,
        tok0: u32_of(op, s.tok0)?,
        kv_base: u32_of(op, s.kv_base)?,
        hg: u32_of(op, tiled[0])?,
        head_chunks: u32_of(op, tiled[1])?,
        qt: u32_of(op, tiled[2])?,
        _pad0: 0,
        _pad1: 0,
    })
}
