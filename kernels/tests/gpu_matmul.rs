//! GPU matvec / tiled matmul / get_rows on every supported weight type,
//! against `cpu::matmul_ref` and `cpu::get_row`, on random tensors.

mod gpu_util;

use bytemuck::Zeroable;
use gpu_util::{all, assert_close, fast, gpu_kernels, rand_f32, rand_tensor, rng, TYPES};
use infer_kernels::cpu::{get_row, matmul_ref, quantize_q8_act, BlockQ8Act, QMatrix};
use infer_kernels::gpu::{GpuContext, GpuWeight, MatvecShape};
use infer_kernels::QuantType;

/// Max |gpu - cpu| relative to the largest output: summation order only.
const MATMUL_REL_TOL: f32 = 1e-4;
/// The prefill tiles in f16 (shader-f16 adapters): weights and activations
/// rounded to 11-bit mantissas, f32 sums.
const MATMUL_F16_TILE_REL_TOL: f32 = 3e-3;
/// Batches up to this many tokens take the f32 tiles even with shader-f16
/// (`NARROW_MAX_TOKENS` of gpu/mat.rs).
const NARROW_MAX_TOKENS: usize = 16;
/// Dequantization is exact in f32 except the order of d*q + m.
const GET_ROWS_REL_TOL: f32 = 1e-6;

fn check_matmul(
    ctx: &GpuContext,
    ty: QuantType,
    data: &[u8],
    rows: usize,
    cols: usize,
    n_tokens: usize,
    seed: u64,
) {
    let got = gpu_matmul(ctx, ty, data, (rows, cols), n_tokens, seed);
    let x = rand_f32(&mut rng(seed), n_tokens * cols, 1.0);
    let mut want = vec![0.0; n_tokens * rows];
    matmul_ref(
        &QMatrix::new(ty, data, rows, cols).unwrap(),
        &x,
        n_tokens,
        &mut want,
    )
    .unwrap();
    let what = format!(
        "{ty} {rows}x{cols} n_tokens={n_tokens} f16/sg/cpu-kernels={}/{}/{}",
        ctx.uses_f16(),
        ctx.uses_subgroups(),
        ctx.uses_cpu_device_kernels()
    );
    let f16_tiles = ctx.uses_f16() && !ctx.uses_cpu_device_kernels() && n_tokens > NARROW_MAX_TOKENS;
    let tol = if f16_tiles { MATMUL_F16_TILE_REL_TOL } else { MATMUL_REL_TOL };
    assert_close(&what, &got, &want, tol);
}

/// `W·x` on the GPU for `n_tokens` random tokens (seeded by `seed`).
fn gpu_matmul(ctx: &GpuContext, ty: QuantType, data: &[u8], (rows, cols): (usize, usize), n_tokens: usize, seed: u64) -> Vec<f32> {
    let x = rand_f32(&mut rng(seed), n_tokens * cols, 1.0);
    let w = GpuWeight::upload(ctx, ty, data, rows, cols).unwrap();
    let xb = ctx.upload_f32(&x).unwrap();
    let out = ctx.buffer(n_tokens * rows).unwrap();
    let mut step = ctx.step();
    step.matmul(&w, &xb, n_tokens, &out).unwrap();
    step.read(&out);
    step.submit().unwrap()[0].f32()
}

/// The tiled kernels (real-GPU set) in f32 whatever the adapter offers.
fn tiled_f32() -> &'static GpuContext {
    static C: std::sync::OnceLock<GpuContext> = std::sync::OnceLock::new();
    C.get_or_init(|| {
        let ctx = GpuContext::new().unwrap();
        ctx.set_portable(true);
        ctx.set_cpu_device_kernels(false);
        ctx
    })
}

#[test]
fn gpu_tiled_matmul_matches_reference_at_tile_edges() {
    // 130 rows: two full 64-row tiles and a partial one; 70 tokens: a full
    // 64-token tile and a partial one; 16 and 5 tokens: the narrow tiles.
    // F32/F16 rows of 260 values end inside a 32-column K-step.
    let rows = 130;
    for (i, ty) in TYPES.into_iter().enumerate() {
        let cols = if matches!(ty, QuantType::F32 | QuantType::F16) { 260 } else { 512 };
        let data = rand_tensor(&mut rng(400 + i as u64), ty, rows, cols);
        for ctx in [tiled_f32(), gpu_kernels()] {
            for n_tokens in [5, 16, 70] {
                check_matmul(ctx, ty, &data, rows, cols, n_tokens, 11);
            }
        }
    }
}

#[test]
fn gpu_tiled_matmul_rows_do_not_depend_on_the_batch() {
    // A token's outputs are the same bits alone in a narrow tile or among
    // others in a wide one (f32 tiles), and in any wide f16 tile.
    let (rows, cols) = (70, 256);
    for ty in [QuantType::Q4_0, QuantType::Q4K, QuantType::F16] {
        let data = rand_tensor(&mut rng(500), ty, rows, cols);
        for (ctx, small) in [(tiled_f32(), 3), (gpu_kernels(), NARROW_MAX_TOKENS + 1)] {
            // The first tokens of a seeded x are the same for any length.
            let run = |n: usize| gpu_matmul(ctx, ty, &data, (rows, cols), n, 12);
            let (few, many) = (run(small), run(70));
            assert!(few == many[..small * rows], "{ty} f16={}: {small} tokens alone differ from the same among 70", ctx.uses_f16());
        }
    }
}

#[test]
fn gpu_matvec_and_matmul_match_reference_for_every_type() {
    // 70 rows: not a multiple of the 32-row tile nor of the 64-row workgroup;
    // 512 columns: two K-quant blocks, 32 tokens per uniform window of the
    // CPU-device kernels, so 37 tokens take two windows.
    let (rows, cols) = (70, 512);
    for (i, ty) in TYPES.into_iter().enumerate() {
        let data = rand_tensor(&mut rng(100 + i as u64), ty, rows, cols);
        for ctx in all() {
            check_matmul(ctx, ty, &data, rows, cols, 1, 7);
        }
        for ctx in [fast(), gpu_util::other_kernels()] {
            for n_tokens in [2, 37] {
                check_matmul(ctx, ty, &data, rows, cols, n_tokens, 8);
            }
        }
    }
}

/// The types with a matvec unit kernel of their own, and Q3_K for those
/// through the generic one (the same code for F32, BF16, Q2_K, IQ4_XS).
const MATVEC_UNIT_TYPES: [QuantType; 11] = [
    QuantType::F16,
    QuantType::Q4_0,
    QuantType::Q4_1,
    QuantType::Q5_0,
    QuantType::Q5_1,
    QuantType::Q8_0,
    QuantType::IQ4_NL,
    QuantType::Q4K,
    QuantType::Q5K,
    QuantType::Q6K,
    QuantType::Q3K,
];

#[test]
fn gpu_matvec_shapes_match_reference_with_and_without_subgroups() {
    // A context of its own on the real-GPU kernels: the shape is per context.
    let ctx = GpuContext::new().unwrap();
    ctx.set_cpu_device_kernels(false);
    // 70 rows: a last workgroup with fewer rows than NR = 3 or 4.
    let (rows, cols) = (70, 512);
    // A workgroup of one subgroup where the adapter's size is fixed (else 32
    // lanes), then the workgroup-memory reduction; the default shape (64
    // lanes, several subgroups on lavapipe) runs in the test above.
    let one_subgroup = ctx.fixed_subgroup_size().unwrap_or(32);
    for (lanes, nr, portable) in [(one_subgroup, 3, false), (16, 4, true)] {
        ctx.set_matvec_shape(MatvecShape { lanes, rows: nr }).unwrap();
        ctx.set_portable(portable);
        for (i, ty) in MATVEC_UNIT_TYPES.into_iter().enumerate() {
            let data = rand_tensor(&mut rng(400 + i as u64), ty, rows, cols);
            check_matmul(&ctx, ty, &data, rows, cols, 1, 11);
        }
    }
    // Float rows of 36 values: two whole units of 16 and a last quad.
    for ty in [QuantType::F32, QuantType::F16, QuantType::BF16] {
        let data = rand_tensor(&mut rng(500), ty, 5, 36);
        check_matmul(&ctx, ty, &data, 5, 36, 1, 12);
    }
    assert!(ctx.set_matvec_shape(MatvecShape { lanes: 48, rows: 2 }).is_err());
    assert!(ctx.set_matvec_shape(MatvecShape { lanes: 64, rows: 5 }).is_err());
}

/// The integer-dot matvec against `matmul_ref` on the activations as
/// `cpu::quantize_q8_act` rounds them: summation order, and a rare
/// quantized activation one step apart where GPU division rounds otherwise.
const INT_DOT_REL_TOL: f32 = 1e-3;

#[test]
fn gpu_int_dot_matvec_matches_reference_on_quantized_activations() {
    let ctx = GpuContext::new().unwrap();
    ctx.set_cpu_device_kernels(false);
    ctx.set_int_dot(true);
    assert!(ctx.uses_int_dot(), "WGSL packed_4x8_integer_dot_product is missing");
    let (rows, cols) = (70, 512);
    let x = rand_f32(&mut rng(13), cols, 1.0);
    let mut blocks = vec![BlockQ8Act::zeroed(); cols / 32];
    quantize_q8_act(&x, &mut blocks);
    let xq: Vec<f32> = blocks.iter().flat_map(|b| b.qs.map(|q| q as f32 * b.d)).collect();
    for portable in [false, true] {
        ctx.set_portable(portable);
        for ty in [QuantType::Q4_0, QuantType::Q4_1, QuantType::Q5_0, QuantType::Q5_1, QuantType::Q8_0] {
            let data = rand_tensor(&mut rng(600), ty, rows, cols);
            let mut want = vec![0.0; rows];
            matmul_ref(&QMatrix::new(ty, &data, rows, cols).unwrap(), &xq, 1, &mut want).unwrap();
            let w = GpuWeight::upload(&ctx, ty, &data, rows, cols).unwrap();
            let (xb, out) = (ctx.upload_f32(&x).unwrap(), ctx.buffer(rows).unwrap());
            let mut step = ctx.step();
            // The product reads the blocks that the op before it kept for x.
            step.quantize_q8(&xb, cols).unwrap();
            step.matmul(&w, &xb, 1, &out).unwrap();
            step.read(&out);
            let got = step.submit().unwrap()[0].f32();
            assert_close(&format!("int-dot {ty} portable={portable}"), &got, &want, INT_DOT_REL_TOL);
        }
    }
}

#[test]
fn gpu_get_rows_matches_dequantized_rows() {
    let (rows, cols) = (12, 256);
    let ids: Vec<u32> = vec![3, 0, 11, 3, 7];
    for (i, ty) in TYPES.into_iter().enumerate() {
        let data = rand_tensor(&mut rng(200 + i as u64), ty, rows, cols);
        let m = QMatrix::new(ty, &data, rows, cols).unwrap();
        let mut want = vec![0.0; ids.len() * cols];
        for (t, &id) in ids.iter().enumerate() {
            get_row(&m, id as usize, &mut want[t * cols..(t + 1) * cols]).unwrap();
        }
        let ctx = fast();
        let w = GpuWeight::upload(ctx, ty, &data, rows, cols).unwrap();
        let idb = ctx.upload_u32(&ids).unwrap();
        let out = ctx.buffer(want.len()).unwrap();
        let mut step = ctx.step();
        step.get_rows(&w, &idb, ids.len(), &out).unwrap();
        step.read(&out);
        assert_close(
            &format!("get_rows {ty}"),
            &step.submit().unwrap()[0].f32(),
            &want,
            GET_ROWS_REL_TOL,
        );
    }
}

#[test]
fn gpu_weights_split_over_parts_give_the_same_results() {
    // A context of its own: the part cap is per context.
    let ctx = GpuContext::new().unwrap();
    ctx.set_max_weight_part_bytes(4000);
    let (rows, cols) = (70, 256);
    for (ty, cpu_kernels) in [
        (QuantType::Q8_0, true),
        (QuantType::Q6K, true),
        (QuantType::F16, true),
        (QuantType::Q8_0, false),
        (QuantType::Q6K, false),
    ] {
        ctx.set_cpu_device_kernels(cpu_kernels);
        let data = rand_tensor(&mut rng(300), ty, rows, cols);
        let w = GpuWeight::upload(&ctx, ty, &data, rows, cols).unwrap();
        assert!(w.n_parts() >= 3, "{ty}: {} parts", w.n_parts());
        assert!(
            w.gpu_bytes() <= data.len() as u64 + 16 * w.n_parts() as u64,
            "{ty}: no expansion"
        );
        check_matmul(&ctx, ty, &data, rows, cols, 1, 9);
        check_matmul(&ctx, ty, &data, rows, cols, 3, 10);
    }
}

#[test]
fn gpu_bad_shapes_are_errors_not_panics() {
    let ctx = fast();
    let data = vec![0u8; 34];
    assert!(GpuWeight::upload(ctx, QuantType::Q8_0, &data, 2, 32).is_err());
    assert!(GpuWeight::upload(ctx, QuantType::Q8_0, &data, 1, 16).is_err());
    assert!(GpuWeight::upload(ctx, QuantType::IQ2_XXS, &data, 1, 256).is_err());
    let w = GpuWeight::upload(ctx, QuantType::Q8_0, &data, 1, 32).unwrap();
    let x = ctx.buffer(16).unwrap();
    let out = ctx.buffer(1).unwrap();
    assert!(ctx.step().matmul(&w, &x, 1, &out).is_err());
}
