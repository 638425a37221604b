//! `matmul_multi` (several matrices, one pass) equals separate `matmul` calls.

use infer_gguf::QuantType;
use infer_kernels::cpu::{matmul, matmul_multi, QMatrix};
use rand::{Rng, SeedableRng};

/// Random blocks with small, finite f16 scales in the first 2 (or 4) bytes.
fn random_matrix(rng: &mut rand::rngs::StdRng, ty: QuantType, rows: usize, cols: usize) -> Vec<u8> {
    let bpb = ty.block_bytes();
    if ty == QuantType::F32 {
        let v: Vec<f32> = (0..rows * cols).map(|_| rng.random_range(-1.0..1.0)).collect();
        return bytemuck::cast_slice(&v).to_vec();
    }
    let mut data = vec![0u8; rows * cols / ty.block_size() * bpb];
    rng.fill(&mut data[..]);
    let scale = half::f16::from_f32(0.01).to_bits().to_le_bytes();
    for b in data.chunks_mut(bpb) {
        match ty {
            // d and dmin lead the block.
            QuantType::Q4K | QuantType::Q5K => {
                b[..2].copy_from_slice(&scale);
                b[2..4].copy_from_slice(&scale);
            }
            // d trails the block.
            QuantType::Q6K => b[bpb - 2..].copy_from_slice(&scale),
            QuantType::Q4_1 | QuantType::Q5_1 => {
                b[..2].copy_from_slice(&scale);
                b[2..4].copy_from_slice(&scale);
            }
            _ => b[..2].copy_from_slice(&scale),
        }
    }
    data
}

#[test]
fn cpu_matmul_multi_equals_separate_calls() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    for ty in [QuantType::Q4_0, QuantType::Q4_1, QuantType::Q5_0, QuantType::Q8_0, QuantType::Q4K, QuantType::Q6K, QuantType::F32] {
        let cols = 512;
        let shapes = [96usize, 32, 160];
        let datas: Vec<Vec<u8>> = shapes.iter().map(|&r| random_matrix(&mut rng, ty, r, cols)).collect();
        let ws: Vec<QMatrix> = datas.iter().zip(shapes).map(|(d, r)| QMatrix::new(ty, d, r, cols).unwrap()).collect();
        for n_tokens in [1, 3, 9] {
            let x: Vec<f32> = (0..n_tokens * cols).map(|_| rng.random_range(-1.0..1.0)).collect();
            let mut outs: Vec<Vec<f32>> = shapes.iter().map(|&r| vec![0.0; r * n_tokens]).collect();
            {
                let mut refs: Vec<&mut [f32]> = outs.iter_mut().map(|o| o.as_mut_slice()).collect();
                matmul_multi(&ws, &x, n_tokens, &mut refs).unwrap();
            }
            for (w, got) in ws.iter().zip(&outs) {
                let mut want = vec![0.0; w.rows * n_tokens];
                matmul(w, &x, n_tokens, &mut want).unwrap();
                assert_eq!(got, &want, "{ty} n_tokens {n_tokens}");
            }
        }
    }
}

#[test]
fn cpu_matmul_multi_rejects_mixed_shapes() {
    let a = vec![0u8; 18 * 4];
    let b = vec![0u8; 34 * 4];
    let wa = QMatrix::new(QuantType::Q4_0, &a, 2, 64).unwrap();
    let wb = QMatrix::new(QuantType::Q8_0, &b, 2, 64).unwrap();
    let x = vec![0.0; 64];
    let (mut oa, mut ob) = (vec![0.0; 2], vec![0.0; 2]);
    assert!(matmul_multi(&[wa, wb], &x, 1, &mut [&mut oa, &mut ob]).is_err());
}
