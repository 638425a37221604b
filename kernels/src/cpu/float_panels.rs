//! Float weights (F32, F16, BF16) repacked into panels of 32 rows, column
//! after column: `panel[p][c][i] = W[32p + i][c]`, in the weight's own
//! width (no f32 copy of an F16 matrix). The product is an outer product:
//! for each column, 32 rows' weights are two 16-lane registers, each token's
//! activation is broadcast, and every (row, token) sum is one accumulator
//! lane, so no horizontal reduction is left at the end and a register tile
//! of 32 rows × 12 tokens runs at the FMA units' rate. The row-major
//! [`super::x86_float`] kernel sums dot products instead and spends a fifth
//! of its work reducing and converting, per tile, at every call.
//!
//! Every output is one chain of fused multiply-adds over the columns in
//! order, starting from zero: the same in every tile, for every batch size,
//! and equal bit for bit to [`matmul_panels_spec`] (`f32::mul_add` in a
//! loop), which other instruction sets run.
//!
//! Half math (F16 panels whose owner asked for it, on a CPU with AVX-512
//! FP16): activations rounded to f16 once per product, products summed in
//! f16 over runs of [`HALF_RUN`] columns and each run added into f32 — twice
//! the multiply-adds per instruction. An encoder's embeddings keep their
//! cosine bound with it (see the embedding tests); decoders never ask for
//! it. A product whose f16 sums overflow is recomputed in f32.

use std::sync::atomic::{AtomicBool, Ordering};

use infer_gguf::QuantType;
use rayon::prelude::*;

use super::tiled::{out_ptrs, with_act_buf, Isa};
use super::{OutPtr, QMatrix, MAX_MULTI};
use crate::KernelError;

/// Rows per panel (two 16-lane registers).
pub const PANEL_ROWS: usize = 32;
/// Tokens per parallel task: the task's panel stays in L1/L2 across them.
const TASK_TOKENS: usize = 48;
/// Columns summed in f16 before each f32 add, in half math.
pub(crate) const HALF_RUN: usize = 32;

/// Panels and how their products are summed.
#[derive(Debug)]
pub(crate) struct FloatPanels {
    pub data: PanelData,
    /// F16 panels whose owner accepts f16 sums (see the module docs).
    pub half_math: bool,
}

/// The panels' values, in the weight's width.
#[derive(Debug)]
pub(crate) enum PanelData {
    /// F16 or BF16 bits.
    Half(Vec<u16>),
    Single(Vec<f32>),
}

/// Whether [`pack`] takes this type and row count.
pub(crate) fn packs(ty: QuantType, rows: usize) -> bool {
    matches!(ty, QuantType::F32 | QuantType::F16 | QuantType::BF16) && rows.is_multiple_of(PANEL_ROWS) && rows > 0
}

/// `w` in panels; `release(offset, len)` is called for each panel's source
/// bytes once they are copied. `None` when [`packs`] says no or `w.data`
/// is not `rows × cols` values.
pub(crate) fn pack(w: &QMatrix, release: &(dyn Fn(usize, usize) + Sync)) -> Option<PanelData> {
    if !packs(w.ty, w.rows) || w.cols == 0 {
        return None;
    }
    let width = if w.ty == QuantType::F32 { 4 } else { 2 };
    if w.data.len() != w.rows * w.cols * width {
        return None;
    }
    let panel_src = PANEL_ROWS * w.cols * width;
    let per_panel = PANEL_ROWS * w.cols;
    macro_rules! fill {
        ($T:ty, $read:expr) => {{
            let mut out: Vec<$T> = vec![Default::default(); w.rows * w.cols];
            out.par_chunks_mut(per_panel).enumerate().for_each(|(p, dst)| {
                let src = &w.data[p * panel_src..(p + 1) * panel_src];
                for i in 0..PANEL_ROWS {
                    let row = &src[i * w.cols * width..(i + 1) * w.cols * width];
                    for (c, v) in row.chunks_exact(width).enumerate() {
                        dst[c * PANEL_ROWS + i] = $read(v);
                    }
                }
                release(p * panel_src, panel_src);
            });
            out
        }};
    }
    Some(match w.ty {
        QuantType::F32 => PanelData::Single(fill!(f32, |v: &[u8]| f32::from_le_bytes([v[0], v[1], v[2], v[3]]))),
        _ => PanelData::Half(fill!(u16, |v: &[u8]| u16::from_le_bytes([v[0], v[1]]))),
    })
}

/// Bytes held by the panels.
pub(crate) fn bytes(d: &PanelData) -> usize {
    match d {
        PanelData::Half(v) => v.len() * 2,
        PanelData::Single(v) => v.len() * 4,
    }
}

/// One weight of the panels as f32.
#[inline]
fn value(ty: QuantType, d: &PanelData, i: usize) -> f32 {
    match d {
        PanelData::Single(v) => v[i],
        PanelData::Half(v) if ty == QuantType::BF16 => half::bf16::from_bits(v[i]).to_f32(),
        PanelData::Half(v) => half::f16::from_bits(v[i]).to_f32(),
    }
}

/// A panelled matrix as the driver sees it.
#[derive(Clone, Copy)]
pub(crate) struct Panels<'a> {
    pub ty: QuantType,
    pub rows: usize,
    pub cols: usize,
    pub data: &'a PanelData,
    pub half_math: bool,
}

/// `out[t * rows + r] = Σ_c W[r][c] · x[t * cols + c]` as one `mul_add`
/// chain per output, columns in order: the definition the SIMD kernel
/// matches bit for bit.
pub(crate) fn matmul_panels_spec(w: Panels, x: &[f32], n_tokens: usize, out: &mut [f32]) {
    for t in 0..n_tokens {
        let xt = &x[t * w.cols..(t + 1) * w.cols];
        for r in 0..w.rows {
            let (p, i) = (r / PANEL_ROWS, r % PANEL_ROWS);
            let base = p * PANEL_ROWS * w.cols;
            let mut acc = 0f32;
            for (c, xv) in xt.iter().enumerate() {
                acc = value(w.ty, w.data, base + c * PANEL_ROWS + i).mul_add(*xv, acc);
            }
            out[t * w.rows + r] = acc;
        }
    }
}

/// The products of several panelled matrices (same `cols`) with `x`, split
/// into (matrix, panel, token range) tasks over rayon; `biases[i]` (`rows`
/// values), where given, is added to each output of matrix `i` by the task
/// that wrote it, while its rows are still in cache (the same f32 add as a
/// separate pass, without the pass).
pub(crate) fn matmul_panels(
    isa: Isa,
    ws: &[Panels],
    biases: &[Option<&[f32]>],
    x: &[f32],
    n_tokens: usize,
    outs: &mut [&mut [f32]],
) -> Result<(), KernelError> {
    let cols = ws.first().map_or(0, |w| w.cols);
    if ws.len() != outs.len()
        || ws.len() > MAX_MULTI
        || biases.len() != ws.len()
        || x.len() != n_tokens * cols
        || ws.iter().zip(outs.iter()).any(|(w, o)| w.cols != cols || o.len() != w.rows * n_tokens)
        || ws.iter().zip(biases).any(|(w, b)| b.is_some_and(|b| b.len() != w.rows))
    {
        return Err(KernelError::Shape {
            op: "matmul_panels",
            detail: format!(
                "{} matrices, {} outputs, {} activations for {n_tokens} tokens",
                ws.len(),
                outs.len(),
                x.len()
            ),
        });
    }
    let simd = cfg!(target_arch = "x86_64") && isa == Isa::Avx512Vnni;
    if !simd {
        for (w, o) in ws.iter().zip(outs.iter_mut()) {
            matmul_panels_spec(*w, x, n_tokens, o);
        }
        super::add_biases(biases, outs);
        return Ok(());
    }
    #[cfg(target_arch = "x86_64")]
    if ws.iter().all(|w| w.half_math && w.ty == QuantType::F16) && super::x86_half_panels::available() {
        // The f16 activations in this thread's activation buffer (whole u32 words).
        let finite = with_act_buf::<u16, _>(x.len().next_multiple_of(2), |xh| {
            let xh = &mut xh[..x.len()];
            super::x86_half_panels::to_half(x, xh);
            run_tasks(ws, biases, n_tokens, outs, |w, p, t0, t1, out| {
                // SAFETY: AVX-512 FP16 was detected; as for the f32 kernel below.
                unsafe { super::x86_half_panels::panel_tokens(w, p, xh, t0, t1, out) }
            })
        });
        if finite {
            return Ok(());
        }
        // An f16 sum overflowed (or an input did): the f32 chains below.
    }
    run_tasks(ws, biases, n_tokens, outs, |w, p, t0, t1, out| {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the ISA was checked by the caller (`Isa::available()`);
        // panel `p` and tokens t0..t1 exist (shapes checked above); each task
        // writes only its panel's rows of its tokens.
        unsafe {
            super::x86_float_panels::panel_tokens(w, p, x, t0, t1, out)
        };
        #[cfg(not(target_arch = "x86_64"))]
        let _ = (w, out, p, t0, t1);
        true
    });
    Ok(())
}

const _: () = assert!(PANEL_ROWS == 32);

/// `out[t * rows + i] += b[i]` for tokens `t0..t1` and `i < 32` (two registers).
///
/// # Safety
/// AVX-512 F is present and those outputs exist.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn add_panel_bias(out: *mut f32, rows: usize, t0: usize, t1: usize, b: &[f32; PANEL_ROWS]) {
    use std::arch::x86_64::*;
    let (b0, b1) = (_mm512_loadu_ps(b.as_ptr()), _mm512_loadu_ps(b.as_ptr().add(16)));
    for t in t0..t1 {
        let o = out.add(t * rows);
        _mm512_storeu_ps(o, _mm512_add_ps(_mm512_loadu_ps(o), b0));
        _mm512_storeu_ps(o.add(16), _mm512_add_ps(_mm512_loadu_ps(o.add(16)), b1));
    }
}

/// Calls `kern(w, panel, t0, t1, out)` for every (matrix, panel, token
/// range) task, over rayon, then adds the matrix's bias (if any) to what
/// it wrote; each task owns its panel's rows of its tokens. Whether every
/// call returned true (its outputs are finite).
fn run_tasks<K>(ws: &[Panels], biases: &[Option<&[f32]>], n_tokens: usize, outs: &mut [&mut [f32]], kern: K) -> bool
where
    K: Fn(Panels, usize, usize, usize, OutPtr) -> bool + Sync,
{
    // At most MAX_MULTI matrices (checked by `matmul_packed_bias_with`).
    let ptrs = out_ptrs(outs);
    let finite = AtomicBool::new(true);
    let chunks = n_tokens.div_ceil(TASK_TOKENS);
    // The first task of each matrix.
    let mut starts = [0usize; MAX_MULTI];
    let mut n_tasks = 0;
    for (s, w) in starts.iter_mut().zip(ws) {
        *s = n_tasks;
        n_tasks += w.rows / PANEL_ROWS * chunks;
    }
    let starts = &starts[..ws.len()];
    (0..n_tasks).into_par_iter().for_each(|task| {
        let m = starts.partition_point(|&s| s <= task) - 1;
        let (w, out) = (ws[m], ptrs[m]);
        let local = task - starts[m];
        let (p, chunk) = (local / chunks, local % chunks);
        let (t0, t1) = (chunk * TASK_TOKENS, ((chunk + 1) * TASK_TOKENS).min(n_tokens));
        if !kern(w, p, t0, t1, out) {
            finite.store(false, Ordering::Relaxed);
        }
        if let Some(b) = biases[m].and_then(|b| b[p * PANEL_ROWS..].first_chunk::<PANEL_ROWS>()) {
            // SAFETY: rows p·32..p·32 + 32 of tokens t0..t1 are this task's
            // (written just above) and inside the output; the tasks run only
            // on AVX-512 (`matmul_panels`).
            #[cfg(target_arch = "x86_64")]
            unsafe {
                add_panel_bias(out.0.add(p * PANEL_ROWS), w.rows, t0, t1, b)
            };
            #[cfg(not(target_arch = "x86_64"))]
            let _ = b;
        }
    });
    finite.load(Ordering::Relaxed)
}
