//! Fast CPU kernels (stub).
