//! `matmul_multi_bias`: the bias that float panels add in each task's
//! epilogue, and that the other layouts add after the product, is the same
//! f32 add as a separate pass — equal bit for bit to the product plus the
//! bias, for two matrices in one call.

use infer_gguf::QuantType;
use infer_kernels::cpu::{matmul, matmul_multi_bias, quantize_q8_0, PackedMatrix, QMatrix};
use rand::{Rng, SeedableRng};

#[test]
fn biases_equal_a_pass_after_the_product() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(5);
    // 61 tokens cross a panel task's 48; 64 and 96 rows are whole panels.
    let (cols, n_tokens) = (64, 61);
    let x: Vec<f32> = (0..n_tokens * cols).map(|_| rng.random_range(-2.0..2.0)).collect();
    for ty in [QuantType::F16, QuantType::Q8_0] {
        let vals: [Vec<f32>; 2] = [64, 96].map(|rows| (0..rows * cols).map(|_| rng.random_range(-1.0..1.0)).collect());
        let data: Vec<Vec<u8>> = vals
            .iter()
            .map(|v| match ty {
                QuantType::F16 => v.iter().flat_map(|w| half::f16::from_f32(*w).to_le_bytes()).collect(),
                _ => {
                    let mut q = Vec::new();
                    quantize_q8_0(v, &mut q);
                    q
                }
            })
            .collect();
        let plain: Vec<QMatrix> =
            data.iter().zip([64, 96]).map(|(d, rows)| QMatrix::new(ty, d, rows, cols).expect("matrix")).collect();
        let packed: Vec<PackedMatrix> = plain.iter().map(|m| PackedMatrix::pack(m).expect("packs")).collect();
        let ws: Vec<QMatrix> = plain.iter().zip(&packed).map(|(m, p)| QMatrix { packed: Some(p), ..*m }).collect();
        let bias: Vec<f32> = (0..96).map(|_| rng.random_range(-1.0..1.0)).collect();
        let (mut a, mut b) = (vec![0.0; 64 * n_tokens], vec![0.0; 96 * n_tokens]);
        matmul_multi_bias(&ws, &[None, Some(&bias)], &x, n_tokens, &mut [&mut a[..], &mut b[..]]).expect("products");
        let (mut want_a, mut want_b) = (vec![0.0; 64 * n_tokens], vec![0.0; 96 * n_tokens]);
        matmul(&ws[0], &x, n_tokens, &mut want_a).expect("first");
        matmul(&ws[1], &x, n_tokens, &mut want_b).expect("second");
        want_b.chunks_exact_mut(96).for_each(|row| row.iter_mut().zip(&bias).for_each(|(v, &bv)| *v += bv));
        assert_eq!(a, want_a, "{ty}: the matrix without a bias changed");
        assert_eq!(b, want_b, "{ty}: the biased products differ from product + bias");
        let short = &bias[..95];
        assert!(matmul_multi_bias(&ws, &[None, Some(short)], &x, n_tokens, &mut [&mut a[..], &mut b[..]]).is_err());
    }
}
