//! Repacked Q4_0, Q5_0 and Q8_0 weights: eight rows interleaved per block so that
//! one 256-bit integer dot product serves eight rows at once.
//!
//! Why: the row-major kernels spend most instructions per 32-weight block
//! on the float side (convert, scale, accumulate) and on unpacking, all per
//! row. With eight rows' bytes side by side in a register, the activation
//! bytes are broadcast instead, a whole block's sums land in eight lanes
//! (one per row), and convert/scale/accumulate run once per eight rows.
//! llama.cpp repacks Q4_0 the same way on this kind of CPU; the layouts here
//! are ours. It costs one copy of the matrix (the same size as the original),
//! made the first time the CPU multiplies by it.
//!
//! Layout of [`BlockQ4_0x8`]: the eight rows' f16 scales, then for each
//! group `g` of 4 bytes (`g < 4`) the bytes `qs[4g..4g+4]` of rows 0..8 —
//! 32 bytes whose low nibbles are weights `4g..4g+4` and high nibbles
//! weights `16+4g..16+4g+4` of each row (ggml's nibble order).
//! [`BlockQ5_0x8`]: as Q4_0, plus the fifth bits regrouped so that one
//! `u32` covers a 32-byte register of nibbles: bit `4r + j` of `qh[2g]`
//! (`qh[2g + 1]`) is the fifth bit of row `r`'s weight `4g + j` (`16 + 4g + j`).
//! [`BlockQ8_0x8`]: the scales, then for each group `g < 8` the weights
//! `4g..4g+4` of rows 0..8, stored as `q + 128` so they are the unsigned
//! operand of `u8 × i8` products.
//! All store weights offset to unsigned (`q + 8`, `q + 16`, `q + 128`); the kernels
//! subtract `offset · Σx` per block, carried in the activation block's `s`.

use std::cell::RefCell;

use bytemuck::{Pod, Zeroable};
use half::f16;
use infer_gguf::blocks::{as_blocks, BlockQ4_0, BlockQ5_0, BlockQ8_0};
use infer_gguf::QuantType;
use rayon::prelude::*;

use super::quantize::{quantize_q8_act, BlockQ8Act};
use super::tiled::{Isa, TOKENS_PER_PASS};
use super::{OutPtr, QMatrix};
use crate::KernelError;

/// Rows interleaved per packed block.
pub const PACK_ROWS: usize = 8;

/// One 32-column block of eight Q4_0 rows, interleaved (see the module docs).
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct BlockQ4_0x8 {
    pub d: [f16; PACK_ROWS],
    pub qs: [u8; 16 * PACK_ROWS],
}

const _: () = assert!(std::mem::size_of::<BlockQ4_0x8>() == PACK_ROWS * std::mem::size_of::<BlockQ4_0>());

/// One 32-column block of eight Q5_0 rows, interleaved (see the module docs).
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct BlockQ5_0x8 {
    pub d: [f16; PACK_ROWS],
    pub qh: [u32; PACK_ROWS],
    pub qs: [u8; 16 * PACK_ROWS],
}

const _: () = assert!(std::mem::size_of::<BlockQ5_0x8>() == PACK_ROWS * std::mem::size_of::<BlockQ5_0>());

/// One 32-column block of eight Q8_0 rows, interleaved, weights `q + 128`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct BlockQ8_0x8 {
    pub d: [f16; PACK_ROWS],
    pub qs: [u8; 32 * PACK_ROWS],
}

const _: () = assert!(std::mem::size_of::<BlockQ8_0x8>() == PACK_ROWS * std::mem::size_of::<BlockQ8_0>());

/// The interleaved blocks of a [`PackedMatrix`].
#[derive(Debug)]
enum Blocks {
    Q4_0(Vec<BlockQ4_0x8>),
    Q5_0(Vec<BlockQ5_0x8>),
    Q8_0(Vec<BlockQ8_0x8>),
}

/// A weight matrix in a repacked layout, built from a [`QMatrix`].
#[derive(Debug)]
pub struct PackedMatrix {
    pub ty: QuantType,
    pub rows: usize,
    pub cols: usize,
    /// Row group `g`'s blocks are `blocks[g * nb..(g + 1) * nb]`.
    blocks: Blocks,
}

impl PackedMatrix {
    /// Whether the packed kernels on `isa` beat its row-major ones (the
    /// packed layout has x86 kernels; elsewhere it runs its scalar spec).
    pub fn helps(isa: Isa) -> bool {
        matches!(isa, Isa::Avx2 | Isa::Avx512Vnni)
    }

    /// Whether [`PackedMatrix::pack`] takes a matrix of this type and shape.
    pub fn packs(ty: QuantType, rows: usize) -> bool {
        matches!(ty, QuantType::Q4_0 | QuantType::Q5_0 | QuantType::Q8_0) && rows.is_multiple_of(PACK_ROWS) && rows > 0
    }

    /// Interleaves `w`; `None` when [`PackedMatrix::packs`] says no or the
    /// data is not a whole number of blocks.
    pub fn pack(w: &QMatrix) -> Option<PackedMatrix> {
        Self::pack_releasing(w, &|_, _| {})
    }

    /// [`PackedMatrix::pack`], calling `release(offset, len)` for each range
    /// of `w.data` once it has been copied, so the owner can let the source
    /// pages go while the copy grows (peak memory stays near one copy).
    pub fn pack_releasing(w: &QMatrix, release: &(dyn Fn(usize, usize) + Sync)) -> Option<PackedMatrix> {
        if !Self::packs(w.ty, w.rows) {
            return None;
        }
        let nb = w.cols / 32;
        let blocks = match w.ty {
            QuantType::Q4_0 => Blocks::Q4_0(interleave::<BlockQ4_0, BlockQ4_0x8>(w, nb, release, |s, pb, r| {
                pb.d[r] = s.d;
                for g in 0..4 {
                    let at = g * 4 * PACK_ROWS + r * 4;
                    pb.qs[at..at + 4].copy_from_slice(&s.qs[g * 4..g * 4 + 4]);
                }
            })?),
            QuantType::Q5_0 => Blocks::Q5_0(interleave::<BlockQ5_0, BlockQ5_0x8>(w, nb, release, |s, pb, r| {
                pb.d[r] = s.d;
                let qh = u32::from_le_bytes(s.qh);
                for g in 0..4 {
                    let at = g * 4 * PACK_ROWS + r * 4;
                    pb.qs[at..at + 4].copy_from_slice(&s.qs[g * 4..g * 4 + 4]);
                    for j in 0..4 {
                        pb.qh[2 * g] |= ((qh >> (4 * g + j)) & 1) << (4 * r + j);
                        pb.qh[2 * g + 1] |= ((qh >> (16 + 4 * g + j)) & 1) << (4 * r + j);
                    }
                }
            })?),
            QuantType::Q8_0 => Blocks::Q8_0(interleave::<BlockQ8_0, BlockQ8_0x8>(w, nb, release, |s, pb, r| {
                pb.d[r] = s.d;
                for g in 0..8 {
                    let at = g * 4 * PACK_ROWS + r * 4;
                    for j in 0..4 {
                        pb.qs[at + j] = (s.qs[g * 4 + j] as u8) ^ 0x80;
                    }
                }
            })?),
            _ => return None,
        };
        Some(PackedMatrix { ty: w.ty, rows: w.rows, cols: w.cols, blocks })
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        match &self.blocks {
            Blocks::Q4_0(b) => std::mem::size_of_val(&b[..]),
            Blocks::Q5_0(b) => std::mem::size_of_val(&b[..]),
            Blocks::Q8_0(b) => std::mem::size_of_val(&b[..]),
        }
    }

    /// The Q4_0 blocks of row group `g` (rows `8g..8g+8`), `cols / 32` of them.
    pub fn group_q4_0(&self, g: usize) -> Option<&[BlockQ4_0x8]> {
        let nb = self.cols / 32;
        match &self.blocks {
            Blocks::Q4_0(b) => b.get(g * nb..(g + 1) * nb),
            _ => None,
        }
    }

    /// The Q5_0 blocks of row group `g`.
    pub fn group_q5_0(&self, g: usize) -> Option<&[BlockQ5_0x8]> {
        let nb = self.cols / 32;
        match &self.blocks {
            Blocks::Q5_0(b) => b.get(g * nb..(g + 1) * nb),
            _ => None,
        }
    }

    /// The Q8_0 blocks of row group `g`.
    pub fn group_q8_0(&self, g: usize) -> Option<&[BlockQ8_0x8]> {
        let nb = self.cols / 32;
        match &self.blocks {
            Blocks::Q8_0(b) => b.get(g * nb..(g + 1) * nb),
            _ => None,
        }
    }
}

/// Row groups copied per task, and per `release` call (~0.3–1 MB of source).
const PACK_CHUNK_GROUPS: usize = 64;

/// Builds the interleaved blocks: `put(src, packed, r)` copies row `r`'s
/// block into its place in the packed block; `release` hears of each
/// copied range of `w.data`.
fn interleave<S: infer_gguf::blocks::Block + Sync, P: Pod + Send>(
    w: &QMatrix,
    nb: usize,
    release: &(dyn Fn(usize, usize) + Sync),
    put: impl Fn(&S, &mut P, usize) + Sync,
) -> Option<Vec<P>> {
    let copied;
    let src: &[S] = match as_blocks::<S>(w.data) {
        Some(b) => b,
        None => {
            copied = bytemuck::pod_collect_to_vec::<u8, S>(w.data);
            &copied
        }
    };
    if src.len() != w.rows * nb {
        return None;
    }
    // Zeroed by the allocator: pages become resident only as they are written.
    let mut blocks: Vec<P> = bytemuck::zeroed_vec(w.rows / PACK_ROWS * nb);
    let group_bytes = PACK_ROWS * nb * std::mem::size_of::<S>();
    blocks.par_chunks_mut(nb * PACK_CHUNK_GROUPS).enumerate().for_each(|(c, chunk)| {
        let g0 = c * PACK_CHUNK_GROUPS;
        for (i, out) in chunk.chunks_mut(nb).enumerate() {
            let g = g0 + i;
            for (b, pb) in out.iter_mut().enumerate() {
                for r in 0..PACK_ROWS {
                    put(&src[(g * PACK_ROWS + r) * nb + b], pb, r);
                }
            }
        }
        release(g0 * group_bytes, chunk.len() / nb * group_bytes);
    });
    Some(blocks)
}

/// The specification of the packed kernels: `out[t * 8 + r]` = row `r` of
/// the group dotted with token `t`, per block the exact integer sum
/// `Σ q·x − 8 Σx` scaled by `d_w · d_x`, accumulated over blocks in order.
pub fn vec_dot_q4_0x8(w: &[BlockQ4_0x8], x: &[BlockQ8Act], nt: usize, out: &mut [f32]) {
    spec(
        w,
        x,
        nt,
        out,
        8,
        |wb| &wb.d,
        |wb, r, i| {
            // Weight i < 16 is the low nibble of byte i, i ≥ 16 the high nibble of byte i − 16.
            let (g, j) = ((i % 16) / 4, i % 4);
            let byte = wb.qs[g * 4 * PACK_ROWS + r * 4 + j];
            (if i < 16 { byte & 0xF } else { byte >> 4 }) as i32
        },
    )
}

/// The specification of the packed Q5_0 kernels, as [`vec_dot_q4_0x8`]:
/// per block `Σ (q + 16)·x − 16 Σx` scaled by `d_w · d_x`.
pub fn vec_dot_q5_0x8(w: &[BlockQ5_0x8], x: &[BlockQ8Act], nt: usize, out: &mut [f32]) {
    spec(
        w,
        x,
        nt,
        out,
        16,
        |wb| &wb.d,
        |wb, r, i| {
            let (g, j) = ((i % 16) / 4, i % 4);
            let byte = wb.qs[g * 4 * PACK_ROWS + r * 4 + j];
            let (nibble, h) = if i < 16 { (byte & 0xF, wb.qh[2 * g]) } else { (byte >> 4, wb.qh[2 * g + 1]) };
            (nibble as u32 | ((h >> (4 * r + j)) & 1) << 4) as i32
        },
    )
}

/// The specification of the packed Q8_0 kernels, as [`vec_dot_q4_0x8`]:
/// per block `Σ (q + 128)·x − 128 Σx` scaled by `d_w · d_x`.
pub fn vec_dot_q8_0x8(w: &[BlockQ8_0x8], x: &[BlockQ8Act], nt: usize, out: &mut [f32]) {
    spec(w, x, nt, out, 128, |wb| &wb.d, |wb, r, i| wb.qs[(i / 4) * 4 * PACK_ROWS + r * 4 + i % 4] as i32)
}

/// The loop the packed specs share: `q(block, row, i)` is row `row`'s stored
/// (unsigned, `q + offset`) weight `i < 32` of the block.
fn spec<B>(
    w: &[B],
    x: &[BlockQ8Act],
    nt: usize,
    out: &mut [f32],
    offset: i32,
    scales: impl Fn(&B) -> &[f16; PACK_ROWS],
    q: impl Fn(&B, usize, usize) -> i32,
) {
    let nb = w.len();
    for t in 0..nt {
        let mut acc = [0.0f32; PACK_ROWS];
        for (b, wb) in w.iter().enumerate() {
            let xb = &x[t * nb + b];
            let sx: i32 = xb.qs.iter().map(|&v| v as i32).sum();
            for (r, a) in acc.iter_mut().enumerate() {
                let s: i32 = (0..32).map(|i| q(wb, r, i) * xb.qs[i] as i32).sum();
                *a += (scales(wb)[r].to_f32() * xb.d) * (s - offset * sx) as f32;
            }
        }
        out[t * PACK_ROWS..(t + 1) * PACK_ROWS].copy_from_slice(&acc);
    }
}

/// Rayon tasks per thread and the weight bytes a task keeps hot in L2
/// across its token passes (as in the row-major driver).
const TASKS_PER_THREAD: usize = 4;
const TASK_WEIGHT_BYTES: usize = 256 * 1024;

thread_local! {
    static ACTS: RefCell<Vec<BlockQ8Act>> = const { RefCell::new(Vec::new()) };
}

/// `out_i[t * rows + r] = W_i[r] · x[t]` for every packed matrix `ws[i]`
/// (same `cols`), activations quantized once (to Q8_0, as for Q4_0's
/// row-major kernels).
pub fn matmul_packed_with(
    isa: Isa,
    ws: &[&PackedMatrix],
    x: &[f32],
    n_tokens: usize,
    outs: &mut [&mut [f32]],
) -> Result<(), KernelError> {
    let shape = |detail: String| KernelError::Shape { op: "matmul_packed", detail };
    if ws.is_empty() || ws.len() != outs.len() || ws.len() > super::MAX_MULTI {
        return Err(shape(format!("{} matrices and {} outputs", ws.len(), outs.len())));
    }
    let cols = ws[0].cols;
    for (w, o) in ws.iter().zip(outs.iter()) {
        if w.cols != cols || Some(o.len()) != w.rows.checked_mul(n_tokens) {
            return Err(shape(format!("{}×{} with {} outputs beside {cols} columns", w.rows, w.cols, o.len())));
        }
    }
    if Some(x.len()) != n_tokens.checked_mul(cols) {
        return Err(shape(format!("x has {} values, want {n_tokens} × {cols}", x.len())));
    }
    if ws.iter().any(|w| w.ty != ws[0].ty) {
        return Err(shape(format!(
            "{} beside {}",
            ws.iter().map(|w| w.ty.to_string()).collect::<Vec<_>>().join(", "),
            ws[0].ty
        )));
    }
    if !Isa::available().contains(&isa) {
        return Err(KernelError::Unsupported(ws[0].ty, "matmul on an instruction set this CPU lacks"));
    }
    // The kernel of one block type on `isa`: x86 SIMD or the scalar spec.
    macro_rules! kernel {
        ($B:ty, $avx2:ident, $vnni:ident, $spec:path) => {{
            let k: fn(&[$B], &[BlockQ8Act], usize, &mut [f32]) = match isa {
                #[cfg(target_arch = "x86_64")]
                // SAFETY: `isa` was found in `Isa::available()`.
                Isa::Avx2 => |w, x, nt, o| unsafe { super::x86_packed::$avx2(w, x, nt, o) },
                #[cfg(target_arch = "x86_64")]
                // SAFETY: as above.
                Isa::Avx512Vnni => |w, x, nt, o| unsafe { super::x86_packed::$vnni(w, x, nt, o) },
                _ => $spec,
            };
            k
        }};
    }
    match ws[0].ty {
        QuantType::Q4_0 => {
            let kern = kernel!(BlockQ4_0x8, avx2_q4_0x8, vnni_q4_0x8, vec_dot_q4_0x8);
            run_packed(ws, x, n_tokens, outs, 8, |w, g| w.group_q4_0(g), kern)
        }
        QuantType::Q5_0 => {
            let kern = kernel!(BlockQ5_0x8, avx2_q5_0x8, vnni_q5_0x8, vec_dot_q5_0x8);
            run_packed(ws, x, n_tokens, outs, 16, |w, g| w.group_q5_0(g), kern)
        }
        QuantType::Q8_0 => {
            let kern = kernel!(BlockQ8_0x8, avx2_q8_0x8, vnni_q8_0x8, vec_dot_q8_0x8);
            run_packed(ws, x, n_tokens, outs, 128, |w, g| w.group_q8_0(g), kern)
        }
        ty => Err(KernelError::Unsupported(ty, "matmul_packed")),
    }
}

/// The parallel loop of [`matmul_packed_with`] for one block type: `offset`
/// is the unsigned offset of the stored weights, `group` a row group's blocks.
fn run_packed<B: Pod + Sync>(
    ws: &[&PackedMatrix],
    x: &[f32],
    n_tokens: usize,
    outs: &mut [&mut [f32]],
    offset: i32,
    group: fn(&PackedMatrix, usize) -> Option<&[B]>,
    kern: fn(&[B], &[BlockQ8Act], usize, &mut [f32]),
) -> Result<(), KernelError> {
    let cols = ws[0].cols;
    let nb = cols / 32;
    let group_bytes = nb * std::mem::size_of::<B>();
    let total_groups: usize = ws.iter().map(|w| w.rows / PACK_ROWS).sum();
    let per_task = total_groups
        .div_ceil(rayon::current_num_threads() * TASKS_PER_THREAD)
        .min(TASK_WEIGHT_BYTES / group_bytes.max(1))
        .max(1);
    let mut first_task = [0usize; super::MAX_MULTI + 1];
    for (i, w) in ws.iter().enumerate() {
        first_task[i + 1] = first_task[i] + (w.rows / PACK_ROWS).div_ceil(per_task);
    }
    let n_tasks = first_task[ws.len()];
    let mut ptrs = [OutPtr(std::ptr::null_mut()); super::MAX_MULTI];
    for (p, o) in ptrs.iter_mut().zip(outs.iter_mut()) {
        *p = OutPtr(o.as_mut_ptr());
    }
    let run = |acts: &[BlockQ8Act]| {
        (0..n_tasks).into_par_iter().for_each(|task| {
            let i = first_task[1..=ws.len()].iter().position(|&f| task < f).unwrap_or(0);
            let (w, ptr) = (ws[i], ptrs[i]);
            let local = task - first_task[i];
            let groups = w.rows / PACK_ROWS;
            let (g_lo, g_hi) = (local * per_task, ((local + 1) * per_task).min(groups));
            let mut tmp = [0.0f32; TOKENS_PER_PASS * PACK_ROWS];
            for t0 in (0..n_tokens).step_by(TOKENS_PER_PASS) {
                let nt = TOKENS_PER_PASS.min(n_tokens - t0);
                let xs = &acts[t0 * nb..(t0 + nt) * nb];
                for g in g_lo..g_hi {
                    let Some(blocks) = group(w, g) else { continue };
                    kern(blocks, xs, nt, &mut tmp);
                    for t in 0..nt {
                        for r in 0..PACK_ROWS {
                            // SAFETY: t0 + t < n_tokens and g * 8 + r < rows,
                            // in bounds of output i (checked); the group's
                            // rows belong to this task alone.
                            unsafe { ptr.write((t0 + t) * w.rows + g * PACK_ROWS + r, tmp[t * PACK_ROWS + r]) };
                        }
                    }
                }
            }
        });
    };
    // The kernels want `s = offset · Σq` (exact in f32: |s| ≤ 128·32·127).
    let quant_row = |x: &[f32], a: &mut [BlockQ8Act]| {
        quantize_q8_act(x, a);
        for b in a {
            b.s = (offset * b.qs.iter().map(|&q| q as i32).sum::<i32>()) as f32;
        }
    };
    let quant = |acts: &mut [BlockQ8Act]| {
        if n_tokens >= 4 {
            x.par_chunks(cols).zip(acts.par_chunks_mut(nb)).for_each(|(x, a)| quant_row(x, a));
        } else {
            x.chunks(cols).zip(acts.chunks_mut(nb)).for_each(|(x, a)| quant_row(x, a));
        }
    };
    ACTS.with(|cell| match cell.try_borrow_mut() {
        Ok(mut v) => {
            v.resize(n_tokens * nb, BlockQ8Act::zeroed());
            quant(&mut v[..]);
            run(&v[..]);
        }
        Err(_) => {
            let mut v = vec![BlockQ8Act::zeroed(); n_tokens * nb];
            quant(&mut v);
            run(&v);
        }
    });
    Ok(())
}
