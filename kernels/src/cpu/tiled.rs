//! The quantized matmul driver: activation quantization, the split of rows
//! over rayon, token passes, and dispatch to the kernels of one [`Isa`].

use std::cell::RefCell;
use std::sync::OnceLock;

use bytemuck::Pod;
use infer_gguf::blocks::{
    as_blocks, Block, BlockQ4K, BlockQ4_0, BlockQ4_1, BlockQ5K, BlockQ5_0, BlockQ5_1, BlockQ6K, BlockQ8K, BlockQ8_0,
};
use infer_gguf::QuantType;
use rayon::prelude::*;

use super::quantize::{quantize_q8_act, quantize_q8_k, BlockQ8Act};
use super::vec_dot::*;
use super::{check_matmul, matmul_dequant, OutPtr, QMatrix};
use crate::KernelError;

/// The instruction set the quantized kernels run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isa {
    /// The [`vec_dot`](super::vec_dot) twins, everywhere.
    Scalar,
    /// AVX2 + FMA + F16C (x86-64).
    Avx2,
    /// AVX-512 F/BW/VL/VNNI (x86-64): 256-bit registers, and 512-bit ones
    /// (two row groups each) for the repacked K-quants.
    Avx512Vnni,
    /// NEON (aarch64, where it is always present).
    Neon,
}

impl Isa {
    /// Every instruction set this CPU runs, scalar first.
    pub fn available() -> Vec<Isa> {
        let mut v = vec![Isa::Scalar];
        #[cfg(target_arch = "aarch64")]
        v.push(Isa::Neon);
        #[cfg(target_arch = "x86_64")]
        {
            let avx2 =
                is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") && is_x86_feature_detected!("f16c");
            if avx2 {
                v.push(Isa::Avx2);
                if is_x86_feature_detected!("avx512f")
                    && is_x86_feature_detected!("avx512bw")
                    && is_x86_feature_detected!("avx512vl")
                    && is_x86_feature_detected!("avx512vnni")
                {
                    v.push(Isa::Avx512Vnni);
                }
            }
        }
        v
    }

    /// The fastest available instruction set (detected once).
    pub fn best() -> Isa {
        static BEST: OnceLock<Isa> = OnceLock::new();
        *BEST.get_or_init(|| Isa::available().last().copied().unwrap_or(Isa::Scalar))
    }
}

/// Tokens dotted with a weight row while it is hot in L1; the kernels split
/// a pass into register tiles of 4 (AVX2) or 8 (AVX-512VL) tokens.
pub const TOKENS_PER_PASS: usize = 8;
/// Rayon tasks per thread: enough to balance, few enough to amortize.
const TASKS_PER_THREAD: usize = 4;
/// A task's weights should stay in L2 across its token passes.
const TASK_WEIGHT_BYTES: usize = 256 * 1024;

thread_local! {
    /// Quantized activations of the current call, reused across calls. Words
    /// of 4 bytes: both activation block types have alignment 4.
    static ACT_BUF: RefCell<Vec<u32>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` on a buffer of `n` activation blocks, reusing this thread's
/// buffer unless a nested call (rayon work-stealing) already holds it.
pub(crate) fn with_act_buf<A: Pod, R>(n: usize, f: impl FnOnce(&mut [A]) -> R) -> R {
    let words = n * std::mem::size_of::<A>() / 4;
    ACT_BUF.with(|cell| match cell.try_borrow_mut() {
        Ok(mut v) => {
            if v.len() < words {
                v.resize(words, 0);
            }
            f(bytemuck::cast_slice_mut(&mut v[..words]))
        }
        Err(_) => f(bytemuck::cast_slice_mut(&mut vec![0u32; words])),
    })
}

/// Quantizes each token's row of `x` (`cols` values) into its `nb` blocks
/// of `acts`, over rayon for four tokens or more.
pub(crate) fn quantize_rows<A: Send>(x: &[f32], cols: usize, nb: usize, acts: &mut [A], quant: fn(&[f32], &mut [A])) {
    if x.len() >= 4 * cols {
        x.par_chunks(cols).zip(acts.par_chunks_mut(nb)).for_each(|(x, a)| quant(x, a));
    } else {
        x.chunks(cols).zip(acts.chunks_mut(nb)).for_each(|(x, a)| quant(x, a));
    }
}

/// The raw output pointers of a multi-matrix call, for its rayon tasks.
pub(crate) fn out_ptrs(outs: &mut [&mut [f32]]) -> [OutPtr; MAX_MULTI] {
    let mut ptrs = [OutPtr(std::ptr::null_mut()); MAX_MULTI];
    for (p, o) in ptrs.iter_mut().zip(outs.iter_mut()) {
        *p = OutPtr(o.as_mut_ptr());
    }
    ptrs
}

/// [`super::matmul`] on a chosen instruction set, for every type
/// [`crate::dequant::supports`] (types without integer kernels take
/// [`matmul_dequant`]). An `isa` this CPU lacks is an `Unsupported` error.
pub fn matmul_with(isa: Isa, w: &QMatrix, x: &[f32], n_tokens: usize, out: &mut [f32]) -> Result<(), KernelError> {
    matmul_multi_with(isa, &[*w], x, n_tokens, &mut [out])
}

/// Most matrices one [`matmul_multi_with`] call takes.
pub const MAX_MULTI: usize = 4;

/// Several matmuls on the same activations (`x` is `n_tokens × cols` for
/// every matrix): the activations are quantized once and all rows run in one
/// parallel loop — q/k/v or gate/up projections of a layer in one pass.
/// Matrices of one call share type and `cols`; at most [`MAX_MULTI`].
pub fn matmul_multi_with(
    isa: Isa,
    ws: &[QMatrix],
    x: &[f32],
    n_tokens: usize,
    outs: &mut [&mut [f32]],
) -> Result<(), KernelError> {
    if ws.is_empty() || ws.len() != outs.len() || ws.len() > MAX_MULTI {
        return Err(KernelError::Shape {
            op: "matmul_multi",
            detail: format!("{} matrices and {} outputs (1..={MAX_MULTI} of each)", ws.len(), outs.len()),
        });
    }
    for (w, out) in ws.iter().zip(outs.iter()) {
        check_matmul("matmul", w, x, n_tokens, out)?;
        if w.ty != ws[0].ty || w.cols != ws[0].cols {
            return Err(KernelError::Shape {
                op: "matmul_multi",
                detail: format!("{} {}×{} beside {} {}×{}", w.ty, w.rows, w.cols, ws[0].ty, ws[0].rows, ws[0].cols),
            });
        }
    }
    if !Isa::available().contains(&isa) {
        return Err(KernelError::Unsupported(ws[0].ty, "matmul on an instruction set this CPU lacks"));
    }
    // Repacked copies, when every matrix has one that matches it.
    if let Some(p0) = ws[0].packed {
        let mut packed = [p0; MAX_MULTI];
        let mut all = true;
        for (p, w) in packed.iter_mut().zip(ws) {
            match w.packed {
                Some(m) if m.ty == w.ty && m.rows == w.rows && m.cols == w.cols => *p = m,
                _ => all = false,
            }
        }
        if all {
            return super::matmul_packed_with(isa, &packed[..ws.len()], x, n_tokens, outs);
        }
    }
    let a = Args { ws, x, n_tokens, outs };
    macro_rules! go {
        ($W:ty, $A:ty, $quant:path, $simd:ident, $scalar:path) => {
            match isa {
                #[cfg(target_arch = "x86_64")]
                // SAFETY: `isa` was found in `Isa::available()`.
                Isa::Avx2 => run::<$W, $A, _>(a, $quant, |w, x, nt, o| unsafe { super::x86::avx2::$simd(w, x, nt, o) }),
                #[cfg(target_arch = "x86_64")]
                // SAFETY: as above.
                Isa::Avx512Vnni => {
                    run::<$W, $A, _>(a, $quant, |w, x, nt, o| unsafe { super::x86::vnni::$simd(w, x, nt, o) })
                }
                #[cfg(target_arch = "aarch64")]
                Isa::Neon => run::<$W, $A, _>(a, $quant, |w, x, nt, o| super::neon::kernels::$simd(w, x, nt, o)),
                _ => run::<$W, $A, _>(a, $quant, |w, x, nt, o| {
                    for (t, o) in o[..nt].iter_mut().enumerate() {
                        *o = $scalar(w, &x[t * w.len()..(t + 1) * w.len()]);
                    }
                }),
            }
        };
    }
    use QuantType::*;
    match ws[0].ty {
        Q4_0 => go!(BlockQ4_0, BlockQ8Act, quantize_q8_act, q4_0, vec_dot_q4_0_q8),
        Q4_1 => go!(BlockQ4_1, BlockQ8Act, quantize_q8_act, q4_1, vec_dot_q4_1_q8),
        Q5_0 => go!(BlockQ5_0, BlockQ8Act, quantize_q8_act, q5_0, vec_dot_q5_0_q8),
        Q5_1 => go!(BlockQ5_1, BlockQ8Act, quantize_q8_act, q5_1, vec_dot_q5_1_q8),
        Q8_0 => go!(BlockQ8_0, BlockQ8Act, quantize_q8_act, q8_0, vec_dot_q8_0_q8),
        Q4K => go!(BlockQ4K, BlockQ8K, quantize_q8_k, q4_k, vec_dot_q4_k_q8k),
        Q5K => go!(BlockQ5K, BlockQ8K, quantize_q8_k, q5_k, vec_dot_q5_k_q8k),
        Q6K => go!(BlockQ6K, BlockQ8K, quantize_q8_k, q6_k, vec_dot_q6_k_q8k),
        _ => {
            for (w, out) in a.ws.iter().zip(a.outs.iter_mut()) {
                #[cfg(target_arch = "x86_64")]
                if isa == Isa::Avx512Vnni && super::x86_float::takes(w.ty) {
                    // SAFETY: `isa` was found in `Isa::available()`.
                    unsafe { super::x86_float::matmul_float(w, x, n_tokens, out)? };
                    continue;
                }
                matmul_dequant(w, x, n_tokens, out)?;
            }
            Ok(())
        }
    }
}

struct Args<'a, 'w, 'o> {
    ws: &'a [QMatrix<'w>],
    x: &'a [f32],
    n_tokens: usize,
    outs: &'a mut [&'o mut [f32]],
}

/// Quantizes the activations, then computes row chunks of every matrix in
/// one parallel loop. `kern` computes `o[t] = w_row · x[t]` for
/// `t < nt ≤ TOKENS_PER_PASS`, with `x` holding `nt` rows of `w_row.len()` blocks.
fn run<W: Block + Sync, A: Pod + Send + Sync, K>(
    a: Args,
    quant: fn(&[f32], &mut [A]),
    kern: K,
) -> Result<(), KernelError>
where
    K: Fn(&[W], &[A], usize, &mut [f32]) + Sync,
{
    let Args { ws, x, n_tokens, outs } = a;
    let cols = ws[0].cols;
    let nb = cols / W::TYPE.block_size();
    // Tensor data from the mmap is aligned; a misaligned slice is copied.
    let mut copied: [Vec<W>; MAX_MULTI] = Default::default();
    let mut blocks: [&[W]; MAX_MULTI] = [&[]; MAX_MULTI];
    for (i, w) in ws.iter().enumerate() {
        if as_blocks::<W>(w.data).is_none() {
            copied[i] = bytemuck::pod_collect_to_vec::<u8, W>(w.data);
        }
    }
    for (i, w) in ws.iter().enumerate() {
        blocks[i] = match as_blocks::<W>(w.data) {
            Some(b) => b,
            None => &copied[i],
        };
    }
    let threads = rayon::current_num_threads();
    let total_rows: usize = ws.iter().map(|w| w.rows).sum();
    let row_bytes = ws[0].row_bytes().max(1);
    let per_task = total_rows.div_ceil(threads * TASKS_PER_THREAD).min(TASK_WEIGHT_BYTES / row_bytes).max(1);
    // Task t covers rows of matrix i where first_task[i] <= t < first_task[i + 1].
    let mut first_task = [0usize; MAX_MULTI + 1];
    for (i, w) in ws.iter().enumerate() {
        first_task[i + 1] = first_task[i] + w.rows.div_ceil(per_task);
    }
    let n_tasks = first_task[ws.len()];
    let ptrs = out_ptrs(outs);
    with_act_buf::<A, _>(n_tokens * nb, |acts| {
        quantize_rows(x, cols, nb, acts, quant);
        let acts = &*acts;
        (0..n_tasks).into_par_iter().for_each(|task| {
            let i = first_task[1..=ws.len()].iter().position(|&f| task < f).unwrap_or(0);
            let (rows, wb, ptr) = (ws[i].rows, blocks[i], ptrs[i]);
            let local = task - first_task[i];
            let (r_lo, r_hi) = (local * per_task, ((local + 1) * per_task).min(rows));
            let mut tmp = [0.0f32; TOKENS_PER_PASS];
            for t0 in (0..n_tokens).step_by(TOKENS_PER_PASS) {
                let nt = TOKENS_PER_PASS.min(n_tokens - t0);
                let xs = &acts[t0 * nb..(t0 + nt) * nb];
                for r in r_lo..r_hi {
                    kern(&wb[r * nb..(r + 1) * nb], xs, nt, &mut tmp);
                    for (k, &v) in tmp[..nt].iter().enumerate() {
                        // SAFETY: (t0 + k) < n_tokens and r < rows, in bounds
                        // of output i (checked); row r of matrix i belongs to
                        // this task alone.
                        unsafe { ptr.write((t0 + k) * rows + r, v) };
                    }
                }
            }
        });
    });
    Ok(())
}
