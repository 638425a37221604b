//! `cpu::matmul` against `cpu::matmul_ref` on random blocks of every type and
//! on real blocks from the two test models.

use half::f16;
use infer_kernels::cpu::{get_row, matmul, matmul_ref, matmul_with, Isa, QMatrix};
use infer_kernels::dequant::{dequantize, supports};
use infer_kernels::{KernelError, QuantType};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Error of an f32 path that only reorders the summation, relative to
/// `Σ |W[r][c]| · |x[c]|` (the magnitude the rounding errors scale with).
const F32_REL_TOL: f32 = 1e-5;
/// Error from quantizing activations to 8 bits (≤ 1/254 of each |x| per
/// element before scale rounding), relative to `Σ |W[r][c]| · |x[c]|`.
const Q8_ACT_REL_TOL: f32 = 1e-2;

/// Offsets of the f16 scale fields of each block type (ggml-common.h), set
/// to finite values so random bytes make a valid block.
fn f16_fields(ty: QuantType) -> &'static [usize] {
    use QuantType::*;
    match ty {
        Q4_0 | Q5_0 | Q8_0 | IQ4_NL | IQ4_XS => &[0],
        Q4_1 | Q5_1 | Q4K | Q5K => &[0, 2],
        Q2K => &[80, 82],
        Q3K => &[108],
        Q6K => &[208],
        _ => &[],
    }
}

fn random_matrix(rng: &mut StdRng, ty: QuantType, rows: usize, cols: usize) -> Vec<u8> {
    let n_blocks = rows * cols / ty.block_size();
    let bb = ty.block_bytes();
    let mut data = vec![0u8; n_blocks * bb];
    match ty {
        QuantType::F32 => {
            for c in data.chunks_exact_mut(4) {
                c.copy_from_slice(&rng.random_range(-1.0f32..1.0).to_le_bytes());
            }
        }
        QuantType::F16 => {
            for c in data.chunks_exact_mut(2) {
                c.copy_from_slice(&f16::from_f32(rng.random_range(-1.0f32..1.0)).to_le_bytes());
            }
        }
        QuantType::BF16 => {
            for c in data.chunks_exact_mut(2) {
                c.copy_from_slice(&half::bf16::from_f32(rng.random_range(-1.0f32..1.0)).to_le_bytes());
            }
        }
        _ => {
            rng.fill(&mut data[..]);
            for b in data.chunks_exact_mut(bb) {
                for &o in f16_fields(ty) {
                    let v = f16::from_f32(rng.random_range(-0.05f32..0.05));
                    b[o..o + 2].copy_from_slice(&v.to_le_bytes());
                }
            }
        }
    }
    data
}

/// `Σ_c |W[r][c]| · |x[t][c]|` for every output, the scale of rounding errors.
fn magnitudes(w: &QMatrix, x: &[f32], n_tokens: usize) -> Vec<f32> {
    let mut out = vec![0.0; n_tokens * w.rows];
    let mut row = vec![0.0; w.cols];
    for r in 0..w.rows {
        get_row(w, r, &mut row).expect("get_row");
        for t in 0..n_tokens {
            let xt = &x[t * w.cols..(t + 1) * w.cols];
            out[t * w.rows + r] = row.iter().zip(xt).map(|(a, b)| a.abs() * b.abs()).sum();
        }
    }
    out
}

/// Checks `matmul` on every available instruction set: within `tol` of
/// `matmul_ref`, and SIMD within `F32_REL_TOL` of the scalar twins (the
/// integer block dots are exact, so only the f32 summation order differs).
fn check(w: &QMatrix, x: &[f32], n_tokens: usize, tol: f32, what: &str) {
    let mut want = vec![0.0; n_tokens * w.rows];
    matmul_ref(w, x, n_tokens, &mut want).expect("matmul_ref");
    let mag = magnitudes(w, x, n_tokens);
    let mut scalar = vec![f32::NAN; n_tokens * w.rows];
    matmul_with(Isa::Scalar, w, x, n_tokens, &mut scalar).expect("matmul scalar");
    compare(&scalar, &want, &mag, tol, &format!("{what} Scalar vs ref"));
    for isa in Isa::available() {
        let mut got = vec![f32::NAN; n_tokens * w.rows];
        matmul_with(isa, w, x, n_tokens, &mut got).expect("matmul_with");
        compare(&got, &want, &mag, tol, &format!("{what} {isa:?} vs ref"));
        compare(&got, &scalar, &mag, F32_REL_TOL, &format!("{what} {isa:?} vs scalar twin"));
    }
    let mut got = vec![f32::NAN; n_tokens * w.rows];
    matmul(w, x, n_tokens, &mut got).expect("matmul");
    compare(&got, &want, &mag, tol, &format!("{what} matmul vs ref"));
}

fn compare(got: &[f32], want: &[f32], mag: &[f32], tol: f32, what: &str) {
    for i in 0..want.len() {
        let err = (got[i] - want[i]).abs();
        assert!(
            err <= tol * mag[i] + 1e-30,
            "{what}: out[{i}] = {} want {} (err {err}, bound {})",
            got[i],
            want[i],
            tol * mag[i]
        );
    }
}

fn tol_for(ty: QuantType) -> f32 {
    use QuantType::*;
    match ty {
        Q4_0 | Q4_1 | Q5_0 | Q5_1 | Q8_0 | Q4K | Q5K | Q6K => Q8_ACT_REL_TOL,
        _ => F32_REL_TOL,
    }
}

const ALL_SUPPORTED: [QuantType; 15] = [
    QuantType::F32, QuantType::F16, QuantType::BF16, QuantType::Q4_0, QuantType::Q4_1, QuantType::Q5_0,
    QuantType::Q5_1, QuantType::Q8_0, QuantType::Q2K, QuantType::Q3K, QuantType::Q4K, QuantType::Q5K,
    QuantType::Q6K, QuantType::IQ4_NL, QuantType::IQ4_XS,
];

#[test]
fn cpu_matmul_random_blocks_all_types() {
    let mut rng = StdRng::seed_from_u64(7);
    for ty in ALL_SUPPORTED {
        assert!(supports(ty));
        // Odd row counts exercise partial tasks; 1 token is decode, 3, 7
        // and 37 cover every register-tile remainder and several passes.
        for (rows, cols) in [(1, 256), (37, 512), (130, 1024)] {
            let data = random_matrix(&mut rng, ty, rows, cols);
            let w = QMatrix::new(ty, &data, rows, cols).expect("QMatrix");
            for n_tokens in [1, 3, 7, 37] {
                let x: Vec<f32> = (0..n_tokens * cols).map(|_| rng.random_range(-1.0f32..1.0)).collect();
                check(&w, &x, n_tokens, tol_for(ty), &format!("{ty} {rows}x{cols} n_tokens={n_tokens}"));
            }
        }
    }
}

/// The first `max_rows` rows of every 2-D tensor of a model, one per type.
fn real_tensors(path: &str, max_rows: usize, f: impl Fn(&str, QMatrix)) {
    let g = infer_gguf::Gguf::open(path).expect("model");
    let mut seen = Vec::new();
    for info in g.tensors() {
        if info.dims.len() != 2 || seen.contains(&info.ty) || !supports(info.ty) {
            continue;
        }
        seen.push(info.ty);
        let t = g.tensor(&info.name).expect("tensor");
        let (cols, rows) = (t.dims()[0] as usize, (t.dims()[1] as usize).min(max_rows));
        let rb = cols / t.ty().block_size() * t.ty().block_bytes();
        let w = QMatrix::new(t.ty(), &t.data[..rows * rb], rows, cols).expect("QMatrix");
        f(&info.name, w);
    }
    assert!(seen.len() >= 2, "{path}: types {seen:?}");
}

#[test]
fn cpu_matmul_real_blocks() {
    for path in ["SmolLM2-135M-Instruct.Q4_1.gguf", "gemma-3-270m-q4_k_m.gguf"] {
        let path = format!("{}/../models/{path}", env!("CARGO_MANIFEST_DIR"));
        real_tensors(&path, 96, |name, w| {
            let mut rng = StdRng::seed_from_u64(11);
            for n_tokens in [1, 5, 33] {
                let x: Vec<f32> = (0..n_tokens * w.cols).map(|_| rng.random_range(-2.0f32..2.0)).collect();
                check(&w, &x, n_tokens, tol_for(w.ty), &format!("{name} ({}) n_tokens={n_tokens}", w.ty));
            }
        });
    }
}

#[test]
fn cpu_get_row_matches_dequantize() {
    let mut rng = StdRng::seed_from_u64(3);
    let data = random_matrix(&mut rng, QuantType::Q4K, 4, 512);
    let w = QMatrix::new(QuantType::Q4K, &data, 4, 512).expect("QMatrix");
    let mut all = vec![0.0; 4 * 512];
    dequantize(QuantType::Q4K, &data, &mut all).expect("dequantize");
    let mut row = vec![0.0; 512];
    get_row(&w, 2, &mut row).expect("get_row");
    assert!(row.iter().zip(&all[1024..1536]).all(|(a, b)| a.to_bits() == b.to_bits()));
    assert!(matches!(get_row(&w, 4, &mut row), Err(KernelError::Shape { .. })));
}

#[test]
fn cpu_shape_errors() {
    let data = vec![0u8; 2 * 18 * 2];
    assert!(matches!(QMatrix::new(QuantType::Q4_0, &data, 2, 48), Err(KernelError::Shape { .. })));
    assert!(matches!(QMatrix::new(QuantType::Q4_0, &data[1..], 2, 64), Err(KernelError::Shape { .. })));
    let w = QMatrix::new(QuantType::Q4_0, &data, 2, 64).expect("QMatrix");
    let mut out = [0.0; 4];
    assert!(matches!(matmul(&w, &[0.0; 127], 2, &mut out), Err(KernelError::Shape { .. })));
    assert!(matches!(matmul(&w, &[0.0; 128], 2, &mut out[..3]), Err(KernelError::Shape { .. })));
    assert!(matmul(&w, &[0.0; 128], 2, &mut out).is_ok());
}
