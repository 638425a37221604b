//! Repacked Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K and Q6_K (eight
//! interleaved rows): every instruction set against the row-major scalar
//! kernels on the same matrix, and the packed layout's scalar spec against
//! a hand-built integer dot product.

use infer_gguf::QuantType;
use infer_kernels::cpu::repack::{vec_dot_q4_0x8, PACK_ROWS};
use infer_kernels::cpu::{matmul_with, quantize_q8_act, BlockQ8Act, Isa, PackedMatrix, QMatrix};
use rand::{Rng, SeedableRng};

/// Relative to the largest output: the packed kernels sum each block's
/// integers exactly where the row-major ones sum 8 float lanes, so they
/// agree to f32 rounding.
const TOL: f32 = 1e-5;

fn random_q4_0(rng: &mut rand::rngs::StdRng, rows: usize, cols: usize) -> Vec<u8> {
    random_blocks(rng, QuantType::Q4_0, rows, cols)
}

/// Offsets of each block type's f16 scale fields (ggml-common.h).
fn f16_fields(ty: QuantType) -> &'static [usize] {
    match ty {
        QuantType::Q4_1 | QuantType::Q5_1 | QuantType::Q4K | QuantType::Q5K => &[0, 2],
        QuantType::Q6K => &[208],
        _ => &[0],
    }
}

/// Random quants with small f16 scales (and mins).
fn random_blocks(rng: &mut rand::rngs::StdRng, ty: QuantType, rows: usize, cols: usize) -> Vec<u8> {
    let bpb = ty.block_bytes();
    let mut data = vec![0u8; rows * cols / ty.block_size() * bpb];
    rng.fill(&mut data[..]);
    for b in data.chunks_mut(bpb) {
        for &at in f16_fields(ty) {
            let d = half::f16::from_f32(rng.random_range(0.001..0.02));
            b[at..at + 2].copy_from_slice(&d.to_bits().to_le_bytes());
        }
    }
    data
}

fn max_rel(got: &[f32], want: &[f32]) -> f32 {
    let scale = want.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-6);
    got.iter().zip(want).fold(0f32, |m, (a, b)| m.max((a - b).abs())) / scale
}

#[test]
fn packed_matches_row_major_on_every_isa() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    for ty in [QuantType::Q4_0, QuantType::Q4_1, QuantType::Q5_0, QuantType::Q5_1, QuantType::Q8_0] {
        check_packed(&mut rng, ty, &[(8, 32), (64, 256), (136, 576), (256, 2048)]);
    }
}

#[test]
fn packed_k_quants_match_row_major_on_every_isa() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(12);
    for ty in [QuantType::Q4K, QuantType::Q5K, QuantType::Q6K] {
        check_packed(&mut rng, ty, &[(8, 256), (64, 512), (136, 768), (256, 2048)]);
    }
}

fn check_packed(rng: &mut rand::rngs::StdRng, ty: QuantType, shapes: &[(usize, usize)]) {
    for &(rows, cols) in shapes {
        let data = random_blocks(rng, ty, rows, cols);
        let plain = QMatrix::new(ty, &data, rows, cols).unwrap();
        let packed = PackedMatrix::pack(&plain).expect("a matrix of 8k rows packs");
        // Q4_K and Q5_K keep their 6-bit scales as bytes: 32 more per 8 rows.
        let extra = if matches!(ty, QuantType::Q4K | QuantType::Q5K) { data.len() / 36 } else { 0 };
        assert!(packed.bytes() <= data.len() + extra, "{ty}: {} packed bytes for {}", packed.bytes(), data.len());
        for n_tokens in [1usize, 2, 3, 5, 8, 13, 17, 33] {
            packed_agrees(rng, &plain, &packed, n_tokens, &format!("{ty} {rows}×{cols}"));
        }
    }
}

/// `plain` through the packed kernels of every instruction set against the
/// row-major scalar kernels, `n_tokens` random activations.
fn packed_agrees(rng: &mut rand::rngs::StdRng, plain: &QMatrix, packed: &PackedMatrix, n_tokens: usize, what: &str) {
    let (rows, cols) = (plain.rows, plain.cols);
    let with_pack = QMatrix { packed: Some(packed), ..*plain };
    let x: Vec<f32> = (0..n_tokens * cols).map(|_| rng.random_range(-2.0..2.0)).collect();
    let mut want = vec![0.0; rows * n_tokens];
    matmul_with(Isa::Scalar, plain, &x, n_tokens, &mut want).unwrap();
    for isa in Isa::available() {
        let mut got = vec![0.0; rows * n_tokens];
        matmul_with(isa, &with_pack, &x, n_tokens, &mut got).unwrap();
        let e = max_rel(&got, &want);
        assert!(e < TOL, "{what} {isa:?} n_tokens {n_tokens}: rel error {e}");
    }
}

#[test]
fn packed_spec_is_the_integer_dot_product() {
    // One group, one token: the spec's sums against a hand-built dot product.
    let mut rng = rand::rngs::StdRng::seed_from_u64(5);
    let (rows, cols) = (PACK_ROWS, 64);
    let data = random_q4_0(&mut rng, rows, cols);
    let plain = QMatrix::new(QuantType::Q4_0, &data, rows, cols).unwrap();
    let packed = PackedMatrix::pack(&plain).unwrap();
    let x: Vec<f32> = (0..cols).map(|_| rng.random_range(-1.0..1.0)).collect();
    let mut acts = vec![BlockQ8Act { d: 0.0, s: 0.0, qs: [0; 32] }; cols / 32];
    quantize_q8_act(&x, &mut acts);
    let mut out = [0.0f32; PACK_ROWS];
    let blocks: Vec<_> = (0..cols / 32).map(|b| packed_block(&packed, b)).collect();
    vec_dot_q4_0x8(&blocks, &acts, 1, &mut out);
    for r in 0..rows {
        let mut want = 0.0f32;
        for (b, xb) in acts.iter().enumerate() {
            let blk = &data[(r * cols / 32 + b) * 18..][..18];
            let d = half::f16::from_le_bytes([blk[0], blk[1]]).to_f32();
            let mut s = 0i32;
            for j in 0..16 {
                s += ((blk[2 + j] & 0xF) as i32 - 8) * xb.qs[j] as i32;
                s += ((blk[2 + j] >> 4) as i32 - 8) * xb.qs[16 + j] as i32;
            }
            want += d * xb.d * s as f32;
        }
        assert!((out[r] - want).abs() <= 1e-5 * want.abs().max(1.0), "row {r}: {} vs {want}", out[r]);
    }
}

fn packed_block(p: &PackedMatrix, b: usize) -> infer_kernels::cpu::repack::BlockQ4_0x8 {
    p.group_q4_0(0).expect("a Q4_0 packed matrix")[b]
}

#[test]
fn only_packable_types_with_whole_row_groups_pack() {
    let data = vec![0u8; 12 * 18];
    let w = QMatrix::new(QuantType::Q4_0, &data, 12, 32).unwrap();
    assert!(PackedMatrix::pack(&w).is_none(), "12 rows is not a whole number of 8-row groups");
    let data = vec![0u8; 8 * 18];
    let w = QMatrix::new(QuantType::IQ4_NL, &data, 8, 32).unwrap();
    assert!(PackedMatrix::pack(&w).is_none(), "IQ4_NL has no packed layout");
    let data = vec![0u8; 12 * 210];
    let w = QMatrix::new(QuantType::Q6K, &data, 12, 256).unwrap();
    assert!(PackedMatrix::pack(&w).is_none(), "12 Q6_K rows do not pack either");
}

#[test]
fn packed_real_blocks_match_row_major() {
    // Real blocks of every packable type in the two test models (SmolLM2:
    // Q4_1, Q8_0; Gemma 3: Q4_K, Q5_0, Q6_K, Q8_0), first 64 rows.
    let mut rng = rand::rngs::StdRng::seed_from_u64(13);
    let mut seen = Vec::new();
    for name in ["SmolLM2-135M-Instruct.Q4_1.gguf", "gemma-3-270m-q4_k_m.gguf"] {
        let path = format!("{}/../models/{name}", env!("CARGO_MANIFEST_DIR"));
        let g = infer_gguf::Gguf::open(&path).expect("test model");
        for info in g.tensors() {
            if info.dims.len() != 2 || seen.contains(&info.ty) || !PackedMatrix::packs(info.ty, 64) {
                continue;
            }
            seen.push(info.ty);
            let t = g.tensor(&info.name).expect("tensor");
            let (cols, rows) = (t.dims()[0] as usize, 64);
            let rb = cols / t.ty().block_size() * t.ty().block_bytes();
            let plain = QMatrix::new(t.ty(), &t.data[..rows * rb], rows, cols).expect("QMatrix");
            let packed = PackedMatrix::pack(&plain).expect("64 rows pack");
            for n_tokens in [1usize, 2, 9] {
                packed_agrees(&mut rng, &plain, &packed, n_tokens, &format!("{} ({})", info.name, info.ty));
            }
        }
    }
    for ty in [QuantType::Q4_1, QuantType::Q4K, QuantType::Q6K] {
        assert!(seen.contains(&ty), "{ty} not found in the test models: {seen:?}");
    }
}

#[test]
fn packed_rows_do_not_depend_on_the_batch() {
    // A prompt long enough for the prefill panels (and every tile size)
    // gives each token exactly the row values that token gets alone: the
    // multi-sequence engine relies on it.
    let mut rng = rand::rngs::StdRng::seed_from_u64(14);
    let (rows, cols, n_tokens) = (48, 512, 37);
    for ty in [
        QuantType::Q4_0,
        QuantType::Q4_1,
        QuantType::Q5_0,
        QuantType::Q8_0,
        QuantType::Q4K,
        QuantType::Q5K,
        QuantType::Q6K,
    ] {
        let data = random_blocks(&mut rng, ty, rows, cols);
        let plain = QMatrix::new(ty, &data, rows, cols).unwrap();
        let packed = PackedMatrix::pack(&plain).unwrap();
        let w = QMatrix { packed: Some(&packed), ..plain };
        let x: Vec<f32> = (0..n_tokens * cols).map(|_| rng.random_range(-2.0..2.0)).collect();
        for isa in Isa::available() {
            let mut all = vec![0.0; rows * n_tokens];
            matmul_with(isa, &w, &x, n_tokens, &mut all).unwrap();
            for t in [0, 1, 8, 17, 36] {
                let mut one = vec![0.0; rows];
                matmul_with(isa, &w, &x[t * cols..(t + 1) * cols], 1, &mut one).unwrap();
                assert_eq!(&all[t * rows..(t + 1) * rows], &one[..], "{ty} {isa:?} token {t} of {n_tokens}");
            }
        }
    }
}
