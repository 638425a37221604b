//! The matrix products a [`GpuStep`] records, with their epilogues: a bias,
//! a residual add, rows split over several outputs (q|k|v, gate|up uploaded
//! as one weight) and the gated activation, each done by the kernel that
//! computes the rows instead of a dispatch of its own.

use bytemuck::{Pod, Zeroable};

use super::context::UNIFORM_WINDOW;
use super::ops::{need, shape_err, u32_of};
use super::shaders::{Epilogue, GateAct, Kernel, Store};
use super::{GpuBuffer, GpuStep, GpuWeight};
use crate::KernelError;

/// Batches up to this many tokens take the 64 x 16 f32 tiles
/// (`Kernel::MatmulNarrow`): a 64-token tile would waste most of its work
/// on them, and they stay in f32 like the matvec a lone token takes.
const NARROW_MAX_TOKENS: usize = 16;

/// The twin of `MatParams` in `mat_out.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct MatParams {
    rows: u32,
    cols: u32,
    n_tokens: u32,
    row0: u32,
    out_rows: u32,
    scale_off: u32,
    /// First output token of the dispatch (the CPU-device kernels' windows).
    tok0: u32,
    split1: u32,
    split2: u32,
    /// The RMSNorm epsilon of a fused output norm.
    eps: f32,
    _pad1: u32,
    _pad2: u32,
}

/// The twin of `QuantizeParams` in `quantize_q8.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct QuantizeParams {
    n_blocks: u32,
    _pad: [u32; 3],
}

/// Where the rows of a matrix product go ([`GpuStep::matmul_to`]).
#[derive(Clone, Copy)]
pub enum MatOut<'a> {
    /// `out = W·x`.
    Set(&'a GpuBuffer),
    /// `out += W·x` (a residual add fused into the product).
    Acc(&'a GpuBuffer),
    /// Consecutive row ranges of `W` to their own buffers, each
    /// `[n_tokens][its rows]`: `(buffer, rows)` pairs (two or three) whose
    /// rows add up to `W`'s.
    Split(&'a [(&'a GpuBuffer, usize)]),
    /// `W` = `[gate; up]` (half the rows each): `out = act(gate·x) * (up·x)`,
    /// `[n_tokens][rows / 2]`, for one token (the decode kernels).
    Gated(&'a GpuBuffer, GateAct),
}

/// What a product does beside its store: add a per-row bias (if any), or
/// RMS-norm `x` first (weight, eps: the output head of one token).
#[derive(Clone, Copy)]
enum Extra<'a> {
    Bias(Option<&'a GpuBuffer>),
    Norm(&'a GpuBuffer, f32),
}

/// The resolved epilogue of one product: store, output buffers of
/// bindings 3..=5, split points, output row stride and rows per thread set.
struct Plan<'a> {
    store: Store,
    outs: [Option<&'a GpuBuffer>; 3],
    split: [u32; 2],
    out_rows: u32,
}

fn plan<'a>(w: &GpuWeight, n_tokens: usize, out: MatOut<'a>) -> Result<Plan<'a>, KernelError> {
    const OP: &str = "gpu matmul";
    let rows = u32_of(OP, w.rows)?;
    let single = |store, o: &'a GpuBuffer| -> Result<Plan<'a>, KernelError> {
        need(OP, "out", o, n_tokens * w.rows)?;
        Ok(Plan { store, outs: [Some(o), None, None], split: [0, 0], out_rows: rows })
    };
    match out {
        MatOut::Set(o) => single(Store::Set, o),
        MatOut::Acc(o) => single(Store::Acc, o),
        MatOut::Split(list) => {
            let total: usize = list.iter().map(|l| l.1).sum();
            if !(2..=3).contains(&list.len()) || total != w.rows {
                let got: Vec<usize> = list.iter().map(|l| l.1).collect();
                return Err(shape_err(OP, format!("split of {} rows into {got:?}", w.rows)));
            }
            let mut outs = [None; 3];
            for (i, &(b, n)) in list.iter().enumerate() {
                need(OP, "split output", b, n_tokens * n)?;
                outs[i] = Some(b);
            }
            let split1 = u32_of(OP, list[0].1)?;
            let split2 = if list.len() == 3 { split1 + u32_of(OP, list[1].1)? } else { rows };
            Ok(Plan { store: Store::Split, outs, split: [split1, split2], out_rows: rows })
        }
        MatOut::Gated(o, act) => {
            if n_tokens != 1 || w.rows % 2 != 0 || w.parts.len() != 1 {
                return Err(shape_err(
                    OP,
                    format!("gated product of {} tokens on {} rows in {} parts", n_tokens, w.rows, w.parts.len()),
                ));
            }
            need(OP, "out", o, w.rows / 2)?;
            Ok(Plan { store: Store::Gated(act), outs: [Some(o), None, None], split: [0, 0], out_rows: rows / 2 })
        }
    }
}

impl GpuStep {
    /// `out[t*rows + r] = Σ_c W[r][c]·x[t*cols + c]` for `n_tokens` tokens:
    /// the matvec kernel for one token, the tiled matmul for more; with the
    /// CPU-device kernels ([`super::GpuContext::set_cpu_device_kernels`])
    /// their row-per-thread twins instead.
    pub fn matmul(&mut self, w: &GpuWeight, x: &GpuBuffer, n_tokens: usize, out: &GpuBuffer) -> Result<(), KernelError> {
        self.matmul_to(w, x, n_tokens, MatOut::Set(out), None)
    }

    /// [`GpuStep::matmul`] with its rows going where `out` says, plus
    /// `bias[r]` (one value per row of `W`) when given. Each output value is
    /// the same dot product as [`GpuStep::matmul`]'s, finished in the kernel.
    pub fn matmul_to(
        &mut self,
        w: &GpuWeight,
        x: &GpuBuffer,
        n_tokens: usize,
        out: MatOut,
        bias: Option<&GpuBuffer>,
    ) -> Result<(), KernelError> {
        self.product(w, x, n_tokens, out, Extra::Bias(bias))
    }

    /// The output head of one token with its RMSNorm fused in:
    /// `out[r] = Σ_c W[r][c]·g[c]·x[c] / sqrt(mean(x²) + eps)`, `x` the raw
    /// residual (`W.cols` values) and `g` the norm weight, as
    /// [`GpuStep::rmsnorm`] then [`GpuStep::matmul`] up to f32 rounding but
    /// one dispatch: each thread or workgroup sums x² from the loads its
    /// dot products make anyway. (The CPU-device kernels read `g` through a
    /// uniform window like `x`, so it needs the same slack as a pooled buffer.)
    pub fn matvec_rmsnorm(
        &mut self,
        w: &GpuWeight,
        x: &GpuBuffer,
        g: &GpuBuffer,
        eps: f32,
        out: &GpuBuffer,
    ) -> Result<(), KernelError> {
        need("gpu matvec_rmsnorm", "norm weight", g, w.cols)?;
        self.product(w, x, 1, MatOut::Set(out), Extra::Norm(g, eps))
    }

    /// [`GpuStep::matmul_to`] with a bias, or with the output norm fused in.
    fn product(&mut self, w: &GpuWeight, x: &GpuBuffer, n_tokens: usize, out: MatOut, extra: Extra) -> Result<(), KernelError> {
        const OP: &str = "gpu matmul";
        let (bias, norm) = match extra {
            Extra::Bias(b) => (b, None),
            Extra::Norm(g, eps) => (None, Some((g, eps))),
        };
        need(OP, "x", x, n_tokens * w.cols)?;
        if let Some(b) = bias {
            need(OP, "bias", b, w.rows)?;
        }
        let plan = plan(w, n_tokens, out)?;
        if bias.is_some() && matches!(plan.store, Store::Gated(_)) {
            return Err(shape_err(OP, "a bias on a gated product".into()));
        }
        if norm.is_some() && (n_tokens != 1 || plan.store != Store::Set || bias.is_some()) {
            return Err(shape_err(OP, "a fused norm on more than a plain product of one token".into()));
        }
        let epi = Epilogue { store: plan.store, bias: bias.is_some(), norm: norm.is_some() };
        let gated = matches!(plan.store, Store::Gated(_));
        let dummy = self.ctx.inner.dummy.clone();
        let raw = |i: usize| plan.outs[i].map_or(&dummy, |b| b.raw());
        let ux = self.rows_kernels_fit(w, x, n_tokens) && norm.is_none_or(|(g, _)| self.uniform_window_fits(g, 0));
        let row_bytes = w.cols as u64 * 4;
        // The CPU-device kernels read x in uniform windows of whole tokens.
        let per_window = if ux { (UNIFORM_WINDOW / row_bytes) as usize } else { n_tokens.max(1) };
        let matvec_rows = self.ctx.matvec_shape().rows as usize;
        // The integer-dot matvec reads x as the int8 blocks that the op
        // producing x wrote (a norm's Q8 epilogue); other products run on f32.
        let kept = self.q8_acts.take();
        let xq = kept
            .as_ref()
            .filter(|q| q.x == *x.raw() && q.n_blocks * 32 == w.cols)
            .filter(|_| !ux && norm.is_none() && n_tokens == 1 && self.ctx.int_dot_for(w.ty, w.cols))
            .map(|q| q.q.clone());
        let mut t0 = 0;
        while t0 < n_tokens {
            let nt = per_window.min(n_tokens - t0);
            let x_bind = match (&xq, ux) {
                (Some(q), _) => (2, q, 0, None),
                (None, true) => (2, x.raw(), t0 as u64 * row_bytes, Some(UNIFORM_WINDOW)),
                (None, false) => (2, x.raw(), 0, None),
            };
            for part in &w.parts {
                let rows = if gated { part.rows / 2 } else { part.rows };
                let p = MatParams {
                    rows,
                    cols: u32_of(OP, w.cols)?,
                    n_tokens: u32_of(OP, nt)?,
                    row0: part.row0,
                    out_rows: plan.out_rows,
                    scale_off: part.scale_off,
                    tok0: u32_of(OP, t0)?,
                    split1: plan.split[0],
                    split2: plan.split[1],
                    eps: norm.map_or(0.0, |n| n.1),
                    _pad1: 0,
                    _pad2: 0,
                };
                let (kernel, groups) = match (ux, n_tokens == 1) {
                    (true, true) => (Kernel::MatvecRows(w.ty, epi), self.groups_2d((rows as usize).div_ceil(64))?),
                    (true, false) => (Kernel::MatmulRows(w.ty, epi), [rows.div_ceil(64), u32_of(OP, nt.div_ceil(4))?, 1]),
                    (false, true) => {
                        let k = if xq.is_some() { Kernel::MatvecI8(w.ty, epi) } else { Kernel::Matvec(w.ty, epi) };
                        (k, self.groups_2d((rows as usize).div_ceil(matvec_rows))?)
                    }
                    (false, false) if nt <= NARROW_MAX_TOKENS => {
                        (Kernel::MatmulNarrow(w.ty, epi), [rows.div_ceil(64), u32_of(OP, nt.div_ceil(16))?, 1])
                    }
                    (false, false) => (Kernel::Matmul(w.ty, epi), [rows.div_ceil(64), u32_of(OP, nt.div_ceil(64))?, 1]),
                };
                // Bindings 1..=3, then the split outputs and the bias where used.
                let mut bound = [(1, &part.buffer, 0, None), x_bind, (3, raw(0), 0, None), (0, &dummy, 0, None), (0, &dummy, 0, None), (0, &dummy, 0, None)];
                let mut n = 3;
                if plan.store == Store::Split {
                    bound[3] = (4, raw(1), 0, None);
                    bound[4] = (5, raw(2), 0, None);
                    n = 5;
                }
                if let Some(b) = bias {
                    bound[n] = (6, b.raw(), 0, None);
                    n += 1;
                }
                if let Some((g, _)) = norm {
                    bound[n] = (7, g.raw(), 0, ux.then_some(UNIFORM_WINDOW));
                    n += 1;
                }
                self.dispatch_ranges(kernel, &p, &bound[..n], groups)?;
            }
            t0 += nt;
        }
        // A product does not write x: its blocks stay good for the next one.
        if kept.as_ref().is_some_and(|q| q.x == *x.raw()) {
            self.q8_acts = kept;
        }
        Ok(())
    }

    /// One token's `cols` activations in `x` as int8 blocks of 32 with an
    /// f32 scale each (`quantize_q8.wgsl`), kept for the products on `x`
    /// that follow, as a norm's Q8 epilogue keeps them. The decode step
    /// does not need it (its int-dot products read the norms' blocks); it
    /// is for an `x` no norm produced, and for tests.
    pub fn quantize_q8(&mut self, x: &GpuBuffer, cols: usize) -> Result<(), KernelError> {
        const OP: &str = "gpu quantize_q8";
        need(OP, "x", x, cols)?;
        if !cols.is_multiple_of(32) {
            return Err(shape_err(OP, format!("{cols} values are not whole blocks of 32")));
        }
        let n_blocks = cols / 32;
        let xq = self.ctx.buffer(n_blocks * 9)?;
        let p = QuantizeParams { n_blocks: u32_of(OP, n_blocks)?, _pad: [0; 3] };
        let groups = self.groups_2d(n_blocks.div_ceil(64))?;
        self.dispatch(Kernel::QuantizeQ8, &p, &[(1, x.raw()), (2, xq.raw())], groups)?;
        self.q8_acts = Some(super::Q8Acts { x: x.raw().clone(), q: xq.raw().clone(), n_blocks });
        self.scratch.push(xq);
        Ok(())
    }

    /// Whether int8 blocks made by the last op are kept for the products
    /// that may follow: a step submitted in parts should not end here, or
    /// those products would run on f32 in the next part.
    pub fn keeps_int8_blocks(&self) -> bool {
        self.q8_acts.is_some()
    }

    /// Marks the int8 blocks kept for `x` ([`GpuStep::quantize_q8`], a
    /// norm's epilogue) to be read back at submit: per block 8 words of
    /// four i8, then one f32 scale per block. An error when none are kept.
    pub fn read_q8(&mut self, x: &GpuBuffer) -> Result<(), KernelError> {
        let q = self.q8_acts.as_ref().filter(|q| q.x == *x.raw()).ok_or_else(|| {
            shape_err("gpu read_q8", "no int8 blocks of this buffer are kept (no Q8 norm or quantize_q8 wrote it last)".into())
        })?;
        let (src, bytes) = (q.q.clone(), q.n_blocks as u64 * 36);
        self.n_reads += 1;
        self.cmds.push(super::Cmd::Read { src, bytes });
        Ok(())
    }

    /// Whether the CPU-device kernels are chosen and can read `x` through
    /// uniform windows: a token's row fits one window, windows start at
    /// aligned offsets, and the buffer has the window's slack past its end
    /// (see `GpuContext::raw_buffer_for`). Otherwise the real-GPU kernels run.
    fn rows_kernels_fit(&self, w: &GpuWeight, x: &GpuBuffer, n_tokens: usize) -> bool {
        let lim = &self.ctx.inner.limits;
        let row_bytes = w.cols as u64 * 4;
        let last_window = (n_tokens.max(1) as u64 - 1) * row_bytes;
        self.ctx.uses_cpu_device_kernels()
            && lim.max_uniform_buffer_binding_size >= UNIFORM_WINDOW
            && row_bytes <= UNIFORM_WINDOW
            && (n_tokens == 1 || row_bytes % lim.min_uniform_buffer_offset_alignment as u64 == 0)
            && self.uniform_window_fits(x, last_window)
    }

    /// Whether `b` can be bound as a uniform window at byte offset `at`.
    fn uniform_window_fits(&self, b: &GpuBuffer, at: u64) -> bool {
        b.raw().usage().contains(wgpu::BufferUsages::UNIFORM) && b.raw().size() >= at + UNIFORM_WINDOW
    }
}
