//! Helpers shared by the GPU tests: one context per binary for each path
//! (fast = shader-f16/subgroups where offered, portable = forced off), random
//! quantized tensors with sane scales, and tolerance checks.
#![allow(dead_code)]

use std::sync::OnceLock;

use half::f16;
use infer_kernels::gpu::GpuContext;
use infer_kernels::QuantType;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

fn open(portable: bool) -> GpuContext {
    // Fail, not skip: CI has lavapipe, so no adapter is a real failure.
    let ctx = GpuContext::new().unwrap_or_else(|e| panic!("GPU tests need an adapter: {e}"));
    ctx.set_portable(portable);
    eprintln!("gpu: {}", ctx.info());
    ctx
}

/// The context using every feature the adapter offers.
pub fn fast() -> &'static GpuContext {
    static C: OnceLock<GpuContext> = OnceLock::new();
    C.get_or_init(|| open(false))
}

/// A context forced onto the portable kernels.
pub fn portable() -> &'static GpuContext {
    static C: OnceLock<GpuContext> = OnceLock::new();
    C.get_or_init(|| open(true))
}

pub fn both() -> [&'static GpuContext; 2] {
    [fast(), portable()]
}

/// A context on the other kernel set than the adapter's default: the
/// CPU-device kernels (row per thread, no barriers) on a real GPU, the
/// real-GPU kernels (workgroup per row, tiled) on lavapipe.
pub fn other_kernels() -> &'static GpuContext {
    static C: OnceLock<GpuContext> = OnceLock::new();
    C.get_or_init(|| {
        let ctx = open(false);
        ctx.set_cpu_device_kernels(!ctx.uses_cpu_device_kernels());
        ctx
    })
}

/// The real-GPU kernel set (tiled matmul and attention) with every feature
/// the adapter offers, whatever the adapter's type.
pub fn gpu_kernels() -> &'static GpuContext {
    static C: OnceLock<GpuContext> = OnceLock::new();
    C.get_or_init(|| {
        let ctx = open(false);
        ctx.set_cpu_device_kernels(false);
        ctx
    })
}

/// Every kernel path: fast, portable and the other kernel set.
pub fn all() -> [&'static GpuContext; 3] {
    [fast(), portable(), other_kernels()]
}

/// Every weight type the GPU kernels take.
pub const TYPES: [QuantType; 15] = [
    QuantType::F32,
    QuantType::F16,
    QuantType::BF16,
    QuantType::Q4_0,
    QuantType::Q4_1,
    QuantType::Q5_0,
    QuantType::Q5_1,
    QuantType::Q8_0,
    QuantType::IQ4_NL,
    QuantType::IQ4_XS,
    QuantType::Q2K,
    QuantType::Q3K,
    QuantType::Q4K,
    QuantType::Q5K,
    QuantType::Q6K,
];

/// One weight type per matvec unit family (float, 32-weight nibble blocks,
/// 8-bit blocks, Q4_K/Q5_K units, Q6_K units, the generic dq4 units): the
/// epilogues are the same code for every type, so their tests take these.
pub const EPILOGUE_TYPES: [QuantType; 6] =
    [QuantType::F16, QuantType::Q4_0, QuantType::Q8_0, QuantType::Q4K, QuantType::Q6K, QuantType::Q3K];

pub fn rng(seed: u64) -> StdRng {
    StdRng::seed_from_u64(seed)
}

pub fn rand_f32(rng: &mut StdRng, n: usize, scale: f32) -> Vec<f32> {
    (0..n)
        .map(|_| (rng.random::<f32>() * 2.0 - 1.0) * scale)
        .collect()
}

/// Byte offsets of the f16 scale fields in one block of `ty` (ggml-common.h).
fn scale_offsets(ty: QuantType) -> &'static [usize] {
    match ty {
        QuantType::Q4_0 | QuantType::Q5_0 | QuantType::Q8_0 | QuantType::IQ4_NL | QuantType::IQ4_XS => &[0],
        QuantType::Q4_1 | QuantType::Q5_1 | QuantType::Q4K | QuantType::Q5K => &[0, 2],
        QuantType::Q2K => &[80, 82],
        QuantType::Q3K => &[108],
        QuantType::Q6K => &[208],
        _ => &[],
    }
}

/// Random `rows x cols` tensor of `ty`: random quant bits, scales in ±(0.001..0.05).
pub fn rand_tensor(rng: &mut StdRng, ty: QuantType, rows: usize, cols: usize) -> Vec<u8> {
    let n = rows * cols;
    match ty {
        QuantType::F32 => bytemuck::cast_slice(&rand_f32(rng, n, 1.0)).to_vec(),
        QuantType::F16 => rand_f32(rng, n, 1.0)
            .iter()
            .flat_map(|&v| f16::from_f32(v).to_le_bytes())
            .collect(),
        QuantType::BF16 => rand_f32(rng, n, 1.0)
            .iter()
            .flat_map(|&v| half::bf16::from_f32(v).to_le_bytes())
            .collect(),
        _ => {
            let len = ty.bytes_for(n as u64).unwrap() as usize;
            let mut bytes = vec![0u8; len];
            rng.fill(&mut bytes[..]);
            for blk in bytes.chunks_exact_mut(ty.block_bytes()) {
                for &off in scale_offsets(ty) {
                    let s = rng.random_range(0.001f32..0.05)
                        * if rng.random::<bool>() { 1.0 } else { -1.0 };
                    blk[off..off + 2].copy_from_slice(&f16::from_f32(s).to_le_bytes());
                }
            }
            bytes
        }
    }
}

/// Asserts `got` matches `want` within `tol` times the largest |want| (plus a floor).
pub fn assert_close(what: &str, got: &[f32], want: &[f32], tol: f32) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let scale = want.iter().fold(0.0f32, |m, v| m.max(v.abs())).max(1e-3);
    let (mut worst, mut at) = (0.0f32, 0);
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let d = (g - w).abs();
        // NaN counts as worst.
        if d.is_nan() || d > worst {
            worst = d;
            at = i;
        }
    }
    assert!(
        worst <= tol * scale,
        "{what}: max |diff| {worst} at {at} (got {}, want {}) > {tol} x max|want| {scale}",
        got[at],
        want[at]
    );
}
