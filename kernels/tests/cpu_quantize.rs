//! The activation quantizers against their scalar twins (the same bytes,
//! scales and sums, on random rows, rows with ties for the largest value of
//! either sign, rows of zeros and rows with values on rounding midpoints),
//! and the SIMD SwiGLU against the libm reference.

use infer_gguf::blocks::BlockQ8K;
use infer_gguf::QK_K;
use infer_kernels::cpu::{quantize_q8_act, quantize_q8_act_ref, quantize_q8_k, quantize_q8_k_ref, BlockQ8Act};
use rand::{Rng, SeedableRng};

fn rows(rng: &mut rand::rngs::StdRng) -> Vec<Vec<f32>> {
    let n = 4 * QK_K;
    let mut out = vec![
        (0..n).map(|_| rng.random_range(-3.0f32..3.0)).collect::<Vec<_>>(),
        (0..n).map(|_| rng.random_range(-1e-3f32..1e-3)).collect(),
        vec![0.0; n],
    ];
    // Ties: +a and −a both present, in both orders, so the sign of the first wins.
    let mut tie: Vec<f32> = (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect();
    for b in 0..n / QK_K {
        let (i, j) = (b * QK_K + 3 + b, b * QK_K + 200 - b);
        tie[i] = if b % 2 == 0 { 2.5 } else { -2.5 };
        tie[j] = -tie[i];
    }
    out.push(tie);
    // Midpoints: with amax 127 the scale is 1 and x · 127/amax lands on .5.
    let mut mid: Vec<f32> = (0..n).map(|i| (i % 200) as f32 * 0.5 - 50.0).collect();
    for b in 0..n / QK_K {
        mid[b * QK_K] = 127.0;
    }
    out.push(mid);
    out
}

#[test]
fn q8_k_matches_the_scalar_quantizer() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(3);
    for x in rows(&mut rng) {
        let zero = BlockQ8K { d: 0.0, qs: [0; QK_K], bsums: [0; QK_K / 16] };
        let (mut got, mut want) = (vec![zero; x.len() / QK_K], vec![zero; x.len() / QK_K]);
        quantize_q8_k(&x, &mut got);
        quantize_q8_k_ref(&x, &mut want);
        for (b, (g, w)) in got.iter().zip(&want).enumerate() {
            assert_eq!(g.d.to_bits(), w.d.to_bits(), "block {b}: d");
            assert_eq!(g.qs, w.qs, "block {b}: qs");
            assert_eq!(g.bsums, w.bsums, "block {b}: bsums");
        }
    }
}

#[test]
fn q8_act_matches_the_scalar_quantizer() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(4);
    for x in rows(&mut rng) {
        let zero = BlockQ8Act { d: 0.0, s: 0.0, qs: [0; 32] };
        let (mut got, mut want) = (vec![zero; x.len() / 32], vec![zero; x.len() / 32]);
        quantize_q8_act(&x, &mut got);
        quantize_q8_act_ref(&x, &mut want);
        for (b, (g, w)) in got.iter().zip(&want).enumerate() {
            assert_eq!((g.d.to_bits(), g.s.to_bits(), g.qs), (w.d.to_bits(), w.s.to_bits(), w.qs), "block {b}");
        }
    }
}

#[test]
fn swiglu_equals_the_libm_reference_but_for_rare_last_bits() {
    // Values across silu's range, saturation included, and a tail shorter
    // than one register.
    let mut rng = rand::rngs::StdRng::seed_from_u64(5);
    let mut gate: Vec<f32> = (0..20000).map(|_| rng.random_range(-20.0f32..20.0)).collect();
    gate.extend([0.0, -0.0, 88.0, -88.0, 100.0, -100.0, 200.0, -200.0, 1e-30, -1e-30, 3.0]);
    let up: Vec<f32> = (0..gate.len()).map(|_| rng.random_range(-2.0f32..2.0)).collect();
    let mut want = vec![0.0; gate.len()];
    infer_kernels::ops::swiglu_ref(&gate, &up, &mut want);
    let mut got = gate.clone();
    infer_kernels::cpu::swiglu_inplace(&mut got, &up);
    let mut differ = 0;
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        if g.to_bits() != w.to_bits() {
            differ += 1;
            assert!((g - w).abs() <= 2.0 * f32::EPSILON * w.abs(), "value {i} (gate {}): {g} vs {w}", gate[i]);
        }
    }
    eprintln!("swiglu: {differ} of {} values differ from libm in the last bit", gate.len());
    assert!(differ * 200 <= gate.len(), "{differ} of {} values differ from libm's", gate.len());
}
