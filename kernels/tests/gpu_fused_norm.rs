//! Norms fused with the matrix products next to them: the output norm
//! inside the head's matvec (every kernel path) against `ops::rmsnorm_ref`
//! then `cpu::matmul_ref`; the norms' int8 epilogue against
//! `cpu::quantize_q8_act_ref` byte for byte, and the integer-dot products
//! that read it (real-GPU kernels).

mod gpu_util;

use bytemuck::Zeroable;
use gpu_util::{all, assert_close, rand_f32, rand_tensor, rng};
use infer_kernels::cpu::{matmul_ref, quantize_q8_act_ref, BlockQ8Act, QMatrix};
use infer_kernels::gpu::{GpuContext, GpuWeight, MatOut};
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

/// A context on the real-GPU kernels with int8 activations forced on.
fn int_dot_ctx(portable: bool) -> GpuContext {
    let ctx = gpu_kernels_portable();
    ctx.set_portable(portable);
    ctx.set_int_dot(true);
    assert!(ctx.uses_int_dot(), "WGSL packed_4x8_integer_dot_product is missing");
    ctx
}

/// The int8 blocks read back by `read_q8` as the CPU's blocks.
fn blocks_of(words: &[u32], n_blocks: usize) -> Vec<BlockQ8Act> {
    (0..n_blocks)
        .map(|b| {
            let mut blk = BlockQ8Act::zeroed();
            for (i, w) in words[8 * b..8 * b + 8].iter().enumerate() {
                for (j, byte) in w.to_le_bytes().into_iter().enumerate() {
                    blk.qs[4 * i + j] = byte as i8;
                }
            }
            blk.d = f32::from_bits(words[8 * n_blocks + b]);
            blk
        })
        .collect()
}

/// Only rounding in the norm kernels (gpu_ops.rs holds the plain ones to this).
const NORM_REL_TOL: f32 = 1e-5;

#[test]
fn gpu_norm_q8_epilogue_writes_the_cpu_quantizer_bytes() {
    let eps = 1e-6;
    for portable in [false, true] {
        let ctx = int_dot_ctx(portable);
        // SmolLM2's and Gemma 3's widths: 18 and 20 blocks, not a multiple of the 64 threads.
        for dim in [576, 640] {
            let mut x = rand_f32(&mut rng(dim as u64), dim, 3.0);
            // A block of zeros: scale 0, every value 0.
            x[32..64].iter_mut().for_each(|v| *v = 0.0);
            let acc0 = rand_f32(&mut rng(dim as u64 + 1), dim, 3.0);
            let g: Vec<f32> = rand_f32(&mut rng(dim as u64 + 2), dim, 0.5).iter().map(|v| 1.0 + v).collect();
            let (xb, gb, out) = (ctx.upload_f32(&x).unwrap(), ctx.upload_f32(&g).unwrap(), ctx.buffer(dim).unwrap());
            let (accb, out2) = (ctx.upload_f32(&acc0).unwrap(), ctx.buffer(dim).unwrap());
            let mut step = ctx.step();
            step.rmsnorm(&xb, &gb, 1, dim, eps, &out).unwrap();
            step.read(&out);
            step.read_q8(&out).unwrap();
            step.add_rmsnorm(&accb, &xb, &gb, 1, dim, eps, &out2).unwrap();
            step.read(&out2);
            step.read_q8(&out2).unwrap();
            let got = step.submit().unwrap();
            let mut sum = acc0.clone();
            sum.iter_mut().zip(&x).for_each(|(a, v)| *a += v);
            for (k, input) in [&x, &sum].into_iter().enumerate() {
                let what = format!("{} dim={dim} portable={portable}", ["rmsnorm", "add_rmsnorm"][k]);
                let normed = got[2 * k].f32();
                let mut want = vec![0.0; dim];
                rmsnorm_ref(input, &g, eps, &mut want);
                assert_close(&what, &normed, &want, NORM_REL_TOL);
                // The blocks are exactly the CPU's quantization of the kernel's own output.
                let mut cpu = vec![BlockQ8Act::zeroed(); dim / 32];
                quantize_q8_act_ref(&normed, &mut cpu);
                let gpu = blocks_of(&got[2 * k + 1].u32(), dim / 32);
                for (b, (c, g)) in cpu.iter().zip(&gpu).enumerate() {
                    assert_eq!((c.qs, c.d.to_bits()), (g.qs, g.d.to_bits()), "{what}: block {b}");
                }
            }
        }
    }
}

/// Max |got - want| over max |want|.
fn rel_diff(got: &[f32], want: &[f32]) -> f32 {
    let scale = want.iter().fold(0.0f32, |m, v| m.max(v.abs())).max(1e-3);
    got.iter().zip(want).fold(0.0f32, |m, (g, w)| m.max((g - w).abs())) / scale
}

/// The integer-dot matvec against `matmul_ref` on the activations as
/// `cpu::quantize_q8_act` rounds them (as gpu_matmul.rs's int-dot test).
const INT_DOT_REL_TOL: f32 = 1e-3;

#[test]
fn gpu_products_after_a_q8_norm_run_on_its_int8_blocks() {
    let (cols, split, eps) = (512, [40, 30], 1e-6);
    let rows: usize = split.iter().sum();
    for portable in [false, true] {
        let ctx = int_dot_ctx(portable);
        for (i, ty) in [QuantType::Q4_0, QuantType::Q4_1, QuantType::Q5_0, QuantType::Q5_1, QuantType::Q8_0].into_iter().enumerate() {
            let seed = 300 + 10 * i as u64;
            let data = rand_tensor(&mut rng(seed), ty, rows, cols);
            let data2 = rand_tensor(&mut rng(seed + 1), ty, 24, cols);
            let x = rand_f32(&mut rng(seed + 2), cols, 2.0);
            let g: Vec<f32> = rand_f32(&mut rng(seed + 3), cols, 0.5).iter().map(|v| 1.0 + v).collect();
            let (w, w2) = (GpuWeight::upload(&ctx, ty, &data, rows, cols).unwrap(), GpuWeight::upload(&ctx, ty, &data2, 24, cols).unwrap());
            let (xb, gb, xn) = (ctx.upload_f32(&x).unwrap(), ctx.upload_f32(&g).unwrap(), ctx.buffer(cols).unwrap());
            let outs: Vec<_> = split.iter().map(|&n| ctx.buffer(n).unwrap()).collect();
            let out2 = ctx.buffer(24).unwrap();
            let mut step = ctx.step();
            step.rmsnorm(&xb, &gb, 1, cols, eps, &xn).unwrap();
            // A q|k|v-like split product, then a second product on the same blocks.
            let list: Vec<_> = outs.iter().zip(split).collect();
            step.matmul_to(&w, &xn, 1, MatOut::Split(&list), None).unwrap();
            step.matmul(&w2, &xn, 1, &out2).unwrap();
            // The norm and the two products: no quantize dispatch.
            assert_eq!(step.dispatch_count(), 3, "{ty}: dispatches");
            step.read(&xn);
            outs.iter().for_each(|o| step.read(o));
            step.read(&out2);
            let got = step.submit().unwrap();
            let normed = got[0].f32();
            let mut blocks = vec![BlockQ8Act::zeroed(); cols / 32];
            quantize_q8_act_ref(&normed, &mut blocks);
            let xq: Vec<f32> = blocks.iter().flat_map(|b| b.qs.map(|q| q as f32 * b.d)).collect();
            for (k, (data, n)) in [(&data, rows), (&data2, 24)].into_iter().enumerate() {
                let m = QMatrix::new(ty, data, n, cols).unwrap();
                let (mut on_q8, mut on_f32) = (vec![0.0; n], vec![0.0; n]);
                matmul_ref(&m, &xq, 1, &mut on_q8).unwrap();
                matmul_ref(&m, &normed, 1, &mut on_f32).unwrap();
                let gpu = if k == 0 { [got[1].f32(), got[2].f32()].concat() } else { got[3].f32() };
                let what = format!("{ty} product {k} portable={portable}");
                assert_close(&what, &gpu, &on_q8, INT_DOT_REL_TOL);
                // Nearer the quantized activations' result than the f32 one: the int8 path ran.
                assert!(rel_diff(&gpu, &on_q8) < rel_diff(&gpu, &on_f32), "{what}: the f32 matvec ran");
            }
        }
    }
}
