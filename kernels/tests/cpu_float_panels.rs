//! Float weights (F32, F16, BF16) in panels of 32 rows: every instruction
//! set gives the same bits (the AVX-512 kernel and the scalar spec are one
//! chain of fused multiply-adds per output), close to the row-major
//! reference, and every token's row is the same whatever the batch.

use infer_gguf::QuantType;
use infer_kernels::cpu::{matmul_ref, matmul_with, Isa, PackedMatrix, QMatrix};
use rand::{Rng, SeedableRng};

/// Relative to the largest output: one sequential chain against the
/// reference's own order, over a few hundred columns.
const TOL: f32 = 1e-5;

fn weights(ty: QuantType, vals: &[f32]) -> Vec<u8> {
    match ty {
        QuantType::F16 => vals.iter().flat_map(|v| half::f16::from_f32(*v).to_le_bytes()).collect(),
        QuantType::BF16 => vals.iter().flat_map(|v| half::bf16::from_f32(*v).to_le_bytes()).collect(),
        _ => vals.iter().flat_map(|v| v.to_le_bytes()).collect(),
    }
}

#[test]
fn float_panels_agree_on_every_isa_and_batch() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(21);
    // 29 tokens: two full tiles of 12, one of 4 and one single; 61 tokens
    // crosses a task's 48; 100 columns are no multiple of 16.
    for (rows, cols, n_tokens) in [(32, 100, 29), (96, 384, 61), (64, 17, 5)] {
        let vals: Vec<f32> = (0..rows * cols).map(|_| rng.random_range(-1.0..1.0)).collect();
        let x: Vec<f32> = (0..n_tokens * cols).map(|_| rng.random_range(-2.0..2.0)).collect();
        for ty in [QuantType::F32, QuantType::F16, QuantType::BF16] {
            let data = weights(ty, &vals);
            let plain = QMatrix::new(ty, &data, rows, cols).expect("matrix");
            let packed = PackedMatrix::pack(&plain).expect("whole panels pack");
            assert_eq!(packed.bytes(), data.len(), "{ty}: panels keep the weight's width");
            let w = QMatrix { packed: Some(&packed), ..plain };
            let mut want = vec![0.0; rows * n_tokens];
            matmul_ref(&plain, &x, n_tokens, &mut want).expect("reference");
            let mut first: Option<Vec<f32>> = None;
            for isa in Isa::available() {
                let mut got = vec![0.0; rows * n_tokens];
                matmul_with(isa, &w, &x, n_tokens, &mut got).expect("panels");
                let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
                let err = got.iter().zip(&want).fold(0f32, |m, (a, b)| m.max((a - b).abs())) / scale;
                assert!(err <= TOL, "{ty} {isa:?} {rows}×{cols}: relative error {err}");
                for t in [0, n_tokens / 2, n_tokens - 1] {
                    let mut one = vec![0.0; rows];
                    matmul_with(isa, &w, &x[t * cols..(t + 1) * cols], 1, &mut one).expect("one token");
                    assert_eq!(&got[t * rows..(t + 1) * rows], &one[..], "{ty} {isa:?}: token {t} alone differs");
                }
                match &first {
                    Some(f) => assert_eq!(f, &got, "{ty} {isa:?}: differs from {:?}", Isa::available()[0]),
                    None => first = Some(got),
                }
            }
        }
    }
}

#[test]
fn float_panels_need_whole_panels() {
    let data = vec![0u8; 40 * 8 * 2];
    let w = QMatrix::new(QuantType::F16, &data, 40, 8).expect("matrix");
    assert!(PackedMatrix::pack(&w).is_none(), "40 rows is not a whole number of 32-row panels");
    assert!(!PackedMatrix::worth_packing(QuantType::F16, 40, Isa::best()));
}

/// Half math's bound, relative to the largest output: f16 activations and
/// f16 sums over runs of 32 columns (about 2⁻¹¹ per rounding).
const HALF_TOL: f32 = 4e-3;

#[test]
fn half_math_stays_near_the_reference_and_batch_invariant() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(22);
    for (rows, cols, n_tokens) in [(64, 384, 29), (32, 1536, 13), (32, 40, 9)] {
        let vals: Vec<f32> = (0..rows * cols).map(|_| rng.random_range(-0.2..0.2)).collect();
        let x: Vec<f32> = (0..n_tokens * cols).map(|_| rng.random_range(-3.0..3.0)).collect();
        let data = weights(QuantType::F16, &vals);
        let plain = QMatrix::new(QuantType::F16, &data, rows, cols).expect("matrix");
        let mut packed = PackedMatrix::pack(&plain).expect("whole panels pack");
        assert!(packed.set_half_math(true), "F16 panels take half math");
        let w = QMatrix { packed: Some(&packed), ..plain };
        let mut want = vec![0.0; rows * n_tokens];
        matmul_ref(&plain, &x, n_tokens, &mut want).expect("reference");
        let mut got = vec![0.0; rows * n_tokens];
        matmul_with(Isa::best(), &w, &x, n_tokens, &mut got).expect("half math");
        let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
        let err = got.iter().zip(&want).fold(0f32, |m, (a, b)| m.max((a - b).abs())) / scale;
        assert!(err <= HALF_TOL, "{rows}×{cols}: relative error {err}");
        for t in [0, n_tokens / 2, n_tokens - 1] {
            let mut one = vec![0.0; rows];
            matmul_with(Isa::best(), &w, &x[t * cols..(t + 1) * cols], 1, &mut one).expect("one token");
            assert_eq!(&got[t * rows..(t + 1) * rows], &one[..], "token {t} alone differs");
        }
    }
}

#[test]
fn half_math_overflow_falls_back_to_f32() {
    // Activations past f16's range (65504): the product is recomputed with
    // f32 sums, so it equals the f32 panels' result exactly.
    let (rows, cols, n_tokens) = (32, 64, 3);
    let vals: Vec<f32> = (0..rows * cols).map(|i| ((i % 7) as f32 - 3.0) / 4.0).collect();
    let x: Vec<f32> = (0..n_tokens * cols).map(|i| if i % 5 == 0 { 1.0e6 } else { 1.0 }).collect();
    let data = weights(QuantType::F16, &vals);
    let plain = QMatrix::new(QuantType::F16, &data, rows, cols).expect("matrix");
    let f32_math = PackedMatrix::pack(&plain).expect("panels");
    let mut half = PackedMatrix::pack(&plain).expect("panels");
    half.set_half_math(true);
    let (mut a, mut b) = (vec![0.0; rows * n_tokens], vec![0.0; rows * n_tokens]);
    matmul_with(Isa::best(), &QMatrix { packed: Some(&f32_math), ..plain }, &x, n_tokens, &mut a).expect("f32");
    matmul_with(Isa::best(), &QMatrix { packed: Some(&half), ..plain }, &x, n_tokens, &mut b).expect("half");
    assert!(b.iter().all(|v| v.is_finite()), "half math left a non-finite value");
    assert_eq!(a, b);
}

#[test]
fn only_f16_panels_take_half_math() {
    let data = vec![0u8; 32 * 8 * 4];
    let w = QMatrix::new(QuantType::F32, &data, 32, 8).expect("matrix");
    let mut p = PackedMatrix::pack(&w).expect("panels");
    assert!(!p.set_half_math(true), "F32 panels keep f32 sums");
}
