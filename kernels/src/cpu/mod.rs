//! Fast CPU kernels: matrix products on quantized weights.
//!
//! [`matmul`] quantizes the activations once per call (to [`BlockQ8Act`]
//! for the 32-weight types Q4_0, Q4_1, Q5_0, Q5_1, Q8_0; to Q8_K for Q4_K,
//! Q5_K, Q6_K) and runs integer dot products on the best instruction set
//! found at run time ([`Isa`]): AVX-512 VNNI, AVX2, NEON, or the scalar
//! [`vec_dot`] twins. Rows are split over rayon in chunks; within a chunk a
//! pass of up to [`TOKENS_PER_PASS`] tokens reads each weight row once.
//! Other types take the dequantize-a-row path ([`matmul_dequant`]),
//! correct for every type [`crate::dequant::supports`]. Matrices the owner
//! repacked ([`PackedMatrix`], eight rows interleaved: [`repack`],
//! [`repack_k`]; float weights in 32-row panels) take the packed kernels instead. [`encoder`] holds the
//! other ops of encoder models (LayerNorm, GELU, attention within segments).
//!
//! Layout: `W` is `rows × cols`, row-major, each row `cols / block_size`
//! blocks (ggml's `dims[0] = cols`). Activations `x` are `n_tokens × cols`,
//! outputs `n_tokens × rows`.

pub mod encoder;
mod float_panels;
#[cfg(target_arch = "aarch64")]
mod neon;
mod quantize;
mod quantize_weights;
pub mod repack;
pub mod repack_k;
mod tiled;
pub mod vec_dot;
#[cfg(target_arch = "x86_64")]
mod x86;
#[cfg(target_arch = "x86_64")]
mod x86_activation;
#[cfg(target_arch = "x86_64")]
mod x86_attention;
#[cfg(target_arch = "x86_64")]
mod x86_float;
#[cfg(target_arch = "x86_64")]
mod x86_float_panels;
#[cfg(target_arch = "x86_64")]
mod x86_gelu;
#[cfg(target_arch = "x86_64")]
mod x86_half_panels;
#[cfg(target_arch = "x86_64")]
mod x86_packed;
#[cfg(target_arch = "x86_64")]
mod x86_packed512;
#[cfg(target_arch = "x86_64")]
mod x86_packed_k;
#[cfg(target_arch = "x86_64")]
mod x86_panel512;
#[cfg(target_arch = "x86_64")]
mod x86_quantize;

use std::cell::RefCell;

use infer_gguf::QuantType;
use rayon::prelude::*;

use crate::dequant;
use crate::KernelError;

pub use quantize::{quantize_q8_act, quantize_q8_act_ref, quantize_q8_k, quantize_q8_k_ref, BlockQ8Act};
pub use quantize_weights::{quantize_q4_0, quantize_q8_0, quantize_row, quantizes_to};
pub use repack::{matmul_packed_bias_with, matmul_packed_with, PackedMatrix};
pub use tiled::{matmul_multi_with, matmul_with, Isa, MAX_MULTI, TOKENS_PER_PASS};

/// A borrowed quantized weight matrix, `rows × cols`.
#[derive(Debug, Clone, Copy)]
pub struct QMatrix<'a> {
    pub ty: QuantType,
    /// `rows * row_bytes()` bytes, row after row.
    pub data: &'a [u8],
    pub rows: usize,
    pub cols: usize,
    /// The same matrix repacked for the CPU kernels, when the owner made
    /// one ([`PackedMatrix::pack`]); the CPU matmuls then read it instead of `data`.
    pub packed: Option<&'a PackedMatrix>,
}

impl<'a> QMatrix<'a> {
    /// Checks that `cols` is a whole number of blocks and that `data` holds
    /// exactly `rows` rows.
    pub fn new(ty: QuantType, data: &'a [u8], rows: usize, cols: usize) -> Result<Self, KernelError> {
        let bs = ty.block_size();
        if cols % bs != 0 {
            return Err(shape("QMatrix::new", format!("{cols} columns is not a multiple of the {ty} block size {bs}")));
        }
        let want = (cols / bs).checked_mul(ty.block_bytes()).and_then(|rb| rb.checked_mul(rows));
        if want != Some(data.len()) {
            return Err(shape("QMatrix::new", format!("{rows}×{cols} {ty} needs {want:?} bytes, got {}", data.len())));
        }
        Ok(QMatrix { ty, data, rows, cols, packed: None })
    }

    /// Bytes of one row.
    pub fn row_bytes(&self) -> usize {
        self.cols / self.ty.block_size() * self.ty.block_bytes()
    }

    /// The raw bytes of row `r` (caller checks `r < rows`).
    pub(crate) fn row_data(&self, r: usize) -> &'a [u8] {
        let rb = self.row_bytes();
        &self.data[r * rb..(r + 1) * rb]
    }
}

fn shape(op: &'static str, detail: String) -> KernelError {
    KernelError::Shape { op, detail }
}

/// Checks the shapes of a matmul call.
pub(crate) fn check_matmul(
    op: &'static str,
    w: &QMatrix,
    x: &[f32],
    n_tokens: usize,
    out: &[f32],
) -> Result<(), KernelError> {
    if w.cols % w.ty.block_size() != 0 || Some(w.data.len()) != w.row_bytes().checked_mul(w.rows) {
        return Err(shape(
            op,
            format!("QMatrix {}×{} {} does not match its {} bytes", w.rows, w.cols, w.ty, w.data.len()),
        ));
    }
    if Some(x.len()) != n_tokens.checked_mul(w.cols) {
        return Err(shape(op, format!("x has {} values, want {n_tokens} tokens × {} cols", x.len(), w.cols)));
    }
    if Some(out.len()) != n_tokens.checked_mul(w.rows) {
        return Err(shape(op, format!("out has {} values, want {n_tokens} tokens × {} rows", out.len(), w.rows)));
    }
    if !dequant::supports(w.ty) {
        return Err(KernelError::Unsupported(w.ty, op));
    }
    Ok(())
}

/// Dequantizes row `row` of `w` into `out` (`out.len() == w.cols`): the
/// embedding lookup.
pub fn get_row(w: &QMatrix, row: usize, out: &mut [f32]) -> Result<(), KernelError> {
    if row >= w.rows {
        return Err(shape("get_row", format!("row {row} out of range for {} rows", w.rows)));
    }
    if out.len() != w.cols {
        return Err(shape("get_row", format!("out has {} values, the row has {}", out.len(), w.cols)));
    }
    dequant::dequantize(w.ty, w.row_data(row), out)
}

/// The specification of [`matmul`]: `out[t*rows + r] = Σ_c W[r][c] · x[t*cols + c]`,
/// each row dequantized with [`dequant::dequantize`] and dotted in f32, in order.
pub fn matmul_ref(w: &QMatrix, x: &[f32], n_tokens: usize, out: &mut [f32]) -> Result<(), KernelError> {
    check_matmul("matmul_ref", w, x, n_tokens, out)?;
    let mut row = vec![0.0f32; w.cols];
    for r in 0..w.rows {
        dequant::dequantize(w.ty, w.row_data(r), &mut row)?;
        for t in 0..n_tokens {
            let xt = &x[t * w.cols..(t + 1) * w.cols];
            out[t * w.rows + r] = row.iter().zip(xt).map(|(a, b)| a * b).sum();
        }
    }
    Ok(())
}

/// Rows per rayon task: enough work to amortize scheduling, small enough
/// that two threads stay balanced on the smallest matrices (576 rows).
const ROWS_PER_TASK: usize = 16;

thread_local! {
    /// One dequantized row, reused across calls on this thread.
    static ROW_SCRATCH: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// A raw output pointer shared by rayon tasks that write disjoint elements.
#[derive(Clone, Copy)]
pub(crate) struct OutPtr(pub(crate) *mut f32);
// SAFETY: only used to write elements that no other task touches (each task
// owns a distinct range of rows), and the borrow of `out` outlives the scope.
unsafe impl Send for OutPtr {}
unsafe impl Sync for OutPtr {}

impl OutPtr {
    /// Writes `out[i] = v`.
    ///
    /// # Safety
    /// `i` is in bounds of the output and no other task writes element `i`.
    #[inline]
    pub(crate) unsafe fn write(self, i: usize, v: f32) {
        *self.0.add(i) = v;
    }
}

/// `out[t*rows + r] = Σ_c W[r][c] · x[t*cols + c]` for `t < n_tokens`, on
/// all rayon threads with the best [`Isa`]. Matches [`matmul_ref`] within
/// the error of 8-bit activations for the types with integer kernels, up to
/// f32 summation order for the others.
pub fn matmul(w: &QMatrix, x: &[f32], n_tokens: usize, out: &mut [f32]) -> Result<(), KernelError> {
    matmul_with(Isa::best(), w, x, n_tokens, out)
}

/// [`matmul`] of several matrices (same type and `cols`) on the same
/// activations, quantized once, in one parallel pass.
pub fn matmul_multi(ws: &[QMatrix], x: &[f32], n_tokens: usize, outs: &mut [&mut [f32]]) -> Result<(), KernelError> {
    matmul_multi_with(Isa::best(), ws, x, n_tokens, outs)
}

/// [`matmul_multi`] plus a bias per output where `biases[i]` is given
/// (`rows_i` values): `outs[i][t * rows_i + r] = W_i[r] · x[t] + b_i[r]`,
/// the same f32 add as a pass after the product. Float panels add it in
/// each task's epilogue while the rows are in cache; other layouts after.
///
/// ```
/// use infer_gguf::QuantType;
/// use infer_kernels::cpu::{matmul_multi_bias, QMatrix};
/// let data: Vec<u8> = [1.0f32, 2.0, 3.0, 4.0].iter().flat_map(|v| v.to_le_bytes()).collect();
/// let w = QMatrix::new(QuantType::F32, &data, 2, 2).unwrap();
/// let mut out = vec![0.0; 2];
/// matmul_multi_bias(&[w], &[Some(&[10.0, 20.0][..])], &[1.0, 1.0], 1, &mut [&mut out[..]]).unwrap();
/// assert_eq!(out, [13.0, 27.0]);
/// ```
pub fn matmul_multi_bias(
    ws: &[QMatrix],
    biases: &[Option<&[f32]>],
    x: &[f32],
    n_tokens: usize,
    outs: &mut [&mut [f32]],
) -> Result<(), KernelError> {
    if biases.len() != ws.len() || ws.iter().zip(biases).any(|(w, b)| b.is_some_and(|b| b.len() != w.rows)) {
        return Err(shape(
            "matmul_multi_bias",
            format!(
                "{} biases of {:?} values for {} matrices",
                biases.len(),
                biases.iter().map(|b| b.map(<[f32]>::len)).collect::<Vec<_>>(),
                ws.len()
            ),
        ));
    }
    let isa = Isa::best();
    if ws.len() <= MAX_MULTI {
        let mut packed: [Option<&PackedMatrix>; MAX_MULTI] = [None; MAX_MULTI];
        for (p, w) in packed.iter_mut().zip(ws) {
            *p = w.packed.filter(|m| m.ty == w.ty && m.rows == w.rows && m.cols == w.cols);
        }
        if let Some(all) = packed[..ws.len()].iter().copied().collect::<Option<Vec<&PackedMatrix>>>() {
            return matmul_packed_bias_with(isa, &all, biases, x, n_tokens, outs);
        }
    }
    matmul_multi_with(isa, ws, x, n_tokens, outs)?;
    add_biases(biases, outs);
    Ok(())
}

/// `outs[i][t * rows + r] += biases[i][r]` over rayon, for the given biases.
pub(crate) fn add_biases(biases: &[Option<&[f32]>], outs: &mut [&mut [f32]]) {
    for (b, o) in biases.iter().zip(outs.iter_mut()) {
        if let Some(b) = b.filter(|b| !b.is_empty()) {
            // About 16 K values per task, whole rows.
            let rows = (16 * 1024 / b.len()).max(1);
            o.par_chunks_mut(rows * b.len()).for_each(|c| {
                for row in c.chunks_exact_mut(b.len()) {
                    row.iter_mut().zip(b).for_each(|(v, &bv)| *v += bv);
                }
            });
        }
    }
}

/// [`matmul`] by dequantizing each row into f32 (no activation rounding).
pub fn matmul_dequant(w: &QMatrix, x: &[f32], n_tokens: usize, out: &mut [f32]) -> Result<(), KernelError> {
    check_matmul("matmul_dequant", w, x, n_tokens, out)?;
    let (rows, cols) = (w.rows, w.cols);
    let ptr = OutPtr(out.as_mut_ptr());
    let n_tasks = rows.div_ceil(ROWS_PER_TASK);
    (0..n_tasks).into_par_iter().try_for_each(|task| {
        ROW_SCRATCH.with(|s| {
            let mut s = s.borrow_mut();
            s.resize(cols, 0.0);
            for r in task * ROWS_PER_TASK..((task + 1) * ROWS_PER_TASK).min(rows) {
                dequant::dequantize(w.ty, w.row_data(r), &mut s)?;
                for t in 0..n_tokens {
                    let v = dot_f32(&s, &x[t * cols..(t + 1) * cols]);
                    // SAFETY: t < n_tokens and r < rows, so the index is in
                    // bounds of `out` (checked above); row r belongs to this
                    // task alone.
                    unsafe { ptr.write(t * rows + r, v) };
                }
            }
            Ok(())
        })
    })
}

/// f32 dot product with 8 independent accumulators so it vectorizes.
#[inline]
pub fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; 8];
    let (ac, bc) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ac.remainder().iter().zip(bc.remainder()).map(|(x, y)| x * y).sum();
    for (x, y) in ac.zip(bc) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// SwiGLU gating in place: `gate[i] = silu(gate[i]) · up[i]`, SIMD where the
/// CPU has AVX-512 (equal to [`crate::ops::swiglu_ref`], whose `exp` is
/// libm's, but for rare last-bit cases), scalar otherwise.
///
/// ```
/// let mut gate = vec![1.0f32, -2.0, 0.5];
/// infer_kernels::cpu::swiglu_inplace(&mut gate, &[2.0, 1.0, 4.0]);
/// assert!((gate[0] - 2.0 * 0.731_058_6).abs() < 1e-5);
/// ```
pub fn swiglu_inplace(gate: &mut [f32], up: &[f32]) {
    #[cfg(target_arch = "x86_64")]
    if Isa::best() == Isa::Avx512Vnni {
        // SAFETY: AVX-512 F detected (within Avx512Vnni).
        return unsafe { x86_activation::swiglu(gate, up) };
    }
    for (g, &u) in gate.iter_mut().zip(up) {
        *g = crate::ops::silu(*g) * u;
    }
}
