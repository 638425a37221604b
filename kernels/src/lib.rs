//! infer-kernels
