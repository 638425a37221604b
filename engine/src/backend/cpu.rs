//! The CPU backend: rayon over rows and heads, the kernels crate's quantized
//! matmul, a KV cache in host memory.

use std::sync::Arc;

use rayon::prelude::*;

use super::{Activation, AttnParams, Backend, MoeParams, MoeWeights, RopeParams, Segment, Slot, SlotWidths};
use crate::error::{EngineError, Result};
use crate::kv_cache::{KvCache, KvElem, LayerKv};
use crate::weights::{WeightId, WeightTable};
use infer_kernels::ops;

/// Runs ops on the host. Owns its slot buffers (sized for `n_batch` tokens)
/// and the KV cache of the layers it runs.
pub struct CpuBackend {
    weights: Arc<WeightTable>,
    widths: SlotWidths,
    bufs: Vec<Vec<f32>>,
    n_tokens: usize,
    /// The current batch's segments, and each row's (cache row of its
    /// sequence's position 0, position).
    segs: Vec<Segment>,
    rows: Vec<(usize, usize)>,
    kv: KvCache,
    /// Per-position RoPE angles, recomputed per call (small).
    thetas: Vec<f32>,
}

impl CpuBackend {
    /// `layers[l]` says whether this backend holds layer `l`'s KV cache.
    pub fn new(weights: Arc<WeightTable>, widths: SlotWidths, n_batch: usize, kv: KvCache) -> Self {
        let bufs = Slot::ALL
            .iter()
            .map(|&s| if s == Slot::Logits { Vec::new() } else { vec![0.0; widths.width(s) * n_batch] })
            .collect();
        CpuBackend { weights, widths, bufs, n_tokens: 0, segs: Vec::new(), rows: Vec::new(), kv, thetas: Vec::new() }
    }

    fn buf(&mut self, s: Slot) -> &mut Vec<f32> {
        &mut self.bufs[s.index()]
    }

    /// Takes a slot's buffer out to borrow it beside another (put back with `put`).
    fn take(&mut self, s: Slot) -> Vec<f32> {
        std::mem::take(&mut self.bufs[s.index()])
    }
    fn put(&mut self, s: Slot, v: Vec<f32>) {
        self.bufs[s.index()] = v;
    }

    fn ensure(&mut self, s: Slot, len: usize) {
        let b = self.buf(s);
        if b.len() < len {
            b.resize(len, 0.0);
        }
    }

    /// `out_i = x · W_iᵀ (+ b_i)`: the matrices in one kernel call where they
    /// share type and width (biases added by the kernel), one by one otherwise.
    fn products(&mut self, ws: &[(WeightId, Slot)], biases: &[Option<(WeightId, usize)>], x: Slot) -> Result<()> {
        use infer_kernels::cpu::MAX_MULTI;
        let weights = self.weights.clone();
        let n = self.n_tokens;
        let k = ws.len();
        let fallback = k == 0 || k > MAX_MULTI || ws.iter().any(|&(_, o)| o == x) || {
            let m0 = weights.matrix(ws[0].0);
            ws.iter().any(|&(w, _)| weights.matrix(w).ty != m0.ty || weights.matrix(w).cols != m0.cols)
        };
        if fallback {
            for &(w, out) in ws {
                self.matmul(w, x, out)?;
            }
            return super::add_biases(self, ws, biases);
        }
        let mut bias_values: [Option<std::borrow::Cow<[f32]>>; MAX_MULTI] = Default::default();
        for (b, bias) in bias_values.iter_mut().zip(biases) {
            if let Some((id, _)) = *bias {
                *b = Some(weights.f32s(id)?);
            }
        }
        let bias_refs: [Option<&[f32]>; MAX_MULTI] = std::array::from_fn(|i| bias_values[i].as_deref());
        // Fixed-size arrays: no allocation per call.
        let mats: [_; MAX_MULTI] = std::array::from_fn(|i| weights.cpu_matrix(ws[i.min(k - 1)].0));
        for (m, &(_, out)) in mats.iter().zip(ws) {
            self.ensure(out, m.rows * n);
        }
        let mut taken: [Vec<f32>; MAX_MULTI] = Default::default();
        for (t, &(_, out)) in taken.iter_mut().zip(ws) {
            *t = self.take(out);
        }
        let r = {
            let mut outs: [&mut [f32]; MAX_MULTI] = Default::default();
            for ((o, t), m) in outs.iter_mut().zip(taken.iter_mut()).zip(&mats).take(k) {
                *o = &mut t[..m.rows * n];
            }
            let xs = &self.bufs[x.index()][..mats[0].cols * n];
            infer_kernels::cpu::matmul_multi_bias(&mats[..k], &bias_refs[..k], xs, n, &mut outs[..k])
        };
        for (&(_, out), t) in ws.iter().zip(taken.iter_mut()) {
            self.put(out, std::mem::take(t));
        }
        Ok(r?)
    }
}

/// Values per rayon task of the element-wise ops (bias, residual add).
const ELEMENTWISE_CHUNK: usize = 16 * 1024;

fn shape_err(op: &'static str, detail: String) -> EngineError {
    EngineError::Kernel(infer_kernels::KernelError::Shape { op, detail })
}

impl Backend for CpuBackend {
    fn name(&self) -> String {
        "cpu".into()
    }

    fn begin(&mut self, n_tokens: usize, segments: &[Segment]) -> Result<()> {
        let (n_seq, n_ctx) = (self.kv.n_seq(), self.kv.n_ctx());
        if segments.iter().map(|s| s.len).sum::<usize>() != n_tokens {
            return Err(shape_err("begin", format!("segments {segments:?} do not cover {n_tokens} tokens")));
        }
        if let Some(s) = segments.iter().find(|s| s.seq >= n_seq || s.pos0 + s.len > n_ctx) {
            if s.seq >= n_seq {
                return Err(EngineError::InvalidParam(format!("sequence {} of {n_seq}", s.seq)));
            }
            return Err(EngineError::ContextFull { n_ctx });
        }
        self.n_tokens = n_tokens;
        self.segs.clear();
        self.segs.extend_from_slice(segments);
        self.rows.clear();
        self.rows.extend(Segment::rows(segments).map(|(seq, pos)| (seq * n_ctx, pos)));
        for s in Slot::ALL {
            let need = self.widths.width(s) * n_tokens;
            if s != Slot::Logits {
                self.ensure(s, need);
            }
        }
        Ok(())
    }

    fn n_tokens(&self) -> usize {
        self.n_tokens
    }

    fn load(&mut self, dst: Slot, host: &[f32]) -> Result<()> {
        self.ensure(dst, host.len());
        self.buf(dst)[..host.len()].copy_from_slice(host);
        Ok(())
    }

    fn read(&mut self, src: Slot, host: &mut [f32]) -> Result<()> {
        let b = &self.bufs[src.index()];
        if b.len() < host.len() {
            return Err(shape_err("read", format!("{src:?} holds {} values, {} asked", b.len(), host.len())));
        }
        host.copy_from_slice(&b[..host.len()]);
        Ok(())
    }

    fn keep_rows(&mut self, slot: Slot, width: usize, rows: &[usize]) -> Result<()> {
        let n = self.n_tokens;
        if rows.iter().any(|&r| r >= n) || rows.windows(2).any(|w| w[0] >= w[1]) {
            return Err(shape_err("keep_rows", format!("rows {rows:?} of a batch of {n}")));
        }
        let b = self.buf(slot);
        // Increasing rows move only towards the front.
        for (j, &r) in rows.iter().enumerate() {
            if r != j {
                b.copy_within(r * width..(r + 1) * width, j * width);
            }
        }
        let kept: Vec<(usize, usize)> = rows.iter().map(|&r| self.rows[r]).collect();
        self.rows = kept;
        self.n_tokens = rows.len();
        Ok(())
    }

    fn matmul(&mut self, w: WeightId, x: Slot, out: Slot) -> Result<()> {
        let weights = self.weights.clone();
        let m = weights.cpu_matrix(w);
        let n = self.n_tokens;
        self.ensure(out, m.rows * n);
        let mut o = self.take(out);
        let r = infer_kernels::cpu::matmul(&m, &self.bufs[x.index()][..m.cols * n], n, &mut o[..m.rows * n]);
        self.put(out, o);
        Ok(r?)
    }

    fn matmul_multi(&mut self, ws: &[(WeightId, Slot)], x: Slot) -> Result<()> {
        self.products(ws, &[None; infer_kernels::cpu::MAX_MULTI][..ws.len().min(infer_kernels::cpu::MAX_MULTI)], x)
    }

    fn matmul_multi_bias(
        &mut self,
        ws: &[(WeightId, Slot)],
        biases: &[Option<(WeightId, usize)>],
        x: Slot,
    ) -> Result<()> {
        let weights = self.weights.clone();
        let fused = biases.len() == ws.len()
            && ws.len() <= infer_kernels::cpu::MAX_MULTI
            && ws.iter().zip(biases).all(|(&(w, _), b)| b.is_none_or(|(_, width)| width == weights.info(w).rows));
        if !fused {
            self.matmul_multi(ws, x)?;
            return super::add_biases(self, ws, biases);
        }
        self.products(ws, biases, x)
    }

    fn rmsnorm(&mut self, x: Slot, w: WeightId, out: Slot, width: usize, dim: usize, eps: f32) -> Result<()> {
        let weights = self.weights.clone();
        let wv = weights.f32s(w)?;
        if wv.len() != dim {
            return Err(shape_err("rmsnorm", format!("weight has {} values, rows have {dim}", wv.len())));
        }
        let n = self.n_tokens * width;
        if x == out {
            let b = &mut self.buf(x)[..n];
            b.par_chunks_mut(dim).for_each(|row| {
                let ss: f32 = row.iter().map(|v| v * v).sum::<f32>() / dim as f32;
                let inv = 1.0 / (ss + eps).sqrt();
                row.iter_mut().zip(wv.iter()).for_each(|(v, &w)| *v = *v * inv * w);
            });
        } else {
            let mut o = self.take(out);
            let xs = &self.bufs[x.index()][..n];
            o[..n].par_chunks_mut(dim).zip(xs.par_chunks(dim)).for_each(|(orow, xrow)| {
                ops::rmsnorm_ref(xrow, &wv, eps, orow);
            });
            self.put(out, o);
        }
        Ok(())
    }

    fn rope(&mut self, x: Slot, p: &RopeParams) -> Result<()> {
        let width = p.n_heads * p.head_dim;
        let half = p.n_rot / 2;
        if p.mult.is_some_and(|m| m.len() < half) {
            return Err(shape_err("rope", format!("{} frequency factors for {half} pairs", p.mult.map_or(0, |m| m.len()))));
        }
        let n = self.n_tokens;
        self.thetas.resize(n * half, 0.0);
        for t in 0..n {
            let th = &mut self.thetas[t * half..(t + 1) * half];
            ops::rope_thetas(self.rows[t].1, p.n_rot, p.base, th);
            match p.mult {
                Some(m) => th.iter_mut().zip(m).for_each(|(v, &f)| *v *= p.freq_scale * f),
                None => th.iter_mut().for_each(|v| *v *= p.freq_scale),
            }
        }
        let thetas = std::mem::take(&mut self.thetas);
        let b = &mut self.buf(x)[..n * width];
        b.par_chunks_mut(width).enumerate().for_each(|(t, tok)| {
            let th = &thetas[t * half..(t + 1) * half];
            for head in tok.chunks_exact_mut(p.head_dim) {
                for (i, &theta) in th.iter().enumerate() {
                    let (s, c) = theta.sin_cos();
                    let (s, c) = (s * p.mscale, c * p.mscale);
                    let (a, b) = if p.neox { (i, i + half) } else { (2 * i, 2 * i + 1) };
                    let (x0, x1) = (head[a], head[b]);
                    head[a] = x0 * c - x1 * s;
                    head[b] = x0 * s + x1 * c;
                }
            }
        });
        self.thetas = thetas;
        Ok(())
    }

    fn add_bias(&mut self, x: Slot, bias: WeightId, width: usize) -> Result<()> {
        let weights = self.weights.clone();
        let bv = weights.f32s(bias)?;
        if bv.len() != width {
            return Err(shape_err("add_bias", format!("bias has {} values, rows have {width}", bv.len())));
        }
        let n = self.n_tokens * width;
        // Whole rows per task, about ELEMENTWISE_CHUNK values each.
        let rows = (ELEMENTWISE_CHUNK / width.max(1)).max(1);
        self.buf(x)[..n].par_chunks_mut(rows * width.max(1)).for_each(|c| {
            c.chunks_exact_mut(width).for_each(|row| ops::add_ref(row, &bv));
        });
        Ok(())
    }

    fn moe_ffn(&mut self, x: Slot, out: Slot, w: &MoeWeights, p: &MoeParams) -> Result<()> {
        let weights = self.weights.clone();
        let router = weights.cpu_matrix(w.router);
        let (n, dim, n_exp) = (self.n_tokens, self.widths.dim, w.experts.len());
        if router.rows != n_exp || router.cols != dim {
            return Err(shape_err("moe", format!("router is {}×{}, want {n_exp}×{dim}", router.rows, router.cols)));
        }
        let xs = &self.bufs[x.index()][..n * dim];
        let mut logits = vec![0.0; n * n_exp];
        infer_kernels::cpu::matmul(&router, xs, n, &mut logits)?;
        let by_expert = super::route(&logits, n_exp, p);
        let f = p.expert_ffn;
        let mut acc = vec![0.0f32; n * dim];
        let (mut xa, mut g, mut u, mut d) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for (e, toks) in by_expert.iter().enumerate().filter(|(_, t)| !t.is_empty()) {
            let m = toks.len();
            xa.clear();
            for &(t, _) in toks {
                xa.extend_from_slice(&xs[t * dim..(t + 1) * dim]);
            }
            g.resize(m * f, 0.0);
            u.resize(m * f, 0.0);
            d.resize(m * dim, 0.0);
            let ex = &w.experts[e];
            let (mg, mu, md) = (weights.cpu_matrix(ex.gate), weights.cpu_matrix(ex.up), weights.cpu_matrix(ex.down));
            infer_kernels::cpu::matmul_multi(&[mg, mu], &xa, m, &mut [&mut g[..], &mut u[..]])?;
            let act = activation(p.act);
            g.iter_mut().zip(&u).for_each(|(gv, &uv)| *gv = act(*gv) * uv);
            infer_kernels::cpu::matmul(&md, &g, m, &mut d)?;
            for (j, &(t, wt)) in toks.iter().enumerate() {
                acc[t * dim..(t + 1) * dim].iter_mut().zip(&d[j * dim..(j + 1) * dim]).for_each(|(a, &v)| *a += wt * v);
            }
        }
        self.ensure(out, n * dim);
        self.buf(out)[..n * dim].copy_from_slice(&acc);
        Ok(())
    }

    fn attention(&mut self, layer: usize, q: Slot, k: Slot, v: Slot, out: Slot, p: &AttnParams) -> Result<()> {
        let n = self.n_tokens;
        let q_dim = p.n_heads * p.head_dim;
        let mut o = self.take(out);
        let bufs = &self.bufs;
        let (qs, ks, vs) = (&bufs[q.index()], &bufs[k.index()], &bufs[v.index()]);
        let shape = AttnBatch { segs: &self.segs, rows: &self.rows, n_ctx: self.kv.n_ctx(), p: *p };
        match self.kv.layer_mut(layer)? {
            LayerKv::F16 { k: kc, v: vc } => attend(kc, vc, qs, ks, vs, &mut o[..n * q_dim], &shape),
            LayerKv::F32 { k: kc, v: vc } => attend(kc, vc, qs, ks, vs, &mut o[..n * q_dim], &shape),
        }
        self.put(out, o);
        Ok(())
    }

    fn gated(&mut self, gate: Slot, up: Slot, act: Activation, width: usize) -> Result<()> {
        let n = self.n_tokens * width;
        let mut g = self.take(gate);
        let u = &self.bufs[up.index()][..n];
        let f = activation(act);
        g[..n].par_chunks_mut(4096).zip(u.par_chunks(4096)).for_each(|(gc, uc)| match act {
            Activation::SwiGlu => infer_kernels::cpu::swiglu_inplace(gc, uc),
            Activation::GeGlu => gc.iter_mut().zip(uc).for_each(|(gv, &uv)| *gv = f(*gv) * uv),
        });
        self.put(gate, g);
        Ok(())
    }

    fn add(&mut self, dst: Slot, src: Slot, width: usize) -> Result<()> {
        let n = self.n_tokens * width;
        let mut d = self.take(dst);
        let s = &self.bufs[src.index()][..n];
        d[..n]
            .par_chunks_mut(ELEMENTWISE_CHUNK)
            .zip(s.par_chunks(ELEMENTWISE_CHUNK))
            .for_each(|(d, s)| ops::add_ref(d, s));
        self.put(dst, d);
        Ok(())
    }

    fn scale(&mut self, x: Slot, s: f32, width: usize) -> Result<()> {
        let n = self.n_tokens * width;
        self.buf(x)[..n].iter_mut().for_each(|v| *v *= s);
        Ok(())
    }

    fn layernorm(&mut self, x: Slot, w: WeightId, b: WeightId, dim: usize, eps: f32) -> Result<()> {
        let weights = self.weights.clone();
        let (wv, bv) = (weights.f32s(w)?, weights.f32s(b)?);
        if wv.len() != dim {
            return Err(shape_err("layernorm", format!("weight has {} values, rows have {dim}", wv.len())));
        }
        let n = self.n_tokens * dim;
        Ok(infer_kernels::cpu::encoder::layernorm_rows(&mut self.buf(x)[..n], &wv, &bv, eps)?)
    }

    fn attention_full(&mut self, q: Slot, k: Slot, v: Slot, out: Slot, p: &AttnParams) -> Result<()> {
        use infer_kernels::cpu::encoder::{attention_segments, SegAttn};
        let n = self.n_tokens * p.n_heads * p.head_dim;
        self.ensure(out, n);
        let mut o = self.take(out);
        let segs: Vec<(usize, usize)> = self.segs.iter().map(|s| (s.start, s.len)).collect();
        let sp = SegAttn { n_heads: p.n_heads, n_kv_heads: p.n_kv_heads, head_dim: p.head_dim, scale: p.scale };
        let b = &self.bufs;
        let r = attention_segments(&b[q.index()], &b[k.index()], &b[v.index()], &segs, sp, &mut o[..n]);
        self.put(out, o);
        Ok(r?)
    }

    fn gelu(&mut self, x: Slot, width: usize) -> Result<()> {
        let n = self.n_tokens * width;
        infer_kernels::cpu::encoder::gelu_inplace(&mut self.buf(x)[..n]);
        Ok(())
    }

    fn truncate_cache(&mut self, _from: usize) {
        // Positions past `from` are simply overwritten by later batches.
    }

    fn copy_seq(&mut self, src: usize, dst: usize, n: usize) -> Result<()> {
        self.kv.copy_seq(src, dst, n)
    }
}

/// The CPU's gating activation.
fn activation(act: Activation) -> fn(f32) -> f32 {
    match act {
        Activation::SwiGlu => ops::silu,
        Activation::GeGlu => gelu_f16_table,
    }
}

struct AttnBatch<'a> {
    segs: &'a [Segment],
    /// Each row's (cache row of its sequence's position 0, position).
    rows: &'a [(usize, usize)],
    n_ctx: usize,
    p: AttnParams,
}

/// Stores the batch's keys and values in the cache, then attends every
/// (token, head) pair in parallel. Queries are rounded to the cache's
/// precision before the dot products, as ggml does, so f16 caches give the
/// same scores as llama.cpp.
fn attend<T: KvElem>(kc: &mut [T], vc: &mut [T], qs: &[f32], ks: &[f32], vs: &[f32], out: &mut [f32], b: &AttnBatch) {
    let p = &b.p;
    let hd = p.head_dim;
    let kv_dim = p.n_kv_heads * hd;
    for s in b.segs {
        let (dst, src) = ((s.seq * b.n_ctx + s.pos0) * kv_dim, s.start * kv_dim);
        let len = s.len * kv_dim;
        T::store(&mut kc[dst..dst + len], &ks[src..src + len]);
        T::store(&mut vc[dst..dst + len], &vs[src..src + len]);
    }
    let (kc, vc) = (&*kc, &*vc);
    let group = p.n_heads / p.n_kv_heads;
    let avx2 = has_avx2_fma();
    // One task per (token, KV head): each cached key/value row is converted
    // once and used by all the query heads of its group (GQA).
    out.par_chunks_mut(group * hd).enumerate().for_each(|(i, og)| {
        ATTN_SCRATCH.with(|cell| {
            let mut guard = cell.borrow_mut();
            let (scores, qg, row) = &mut *guard;
            qg.resize(group * hd, 0.0);
            row.resize(hd, 0.0);
            let a = AttnTask { kc, vc, qs, b, i, group };
            #[cfg(target_arch = "x86_64")]
            if avx2 {
                // SAFETY: AVX2 and FMA were detected at run time.
                unsafe { attend_task_avx2(&a, og, scores, qg, row) };
                return;
            }
            let _ = avx2;
            attend_task(&a, og, scores, qg, row);
        })
    });
}

thread_local! {
    /// Scores, the group's rounded queries and one converted K/V row.
    static ATTN_SCRATCH: std::cell::RefCell<(Vec<f32>, Vec<f32>, Vec<f32>)> =
        const { std::cell::RefCell::new((Vec::new(), Vec::new(), Vec::new())) };
}

fn has_avx2_fma() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        static YES: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        *YES.get_or_init(|| is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma"))
    }
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// One (token, KV head) attention task.
struct AttnTask<'a, T> {
    kc: &'a [T],
    vc: &'a [T],
    qs: &'a [f32],
    b: &'a AttnBatch<'a>,
    /// `token * n_kv_heads + kv_head`.
    i: usize,
    group: usize,
}

/// The same code compiled for AVX2 + FMA (256-bit lanes instead of SSE's
/// 128). Rust never contracts `a * b + c` into an FMA on its own, so the
/// results are bit-identical to [`attend_task`]'s.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn attend_task_avx2<T: KvElem>(
    a: &AttnTask<T>,
    og: &mut [f32],
    scores: &mut Vec<f32>,
    qg: &mut [f32],
    row: &mut [f32],
) {
    attend_task(a, og, scores, qg, row)
}

#[inline(always)]
fn attend_task<T: KvElem>(a: &AttnTask<T>, og: &mut [f32], scores: &mut Vec<f32>, qg: &mut [f32], row: &mut [f32]) {
    let AttnTask { kc, vc, qs, b, i, group } = *a;
    let p = &b.p;
    let hd = p.head_dim;
    let kv_dim = p.n_kv_heads * hd;
    let q_dim = p.n_heads * hd;
    let (t, kvh) = (i / p.n_kv_heads, i % p.n_kv_heads);
    let (base, pos) = b.rows[t];
    let start = if p.window > 0 { (pos + 1).saturating_sub(p.window) } else { 0 };
    let n = pos + 1 - start;
    T::round_trip(&qs[t * q_dim + kvh * group * hd..][..group * hd], qg);
    scores.clear();
    scores.resize(group * n, 0.0);
    for (jj, j) in (start..=pos).enumerate() {
        T::load(&kc[(base + j) * kv_dim + kvh * hd..][..hd], row);
        for g in 0..group {
            scores[g * n + jj] = dot(&qg[g * hd..(g + 1) * hd], row) * p.scale;
        }
    }
    for g in 0..group {
        ops::softmax_ref(&mut scores[g * n..(g + 1) * n]);
    }
    og.fill(0.0);
    for (jj, j) in (start..=pos).enumerate() {
        T::load(&vc[(base + j) * kv_dim + kvh * hd..][..hd], row);
        for g in 0..group {
            let w = scores[g * n + jj];
            for (o, &x) in og[g * hd..(g + 1) * hd].iter_mut().zip(row.iter()) {
                *o += w * x;
            }
        }
    }
}

/// f32 dot product in 8 independent lanes (vectorizes).
#[inline(always)]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ca.remainder().iter().zip(cb.remainder()).map(|(x, y)| x * y).sum();
    for (x, y) in ca.zip(cb) {
        for k in 0..8 {
            acc[k] += x[k] * y[k];
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// GELU as ggml's CPU path computes it: a table of f16 results indexed by
/// the input's f16 bits (exact beyond ±10). Matching it keeps greedy text
/// closer to llama.cpp's, and a lookup is cheaper than `tanh`.
fn gelu_f16_table(x: f32) -> f32 {
    static TABLE: std::sync::OnceLock<Vec<half::f16>> = std::sync::OnceLock::new();
    if x <= -10.0 {
        0.0
    } else if x >= 10.0 {
        x
    } else {
        let table = TABLE.get_or_init(|| {
            (0..=u16::MAX)
                .map(|bits| half::f16::from_f32(ops::gelu_tanh(half::f16::from_bits(bits).to_f32())))
                .collect()
        });
        table[half::f16::from_f32(x).to_bits() as usize].to_f32()
    }
}
