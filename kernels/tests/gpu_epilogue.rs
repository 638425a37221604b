//! The matrix kernels' epilogues (bias, residual add, rows split over
//! several outputs, gated activation) on every kernel path, against
//! `cpu::matmul_ref` followed by the op each one replaces.

mod gpu_util;

use gpu_util::{all, assert_close, fast, other_kernels, rand_f32, rand_tensor, rng, EPILOGUE_TYPES};
use infer_kernels::cpu::{matmul_ref, QMatrix};
use infer_kernels::gpu::{GateAct, GpuContext, GpuWeight, MatOut};
use infer_kernels::ops::{geglu_ref, swiglu_ref};
use infer_kernels::QuantType;

/// Summation order only, as the plain products (gpu_matmul.rs).
const MATMUL_REL_TOL: f32 = 1e-4;

/// `W·x` on the CPU, `[n_tokens][rows]`.
fn reference(ty: QuantType, data: &[u8], rows: usize, cols: usize, x: &[f32], n_tokens: usize) -> Vec<f32> {
    let mut want = vec![0.0; n_tokens * rows];
    matmul_ref(&QMatrix::new(ty, data, rows, cols).unwrap(), x, n_tokens, &mut want).unwrap();
    want
}

fn what(ctx: &GpuContext, ty: QuantType, op: &str, n_tokens: usize) -> String {
    format!(
        "{op} {ty} n_tokens={n_tokens} f16/sg/cpu-kernels={}/{}/{}",
        ctx.uses_f16(),
        ctx.uses_subgroups(),
        ctx.uses_cpu_device_kernels()
    )
}

/// q|k|v-shaped split with a bias, and a residual add, for `n_tokens`.
fn check_split_bias_acc(ctx: &GpuContext, ty: QuantType, n_tokens: usize, seed: u64) {
    // 40 + 16 + 16 rows: the split points fall inside a 64-row workgroup.
    let (split, cols) = ([40, 16, 16], 256);
    let rows: usize = split.iter().sum();
    let data = rand_tensor(&mut rng(seed), ty, rows, cols);
    let x = rand_f32(&mut rng(seed + 1), n_tokens * cols, 1.0);
    let bias = rand_f32(&mut rng(seed + 2), rows, 0.5);
    let mut want = reference(ty, &data, rows, cols, &x, n_tokens);
    for row in want.chunks_mut(rows) {
        row.iter_mut().zip(&bias).for_each(|(v, b)| *v += b);
    }
    let w = GpuWeight::upload(ctx, ty, &data, rows, cols).unwrap();
    let (xb, bb) = (ctx.upload_f32(&x).unwrap(), ctx.upload_f32(&bias).unwrap());
    let outs: Vec<_> = split.iter().map(|&n| ctx.buffer(n_tokens * n).unwrap()).collect();
    let acc0 = rand_f32(&mut rng(seed + 3), n_tokens * rows, 1.0);
    let acc = ctx.upload_f32(&acc0).unwrap();
    let mut step = ctx.step();
    let list: Vec<_> = outs.iter().zip(split).collect();
    step.matmul_to(&w, &xb, n_tokens, MatOut::Split(&list), Some(&bb)).unwrap();
    step.matmul_to(&w, &xb, n_tokens, MatOut::Acc(&acc), None).unwrap();
    outs.iter().for_each(|o| step.read(o));
    step.read(&acc);
    let got = step.submit().unwrap();
    let mut r0 = 0;
    for (i, &n) in split.iter().enumerate() {
        let part: Vec<f32> = want.chunks(rows).flat_map(|row| row[r0..r0 + n].to_vec()).collect();
        assert_close(&what(ctx, ty, &format!("split output {i}"), n_tokens), &got[i].f32(), &part, MATMUL_REL_TOL);
        r0 += n;
    }
    let plain = reference(ty, &data, rows, cols, &x, n_tokens);
    let acc_want: Vec<f32> = acc0.iter().zip(&plain).map(|(a, b)| a + b).collect();
    assert_close(&what(ctx, ty, "acc", n_tokens), &got[3].f32(), &acc_want, MATMUL_REL_TOL);
}

#[test]
fn gpu_split_bias_and_residual_epilogues_match_reference() {
    for (i, ty) in EPILOGUE_TYPES.into_iter().enumerate() {
        for ctx in all() {
            check_split_bias_acc(ctx, ty, 1, 10 * i as u64);
        }
        // Batches: the tiled and the windowed matmul.
        for ctx in [fast(), other_kernels()] {
            check_split_bias_acc(ctx, ty, 5, 10 * i as u64 + 5);
        }
    }
}

#[test]
fn gpu_gated_epilogue_matches_matmul_then_gate() {
    let (ffn, cols) = (70, 256);
    for (i, ty) in EPILOGUE_TYPES.into_iter().enumerate() {
        let data = rand_tensor(&mut rng(500 + i as u64), ty, 2 * ffn, cols);
        let x = rand_f32(&mut rng(600 + i as u64), cols, 1.0);
        let both = reference(ty, &data, 2 * ffn, cols, &x, 1);
        for (act, f) in [(GateAct::Silu, swiglu_ref as fn(&[f32], &[f32], &mut [f32])), (GateAct::Gelu, geglu_ref)] {
            let mut want = vec![0.0; ffn];
            f(&both[..ffn], &both[ffn..], &mut want);
            for ctx in all() {
                let w = GpuWeight::upload(ctx, ty, &data, 2 * ffn, cols).unwrap();
                let (xb, out) = (ctx.upload_f32(&x).unwrap(), ctx.buffer(ffn).unwrap());
                let mut step = ctx.step();
                step.matmul_to(&w, &xb, 1, MatOut::Gated(&out, act), None).unwrap();
                step.read(&out);
                let got = step.submit().unwrap()[0].f32();
                assert_close(&what(ctx, ty, &format!("{act:?}"), 1), &got, &want, MATMUL_REL_TOL);
            }
        }
    }
}

#[test]
fn gpu_epilogue_misuse_is_an_error() {
    let ctx = fast();
    let data = rand_tensor(&mut rng(1), QuantType::Q8_0, 4, 32);
    let w = GpuWeight::upload(ctx, QuantType::Q8_0, &data, 4, 32).unwrap();
    let x = ctx.buffer(64).unwrap();
    let (a, b) = (ctx.buffer(8).unwrap(), ctx.buffer(8).unwrap());
    let mut step = ctx.step();
    // Rows that do not add up, a gated batch, a bias on a gated product.
    assert!(step.matmul_to(&w, &x, 1, MatOut::Split(&[(&a, 2), (&b, 1)]), None).is_err());
    assert!(step.matmul_to(&w, &x, 2, MatOut::Gated(&a, GateAct::Silu), None).is_err());
    assert!(step.matmul_to(&w, &x, 1, MatOut::Gated(&a, GateAct::Silu), Some(&b)).is_err());
    assert!(step.matmul_to(&w, &x, 1, MatOut::Split(&[(&a, 2), (&b, 2)]), None).is_ok());
}
