//! Repacked weights: eight rows interleaved per block so that one 256-bit
//! integer dot product serves eight rows at once. This file holds the
//! 32-weight types (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0) and the driver shared with
//! the K-quant layouts of [`super::repack_k`].
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
//! [`BlockQ4_1x8`] and [`BlockQ5_1x8`]: as Q4_0 and Q5_0 with the eight
//! rows' f16 mins after the scales; their weights are unsigned already.
//! The others store weights offset to unsigned (`q + 8`, `q + 16`, `q + 128`); the kernels
//! subtract `offset · Σx` per block, carried in the activation block's `s`.
//! The min types keep `s = d · Σq` (as the row-major kernels) and add `m · s`.

use bytemuck::{Pod, Zeroable};
use half::f16;
use infer_gguf::blocks::{as_blocks, BlockQ4_0, BlockQ4_1, BlockQ5_0, BlockQ5_1, BlockQ8_0};
use infer_gguf::QuantType;
use rayon::prelude::*;

use super::quantize::{quantize_q8_act, BlockQ8Act};
use super::float_panels::{self, FloatPanels, Panels};
use super::repack_k::{self, BlockQ4Kx8, BlockQ5Kx8, BlockQ6Kx8, BlockQ8KAct};
use super::tiled::{out_ptrs, quantize_rows, with_act_buf, Isa, TOKENS_PER_PASS};
use super::OutPtr;
use super::QMatrix;
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

/// One 32-column block of eight Q4_1 rows, interleaved (see the module docs).
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct BlockQ4_1x8 {
    pub d: [f16; PACK_ROWS],
    pub m: [f16; PACK_ROWS],
    pub qs: [u8; 16 * PACK_ROWS],
}

const _: () = assert!(std::mem::size_of::<BlockQ4_1x8>() == PACK_ROWS * std::mem::size_of::<BlockQ4_1>());

/// One 32-column block of eight Q5_1 rows, interleaved (see the module docs).
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct BlockQ5_1x8 {
    pub d: [f16; PACK_ROWS],
    pub m: [f16; PACK_ROWS],
    pub qh: [u32; PACK_ROWS],
    pub qs: [u8; 16 * PACK_ROWS],
}

const _: () = assert!(std::mem::size_of::<BlockQ5_1x8>() == PACK_ROWS * std::mem::size_of::<BlockQ5_1>());

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
    Q4_1(Vec<BlockQ4_1x8>),
    Q5_0(Vec<BlockQ5_0x8>),
    Q5_1(Vec<BlockQ5_1x8>),
    Q8_0(Vec<BlockQ8_0x8>),
    Q4K(Vec<BlockQ4Kx8>),
    Q5K(Vec<BlockQ5Kx8>),
    Q6K(Vec<BlockQ6Kx8>),
    /// F32, F16, BF16 in panels of 32 rows ([`super::float_panels`]).
    Float(super::float_panels::FloatPanels),
}

/// The row groups of a [`PackedMatrix`] in one block type.
pub(crate) trait PackedBlocks: Pod + Sync {
    fn of(m: &PackedMatrix) -> Option<&[Self]>;
}

macro_rules! packed_blocks {
    ($($B:ty => $v:ident),*) => {$(
        impl PackedBlocks for $B {
            fn of(m: &PackedMatrix) -> Option<&[Self]> {
                match &m.blocks {
                    Blocks::$v(b) => Some(b),
                    _ => None,
                }
            }
        }
    )*};
}

packed_blocks!(BlockQ4_0x8 => Q4_0, BlockQ4_1x8 => Q4_1, BlockQ5_0x8 => Q5_0, BlockQ5_1x8 => Q5_1,
    BlockQ8_0x8 => Q8_0, BlockQ4Kx8 => Q4K, BlockQ5Kx8 => Q5K, BlockQ6Kx8 => Q6K);

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
        use QuantType::*;
        float_panels::packs(ty, rows)
            || matches!(ty, Q4_0 | Q4_1 | Q5_0 | Q5_1 | Q8_0 | Q4K | Q5K | Q6K) && rows.is_multiple_of(PACK_ROWS) && rows > 0
    }

    /// Whether packing this matrix makes the products on `isa` faster: the
    /// quantized layouts have AVX2 and AVX-512 kernels, the float panels an
    /// AVX-512 one (elsewhere each runs its scalar spec).
    pub fn worth_packing(ty: QuantType, rows: usize, isa: Isa) -> bool {
        if float_panels::packs(ty, rows) {
            return isa == Isa::Avx512Vnni;
        }
        Self::packs(ty, rows) && Self::helps(isa)
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
        if float_panels::packs(w.ty, w.rows) {
            let data = float_panels::pack(w, release)?;
            let blocks = Blocks::Float(FloatPanels { data, half_math: false });
            return Some(PackedMatrix { ty: w.ty, rows: w.rows, cols: w.cols, blocks });
        }
        let nb = w.cols / w.ty.block_size();
        let blocks = match w.ty {
            QuantType::Q4_0 => Blocks::Q4_0(interleave::<BlockQ4_0, BlockQ4_0x8>(w, nb, release, |s, pb, r| {
                pb.d[r] = s.d;
                put_nibbles(&s.qs, &mut pb.qs, r);
            })?),
            QuantType::Q4_1 => Blocks::Q4_1(interleave::<BlockQ4_1, BlockQ4_1x8>(w, nb, release, |s, pb, r| {
                (pb.d[r], pb.m[r]) = (s.d, s.m);
                put_nibbles(&s.qs, &mut pb.qs, r);
            })?),
            QuantType::Q5_0 => Blocks::Q5_0(interleave::<BlockQ5_0, BlockQ5_0x8>(w, nb, release, |s, pb, r| {
                pb.d[r] = s.d;
                put_nibbles(&s.qs, &mut pb.qs, r);
                put_fifth_bits(s.qh, &mut pb.qh, r);
            })?),
            QuantType::Q5_1 => Blocks::Q5_1(interleave::<BlockQ5_1, BlockQ5_1x8>(w, nb, release, |s, pb, r| {
                (pb.d[r], pb.m[r]) = (s.d, s.m);
                put_nibbles(&s.qs, &mut pb.qs, r);
                put_fifth_bits(s.qh, &mut pb.qh, r);
            })?),
            QuantType::Q4K => Blocks::Q4K(interleave(w, nb, release, repack_k::put_q4_k)?),
            QuantType::Q5K => Blocks::Q5K(interleave(w, nb, release, repack_k::put_q5_k)?),
            QuantType::Q6K => Blocks::Q6K(interleave(w, nb, release, repack_k::put_q6_k)?),
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

    /// Bytes held: the original's size for the 32-weight types and Q6_K,
    /// 2–3 % more for Q4_K and Q5_K (their 6-bit scales stored as bytes).
    pub fn bytes(&self) -> usize {
        match &self.blocks {
            Blocks::Q4_0(b) => std::mem::size_of_val(&b[..]),
            Blocks::Q4_1(b) => std::mem::size_of_val(&b[..]),
            Blocks::Q5_0(b) => std::mem::size_of_val(&b[..]),
            Blocks::Q5_1(b) => std::mem::size_of_val(&b[..]),
            Blocks::Q8_0(b) => std::mem::size_of_val(&b[..]),
            Blocks::Q4K(b) => std::mem::size_of_val(&b[..]),
            Blocks::Q5K(b) => std::mem::size_of_val(&b[..]),
            Blocks::Q6K(b) => std::mem::size_of_val(&b[..]),
            Blocks::Float(f) => float_panels::bytes(&f.data),
        }
    }

    /// Lets F16 panels sum in f16 on CPUs with AVX-512 FP16 (twice the
    /// multiply-adds per instruction; see [`super::float_panels`]): for
    /// owners whose results tolerate it, as an encoder's embeddings do.
    /// Returns whether the matrix takes it (F16 panels only).
    pub fn set_half_math(&mut self, on: bool) -> bool {
        match &mut self.blocks {
            Blocks::Float(f) if self.ty == QuantType::F16 => {
                f.half_math = on;
                true
            }
            _ => false,
        }
    }

    /// The Q4_0 blocks of row group `g` (rows `8g..8g+8`), `cols / 32` of them.
    pub fn group_q4_0(&self, g: usize) -> Option<&[BlockQ4_0x8]> {
        self.group(g)
    }

    /// The blocks of row group `g` (rows `8g..8g+8`) in the layout `B`,
    /// `None` for another layout or a group out of range.
    #[allow(private_bounds)] // the layouts are public, the trait is how they are found
    pub fn group<B: PackedBlocks>(&self, g: usize) -> Option<&[B]> {
        let nb = self.cols / self.ty.block_size();
        B::of(self)?.get(g * nb..(g + 1) * nb)
    }
}

/// Row `r`'s 16 nibble bytes into their 4-byte groups of an interleaved block.
fn put_nibbles(qs: &[u8; 16], packed: &mut [u8; 16 * PACK_ROWS], r: usize) {
    for g in 0..4 {
        let at = g * 4 * PACK_ROWS + r * 4;
        packed[at..at + 4].copy_from_slice(&qs[g * 4..g * 4 + 4]);
    }
}

/// Row `r`'s fifth bits regrouped one `u32` per 32-byte register of nibbles.
fn put_fifth_bits(qh: [u8; 4], packed: &mut [u32; PACK_ROWS], r: usize) {
    let qh = u32::from_le_bytes(qh);
    for g in 0..4 {
        for j in 0..4 {
            packed[2 * g] |= ((qh >> (4 * g + j)) & 1) << (4 * r + j);
            packed[2 * g + 1] |= ((qh >> (16 + 4 * g + j)) & 1) << (4 * r + j);
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
    spec(w, x, nt, out, Some(8), |wb| &wb.d, |_| None, |wb, r, i| packed_nibble(&wb.qs, r, i))
}

/// Row `r`'s nibble `i < 32` of an interleaved 4-bit block: weight i < 16
/// is the low nibble of byte i, i ≥ 16 the high nibble of byte i − 16.
fn packed_nibble(qs: &[u8; 16 * PACK_ROWS], r: usize, i: usize) -> i32 {
    let (g, j) = ((i % 16) / 4, i % 4);
    let byte = qs[g * 4 * PACK_ROWS + r * 4 + j];
    (if i < 16 { byte & 0xF } else { byte >> 4 }) as i32
}

/// Row `r`'s fifth bit of weight `i` (as 0 or 16), regrouped as [`put_fifth_bits`] does.
fn packed_fifth_bit(qh: &[u32; PACK_ROWS], r: usize, i: usize) -> i32 {
    let (g, j) = ((i % 16) / 4, i % 4);
    let h = if i < 16 { qh[2 * g] } else { qh[2 * g + 1] };
    (((h >> (4 * r + j)) & 1) << 4) as i32
}

/// The specification of the packed Q4_1 kernels: per block `Σ q·x` scaled
/// by `d_w · d_x`, plus `m_w · s_x`.
pub fn vec_dot_q4_1x8(w: &[BlockQ4_1x8], x: &[BlockQ8Act], nt: usize, out: &mut [f32]) {
    spec(w, x, nt, out, None, |wb| &wb.d, |wb| Some(&wb.m), |wb, r, i| packed_nibble(&wb.qs, r, i))
}

/// The specification of the packed Q5_1 kernels, as [`vec_dot_q4_1x8`].
pub fn vec_dot_q5_1x8(w: &[BlockQ5_1x8], x: &[BlockQ8Act], nt: usize, out: &mut [f32]) {
    spec(
        w,
        x,
        nt,
        out,
        None,
        |wb| &wb.d,
        |wb| Some(&wb.m),
        |wb, r, i| packed_nibble(&wb.qs, r, i) | packed_fifth_bit(&wb.qh, r, i),
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
        Some(16),
        |wb| &wb.d,
        |_| None,
        |wb, r, i| packed_nibble(&wb.qs, r, i) | packed_fifth_bit(&wb.qh, r, i),
    )
}

/// The specification of the packed Q8_0 kernels, as [`vec_dot_q4_0x8`]:
/// per block `Σ (q + 128)·x − 128 Σx` scaled by `d_w · d_x`.
pub fn vec_dot_q8_0x8(w: &[BlockQ8_0x8], x: &[BlockQ8Act], nt: usize, out: &mut [f32]) {
    spec(
        w,
        x,
        nt,
        out,
        Some(128),
        |wb| &wb.d,
        |_| None,
        |wb, r, i| wb.qs[(i / 4) * 4 * PACK_ROWS + r * 4 + i % 4] as i32,
    )
}

/// The loop the packed specs share: `q(block, row, i)` is row `row`'s stored
/// (unsigned, `q + offset`) weight `i < 32` of the block; types with a min
/// (`offset` `None`) add `m · s_x`.
#[allow(clippy::too_many_arguments)]
fn spec<B>(
    w: &[B],
    x: &[BlockQ8Act],
    nt: usize,
    out: &mut [f32],
    offset: Option<i32>,
    scales: impl Fn(&B) -> &[f16; PACK_ROWS],
    mins: impl Fn(&B) -> Option<&[f16; PACK_ROWS]>,
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
                *a += (scales(wb)[r].to_f32() * xb.d) * (s - offset.unwrap_or(0) * sx) as f32;
                if let Some(m) = mins(wb) {
                    *a += m[r].to_f32() * xb.s;
                }
            }
        }
        out[t * PACK_ROWS..(t + 1) * PACK_ROWS].copy_from_slice(&acc);
    }
}

/// Rayon tasks per thread and the weight bytes a task keeps hot in L2
/// across its token passes (as in the row-major driver).
const TASKS_PER_THREAD: usize = 4;
const TASK_WEIGHT_BYTES: usize = 256 * 1024;

/// `out_i[t * rows + r] = W_i[r] · x[t]` for every packed matrix `ws[i]`
/// (same `cols`), activations quantized once (to [`BlockQ8Act`] for the
/// 32-weight types, as for their row-major kernels; to [`BlockQ8KAct`] for
/// the K-quants).
pub fn matmul_packed_with(
    isa: Isa,
    ws: &[&PackedMatrix],
    x: &[f32],
    n_tokens: usize,
    outs: &mut [&mut [f32]],
) -> Result<(), KernelError> {
    matmul_packed_bias_with(isa, ws, &[None; super::MAX_MULTI][..ws.len().min(super::MAX_MULTI)], x, n_tokens, outs)
}

/// [`matmul_packed_with`] plus a bias per matrix where `biases[i]` is given
/// (`rows` values): float panels add it as each task's epilogue, the other
/// layouts in a pass after the product.
pub fn matmul_packed_bias_with(
    isa: Isa,
    ws: &[&PackedMatrix],
    biases: &[Option<&[f32]>],
    x: &[f32],
    n_tokens: usize,
    outs: &mut [&mut [f32]],
) -> Result<(), KernelError> {
    let shape = |detail: String| KernelError::Shape { op: "matmul_packed", detail };
    if ws.is_empty() || ws.len() != outs.len() || ws.len() != biases.len() || ws.len() > super::MAX_MULTI {
        return Err(shape(format!("{} matrices, {} biases and {} outputs", ws.len(), biases.len(), outs.len())));
    }
    if let Some((w, b)) = ws.iter().zip(biases).find(|(w, b)| b.is_some_and(|b| b.len() != w.rows)) {
        return Err(shape(format!("a bias of {} values for {} rows", b.map_or(0, |b| b.len()), w.rows)));
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
    if let Blocks::Float(_) = ws[0].blocks {
        let mut panels = Vec::with_capacity(ws.len());
        for w in ws {
            match &w.blocks {
                Blocks::Float(f) => {
                    panels.push(Panels { ty: w.ty, rows: w.rows, cols: w.cols, data: &f.data, half_math: f.half_math })
                }
                _ => return Err(shape(format!("{} beside float panels", w.ty))),
            }
        }
        return float_panels::matmul_panels(isa, &panels, biases, x, n_tokens, outs);
    }
    matmul_packed_quantized(isa, ws, x, n_tokens, outs)?;
    super::add_biases(biases, outs);
    Ok(())
}

/// [`matmul_packed_with`] on the quantized layouts (shapes checked by the caller).
fn matmul_packed_quantized(
    isa: Isa,
    ws: &[&PackedMatrix],
    x: &[f32],
    n_tokens: usize,
    outs: &mut [&mut [f32]],
) -> Result<(), KernelError> {
    // The kernel of one block type on `isa`: x86 SIMD or the scalar spec.
    macro_rules! kernel {
        ($B:ty, $A:ty, $avx2:ident, $vnni:ident, $spec:path) => {{
            let k: fn(&[$B], &[$A], usize, &mut [f32]) = match isa {
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
    let a = PackedArgs { ws, x, n_tokens, outs };
    // Offset types want `s = offset · Σq` (exact in f32: |s| ≤ 128·32·127);
    // the min types keep the quantizer's `s = d · Σq`.
    fn act32<const OFFSET: i32>(x: &[f32], a: &mut [BlockQ8Act]) {
        quantize_q8_act(x, a);
        if OFFSET != 0 {
            for b in a {
                b.s = (OFFSET * b.qs.iter().map(|&q| q as i32).sum::<i32>()) as f32;
            }
        }
    }
    let k_act = repack_k::quantize_q8_k_act;
    // The 16-row AVX-512 kernels (two row groups per register).
    macro_rules! pair_kernel {
        ($B:ty, $vnni:ident) => {{
            let k: Option<PairKernel<$B, _>> = match isa {
                #[cfg(target_arch = "x86_64")]
                // SAFETY: `isa` was found in `Isa::available()`.
                Isa::Avx512Vnni => Some(|a, b, x, nt, o| unsafe { super::x86_packed512::$vnni(a, b, x, nt, o) }),
                _ => None,
            };
            k
        }};
    }
    // Their prefill panels.
    macro_rules! panel_kernel {
        ($B:ty, $vnni:ident) => {{
            let k: Option<PairKernel<$B, _>> = match isa {
                #[cfg(target_arch = "x86_64")]
                // SAFETY: `isa` was found in `Isa::available()`.
                Isa::Avx512Vnni => Some(|a, b, x, nt, o| unsafe { super::x86_panel512::$vnni(a, b, x, nt, o) }),
                _ => None,
            };
            k
        }};
    }
    match ws[0].ty {
        QuantType::Q4_0 => {
            let kern = kernel!(BlockQ4_0x8, BlockQ8Act, avx2_q4_0x8, vnni_q4_0x8, vec_dot_q4_0x8);
            run_packed(a, act32::<8>, kern, pair_kernel!(BlockQ4_0x8, vnni_q4_0x16), None)
        }
        QuantType::Q4_1 => {
            let kern = kernel!(BlockQ4_1x8, BlockQ8Act, avx2_q4_1x8, vnni_q4_1x8, vec_dot_q4_1x8);
            run_packed(a, act32::<0>, kern, pair_kernel!(BlockQ4_1x8, vnni_q4_1x16), None)
        }
        QuantType::Q5_0 => {
            let kern = kernel!(BlockQ5_0x8, BlockQ8Act, avx2_q5_0x8, vnni_q5_0x8, vec_dot_q5_0x8);
            run_packed(a, act32::<16>, kern, pair_kernel!(BlockQ5_0x8, vnni_q5_0x16), None)
        }
        QuantType::Q5_1 => {
            let kern = kernel!(BlockQ5_1x8, BlockQ8Act, avx2_q5_1x8, vnni_q5_1x8, vec_dot_q5_1x8);
            run_packed(a, act32::<0>, kern, pair_kernel!(BlockQ5_1x8, vnni_q5_1x16), None)
        }
        QuantType::Q8_0 => {
            let kern = kernel!(BlockQ8_0x8, BlockQ8Act, avx2_q8_0x8, vnni_q8_0x8, vec_dot_q8_0x8);
            run_packed(a, act32::<128>, kern, None, None)
        }
        QuantType::Q4K => run_packed(
            a,
            k_act,
            kernel!(BlockQ4Kx8, BlockQ8KAct, avx2_q4_kx8, vnni_q4_kx8, repack_k::vec_dot_q4_kx8),
            pair_kernel!(BlockQ4Kx8, vnni_q4_kx16),
            // Its bits unpack in two operations: a panel does not pay.
            None,
        ),
        QuantType::Q5K => run_packed(
            a,
            k_act,
            kernel!(BlockQ5Kx8, BlockQ8KAct, avx2_q5_kx8, vnni_q5_kx8, repack_k::vec_dot_q5_kx8),
            pair_kernel!(BlockQ5Kx8, vnni_q5_kx16),
            panel_kernel!(BlockQ5Kx8, vnni_q5_kx16_panel),
        ),
        QuantType::Q6K => run_packed(
            a,
            k_act,
            kernel!(BlockQ6Kx8, BlockQ8KAct, avx2_q6_kx8, vnni_q6_kx8, repack_k::vec_dot_q6_kx8),
            pair_kernel!(BlockQ6Kx8, vnni_q6_kx16),
            panel_kernel!(BlockQ6Kx8, vnni_q6_kx16_panel),
        ),
        ty => Err(KernelError::Unsupported(ty, "matmul_packed")),
    }
}

/// A kernel over two row groups at once: `out[t * 16 + r]`, rows 0..8 from
/// the first group, 8..16 from the second.
type PairKernel<B, A> = fn(&[B], &[B], &[A], usize, &mut [f32]);

/// Prompts of this many tokens or more go through a type's panel kernel
/// (two groups unpacked once, then every token), where it has one: below,
/// unpacking costs more than the direct kernel's per-tile assembly.
const PANEL_TOKENS: usize = 24;

struct PackedArgs<'a, 'w, 'o> {
    ws: &'a [&'w PackedMatrix],
    x: &'a [f32],
    n_tokens: usize,
    outs: &'a mut [&'o mut [f32]],
}

/// The parallel loop of [`matmul_packed_with`] for one block type `B` with
/// activations `A`: `quant` quantizes one token's row, `kern` dots a row
/// group's blocks with `nt ≤ TOKENS_PER_PASS` tokens, `pair` (where the
/// ISA has one) two groups at once.
fn run_packed<B: PackedBlocks, A: Pod + Send + Sync>(
    a: PackedArgs,
    quant: fn(&[f32], &mut [A]),
    kern: fn(&[B], &[A], usize, &mut [f32]),
    pair: Option<PairKernel<B, A>>,
    panel: Option<PairKernel<B, A>>,
) -> Result<(), KernelError> {
    let PackedArgs { ws, x, n_tokens, outs } = a;
    let panel = panel.filter(|_| n_tokens >= PANEL_TOKENS);
    let cols = ws[0].cols;
    let nb = cols / ws[0].ty.block_size();
    let group_bytes = nb * std::mem::size_of::<B>();
    let total_groups: usize = ws.iter().map(|w| w.rows / PACK_ROWS).sum();
    let per_task = total_groups
        .div_ceil(rayon::current_num_threads() * TASKS_PER_THREAD)
        .min(TASK_WEIGHT_BYTES / group_bytes.max(1))
        .max(1);
    // Whole pairs of groups per task for the pair kernel.
    let per_task = if pair.is_some() { per_task.next_multiple_of(2) } else { per_task };
    let mut first_task = [0usize; super::MAX_MULTI + 1];
    for (i, w) in ws.iter().enumerate() {
        first_task[i + 1] = first_task[i] + (w.rows / PACK_ROWS).div_ceil(per_task);
    }
    let n_tasks = first_task[ws.len()];
    let ptrs = out_ptrs(outs);
    with_act_buf::<A, _>(n_tokens * nb, |acts| {
        quantize_rows(x, cols, nb, acts, quant);
        let acts = &*acts;
        (0..n_tasks).into_par_iter().for_each(|task| {
            let i = first_task[1..=ws.len()].iter().position(|&f| task < f).unwrap_or(0);
            let (w, ptr) = (ws[i], ptrs[i]);
            let local = task - first_task[i];
            let groups = w.rows / PACK_ROWS;
            let (g_lo, g_hi) = (local * per_task, ((local + 1) * per_task).min(groups));
            let range = (g_lo, g_hi);
            if let Some(pk) = panel {
                // Every token in one pass, each pair of groups unpacked once.
                let mut buf = vec![0.0f32; n_tokens * 2 * PACK_ROWS];
                run_groups(w, ptr, acts, (0, n_tokens), range, kern, Some(pk), &mut buf);
                return;
            }
            let mut tmp = [0.0f32; TOKENS_PER_PASS * 2 * PACK_ROWS];
            for t0 in (0..n_tokens).step_by(TOKENS_PER_PASS) {
                let nt = TOKENS_PER_PASS.min(n_tokens - t0);
                run_groups(w, ptr, &acts[t0 * nb..(t0 + nt) * nb], (t0, nt), range, kern, pair, &mut tmp);
            }
        });
    });
    Ok(())
}

/// Groups `g_lo..g_hi` of `w` against tokens `t0..t0 + nt` (activations
/// `xs`): `pair` on pairs of groups, `kern` on a last odd group (in passes
/// of [`TOKENS_PER_PASS`], all it takes), the rows written to the output
/// through `tmp` (at least `nt * 16` values).
#[allow(clippy::too_many_arguments)]
fn run_groups<B: PackedBlocks, A>(
    w: &PackedMatrix,
    ptr: OutPtr,
    xs: &[A],
    (t0, nt): (usize, usize),
    (g_lo, g_hi): (usize, usize),
    kern: fn(&[B], &[A], usize, &mut [f32]),
    pair: Option<PairKernel<B, A>>,
    tmp: &mut [f32],
) {
    let nb = w.cols / w.ty.block_size();
    let mut g = g_lo;
    while g < g_hi {
        // Rows g * 8 .. g * 8 + n come out as tmp[t * n + r].
        let n = match (pair, w.group::<B>(g), w.group::<B>(g + 1)) {
            (Some(pk), Some(a), Some(b)) if g + 1 < g_hi => {
                pk(a, b, xs, nt, tmp);
                2 * PACK_ROWS
            }
            (_, Some(a), _) => {
                for s0 in (0..nt).step_by(TOKENS_PER_PASS) {
                    let ns = TOKENS_PER_PASS.min(nt - s0);
                    kern(a, &xs[s0 * nb..(s0 + ns) * nb], ns, &mut tmp[s0 * PACK_ROWS..]);
                }
                PACK_ROWS
            }
            _ => break,
        };
        for t in 0..nt {
            for r in 0..n {
                // SAFETY: t0 + t < n_tokens and g * 8 + r < rows (the groups
                // exist), in bounds of the output (checked by the caller);
                // the groups' rows belong to this task alone.
                unsafe { ptr.write((t0 + t) * w.rows + g * PACK_ROWS + r, tmp[t * n + r]) };
            }
        }
        g += n / PACK_ROWS;
    }
}
