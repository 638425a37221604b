//! Norms fused into the matrix products next to them, on every kernel path:
//! the output norm inside the head's matvec against `ops::rmsnorm_ref` then
//! `cpu::matmul_ref`.

mod gpu_util;

use gpu_util::{all, assert_close, rand_f32, rand_tensor, rng};
use infer_kernels::cpu::{matmul_ref, QMatrix};
use infer_kernels::gpu::{GpuContext, GpuWeight};
use infer_kernels::ops::rmsnorm_ref;
use infer_kernels::QuantType;

/// Summation order, and the norm factor applied to the finished dot
/// product instead of to each activation.
const FUSED_NORM_REL_TOL: f32 = 1e-4;

/// Head types seen in GGUF files (tied Q8_0 embeddings, Q6_K and F16 heads)
/// and a type with a min.
const HEAD_TYPES: [QuantType; 5] = [QuantType::Q8_0, QuantType::Q6K, QuantType::F16, QuantType::Q4_1, QuantType::Q4K];

/// The real-GPU kernels without subgroups (the workgroup-memory reduction).
fn gpu_kernels_portable() -> GpuContext {
    let ctx = GpuContext::new().unwrap();
    ctx.set_portable(true);
    ctx.set_cpu_device_kernels(false);
    ctx
}

fn check_head(ctx: &GpuContext, ty: QuantType, seed: u64) {
    // 70 rows: not a multiple of any kernel's rows per workgroup.
    let (rows, cols, eps) = (70, 512, 1e-6);
    let data = rand_tensor(&mut rng(seed), ty, rows, cols);
    // A residual far from unit RMS, and a norm weight around 1 (Gemma's
    // files store 1 + w).
    let x = rand_f32(&mut rng(seed + 1), cols, 4.0);
    let g: Vec<f32> = rand_f32(&mut rng(seed + 2), cols, 0.5).iter().map(|v| 1.0 + v).collect();
    let mut xn = vec![0.0; cols];
    rmsnorm_ref(&x, &g, eps, &mut xn);
    let mut want = vec![0.0; rows];
    matmul_ref(&QMatrix::new(ty, &data, rows, cols).unwrap(), &xn, 1, &mut want).unwrap();
    let w = GpuWeight::upload(ctx, ty, &data, rows, cols).unwrap();
    let (xb, gb, out) = (ctx.upload_f32(&x).unwrap(), ctx.upload_f32(&g).unwrap(), ctx.buffer(rows).unwrap());
    let mut step = ctx.step();
    step.matvec_rmsnorm(&w, &xb, &gb, eps, &out).unwrap();
    step.read(&out);
    let got = step.submit().unwrap()[0].f32();
    let what = format!(
        "fused head {ty} f16/sg/cpu-kernels={}/{}/{}",
        ctx.uses_f16(),
        ctx.uses_subgroups(),
        ctx.uses_cpu_device_kernels()
    );
    assert_close(&what, &got, &want, FUSED_NORM_REL_TOL);
}

#[test]
fn gpu_head_with_fused_output_norm_matches_norm_then_product() {
    let portable = gpu_kernels_portable();
    for (i, ty) in HEAD_TYPES.into_iter().enumerate() {
        for ctx in all().into_iter().chain([&portable]) {
            check_head(ctx, ty, 40 + 10 * i as u64);
        }
    }
}
