//! The one error type of the kernels crate.

use infer_gguf::QuantType;

/// Errors raised by kernels: unsupported types, mismatched shapes, GPU failures.
#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    #[error("tensor type {0} is not supported by {1}")]
    Unsupported(QuantType, &'static str),
    #[error("shape mismatch in {op}: {detail}")]
    Shape { op: &'static str, detail: String },
    #[error("GPU: {0}")]
    Gpu(String),
}
