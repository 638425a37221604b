//! The ops a [`GpuStep`] records. Each params struct is the twin of the
//! WGSL struct of the same name in `kernels/src/wgsl/`.

use bytemuck::{Pod, Zeroable};

use super::attention::GpuKvCache;
use super::shaders::Kernel;
use super::{GpuBuffer, GpuStep, GpuWeight};
use crate::KernelError;

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct RowsParams {
    rows: u32,
    cols: u32,
    n_ids: u32,
    row0: u32,
    scale_off: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct NormParams {
    rows: u32,
    dim: u32,
    eps: f32,
    _pad0: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct RopeParams {
    n_tokens: u32,
    n_heads: u32,
    head_dim: u32,
    pos0: u32,
    base: f32,
    neox: u32,
    freq_scale: f32,
    /// Heads of the second buffer of `rope_pair`.
    n_heads2: u32,
    n_rot: u32,
    mscale: f32,
    use_mult: u32,
    /// First token row of the rotated segment.
    tok0: u32,
    /// Cache row of the segment's first token (`rope_kv`).
    kv_row0: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct EltParams {
    n: u32,
    scale: f32,
    width: u32,
    a_off: u32,
    out_off: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

/// The rotation shared by the buffers of one RoPE dispatch: pair `i` of
/// the first `n_rot` dims of each head turns by
/// `pos · base^(-2i/n_rot) · freq_scale · mult[i]` (`mult` 1 when absent),
/// cosine and sine scaled by `mscale`.
#[derive(Clone, Copy)]
pub struct RopeShape<'a> {
    /// Rows `tok0..tok0 + n_tokens` of the buffers, at positions `pos0..`.
    pub tok0: usize,
    pub n_tokens: usize,
    pub head_dim: usize,
    pub n_rot: usize,
    pub pos0: usize,
    pub base: f32,
    pub freq_scale: f32,
    pub neox: bool,
    pub mscale: f32,
    /// Per-pair multipliers (`n_rot / 2` values).
    pub mult: Option<&'a GpuBuffer>,
}

/// Shared by softmax and argmax.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct RowParams {
    rows: u32,
    dim: u32,
    _pad0: u32,
    _pad1: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct KvParams {
    n_tokens: u32,
    kv_dim: u32,
    pos0: u32,
    tok0: u32,
}

pub(super) fn shape_err(op: &'static str, detail: String) -> KernelError {
    KernelError::Shape { op, detail }
}

pub(super) fn need(op: &'static str, what: &str, buf: &GpuBuffer, n: usize) -> Result<(), KernelError> {
    if buf.len() < n {
        return Err(shape_err(
            op,
            format!("{what} holds {} values, needs {n}", buf.len()),
        ));
    }
    Ok(())
}

pub(super) fn u32_of(op: &'static str, v: usize) -> Result<u32, KernelError> {
    u32::try_from(v).map_err(|_| shape_err(op, format!("{v} does not fit in u32")))
}

impl GpuStep {
    /// Embedding lookup: `out[t*cols..][..cols]` = row `ids[t]` of `w`,
    /// dequantized, for `n_ids` token ids (u32) in `ids`.
    pub fn get_rows(
        &mut self,
        w: &GpuWeight,
        ids: &GpuBuffer,
        n_ids: usize,
        out: &GpuBuffer,
    ) -> Result<(), KernelError> {
        const OP: &str = "gpu get_rows";
        need(OP, "ids", ids, n_ids)?;
        need(OP, "out", out, n_ids * w.cols)?;
        for part in &w.parts {
            let p = RowsParams {
                rows: part.rows,
                cols: u32_of(OP, w.cols)?,
                n_ids: u32_of(OP, n_ids)?,
                row0: part.row0,
                scale_off: part.scale_off,
                _pad0: 0,
                _pad1: 0,
                _pad2: 0,
            };
            let groups = [
                u32_of(OP, (w.cols / 4).div_ceil(64))?,
                u32_of(OP, n_ids)?,
                1,
            ];
            self.dispatch(
                Kernel::GetRows(w.ty),
                &p,
                &[(1, &part.buffer), (2, ids.raw()), (3, out.raw())],
                groups,
            )?;
        }
        Ok(())
    }

    /// RMSNorm of `rows` rows of `dim` values: `out = x / rms(x) * weight`.
    /// Also the per-head Q/K norm (rows = n_tokens * n_heads, dim = head_dim).
    pub fn rmsnorm(
        &mut self,
        x: &GpuBuffer,
        weight: &GpuBuffer,
        rows: usize,
        dim: usize,
        eps: f32,
        out: &GpuBuffer,
    ) -> Result<(), KernelError> {
        let rows_of = [(1, "x", x), (3, "out", out)];
        let kernel = if self.norm_writes_q8(rows, dim) { Kernel::RmsNormQ8 } else { Kernel::RmsNorm };
        self.norm(kernel, "gpu rmsnorm", weight, (rows, dim, eps), &rows_of)
    }

    /// Whether a norm of `rows` rows of `dim` also writes them as int8
    /// blocks (`Q8` of rmsnorm.wgsl): one token whose products may run on
    /// int8 activations ([`GpuContext::int_dot_for`]). Those products
    /// ([`GpuStep::matmul_to`] on `out`) then read the blocks.
    fn norm_writes_q8(&self, rows: usize, dim: usize) -> bool {
        rows == 1 && dim.is_multiple_of(32) && self.ctx.int_dot_for_cols(dim)
    }

    /// The residual add and the next norm in one dispatch:
    /// `acc += x`, then `out = rmsnorm(acc) * weight` (as [`GpuStep::add`]
    /// then [`GpuStep::rmsnorm`]).
    #[allow(clippy::too_many_arguments)]
    pub fn add_rmsnorm(
        &mut self,
        acc: &GpuBuffer,
        x: &GpuBuffer,
        weight: &GpuBuffer,
        rows: usize,
        dim: usize,
        eps: f32,
        out: &GpuBuffer,
    ) -> Result<(), KernelError> {
        let rows_of = [(1, "x", x), (3, "out", out), (4, "acc", acc)];
        let kernel = if self.norm_writes_q8(rows, dim) { Kernel::RmsNormAddQ8 } else { Kernel::RmsNormAdd };
        self.norm(kernel, "gpu add_rmsnorm", weight, (rows, dim, eps), &rows_of)
    }

    /// RMSNorm of `x` in place (gemma3's per-head and post norms).
    pub fn rmsnorm_inplace(
        &mut self,
        x: &GpuBuffer,
        weight: &GpuBuffer,
        rows: usize,
        dim: usize,
        eps: f32,
    ) -> Result<(), KernelError> {
        let rows_of = [(3, "x", x)];
        self.norm(
            Kernel::RmsNormInPlace,
            "gpu rmsnorm_inplace",
            weight,
            (rows, dim, eps),
            &rows_of,
        )
    }

    /// One norm-family dispatch: `weight` (`dim` values) at binding 2 and
    /// each `(binding, name, buffer)` of `rows * dim` values; one workgroup per row.
    fn norm(
        &mut self,
        kernel: Kernel,
        op: &'static str,
        weight: &GpuBuffer,
        (rows, dim, eps): (usize, usize, f32),
        rows_of: &[(u32, &'static str, &GpuBuffer)],
    ) -> Result<(), KernelError> {
        need(op, "weight", weight, dim)?;
        for &(_, name, b) in rows_of {
            need(op, name, b, rows * dim)?;
        }
        let p = NormParams {
            rows: u32_of(op, rows)?,
            dim: u32_of(op, dim)?,
            eps,
            _pad0: 0,
        };
        let groups = self.groups_2d(rows)?;
        let mut bound: Vec<(u32, &wgpu::Buffer)> = vec![(2, weight.raw())];
        bound.extend(rows_of.iter().map(|&(i, _, b)| (i, b.raw())));
        if !matches!(kernel, Kernel::RmsNormQ8 | Kernel::RmsNormAddQ8) {
            return self.dispatch(kernel, &p, &bound, groups);
        }
        // The int8 blocks of `out` (binding 3), for the products that read it.
        let out = rows_of.iter().find(|r| r.0 == 3).map(|r| r.2.raw().clone());
        let xq = self.int8_blocks_buffer(rows * dim / 32 * 9)?;
        bound.push((5, &xq));
        self.dispatch(kernel, &p, &bound, groups)?;
        if let Some(out) = out {
            self.q8_acts = Some(super::Q8Acts { x: out, q: xq, n_blocks: rows * dim / 32 });
        }
        Ok(())
    }

    /// RoPE in place on `x` = `[n_tokens][n_heads][head_dim]`, token t at
    /// position `pos0 + t`, over the full head, unscaled; `neox` selects the
    /// half-split pairing.
    #[allow(clippy::too_many_arguments)]
    pub fn rope(
        &mut self,
        x: &GpuBuffer,
        n_tokens: usize,
        n_heads: usize,
        head_dim: usize,
        pos0: usize,
        base: f32,
        neox: bool,
    ) -> Result<(), KernelError> {
        let shape = RopeShape {
            tok0: 0,
            n_tokens,
            head_dim,
            n_rot: head_dim,
            pos0,
            base,
            freq_scale: 1.0,
            neox,
            mscale: 1.0,
            mult: None,
        };
        self.rope_with(x, n_heads, shape)
    }

    /// RoPE in place on `x` (`n_heads` heads) as `shape` says.
    pub fn rope_with(&mut self, x: &GpuBuffer, n_heads: usize, shape: RopeShape) -> Result<(), KernelError> {
        self.rope_dispatch("gpu rope", &[(x, n_heads)], shape)
    }

    /// [`GpuStep::rope_with`] on queries `q` (`n_heads` heads) and keys
    /// `k` (`n_kv_heads` heads) in one dispatch; the same rotation as two.
    pub fn rope_pair(
        &mut self,
        q: &GpuBuffer,
        k: &GpuBuffer,
        (n_heads, n_kv_heads): (usize, usize),
        shape: RopeShape,
    ) -> Result<(), KernelError> {
        self.rope_dispatch("gpu rope_pair", &[(q, n_heads), (k, n_kv_heads)], shape)
    }

    /// Whether [`GpuStep::rope_kv`] takes `shape`: NEOX pairs a value with
    /// one `n_rot / 2` ahead, and each thread owns two whole cache words.
    pub fn rope_kv_fits(shape: &RopeShape) -> bool {
        !shape.neox || shape.n_rot % 4 == 0
    }

    /// [`GpuStep::rope_pair`] that also writes the rotated keys and the
    /// values `v` (rows `tok0..` of `k` and `v`) into `cache` at rows
    /// `kv_row0..`: RoPE and [`GpuStep::kv_write_rows`] in one dispatch.
    #[allow(clippy::too_many_arguments)]
    pub fn rope_kv(
        &mut self,
        q: &GpuBuffer,
        k: &GpuBuffer,
        v: &GpuBuffer,
        cache: &GpuKvCache,
        (n_heads, n_kv_heads): (usize, usize),
        s: RopeShape,
        kv_row0: usize,
    ) -> Result<(), KernelError> {
        const OP: &str = "gpu rope_kv";
        if !Self::rope_kv_fits(&s) || n_kv_heads * s.head_dim != cache.kv_dim {
            return Err(shape_err(
                OP,
                format!("{n_kv_heads} kv heads of {} (n_rot {}, neox {}) for cache rows of {}", s.head_dim, s.n_rot, s.neox, cache.kv_dim),
            ));
        }
        need(OP, "v", v, (s.tok0 + s.n_tokens) * cache.kv_dim)?;
        if kv_row0 + s.n_tokens > cache.max_ctx {
            return Err(shape_err(OP, format!("rows {kv_row0}..{} past the cache's {}", kv_row0 + s.n_tokens, cache.max_ctx)));
        }
        let mut p = self.rope_params(OP, &[(q, n_heads), (k, n_kv_heads)], &s)?;
        p.kv_row0 = u32_of(OP, kv_row0)?;
        let threads = s.n_tokens * (n_heads * s.n_rot / 2 + n_kv_heads * s.head_dim / 2);
        let groups = self.groups_2d(threads.div_ceil(64))?;
        let dummy = self.ctx.inner.dummy.clone();
        let mult = s.mult.map_or(&dummy, |m| m.raw());
        self.dispatch(
            Kernel::RopeKv,
            &p,
            &[(1, q.raw()), (2, k.raw()), (3, mult), (4, v.raw()), (5, &cache.k), (6, &cache.v)],
            groups,
        )
    }

    /// RoPE over one buffer (`Rope`) or two (`RopePair`), each with its heads.
    fn rope_dispatch(
        &mut self,
        op: &'static str,
        xs: &[(&GpuBuffer, usize)],
        s: RopeShape,
    ) -> Result<(), KernelError> {
        let p = self.rope_params(op, xs, &s)?;
        let heads = |i: usize| xs.get(i).map_or(0, |x| x.1);
        let pairs = s.n_tokens * (heads(0) + heads(1)) * s.n_rot / 2;
        let groups = self.groups_2d(pairs.div_ceil(64))?;
        // Without factors binding 3 is a dummy the kernel never reads.
        let dummy = self.ctx.inner.dummy.clone();
        let mult = s.mult.map_or(&dummy, |m| m.raw());
        let (kernel, bound): (Kernel, Vec<(u32, &wgpu::Buffer)>) = match xs {
            [(x, _)] => (Kernel::Rope, vec![(1, x.raw()), (3, mult)]),
            [(q, _), (k, _)] => (Kernel::RopePair, vec![(1, q.raw()), (2, k.raw()), (3, mult)]),
            _ => return Err(shape_err(op, format!("{} buffers", xs.len()))),
        };
        self.dispatch(kernel, &p, &bound, groups)
    }

    /// The params of a RoPE over `xs` (buffer, heads), checked against their sizes.
    fn rope_params(&self, op: &'static str, xs: &[(&GpuBuffer, usize)], s: &RopeShape) -> Result<RopeParams, KernelError> {
        if s.head_dim % 2 != 0 || s.n_rot % 2 != 0 || s.n_rot > s.head_dim || s.n_rot == 0 {
            return Err(shape_err(op, format!("head_dim {} / n_rot {} is not an even split", s.head_dim, s.n_rot)));
        }
        if let Some(m) = s.mult {
            need(op, "mult", m, s.n_rot / 2)?;
        }
        for &(x, heads) in xs {
            need(op, "x", x, (s.tok0 + s.n_tokens) * heads * s.head_dim)?;
        }
        let heads = |i: usize| xs.get(i).map_or(0, |x| x.1);
        let p = RopeParams {
            n_tokens: u32_of(op, s.n_tokens)?,
            n_heads: u32_of(op, heads(0))?,
            head_dim: u32_of(op, s.head_dim)?,
            pos0: u32_of(op, s.pos0)?,
            base: s.base,
            neox: s.neox as u32,
            freq_scale: s.freq_scale,
            n_heads2: u32_of(op, heads(1))?,
            n_rot: u32_of(op, s.n_rot)?,
            mscale: s.mscale,
            use_mult: s.mult.is_some() as u32,
            tok0: u32_of(op, s.tok0)?,
            kv_row0: 0,
            _pad0: 0,
            _pad1: 0,
            _pad2: 0,
        };
        Ok(p)
    }

    fn eltwise(
        &mut self,
        kernel: Kernel,
        out: &GpuBuffer,
        a: Option<&GpuBuffer>,
        n: usize,
        scale: f32,
    ) -> Result<(), KernelError> {
        const OP: &str = "gpu elementwise";
        need(OP, "out", out, n)?;
        let p = EltParams {
            n: u32_of(OP, n)?,
            scale,
            width: 0,
            a_off: 0,
            out_off: 0,
            _pad0: 0,
            _pad1: 0,
            _pad2: 0,
        };
        let groups = self.groups_2d(n.div_ceil(64))?;
        match a {
            Some(a) => {
                need(OP, "input", a, n)?;
                self.dispatch(kernel, &p, &[(1, a.raw()), (2, out.raw())], groups)
            }
            None => self.dispatch(kernel, &p, &[(2, out.raw())], groups),
        }
    }

    /// SwiGLU in place: `gate[i] = silu(gate[i]) * up[i]` for `n` values.
    pub fn silu_mul(
        &mut self,
        gate: &GpuBuffer,
        up: &GpuBuffer,
        n: usize,
    ) -> Result<(), KernelError> {
        self.eltwise(Kernel::SiluMul, gate, Some(up), n, 1.0)
    }

    /// GeGLU in place: `gate[i] = gelu_tanh(gate[i]) * up[i]`.
    pub fn gelu_mul(
        &mut self,
        gate: &GpuBuffer,
        up: &GpuBuffer,
        n: usize,
    ) -> Result<(), KernelError> {
        self.eltwise(Kernel::GeluMul, gate, Some(up), n, 1.0)
    }

    /// Residual add in place: `x[i] += y[i]`.
    pub fn add(&mut self, x: &GpuBuffer, y: &GpuBuffer, n: usize) -> Result<(), KernelError> {
        self.eltwise(Kernel::Add, x, Some(y), n, 1.0)
    }

    /// `x[t*width + i] += bias[i]` for the `n / width` rows of `x`.
    pub fn add_bias(&mut self, x: &GpuBuffer, bias: &GpuBuffer, n: usize, width: usize) -> Result<(), KernelError> {
        const OP: &str = "gpu add_bias";
        need(OP, "x", x, n)?;
        need(OP, "bias", bias, width)?;
        if width == 0 || n % width != 0 {
            return Err(shape_err(OP, format!("{n} values are not rows of {width}")));
        }
        let p = EltParams { n: u32_of(OP, n)?, scale: 1.0, width: u32_of(OP, width)?, a_off: 0, out_off: 0, _pad0: 0, _pad1: 0, _pad2: 0 };
        let groups = self.groups_2d(n.div_ceil(64))?;
        self.dispatch(Kernel::AddBias, &p, &[(1, bias.raw()), (2, x.raw())], groups)
    }

    /// `out[out_off + i] += s * a[a_off + i]` for `i < n` (one expert's
    /// weighted output row into a token's sum).
    #[allow(clippy::too_many_arguments)]
    pub fn axpy(
        &mut self,
        out: &GpuBuffer,
        out_off: usize,
        a: &GpuBuffer,
        a_off: usize,
        n: usize,
        s: f32,
    ) -> Result<(), KernelError> {
        const OP: &str = "gpu axpy";
        need(OP, "out", out, out_off + n)?;
        need(OP, "a", a, a_off + n)?;
        let p = EltParams {
            n: u32_of(OP, n)?,
            scale: s,
            width: 0,
            a_off: u32_of(OP, a_off)?,
            out_off: u32_of(OP, out_off)?,
            _pad0: 0,
            _pad1: 0,
            _pad2: 0,
        };
        let groups = self.groups_2d(n.div_ceil(64))?;
        self.dispatch(Kernel::Axpy, &p, &[(1, a.raw()), (2, out.raw())], groups)
    }

    /// `x[i] = v` for `i < n`.
    pub fn fill(&mut self, x: &GpuBuffer, v: f32, n: usize) -> Result<(), KernelError> {
        self.eltwise(Kernel::Fill, x, None, n, v)
    }

    /// `x[i] *= s` in place (e.g. gemma's embedding scale).
    pub fn scale(&mut self, x: &GpuBuffer, s: f32, n: usize) -> Result<(), KernelError> {
        self.eltwise(Kernel::Scale, x, None, n, s)
    }

    /// Softmax of `rows` rows of `dim` values, in place.
    pub fn softmax(&mut self, x: &GpuBuffer, rows: usize, dim: usize) -> Result<(), KernelError> {
        const OP: &str = "gpu softmax";
        need(OP, "x", x, rows * dim)?;
        let p = RowParams {
            rows: u32_of(OP, rows)?,
            dim: u32_of(OP, dim)?,
            _pad0: 0,
            _pad1: 0,
        };
        let groups = self.groups_2d(rows)?;
        self.dispatch(Kernel::Softmax, &p, &[(1, x.raw())], groups)
    }

    /// `out[r]` (u32) = first index of the maximum of row `r` of `x`.
    pub fn argmax(
        &mut self,
        x: &GpuBuffer,
        rows: usize,
        dim: usize,
        out: &GpuBuffer,
    ) -> Result<(), KernelError> {
        const OP: &str = "gpu argmax";
        need(OP, "x", x, rows * dim)?;
        need(OP, "out", out, rows)?;
        if dim == 0 {
            return Err(shape_err(OP, "empty rows".into()));
        }
        let p = RowParams {
            rows: u32_of(OP, rows)?,
            dim: u32_of(OP, dim)?,
            _pad0: 0,
            _pad1: 0,
        };
        self.dispatch(
            Kernel::Argmax,
            &p,
            &[(1, x.raw()), (2, out.raw())],
            [u32_of(OP, rows)?, 1, 1],
        )
    }

    /// Writes `n_tokens` rows of keys `k` and values `v` (f32, `kv_dim`
    /// each) into `cache` at rows `pos0..pos0 + n_tokens`.
    pub fn kv_write(
        &mut self,
        cache: &GpuKvCache,
        k: &GpuBuffer,
        v: &GpuBuffer,
        n_tokens: usize,
        pos0: usize,
    ) -> Result<(), KernelError> {
        self.kv_write_rows(cache, k, v, 0, n_tokens, pos0)
    }

    /// [`GpuStep::kv_write`] of rows `tok0..tok0 + n_tokens` of `k` and `v`
    /// (one sequence's segment of a batch) into cache rows `pos0..`.
    pub fn kv_write_rows(
        &mut self,
        cache: &GpuKvCache,
        k: &GpuBuffer,
        v: &GpuBuffer,
        tok0: usize,
        n_tokens: usize,
        pos0: usize,
    ) -> Result<(), KernelError> {
        const OP: &str = "gpu kv_write";
        let n = n_tokens * cache.kv_dim;
        need(OP, "k", k, tok0 * cache.kv_dim + n)?;
        need(OP, "v", v, tok0 * cache.kv_dim + n)?;
        if pos0 + n_tokens > cache.max_ctx {
            return Err(shape_err(
                OP,
                format!(
                    "rows {pos0}..{} past the cache's {}",
                    pos0 + n_tokens,
                    cache.max_ctx
                ),
            ));
        }
        let p = KvParams {
            n_tokens: u32_of(OP, n_tokens)?,
            kv_dim: u32_of(OP, cache.kv_dim)?,
            pos0: u32_of(OP, pos0)?,
            tok0: u32_of(OP, tok0)?,
        };
        let groups = self.groups_2d((n / 2).div_ceil(64))?;
        self.dispatch(
            Kernel::KvWrite,
            &p,
            &[(1, k.raw()), (2, v.raw()), (3, &cache.k), (4, &cache.v)],
            groups,
        )
    }

    /// Copies cache rows `src_row..src_row + n_rows` to `dst_row..` (keys and
    /// values), through a scratch buffer: a forked sequence's prefix.
    pub fn kv_copy(&mut self, cache: &GpuKvCache, src_row: usize, dst_row: usize, n_rows: usize) -> Result<(), KernelError> {
        const OP: &str = "gpu kv_copy";
        if src_row.max(dst_row) + n_rows > cache.max_ctx {
            return Err(shape_err(OP, format!("{n_rows} rows from {src_row} to {dst_row} of {}", cache.max_ctx)));
        }
        let row_bytes = cache.kv_dim as u64 * 2;
        let bytes = n_rows as u64 * row_bytes;
        if bytes == 0 || src_row == dst_row {
            return Ok(());
        }
        // A buffer cannot be copied onto itself: go through a scratch buffer.
        let tmp = self.ctx.inner.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("kv copy"),
            size: bytes,
            usage: wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        for buf in [&cache.k, &cache.v] {
            self.cmds.push(super::Cmd::Copy {
                src: buf.clone(),
                src_off: src_row as u64 * row_bytes,
                dst: tmp.clone(),
                dst_off: 0,
                bytes,
            });
            self.cmds.push(super::Cmd::Copy {
                src: tmp.clone(),
                src_off: 0,
                dst: buf.clone(),
                dst_off: dst_row as u64 * row_bytes,
                bytes,
            });
        }
        Ok(())
    }
}
