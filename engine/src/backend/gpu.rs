//! The GPU backend: the same ops as the CPU backend, recorded into one
//! `GpuStep` per forward step and submitted only when the host needs data
//! (a `read` at a CPU/GPU boundary, the logits, a hook record).
//!
//! Weights come from [`GpuWeights`], uploaded once at model load (still
//! quantized) and shared by every session; each backend owns its slot
//! buffers and the f16 KV cache of the layers it runs.

use std::sync::Arc;

use infer_kernels::gpu::{
    AttnShape, BindCache, GateAct, GpuBuffer, GpuContext, GpuKvCache, GpuStep, GpuWeight, MatOut, Readback, RopeShape,
};
use infer_kernels::gpu::SegmentAttn;
use infer_kernels::KernelError;

mod moe;

use super::{Activation, AttnParams, Backend, MoeParams, MoeWeights, RopeParams, Segment, Slot, SlotWidths};
use crate::error::{EngineError, Result};
use crate::weights::{WeightId, WeightTable};

/// The weights of the offloaded layers on the GPU, indexed by [`WeightId`]:
/// matrices still quantized, norm vectors as f32.
pub struct GpuWeights {
    ctx: GpuContext,
    mats: Vec<Option<GpuWeight>>,
    norms: Vec<Option<GpuBuffer>>,
    fused: Vec<Fused>,
    /// `fused_at[id]`: the fused group whose first matrix is `id`.
    fused_at: Vec<Option<usize>>,
}

/// Matrices of one type on the same input (q|k|v, gate|up) uploaded as
/// one weight, their rows one after the other, run as one product whose
/// epilogue sends each matrix's rows to its own output.
struct Fused {
    ids: Vec<WeightId>,
    /// Rows of each matrix.
    rows: Vec<usize>,
    w: GpuWeight,
    /// The biases of every matrix (q/k/v of qwen2), concatenated as the
    /// rows are: added in the product's epilogue.
    bias: Option<(Vec<WeightId>, GpuBuffer)>,
}

impl std::fmt::Debug for GpuWeights {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "GpuWeights({} bytes on {})", self.bytes(), self.ctx.info())
    }
}

impl GpuWeights {
    pub fn new(ctx: GpuContext, n_weights: usize) -> Self {
        GpuWeights {
            ctx,
            mats: (0..n_weights).map(|_| None).collect(),
            norms: (0..n_weights).map(|_| None).collect(),
            fused: Vec::new(),
            fused_at: vec![None; n_weights],
        }
    }

    /// Uploads matrices `ids` (two or three of one type and row length) as
    /// one fused weight, instead of one by one; `biases`, one per matrix
    /// when each has one, go with it as one vector.
    pub fn upload_fused(&mut self, table: &WeightTable, ids: &[WeightId], biases: Option<&[WeightId]>) -> Result<()> {
        let (first, infos) = match ids.first() {
            Some(&f) if (2..=3).contains(&ids.len()) => (f, ids.iter().map(|&id| table.info(id)).collect::<Vec<_>>()),
            _ => return Err(EngineError::Gpu(format!("cannot fuse {} matrices", ids.len()))),
        };
        let (ty, cols) = (infos[0].ty, infos[0].cols);
        if let Some(i) = infos.iter().find(|i| i.ty != ty || i.cols != cols) {
            return Err(EngineError::Gpu(format!("cannot fuse {} ({} x {}) with {} ({ty} x {cols})", i.name, i.ty, i.cols, infos[0].name)));
        }
        *self.fused_at.get_mut(first.0).ok_or_else(|| bad_id(first))? = None;
        let bytes: Vec<u8> = ids.iter().flat_map(|&id| table.bytes(id).iter().copied()).collect();
        let rows: Vec<usize> = infos.iter().map(|i| i.rows).collect();
        let w = GpuWeight::upload(&self.ctx, ty, &bytes, rows.iter().sum(), cols)
            .map_err(|e| EngineError::Gpu(format!("uploading {} fused with the next: {e}", infos[0].name)))?;
        let bias = match biases {
            Some(b) if b.len() == ids.len() => {
                let mut all = Vec::new();
                for (&id, &n) in b.iter().zip(&rows) {
                    let v = table.f32s(id)?;
                    if v.len() != n {
                        return Err(EngineError::Gpu(format!("bias {} has {} values for {n} rows", table.info(id).name, v.len())));
                    }
                    all.extend_from_slice(&v);
                }
                let buf = self.ctx.upload_f32(&all).map_err(|e| EngineError::Gpu(format!("uploading the biases of {}: {e}", infos[0].name)))?;
                Some((b.to_vec(), buf))
            }
            _ => None,
        };
        self.fused_at[first.0] = Some(self.fused.len());
        self.fused.push(Fused { ids: ids.to_vec(), rows, w, bias });
        Ok(())
    }

    /// The fused group made of the first matrices of `ws`, if one was uploaded.
    fn fused_prefix(&self, ws: &[(WeightId, Slot)]) -> Option<&Fused> {
        let f = &self.fused[self.fused_at.get(ws.first()?.0 .0).copied().flatten()?];
        let same = f.ids.len() <= ws.len() && f.ids.iter().zip(ws).all(|(a, b)| *a == b.0);
        same.then_some(f)
    }

    pub fn context(&self) -> &GpuContext {
        &self.ctx
    }

    /// Uploads matrix `id` (once; a second call is free, e.g. a tied head).
    pub fn upload_matrix(&mut self, table: &WeightTable, id: WeightId) -> Result<()> {
        let slot = self.mats.get_mut(id.0).ok_or_else(|| bad_id(id))?;
        if slot.is_none() {
            let i = table.info(id);
            let w = GpuWeight::upload(&self.ctx, i.ty, table.bytes(id), i.rows, i.cols)
                .map_err(|e| EngineError::Gpu(format!("uploading {}: {e}", i.name)))?;
            *slot = Some(w);
        }
        Ok(())
    }

    /// Uploads the norm vector `id` as f32.
    pub fn upload_norm(&mut self, table: &WeightTable, id: WeightId) -> Result<()> {
        if self.norms.get(id.0).ok_or_else(|| bad_id(id))?.is_none() {
            let v = table.f32s(id)?;
            let b = self
                .ctx
                .upload_f32(&v)
                .map_err(|e| EngineError::Gpu(format!("uploading {}: {e}", table.info(id).name)))?;
            self.norms[id.0] = Some(b);
        }
        Ok(())
    }

    fn matrix(&self, id: WeightId) -> Result<&GpuWeight> {
        self.mats
            .get(id.0)
            .and_then(Option::as_ref)
            .ok_or_else(|| EngineError::Gpu(format!("weight #{} is not on the GPU (layer not offloaded)", id.0)))
    }

    fn norm(&self, id: WeightId) -> Result<&GpuBuffer> {
        self.norms
            .get(id.0)
            .and_then(Option::as_ref)
            .ok_or_else(|| EngineError::Gpu(format!("norm #{} is not on the GPU (layer not offloaded)", id.0)))
    }

    /// Bytes held on the GPU.
    pub fn bytes(&self) -> u64 {
        let m: u64 = self.mats.iter().flatten().chain(self.fused.iter().map(|f| &f.w)).map(GpuWeight::gpu_bytes).sum();
        let n: u64 = self.norms.iter().flatten().map(|b| b.len() as u64 * 4).sum();
        m + n
    }
}

fn bad_id(id: WeightId) -> EngineError {
    EngineError::Gpu(format!("weight #{} is outside the weight table", id.0))
}

/// Slot `s`'s buffer (the logits have none: they live in chunks).
fn sb(b: &[Option<GpuBuffer>], s: Slot) -> std::result::Result<&GpuBuffer, KernelError> {
    b[s.index()]
        .as_ref()
        .ok_or_else(|| KernelError::Shape { op: "gpu backend", detail: format!("slot {s:?} cannot be an op operand") })
}

/// Dispatches per submitted part of a step on a real GPU, so that it runs
/// the first layers while the host records the rest (llama.cpp submits
/// about every 100 nodes).
const SUBMIT_EVERY_GPU: usize = 100;

/// `INFER_GPU_SUBMIT_EVERY=N`: submit a forward step in parts of N
/// dispatches without waiting (0: one submit per step). Unset: parts of
/// [`SUBMIT_EVERY_GPU`] on a real GPU, one submit on a CPU-emulated one,
/// whose "GPU" shares the host's cores and gains nothing from overlap.
fn submit_every_from_env(ctx: &GpuContext) -> Result<usize> {
    match std::env::var("INFER_GPU_SUBMIT_EVERY") {
        Ok(v) if !v.trim().is_empty() => v.trim().parse().map_err(|_| {
            EngineError::InvalidParam(format!("INFER_GPU_SUBMIT_EVERY=\"{v}\" is not a number of dispatches"))
        }),
        _ if ctx.uses_cpu_device_kernels() => Ok(0),
        _ => Ok(SUBMIT_EVERY_GPU),
    }
}

fn no_logits() -> KernelError {
    KernelError::Gpu("argmax of logits before the output head ran".into())
}

fn gpu_err(e: infer_kernels::KernelError) -> EngineError {
    match e {
        infer_kernels::KernelError::Gpu(m) => EngineError::Gpu(m),
        other => EngineError::Kernel(other),
    }
}

/// Runs ops on a GPU. Slots hold up to `n_batch` tokens, except the logits,
/// which are allocated for the rows asked and split into chunks that each fit
/// one storage binding.
pub struct GpuBackend {
    w: Arc<GpuWeights>,
    ctx: GpuContext,
    widths: SlotWidths,
    n_batch: usize,
    bufs: Vec<Option<GpuBuffer>>,
    /// Logits in chunks of `logit_rows` tokens.
    logits: Vec<GpuBuffer>,
    logit_rows: usize,
    /// For in-place norms and moved rows (ops need distinct in/out buffers).
    tmp: GpuBuffer,
    /// Greedy token ids (u32), one per batch row; made on first use.
    ids: Option<GpuBuffer>,
    /// Bind groups reused from token to token (they bind this backend's buffers).
    binds: BindCache,
    /// Submit the open step without waiting once it holds this many
    /// dispatches (0 = one submit per step); `INFER_GPU_SUBMIT_EVERY`.
    submit_every: usize,
    /// Which part of the current step is being recorded.
    part: usize,
    kv: Vec<Option<GpuKvCache>>,
    /// RoPE factor tables uploaded so far, by the address of the host table.
    rope_mult: Vec<(usize, GpuBuffer)>,
    /// MoE scratch: gathered rows, expert output, router logits (made on first use).
    moe: Option<[GpuBuffer; 3]>,
    step: Option<GpuStep>,
    /// Buffers the open step uses that nothing else holds; freed at submit.
    retired: Vec<GpuBuffer>,
    n_tokens: usize,
    /// The current batch's segments (one per run of a sequence's tokens).
    segs: Vec<Segment>,
    /// Rows per sequence in the KV cache (sequence `s` starts at row `s * n_ctx`).
    n_ctx: usize,
    n_seq: usize,
}

impl GpuBackend {
    /// A backend holding the KV cache (`n_seq` regions of `n_ctx` rows, f16)
    /// of the layers where `held[l]` is true.
    pub fn new(
        w: Arc<GpuWeights>,
        widths: SlotWidths,
        n_batch: usize,
        (n_seq, n_ctx): (usize, usize),
        held: &[bool],
    ) -> Result<Self> {
        let ctx = w.context().clone();
        let submit_every = submit_every_from_env(&ctx)?;
        let mut bufs = Vec::new();
        // Each error names the buffer and what to lower.
        let slot = |name: String, width: usize| {
            ctx.buffer_for(&format!("{name} ({n_batch} tokens x {width}; lower the batch size)"), width * n_batch).map_err(gpu_err)
        };
        for s in Slot::ALL {
            bufs.push(if s == Slot::Logits { None } else { Some(slot(format!("activation slot {s:?}"), widths.width(s))?) });
        }
        let tmp_w = widths.dim.max(widths.q_dim).max(widths.kv_dim);
        let tmp = slot("the scratch activation".into(), tmp_w)?;
        let mut kv = Vec::with_capacity(held.len());
        for (l, &h) in held.iter().enumerate() {
            let cache = |e| match gpu_err(e) {
                EngineError::Gpu(m) => EngineError::Gpu(format!("layer {l}: {m}: {n_seq} sequences x {n_ctx} context; lower the context size or the sequences")),
                other => other,
            };
            kv.push(if h { Some(GpuKvCache::new(&ctx, n_seq * n_ctx, widths.kv_dim).map_err(cache)?) } else { None });
        }
        Ok(GpuBackend {
            w,
            ctx,
            widths,
            n_batch,
            bufs,
            logits: Vec::new(),
            logit_rows: 1,
            tmp,
            ids: None,
            binds: BindCache::default(),
            submit_every,
            part: 0,
            kv,
            rope_mult: Vec::new(),
            moe: None,
            step: None,
            retired: Vec::new(),
            n_tokens: 0,
            segs: Vec::new(),
            n_ctx,
            n_seq,
        })
    }

    /// Submits the open step, if any, and waits for it.
    fn flush(&mut self) -> Result<Vec<Readback>> {
        let r = match self.step.take() {
            Some(s) if !s.is_empty() => s.submit().map_err(gpu_err),
            _ => Ok(Vec::new()),
        };
        self.retired.clear();
        self.part = 0;
        r
    }

    /// With `submit_every`, submits a long enough open step without waiting,
    /// so the GPU runs it while the host records the rest of the step.
    fn submit_early(&mut self) -> Result<()> {
        let due = self.step.as_ref().is_some_and(|s| {
            self.submit_every > 0 && s.dispatch_count() >= self.submit_every && !s.has_reads() && !s.keeps_int8_blocks()
        });
        if !due {
            return Ok(());
        }
        if let Some(s) = self.step.take() {
            s.submit_no_wait().map_err(gpu_err)?;
            // The GPU runs submissions in order: what later parts reuse is free by then.
            self.retired.clear();
            self.part += 1;
        }
        Ok(())
    }

    /// Records `f(step, slot buffers, tmp, logits)`: the step and the buffers are
    /// borrowed side by side.
    fn rec<F>(&mut self, f: F) -> Result<()>
    where
        F: FnOnce(&mut GpuStep, &[Option<GpuBuffer>], &GpuBuffer, &[GpuBuffer]) -> std::result::Result<(), KernelError>,
    {
        let (ctx, binds, part) = (&self.ctx, &self.binds, self.part);
        let step = self.step.get_or_insert_with(|| ctx.step_part(binds, part));
        f(step, &self.bufs, &self.tmp, &self.logits).map_err(gpu_err)?;
        self.submit_early()
    }

    /// Makes sure the logits chunks hold `n` tokens.
    fn ensure_logits(&mut self, n: usize) -> Result<()> {
        let have = self.logits.len() * self.logit_rows;
        if have < n {
            // Chunks for fewer rows than `logit_rows` only when one is enough (decode).
            if n <= 1 && self.logits.is_empty() {
                self.logits.push(self.ctx.buffer(self.widths.vocab).map_err(gpu_err)?);
                self.logit_rows = 1;
                return Ok(());
            }
            self.logits.clear();
            self.logit_rows = self.full_logit_rows();
            for _ in 0..n.div_ceil(self.logit_rows) {
                self.logits.push(self.ctx.buffer(self.logit_rows * self.widths.vocab).map_err(gpu_err)?);
            }
        }
        Ok(())
    }

    fn full_logit_rows(&self) -> usize {
        let max_bind = self.ctx.max_storage_binding();
        ((max_bind / 4) as usize / self.widths.vocab.max(1)).clamp(1, self.n_batch.max(1))
    }

    /// The fused weight `f` on `x`, its matrices' rows to the slots of
    /// `outs` (in `f`'s order), plus `bias` (one value per row of `f`).
    fn fused_split(&mut self, f: &Fused, outs: &[(WeightId, Slot)], x: Slot, bias: Option<&GpuBuffer>) -> Result<()> {
        let (k, n) = (f.ids.len(), self.n_tokens);
        self.rec(|st, b, _, _| {
            let mut list = [(sb(b, outs[0].1)?, f.rows[0]); 3];
            for j in 1..k {
                list[j] = (sb(b, outs[j].1)?, f.rows[j]);
            }
            st.matmul_to(&f.w, sb(b, x)?, n, MatOut::Split(&list[..k]), bias)
        })
    }

    /// `logits = x · Wᵀ` chunk by chunk: each chunk's rows of `x` are copied
    /// to the start of a scratch buffer first, since matmul reads from offset 0.
    fn matmul_logits(&mut self, w: WeightId, x: Slot) -> Result<()> {
        let n = self.n_tokens;
        self.ensure_logits(n)?;
        let weights = self.w.clone();
        let m = weights.matrix(w)?;
        if m.rows() != self.widths.vocab {
            return Err(EngineError::Gpu(format!("output head has {} rows, vocabulary {}", m.rows(), self.widths.vocab)));
        }
        let (rows, cols) = (self.logit_rows, m.cols());
        let tmp_x = if n > rows { Some(self.ctx.buffer(rows * cols).map_err(gpu_err)?) } else { None };
        self.rec(|st, b, _, logits| {
            let xb = sb(b, x)?;
            match &tmp_x {
                None => st.matmul(m, xb, n, &logits[0]),
                Some(t) => {
                    for (c, out) in logits.iter().enumerate().take(n.div_ceil(rows)) {
                        let nc = rows.min(n - c * rows);
                        st.copy(xb, c * rows * cols, t, 0, nc * cols)?;
                        st.matmul(m, t, nc, out)?;
                    }
                    Ok(())
                }
            }
        })?;
        // Recorded commands use the scratch buffer: keep it until the submit.
        self.retired.extend(tmp_x);
        Ok(())
    }
}

/// The kernels' view of a layer's RoPE for segment `s` of the batch.
fn rope_shape<'a>(p: &RopeParams, s: &Segment, mult: Option<&'a GpuBuffer>) -> RopeShape<'a> {
    RopeShape {
        tok0: s.start,
        n_tokens: s.len,
        head_dim: p.head_dim,
        n_rot: p.n_rot,
        pos0: s.pos0,
        base: p.base,
        freq_scale: p.freq_scale,
        neox: p.neox,
        mscale: p.mscale,
        mult,
    }
}

impl GpuBackend {
    /// Whether the GPU kernels run `op` on weights of type `ty` (the
    /// offload plan keeps a layer on the CPU otherwise).
    pub fn supports(op: super::Op, ty: infer_gguf::QuantType) -> bool {
        match op {
            super::Op::Matmul => infer_kernels::gpu::supports(ty),
            // Vectors are dequantized to f32 at upload.
            super::Op::Vector => infer_kernels::dequant::supports(ty),
        }
    }

    /// Uploads `p`'s factor table once (the host table lives as long as the model).
    fn upload_rope_mult(&mut self, p: &RopeParams) -> Result<()> {
        if let Some(m) = p.mult {
            let key = m.as_ptr() as usize;
            if !self.rope_mult.iter().any(|(k, _)| *k == key) {
                let b = self.ctx.upload_f32(m).map_err(gpu_err)?;
                self.rope_mult.push((key, b));
            }
        }
        Ok(())
    }
}

impl GpuBackend {
    /// Attention of layer `layer`, per segment: keys and values into the
    /// cache (RoPE'd on the way by `rope`: the queries' rotation and the
    /// keys' head count), then the queries over the sequence's region.
    fn attend(
        &mut self,
        layer: usize,
        (q, k, v): (Slot, Slot, Slot),
        out: Slot,
        p: &AttnParams,
        rope: Option<(&RopeParams, usize)>,
    ) -> Result<()> {
        let cache = match self.kv.get(layer) {
            Some(Some(c)) => c,
            _ => return Err(EngineError::InvalidParam(format!("layer {layer} has no KV cache on the GPU backend"))),
        };
        let n_ctx = self.n_ctx;
        let (ctx, binds, part) = (&self.ctx, &self.binds, self.part);
        let st = self.step.get_or_insert_with(|| ctx.step_part(binds, part));
        let (b, tables) = (&self.bufs, &self.rope_mult);
        // Per segment: its keys and values (rotated on the way with `rope`)
        // into its sequence's region, then its queries over that region.
        let r = self.segs.iter().try_for_each(|s| {
            let shape = AttnShape {
                n_q: s.len,
                n_heads: p.n_heads,
                n_kv_heads: p.n_kv_heads,
                head_dim: p.head_dim,
                pos0: s.pos0,
                window: p.window,
                scale: p.scale,
                tok0: s.start,
                kv_base: s.seq * n_ctx,
            };
            let row0 = s.seq * n_ctx + s.pos0;
            match rope {
                Some((pq, n_kv_heads)) => {
                    let rs = rope_shape(pq, s, mult_of(tables, pq));
                    st.rope_kv(sb(b, q)?, sb(b, k)?, sb(b, v)?, cache, (pq.n_heads, n_kv_heads), rs, row0)?
                }
                None => st.kv_write_rows(cache, sb(b, k)?, sb(b, v)?, s.start, s.len, row0)?,
            }
            st.attention(sb(b, q)?, cache, shape, sb(b, out)?)
        });
        r.map_err(gpu_err)?;
        self.submit_early()
    }
}

/// The uploaded factor table of `p`, if it has one.
fn mult_of<'a>(tables: &'a [(usize, GpuBuffer)], p: &RopeParams) -> Option<&'a GpuBuffer> {
    let key = p.mult?.as_ptr() as usize;
    tables.iter().find(|(k, _)| *k == key).map(|(_, b)| b)
}

impl Backend for GpuBackend {
    fn name(&self) -> String {
        format!("gpu ({})", self.ctx.info())
    }

    fn begin(&mut self, n_tokens: usize, segments: &[Segment]) -> Result<()> {
        if n_tokens > self.n_batch {
            return Err(EngineError::InvalidParam(format!("batch of {n_tokens} tokens exceeds n_batch {}", self.n_batch)));
        }
        if segments.iter().map(|s| s.len).sum::<usize>() != n_tokens {
            return Err(EngineError::Gpu(format!("segments {segments:?} do not cover {n_tokens} tokens")));
        }
        if let Some(s) = segments.iter().find(|s| s.seq >= self.n_seq || s.pos0 + s.len > self.n_ctx) {
            if s.seq >= self.n_seq {
                return Err(EngineError::InvalidParam(format!("sequence {} of {}", s.seq, self.n_seq)));
            }
            return Err(EngineError::ContextFull { n_ctx: self.n_ctx });
        }
        self.n_tokens = n_tokens;
        self.segs.clear();
        self.segs.extend_from_slice(segments);
        Ok(())
    }

    fn n_tokens(&self) -> usize {
        self.n_tokens
    }

    fn load(&mut self, dst: Slot, host: &[f32]) -> Result<()> {
        // A queued write lands before the next submit's commands: submit
        // what is recorded first so the write is not reordered before them.
        self.flush()?;
        let b = sb(&self.bufs, dst).map_err(gpu_err)?;
        self.ctx.write_f32(b, host).map_err(gpu_err)
    }

    fn read(&mut self, src: Slot, host: &mut [f32]) -> Result<()> {
        if src == Slot::Logits {
            let v = self.widths.vocab;
            let rows = self.logit_rows;
            let n_rows = host.len().div_ceil(v.max(1));
            if n_rows > self.logits.len() * rows {
                return Err(EngineError::Gpu(format!("{n_rows} logit rows asked, {} computed", self.logits.len() * rows)));
            }
            let chunks: Vec<(usize, usize)> = (0..n_rows.div_ceil(rows))
                .map(|c| (c, (rows * v).min(host.len() - c * rows * v)))
                .collect();
            self.rec(|st, _, _, logits| chunks.iter().try_for_each(|&(c, n)| st.read_n(&logits[c], n)))?;
            let reads = self.flush()?;
            for ((c, n), r) in chunks.into_iter().zip(reads) {
                let vals = r.f32();
                host[c * rows * v..c * rows * v + n].copy_from_slice(&vals[..n]);
            }
            return Ok(());
        }
        let n = host.len();
        self.rec(|st, b, _, _| st.read_n(sb(b, src)?, n))?;
        let reads = self.flush()?;
        let vals = reads.last().map(|r| r.f32()).unwrap_or_default();
        if vals.len() < n {
            return Err(EngineError::Gpu(format!("read of {src:?} returned {} values, {n} asked", vals.len())));
        }
        host.copy_from_slice(&vals[..n]);
        Ok(())
    }

    fn argmax(&mut self, src: Slot, width: usize, out: &mut Vec<u32>) -> Result<()> {
        let n = self.n_tokens;
        // Logits spread over several chunks (long batches) are rare: read them back.
        if n == 0 || (src == Slot::Logits && (width != self.widths.vocab || n > self.logit_rows)) {
            return super::argmax_on_host(self, src, width, out);
        }
        if self.ids.as_ref().is_none_or(|b| b.len() < n) {
            self.ids = Some(self.ctx.buffer(self.n_batch.max(n)).map_err(gpu_err)?);
        }
        let ids = self.ids.take().ok_or_else(|| EngineError::Gpu("argmax buffer missing".into()))?;
        let r = self.rec(|st, b, _, logits| {
            let x = if src == Slot::Logits { logits.first().ok_or_else(no_logits)? } else { sb(b, src)? };
            st.argmax(x, n, width, &ids)?;
            st.read_n(&ids, n)
        });
        self.ids = Some(ids);
        r?;
        let reads = self.flush()?;
        let got = reads.last().map(|r| r.u32()).unwrap_or_default();
        if got.len() < n {
            return Err(EngineError::Gpu(format!("argmax returned {} ids, {n} asked", got.len())));
        }
        out.clear();
        out.extend_from_slice(&got[..n]);
        Ok(())
    }

    fn keep_rows(&mut self, slot: Slot, width: usize, rows: &[usize]) -> Result<()> {
        let n = self.n_tokens;
        if rows.iter().any(|&r| r >= n) || rows.windows(2).any(|w| w[0] >= w[1]) {
            return Err(EngineError::Gpu(format!("keep_rows: rows {rows:?} of a batch of {n}")));
        }
        if rows.iter().enumerate().any(|(j, &r)| r != j) {
            // Through `tmp`: a copy within one buffer is not allowed.
            self.rec(|st, b, tmp, _| {
                let buf = sb(b, slot)?;
                for (j, &r) in rows.iter().enumerate() {
                    st.copy(buf, r * width, tmp, j * width, width)?;
                }
                st.copy(tmp, 0, buf, 0, rows.len() * width)
            })?;
        }
        self.n_tokens = rows.len();
        Ok(())
    }

    fn matmul(&mut self, w: WeightId, x: Slot, out: Slot) -> Result<()> {
        if out == Slot::Logits {
            return self.matmul_logits(w, x);
        }
        let weights = self.w.clone();
        let m = weights.matrix(w)?;
        let n = self.n_tokens;
        self.rec(|st, b, _, _| st.matmul(m, sb(b, x)?, n, sb(b, out)?))
    }

    fn rmsnorm_matmul(&mut self, x: Slot, norm: WeightId, w: WeightId, (xn, out): (Slot, Slot), dim: usize, eps: f32) -> Result<()> {
        // One token's logits on the real-GPU kernels: the norm runs inside
        // the head's matvec. Batches (prefill logits, several sequences) norm
        // first, and so do the CPU-device kernels: there every thread of the
        // head redoes x·g and x² for its row, which doubled the head's time
        // on lavapipe (docs/OFFLOAD.md), far more than the dispatch it saves.
        if out != Slot::Logits || self.n_tokens != 1 || self.ctx.uses_cpu_device_kernels() {
            self.rmsnorm(x, norm, xn, dim, dim, eps)?;
            return self.matmul(w, xn, out);
        }
        let weights = self.w.clone();
        let (g, m) = (weights.norm(norm)?, weights.matrix(w)?);
        if g.len() != dim || m.cols() != dim || m.rows() != self.widths.vocab {
            return Err(EngineError::Gpu(format!(
                "output head: norm of {} values, head of {} x {}, dim {dim}, vocabulary {}",
                g.len(),
                m.rows(),
                m.cols(),
                self.widths.vocab
            )));
        }
        self.ensure_logits(1)?;
        self.rec(|st, b, _, logits| st.matvec_rmsnorm(m, sb(b, x)?, g, eps, &logits[0]))
    }

    fn matmul_multi(&mut self, ws: &[(WeightId, Slot)], x: Slot) -> Result<()> {
        let weights = self.w.clone();
        let mut i = 0;
        while i < ws.len() {
            match weights.fused_prefix(&ws[i..]) {
                Some(f) => {
                    let k = f.ids.len();
                    self.fused_split(f, &ws[i..i + k], x, None)?;
                    i += k;
                }
                None => {
                    self.matmul(ws[i].0, x, ws[i].1)?;
                    i += 1;
                }
            }
        }
        Ok(())
    }

    fn matmul_multi_bias(&mut self, ws: &[(WeightId, Slot)], biases: &[Option<(WeightId, usize)>], x: Slot) -> Result<()> {
        let weights = self.w.clone();
        // The whole list as one fused weight carrying exactly these biases.
        let fused = weights.fused_prefix(ws).filter(|f| f.ids.len() == ws.len() && biases.len() == ws.len());
        let with_bias = fused.and_then(|f| {
            let (ids, buf) = f.bias.as_ref()?;
            ids.iter().zip(biases).all(|(id, b)| b.is_some_and(|b| b.0 == *id)).then_some((f, buf))
        });
        match with_bias {
            Some((f, bias)) => self.fused_split(f, ws, x, Some(bias)),
            None => {
                self.matmul_multi(ws, x)?;
                super::add_biases(self, ws, biases)
            }
        }
    }

    fn matmul_gated(
        &mut self,
        gate: WeightId,
        up: WeightId,
        x: Slot,
        (gate_out, up_out): (Slot, Slot),
        act: Activation,
        width: usize,
    ) -> Result<()> {
        let weights = self.w.clone();
        let pair = [(gate, gate_out), (up, up_out)];
        let fused = weights.fused_prefix(&pair).filter(|f| f.ids.len() == 2 && f.w.n_parts() == 1);
        match fused {
            // One token: the activation is the product's epilogue.
            Some(f) if self.n_tokens == 1 => {
                let act = match act {
                    Activation::SwiGlu => GateAct::Silu,
                    Activation::GeGlu => GateAct::Gelu,
                };
                self.rec(|st, b, _, _| st.matmul_to(&f.w, sb(b, x)?, 1, MatOut::Gated(sb(b, gate_out)?, act), None))
            }
            _ => {
                self.matmul_multi(&pair, x)?;
                self.gated(gate_out, up_out, act, width)
            }
        }
    }

    fn matmul_add(&mut self, w: WeightId, x: Slot, dst: Slot, _scratch: Slot, _width: usize) -> Result<()> {
        if x == dst {
            return Err(EngineError::Gpu(format!("matmul_add: {x:?} is both input and output")));
        }
        let weights = self.w.clone();
        let m = weights.matrix(w)?;
        let n = self.n_tokens;
        self.rec(|st, b, _, _| st.matmul_to(m, sb(b, x)?, n, MatOut::Acc(sb(b, dst)?), None))
    }

    fn rmsnorm(&mut self, x: Slot, w: WeightId, out: Slot, width: usize, dim: usize, eps: f32) -> Result<()> {
        let weights = self.w.clone();
        let wv = weights.norm(w)?;
        if wv.len() != dim || dim == 0 || width % dim != 0 {
            return Err(EngineError::Gpu(format!("rmsnorm: weight of {} values, rows of {dim}, width {width}", wv.len())));
        }
        let n = self.n_tokens * width;
        let rows = n / dim;
        self.rec(|st, b, _, _| {
            let (xb, ob) = (sb(b, x)?, sb(b, out)?);
            if x == out {
                st.rmsnorm_inplace(xb, wv, rows, dim, eps)
            } else {
                st.rmsnorm(xb, wv, rows, dim, eps, ob)
            }
        })
    }

    fn add_rmsnorm(&mut self, x: Slot, src: Slot, w: WeightId, out: Slot, dim: usize, eps: f32) -> Result<()> {
        let weights = self.w.clone();
        let wv = weights.norm(w)?;
        if wv.len() != dim || x == out || x == src || src == out {
            return Err(EngineError::Gpu(format!(
                "add_rmsnorm: weight of {} values for rows of {dim}; slots {x:?} += {src:?} → {out:?}",
                wv.len()
            )));
        }
        let rows = self.n_tokens;
        self.rec(|st, b, _, _| st.add_rmsnorm(sb(b, x)?, sb(b, src)?, wv, rows, dim, eps, sb(b, out)?))
    }

    fn rope(&mut self, x: Slot, p: &RopeParams) -> Result<()> {
        self.upload_rope_mult(p)?;
        let heads = p.n_heads;
        let (tables, segs) = (std::mem::take(&mut self.rope_mult), std::mem::take(&mut self.segs));
        let r = self.rec(|st, b, _, _| {
            segs.iter().try_for_each(|s| st.rope_with(sb(b, x)?, heads, rope_shape(p, s, mult_of(&tables, p))))
        });
        (self.rope_mult, self.segs) = (tables, segs);
        r
    }

    fn rope_qk(&mut self, q: Slot, k: Slot, pq: &RopeParams, pk: &RopeParams) -> Result<()> {
        if !pq.same_rotation(pk) || q == k {
            self.rope(q, pq)?;
            return self.rope(k, pk);
        }
        self.upload_rope_mult(pq)?;
        let (hq, hk) = (pq.n_heads, pk.n_heads);
        let (tables, segs) = (std::mem::take(&mut self.rope_mult), std::mem::take(&mut self.segs));
        let r = self.rec(|st, b, _, _| {
            segs.iter().try_for_each(|s| {
                st.rope_pair(sb(b, q)?, sb(b, k)?, (hq, hk), rope_shape(pq, s, mult_of(&tables, pq)))
            })
        });
        (self.rope_mult, self.segs) = (tables, segs);
        r
    }

    fn add_bias(&mut self, x: Slot, bias: WeightId, width: usize) -> Result<()> {
        let weights = self.w.clone();
        let bv = weights.norm(bias)?;
        if bv.len() != width {
            return Err(EngineError::Gpu(format!("add_bias: bias of {} values for rows of {width}", bv.len())));
        }
        let n = self.n_tokens * width;
        self.rec(|st, b, _, _| st.add_bias(sb(b, x)?, bv, n, width))
    }

    fn moe_ffn(&mut self, x: Slot, out: Slot, w: &MoeWeights, p: &MoeParams) -> Result<()> {
        moe::moe_ffn(self, x, out, w, p)
    }

    fn attention(&mut self, layer: usize, q: Slot, k: Slot, v: Slot, out: Slot, p: &AttnParams) -> Result<()> {
        self.attend(layer, (q, k, v), out, p, None)
    }

    fn rope_attention(
        &mut self,
        layer: usize,
        (q, k, v): (Slot, Slot, Slot),
        out: Slot,
        pq: &RopeParams,
        pk: &RopeParams,
        p: &AttnParams,
    ) -> Result<()> {
        let shape = rope_shape(pq, &Segment { seq: 0, pos0: 0, start: 0, len: 0 }, None);
        if !pq.same_rotation(pk) || q == k || !GpuStep::rope_kv_fits(&shape) {
            self.rope_qk(q, k, pq, pk)?;
            return self.attention(layer, q, k, v, out, p);
        }
        self.upload_rope_mult(pq)?;
        self.attend(layer, (q, k, v), out, p, Some((pq, pk.n_heads)))
    }

    fn gated(&mut self, gate: Slot, up: Slot, act: Activation, width: usize) -> Result<()> {
        let n = self.n_tokens * width;
        self.rec(|st, b, _, _| match act {
            Activation::SwiGlu => st.silu_mul(sb(b, gate)?, sb(b, up)?, n),
            Activation::GeGlu => st.gelu_mul(sb(b, gate)?, sb(b, up)?, n),
        })
    }

    fn add(&mut self, dst: Slot, src: Slot, width: usize) -> Result<()> {
        let n = self.n_tokens * width;
        self.rec(|st, b, _, _| st.add(sb(b, dst)?, sb(b, src)?, n))
    }

    fn scale(&mut self, x: Slot, s: f32, width: usize) -> Result<()> {
        let n = self.n_tokens * width;
        self.rec(|st, b, _, _| st.scale(sb(b, x)?, s, n))
    }

    fn layernorm(&mut self, x: Slot, w: WeightId, b: WeightId, dim: usize, eps: f32) -> Result<()> {
        let weights = self.w.clone();
        let (wv, bv) = (weights.norm(w)?, weights.norm(b)?);
        let rows = self.n_tokens;
        self.rec(|st, bufs, _, _| st.layernorm(sb(bufs, x)?, wv, bv, (rows, dim), eps))
    }

    fn attention_full(&mut self, q: Slot, k: Slot, v: Slot, out: Slot, p: &AttnParams) -> Result<()> {
        let segs = std::mem::take(&mut self.segs);
        let r = self.rec(|st, b, _, _| {
            segs.iter().try_for_each(|s| {
                let shape = SegmentAttn {
                    tok0: s.start,
                    n: s.len,
                    n_heads: p.n_heads,
                    n_kv_heads: p.n_kv_heads,
                    head_dim: p.head_dim,
                    scale: p.scale,
                };
                st.segment_attention(sb(b, q)?, sb(b, k)?, sb(b, v)?, sb(b, out)?, shape)
            })
        });
        self.segs = segs;
        r
    }

    fn gelu(&mut self, x: Slot, width: usize) -> Result<()> {
        let n = self.n_tokens * width;
        self.rec(|st, b, _, _| st.gelu(sb(b, x)?, n))
    }

    fn truncate_cache(&mut self, _from: usize) {
        // Positions past `from` are simply overwritten by later batches.
    }

    fn copy_seq(&mut self, src: usize, dst: usize, n: usize) -> Result<()> {
        if src >= self.n_seq || dst >= self.n_seq || n > self.n_ctx {
            return Err(EngineError::InvalidParam(format!(
                "copying {n} positions from sequence {src} to {dst} of {} (context {})",
                self.n_seq, self.n_ctx
            )));
        }
        let n_ctx = self.n_ctx;
        let (ctx, binds, part) = (&self.ctx, &self.binds, self.part);
        let st = self.step.get_or_insert_with(|| ctx.step_part(binds, part));
        for cache in self.kv.iter().flatten() {
            st.kv_copy(cache, src * n_ctx, dst * n_ctx, n).map_err(gpu_err)?;
        }
        Ok(())
    }
}
