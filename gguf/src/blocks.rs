//! Block layouts of the quantized types, as in ggml-common.h.
//!
//! Each struct is `#[repr(C)]` and `bytemuck::Pod`, so a tensor's bytes can be
//! viewed as a slice of blocks with [`as_blocks`]. Sizes are asserted at
//! compile time against [`QuantType::block_bytes`](crate::QuantType::block_bytes).
//! Scales are stored as IEEE half floats (`half::f16`).

use bytemuck::{Pod, Zeroable};
use half::f16;

use crate::types::QK_K;

/// Q4_0: 32 weights, `w = d * (q - 8)`, q 4-bit; 4.5 bits per weight.
/// `qs[i]` low nibble is weight i, high nibble weight i + 16.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct BlockQ4_0 {
    pub d: f16,
    pub qs: [u8; 16],
}

/// Q4_1: 32 weights, `w = d * q + m`; 5 bits per weight. Nibbles as Q4_0.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct BlockQ4_1 {
    pub d: f16,
    pub m: f16,
    pub qs: [u8; 16],
}

/// Q5_0: 32 weights, `w = d * (q - 16)`; the fifth bit of weight j is bit j of `qh`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct BlockQ5_0 {
    pub d: f16,
    pub qh: [u8; 4],
    pub qs: [u8; 16],
}

/// Q5_1: 32 weights, `w = d * q + m`; fifth bits in `qh` as Q5_0.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct BlockQ5_1 {
    pub d: f16,
    pub m: f16,
    pub qh: [u8; 4],
    pub qs: [u8; 16],
}

/// Q8_0: 32 weights, `w = d * q`, q signed 8-bit; 8.5 bits per weight.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct BlockQ8_0 {
    pub d: f16,
    pub qs: [i8; 32],
}

/// Q8_1: Q8_0 plus `s = d * sum(q)`, used for activations.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct BlockQ8_1 {
    pub d: f16,
    pub s: f16,
    pub qs: [i8; 32],
}

/// Q2_K: 256 weights in 16 groups of 16; 4-bit scale and min per group
/// (`scales` low/high nibble), 2-bit quants; 2.625 bits per weight.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct BlockQ2K {
    pub scales: [u8; QK_K / 16],
    pub qs: [u8; QK_K / 4],
    pub d: f16,
    pub dmin: f16,
}

/// Q3_K: 256 weights in 16 groups of 16; 6-bit scales packed in 12 bytes,
/// low 2 bits in `qs`, high bit in `hmask`; 3.4375 bits per weight.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct BlockQ3K {
    pub hmask: [u8; QK_K / 8],
    pub qs: [u8; QK_K / 4],
    pub scales: [u8; 12],
    pub d: f16,
}

/// Q4_K: 256 weights in 8 groups of 32; 6-bit scale and min per group packed
/// in 12 bytes; `w = d * sc * q - dmin * m`; 4.5 bits per weight.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct BlockQ4K {
    pub d: f16,
    pub dmin: f16,
    pub scales: [u8; 12],
    pub qs: [u8; QK_K / 2],
}

/// Q5_K: Q4_K plus a fifth bit per weight in `qh`; 5.5 bits per weight.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct BlockQ5K {
    pub d: f16,
    pub dmin: f16,
    pub scales: [u8; 12],
    pub qh: [u8; QK_K / 8],
    pub qs: [u8; QK_K / 2],
}

/// Q6_K: 256 weights in 16 groups of 16 with signed 8-bit scales; low 4 bits
/// in `ql`, high 2 bits in `qh`, `w = d * sc * (q - 32)`; 6.5625 bits per weight.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct BlockQ6K {
    pub ql: [u8; QK_K / 2],
    pub qh: [u8; QK_K / 4],
    pub scales: [i8; QK_K / 16],
    pub d: f16,
}

/// Q8_K: 256 signed 8-bit values with an f32 scale and per-16 sums; used for
/// activations in K-quant dot products.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct BlockQ8K {
    pub d: f32,
    pub qs: [i8; QK_K],
    pub bsums: [i16; QK_K / 16],
}

/// IQ4_NL: 32 weights, 4-bit indices into a fixed non-linear table.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct BlockIQ4NL {
    pub d: f16,
    pub qs: [u8; 16],
}

/// IQ4_XS: 256 weights, 8 groups of 32 with 6-bit scales (`scales_l` low
/// nibbles, `scales_h` 2 high bits each), indices into the IQ4_NL table.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct BlockIQ4XS {
    pub d: f16,
    pub scales_h: u16,
    pub scales_l: [u8; QK_K / 64],
    pub qs: [u8; QK_K / 2],
}

macro_rules! assert_block_size {
    ($($t:ty => $q:ident),* $(,)?) => {
        $(const _: () = assert!(std::mem::size_of::<$t>() == crate::QuantType::$q.block_bytes_const());)*
    };
}
assert_block_size!(
    BlockQ4_0 => Q4_0, BlockQ4_1 => Q4_1, BlockQ5_0 => Q5_0, BlockQ5_1 => Q5_1,
    BlockQ8_0 => Q8_0, BlockQ8_1 => Q8_1, BlockQ2K => Q2K, BlockQ3K => Q3K,
    BlockQ4K => Q4K, BlockQ5K => Q5K, BlockQ6K => Q6K, BlockQ8K => Q8K,
    BlockIQ4NL => IQ4_NL, BlockIQ4XS => IQ4_XS,
);

/// A block type that can be viewed from raw tensor bytes.
pub trait Block: Pod {
    /// The tensor type whose blocks these are.
    const TYPE: crate::QuantType;
}

macro_rules! impl_block {
    ($($t:ty => $q:ident),* $(,)?) => { $(impl Block for $t { const TYPE: crate::QuantType = crate::QuantType::$q; })* };
}
impl_block!(
    BlockQ4_0 => Q4_0, BlockQ4_1 => Q4_1, BlockQ5_0 => Q5_0, BlockQ5_1 => Q5_1,
    BlockQ8_0 => Q8_0, BlockQ8_1 => Q8_1, BlockQ2K => Q2K, BlockQ3K => Q3K,
    BlockQ4K => Q4K, BlockQ5K => Q5K, BlockQ6K => Q6K, BlockQ8K => Q8K,
    BlockIQ4NL => IQ4_NL, BlockIQ4XS => IQ4_XS,
);

/// Views `bytes` as blocks of `B`, or `None` when the length is not a whole
/// number of blocks or the bytes are not aligned for `B`.
///
/// ```
/// use infer_gguf::blocks::{as_blocks, BlockQ4_0};
/// let bytes = [0u8; 36];
/// let blocks: &[BlockQ4_0] = as_blocks(&bytes).unwrap();
/// assert_eq!(blocks.len(), 2);
/// ```
pub fn as_blocks<B: Block>(bytes: &[u8]) -> Option<&[B]> {
    bytemuck::try_cast_slice(bytes).ok()
}
