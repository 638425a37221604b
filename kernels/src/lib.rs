//! # infer-kernels
//!
//! The compute of infer, in three tiers that are tested against each other:
//! - [`dequant`] and [`ops`]: plain-Rust references, the specification of every kernel;
//! - [`cpu`]: the fast CPU path (rayon over rows, SIMD quantized dot products);
//! - [`gpu`]: WGSL compute shaders run through `wgpu`.

pub mod cpu;
pub mod dequant;
mod error;
pub mod gpu;
pub mod ops;

pub use error::KernelError;
pub use infer_gguf::QuantType;
