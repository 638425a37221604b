//! GPU kernels through wgpu (stub).
