//! GPU kernels: WGSL compute shaders run through `wgpu`, tested against the
//! plain-Rust references in [`crate::ops`], [`crate::dequant`] and [`crate::cpu`].
//!
//! The API is op-level: buffer handles in, buffer handles out.
//! - [`GpuContext`] opens the best adapter (env `INFER_GPU_BACKEND`,
//!   `INFER_GPU_ADAPTER` narrow it) with the adapter's own limits, and uses
//!   shader-f16 and subgroups when offered ([`GpuContext::set_portable`]
//!   forces the portable kernels). Pipelines are compiled once per
//!   (kernel, variant) and cached.
//! - On CPU-emulated adapters (lavapipe) the matmuls use kernels made for
//!   them: a thread per output row, no barriers, activations read through a
//!   uniform binding ([`GpuContext::set_cpu_device_kernels`]; env
//!   `INFER_GPU_KERNELS=cpu|gpu`, also spelt `rows|subgroup`, forces one
//!   set). On other adapters the decode matvec runs a few rows per
//!   workgroup of one subgroup ([`MatvecShape`], pipeline constants chosen
//!   per adapter); Q4_0, Q4_1, Q5_0, Q5_1 and Q8_0 products whose input a
//!   norm wrote also as int8 blocks run on those ([`IntDot`]: per vendor,
//!   type and row length by default; [`GpuContext::set_int_dot_mode`], env
//!   `INFER_GPU_INT_DOT=0|1`), and the head of one token takes the output
//!   norm fused in ([`GpuStep::matvec_rmsnorm`]).
//! - [`GpuWeight`] is a weight uploaded once, still quantized (F32, F16,
//!   BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, IQ4_NL, Q2_K … Q6_K, IQ4_XS), split
//!   by rows over several buffers when larger than the max storage binding.
//! - [`GpuBuffer`] is an f32 (or u32) activation buffer from the context's
//!   pool; it goes back to the pool on drop.
//! - [`GpuKvCache`] holds one layer's keys and values as f16 on the GPU
//!   (halves the memory; the values are rounded to f16 when written).
//! - [`GpuStep`] records ops into one command encoder; [`GpuStep::read`]
//!   marks what the CPU needs back; [`GpuStep::submit`] submits once and
//!   returns those reads in order.
//!
//! Shapes follow the CPU references: activations are row-major
//! `[n_tokens][dim]`; `matmul` computes `out[t*rows + r] = Σ_c W[r][c]·x[t*cols + c]`.
//! Ops that read one buffer and write another need distinct buffers.
//!
//! ```no_run
//! use infer_kernels::gpu::{AttnShape, GpuContext, GpuKvCache, GpuWeight};
//! use infer_kernels::QuantType;
//! # fn main() -> Result<(), infer_kernels::KernelError> {
//! # let (bytes, norm_w, x0) = (vec![0u8; 64 * 34 * 2], vec![1.0f32; 64], vec![0.5f32; 64]);
//! let ctx = GpuContext::new()?;
//! println!("{}", ctx.info());
//! // A 64 x 64 Q8_0 matrix (GGUF dims [64, 64]).
//! let w = GpuWeight::upload(&ctx, QuantType::Q8_0, &bytes, 64, 64)?;
//! let norm = ctx.upload_f32(&norm_w)?;
//! let x = ctx.upload_f32(&x0)?;
//! let (h, y, tok) = (ctx.buffer(64)?, ctx.buffer(64)?, ctx.buffer(1)?);
//! let mut step = ctx.step();
//! step.rmsnorm(&x, &norm, 1, 64, 1e-6, &h)?; // h = rmsnorm(x)
//! step.matmul(&w, &h, 1, &y)?; // y = W h
//! step.add(&y, &x, 64)?; // y += x
//! step.argmax(&y, 1, 64, &tok)?; // greedy token on the GPU
//! step.read(&tok);
//! let reads = step.submit()?;
//! let token = reads[0].u32()[0];
//! # let _ = (token, AttnShape::default(), GpuKvCache::new(&ctx, 16, 64));
//! # Ok(()) }
//! ```

mod attention;
mod context;
mod encoder;
mod int_dot;
mod mat;
mod ops;
mod profile;
mod shaders;
mod submit;
mod weights;

pub use context::{AdapterSummary, GpuContext, MatvecShape, MIN_BINDING};
pub use int_dot::IntDot;
pub use encoder::{SegmentAttn, ENCODER_MAX_KEYS};
pub use mat::MatOut;
pub use attention::{AttnShape, GpuKvCache};
pub use ops::RopeShape;
pub use shaders::GateAct;
pub use profile::{GpuStats, KernelTime};
pub use weights::{supports, GpuWeight};

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use context::Pipeline;
use shaders::Kernel;

use crate::KernelError;

/// A storage buffer of `len` 32-bit values (f32 activations or u32 ids),
/// returned to the context's pool when dropped.
pub struct GpuBuffer {
    raw: Option<wgpu::Buffer>,
    len: usize,
    ctx: GpuContext,
}

impl std::fmt::Debug for GpuBuffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "GpuBuffer({} values)", self.len)
    }
}

impl GpuBuffer {
    fn new(raw: wgpu::Buffer, len: usize, ctx: GpuContext) -> Self {
        Self {
            raw: Some(raw),
            len,
            ctx,
        }
    }

    /// Number of 32-bit values.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the buffer holds no values.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn raw(&self) -> &wgpu::Buffer {
        // Only `drop` takes the buffer out.
        self.raw.as_ref().expect("GpuBuffer used after drop")
    }
}

impl Drop for GpuBuffer {
    fn drop(&mut self) {
        if let (Some(b), Ok(mut pool)) = (self.raw.take(), self.ctx.inner.pool.lock()) {
            pool.entry(b.size()).or_default().push(b);
        }
    }
}

/// Bytes read back by [`GpuStep::submit`].
#[derive(Debug, Clone)]
pub struct Readback {
    bytes: Vec<u8>,
}

impl Readback {
    /// The values as f32.
    pub fn f32(&self) -> Vec<f32> {
        self.bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect()
    }

    /// The values as u32.
    pub fn u32(&self) -> Vec<u32> {
        self.bytes
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect()
    }
}

/// A buffer bound at a binding number: a byte range, or the whole buffer
/// when `size` is `None`.
struct Bound {
    binding: u32,
    buffer: wgpu::Buffer,
    offset: u64,
    size: Option<wgpu::BufferSize>,
}

/// Most buffers a kernel binds besides its params.
const MAX_BOUND: usize = 7;

/// The buffers of one dispatch, held inline: recording allocates nothing per dispatch.
struct Bounds([Option<Bound>; MAX_BOUND]);

impl Bounds {
    fn iter(&self) -> impl Iterator<Item = &Bound> {
        self.0.iter().flatten()
    }
}

enum Cmd {
    Dispatch {
        kernel: Kernel,
        pipeline: Arc<Pipeline>,
        buffers: Bounds,
        params: (u64, u64),
        groups: [u32; 3],
    },
    Read {
        src: wgpu::Buffer,
        bytes: u64,
    },
    Copy {
        src: wgpu::Buffer,
        src_off: u64,
        dst: wgpu::Buffer,
        dst_off: u64,
        bytes: u64,
    },
}

/// What a bind group is made of: the layout, the params' size (their
/// offset is dynamic) and every other buffer range.
#[derive(Clone, PartialEq, Eq, Hash)]
struct BindKey {
    layout: wgpu::BindGroupLayout,
    /// Which part of a token's step (each part has its own params buffer).
    part: usize,
    params_size: u64,
    buffers: Vec<(u32, wgpu::Buffer, u64, Option<wgpu::BufferSize>)>,
}

/// Bind groups kept from step to step. A decode step binds the same
/// buffers in the same order every token, and making ~500 bind groups per
/// token was over half of the host's recording time. The per-dispatch
/// params live in one persistent uniform buffer, bound at a dynamic offset.
/// Owned by whoever owns the bound buffers (a session's backend), so that
/// cached groups never keep freed buffers alive for long; a plain
/// [`GpuContext::step`] uses a fresh one.
#[derive(Clone, Default)]
pub struct BindCache {
    inner: Arc<Mutex<BindCacheInner>>,
}

#[derive(Default)]
struct BindCacheInner {
    /// The params buffer of each part of a step.
    params: Vec<Option<wgpu::Buffer>>,
    groups: HashMap<BindKey, wgpu::BindGroup>,
    /// `by_ordinal[part][i]`: the bind group of the i-th dispatch of that
    /// part last time. A decode step binds what the previous token bound,
    /// so this is checked first: compared, not hashed, and nothing allocated.
    by_ordinal: Vec<Vec<Option<(BindKey, wgpu::BindGroup)>>>,
    /// Where the norms write int8 activation blocks (their Q8 epilogue):
    /// one buffer for every such norm of every step, so that their bind
    /// groups and their products' stay the same from token to token. Each
    /// norm's blocks are read by the products right after it, and the GPU
    /// runs a step's dispatches, and its parts, in order.
    int8_blocks: Option<wgpu::Buffer>,
}

impl BindKey {
    /// Whether this key is the one of a dispatch with these parts.
    fn matches(&self, layout: &wgpu::BindGroupLayout, params_size: u64, buffers: &Bounds) -> bool {
        self.params_size == params_size
            && self.layout == *layout
            && self.buffers.len() == buffers.iter().count()
            && self.buffers.iter().zip(buffers.iter()).all(|(k, b)| {
                k.0 == b.binding && k.1 == b.buffer && k.2 == b.offset && k.3 == b.size
            })
    }
}

/// Dispatches timed per submit while profiling (the rest run untimed).
const MAX_TIMED_DISPATCHES: usize = 2048;

/// Bytes of weights a matrix kernel reads: its binding 1 (0 for other kernels).
fn weight_bytes(kernel: Kernel, buffers: &Bounds) -> u64 {
    match kernel {
        Kernel::Matvec(..)
        | Kernel::MatvecI8(..)
        | Kernel::MatvecRows(..)
        | Kernel::Matmul(..)
        | Kernel::MatmulNarrow(..)
        | Kernel::MatmulRows(..) => {
            buffers.iter().find(|b| b.binding == 1).map_or(0, |b| {
                b.size.map_or(b.buffer.size() - b.offset, |s| s.get())
            })
        }
        _ => 0,
    }
}

/// Past this many groups the cache starts over (prefill windows and
/// scratch buffers can add keys; decode needs a few hundred).
const MAX_CACHED_BIND_GROUPS: usize = 8192;

impl BindCache {
    /// Number of cached bind groups.
    pub fn len(&self) -> usize {
        self.inner.lock().map_or(0, |c| c.groups.len())
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The ops of one forward step, recorded then submitted as one command
/// buffer. Nothing runs until [`GpuStep::submit`].
pub struct GpuStep {
    ctx: GpuContext,
    binds: BindCache,
    /// Part of the forward step (see [`GpuContext::step_part`]).
    part: usize,
    cmds: Vec<Cmd>,
    /// Uniform params of every dispatch, each at an aligned offset.
    params: Vec<u8>,
    /// Scratch buffers that must live until the submit.
    scratch: Vec<GpuBuffer>,
    /// When the first dispatch was recorded (for [`GpuStats::record`]).
    started: Option<std::time::Instant>,
    /// Dispatches and reads recorded (checked after every op when a step is
    /// submitted in parts).
    n_dispatches: usize,
    n_reads: usize,
    /// The int8 blocks of an activation buffer made by the op that wrote it
    /// (a norm's Q8 epilogue, or [`GpuStep::quantize_q8`]): valid until the
    /// next op that may write a buffer; the matrix products keep it.
    q8_acts: Option<Q8Acts>,
}

/// Activations `x` as int8 blocks `q` (the layout of `q8_block.wgsl`).
struct Q8Acts {
    x: wgpu::Buffer,
    q: wgpu::Buffer,
    n_blocks: usize,
}

impl GpuContext {
    /// Starts recording a step.
    pub fn step(&self) -> GpuStep {
        self.step_cached(&BindCache::default())
    }

    /// Starts recording a step that reuses (and adds to) `binds`' bind groups.
    pub fn step_cached(&self, binds: &BindCache) -> GpuStep {
        self.step_part(binds, 0)
    }

    /// [`GpuContext::step_cached`] for part `part` of a forward step that is
    /// submitted in several parts ([`GpuStep::submit_no_wait`]); each part
    /// keeps its own params buffer and bind groups.
    pub fn step_part(&self, binds: &BindCache, part: usize) -> GpuStep {
        GpuStep {
            ctx: self.clone(),
            binds: binds.clone(),
            part,
            cmds: Vec::new(),
            params: Vec::new(),
            scratch: Vec::new(),
            started: None,
            n_dispatches: 0,
            n_reads: 0,
            q8_acts: None,
        }
    }
}

impl GpuStep {
    /// The context this step records for.
    pub fn context(&self) -> &GpuContext {
        &self.ctx
    }

    /// Records a dispatch of `kernel` with params `p` (binding 0) and
    /// `buffers` at their binding numbers.
    fn dispatch<P: bytemuck::Pod>(
        &mut self,
        kernel: Kernel,
        p: &P,
        buffers: &[(u32, &wgpu::Buffer)],
        groups: [u32; 3],
    ) -> Result<(), KernelError> {
        if buffers.len() > MAX_BOUND {
            return Err(KernelError::Gpu(format!("{kernel:?} binds {} buffers", buffers.len())));
        }
        let dummy = self.ctx.inner.dummy.clone();
        let mut whole = [(0, &dummy, 0, None); MAX_BOUND];
        for (w, &(i, b)) in whole.iter_mut().zip(buffers) {
            *w = (i, b, 0, None);
        }
        self.dispatch_ranges(kernel, p, &whole[..buffers.len()], groups)
    }

    /// [`GpuStep::dispatch`] with `(binding, buffer, byte offset, byte size)`
    /// ranges (`None` = to the end).
    fn dispatch_ranges<P: bytemuck::Pod>(
        &mut self,
        kernel: Kernel,
        p: &P,
        buffers: &[(u32, &wgpu::Buffer, u64, Option<u64>)],
        groups: [u32; 3],
    ) -> Result<(), KernelError> {
        if groups.contains(&0) {
            return Ok(());
        }
        let max = self.ctx.inner.limits.max_compute_workgroups_per_dimension;
        if groups.iter().any(|&g| g > max) {
            return Err(KernelError::Gpu(format!(
                "dispatch {groups:?} of {kernel:?} exceeds {max} workgroups"
            )));
        }
        if buffers.len() > MAX_BOUND {
            return Err(KernelError::Gpu(format!("{kernel:?} binds {} buffers", buffers.len())));
        }
        let pipeline = self.ctx.pipeline(kernel)?;
        // A dispatch may overwrite the buffer whose int8 blocks are kept.
        self.q8_acts = None;
        let align = self
            .ctx
            .inner
            .limits
            .min_uniform_buffer_offset_alignment
            .max(16) as usize;
        let off = self.params.len().div_ceil(align) * align;
        let bytes = bytemuck::bytes_of(p);
        self.params.resize(off, 0);
        self.params.extend_from_slice(bytes);
        let mut bounds = Bounds(Default::default());
        for (slot, &(binding, b, offset, size)) in bounds.0.iter_mut().zip(buffers) {
            *slot = Some(Bound {
                binding,
                buffer: b.clone(),
                offset,
                size: size.and_then(wgpu::BufferSize::new),
            });
        }
        self.n_dispatches += 1;
        if self.cmds.is_empty() {
            self.started = Some(std::time::Instant::now());
        }
        self.cmds.push(Cmd::Dispatch {
            kernel,
            pipeline,
            buffers: bounds,
            params: (off as u64, bytes.len() as u64),
            groups,
        });
        Ok(())
    }

    /// Workgroup counts for `n` workgroups laid along x then y.
    fn groups_2d(&self, n: usize) -> Result<[u32; 3], KernelError> {
        let max = self.ctx.inner.limits.max_compute_workgroups_per_dimension as usize;
        let x = n.min(max);
        let y = if n == 0 { 0 } else { n.div_ceil(max) };
        if y > max {
            return Err(KernelError::Gpu(format!(
                "{n} workgroups exceed the dispatch limit"
            )));
        }
        Ok([x as u32, y as u32, 1])
    }

    /// Marks `buf` to be copied back at submit; reads come back in order.
    pub fn read(&mut self, buf: &GpuBuffer) {
        self.n_reads += 1;
        self.cmds.push(Cmd::Read {
            src: buf.raw().clone(),
            bytes: buf.len as u64 * 4,
        });
    }

    /// Marks the first `n` values of `buf` to be copied back at submit (a
    /// prefix of a buffer sized for a whole batch).
    pub fn read_n(&mut self, buf: &GpuBuffer, n: usize) -> Result<(), KernelError> {
        if n > buf.len {
            return Err(KernelError::Shape {
                op: "gpu read",
                detail: format!("{n} values asked from a buffer of {}", buf.len),
            });
        }
        self.n_reads += 1;
        self.cmds.push(Cmd::Read {
            src: buf.raw().clone(),
            bytes: n as u64 * 4,
        });
        Ok(())
    }

    /// Copies `n` values from `src[src_off..]` to `dst[dst_off..]` in order
    /// with the other recorded ops. `src` and `dst` must be distinct buffers.
    pub fn copy(
        &mut self,
        src: &GpuBuffer,
        src_off: usize,
        dst: &GpuBuffer,
        dst_off: usize,
        n: usize,
    ) -> Result<(), KernelError> {
        if src_off + n > src.len || dst_off + n > dst.len {
            return Err(KernelError::Shape {
                op: "gpu copy",
                detail: format!(
                    "{n} values from {src_off} of {} into {dst_off} of {}",
                    src.len, dst.len
                ),
            });
        }
        if n > 0 {
            self.q8_acts = None;
            self.cmds.push(Cmd::Copy {
                src: src.raw().clone(),
                src_off: src_off as u64 * 4,
                dst: dst.raw().clone(),
                dst_off: dst_off as u64 * 4,
                bytes: n as u64 * 4,
            });
        }
        Ok(())
    }

    /// The buffer of the norms' int8 blocks ([`BindCacheInner::int8_blocks`]),
    /// at least `words` long: grown (a new buffer) when too short.
    fn int8_blocks_buffer(&mut self, words: usize) -> Result<wgpu::Buffer, KernelError> {
        let bytes = (words as u64 * 4).div_ceil(16).max(1) * 16;
        let mut c = self.binds.inner.lock().map_err(|_| KernelError::Gpu("bind cache lock poisoned".into()))?;
        if let Some(b) = c.int8_blocks.as_ref().filter(|b| b.size() >= bytes) {
            return Ok(b.clone());
        }
        if bytes > self.ctx.max_storage_binding() {
            return Err(KernelError::Gpu(format!("int8 activation blocks of {bytes} bytes exceed the storage binding limit")));
        }
        let b = self.ctx.inner.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("int8 activations"),
            size: bytes,
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        });
        c.int8_blocks = Some(b.clone());
        Ok(b)
    }

    /// Whether nothing has been recorded since the step began.
    pub fn is_empty(&self) -> bool {
        self.cmds.is_empty()
    }
}
