//! Reference dequantization against llama.cpp's vectors
//! (tests/data/quant_vectors.json): every value must match to the last bit.

use infer_kernels::dequant::{dequantize, supports};
use infer_kernels::{KernelError, QuantType};

fn vectors() -> Vec<serde_json::Value> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/data/quant_vectors.json");
    let text = std::fs::read_to_string(path).expect("quant_vectors.json");
    let json: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
    json["vectors"].as_array().expect("vectors array").clone()
}

fn type_by_name(name: &str) -> QuantType {
    QuantType::ALL
        .into_iter()
        .find(|t| format!("{t:?}").eq_ignore_ascii_case(&name.replace('_', "")) || t.name().eq_ignore_ascii_case(name))
        .unwrap_or_else(|| panic!("unknown type {name}"))
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex")).collect()
}

#[test]
fn dequant_vectors_bit_exact() {
    let vs = vectors();
    assert!(vs.len() >= 14);
    for v in vs {
        let name = v["type"].as_str().expect("type");
        let ty = type_by_name(name);
        assert!(supports(ty), "{name}");
        assert_eq!(ty.block_size() as u64, v["block_elems"].as_u64().expect("block_elems"), "{name}");
        assert_eq!(ty.block_bytes() as u64, v["block_bytes"].as_u64().expect("block_bytes"), "{name}");
        let bytes = hex(v["hex"].as_str().expect("hex"));
        let want: Vec<f32> = v["expected"].as_array().expect("expected").iter().map(|e| e.as_f64().expect("f64") as f32).collect();
        assert_eq!(want.len() as u64, v["n_elems"].as_u64().expect("n_elems"));
        let mut got = vec![f32::NAN; want.len()];
        dequantize(ty, &bytes, &mut got).unwrap_or_else(|e| panic!("{name}: {e}"));
        let bad: Vec<usize> = (0..want.len()).filter(|&i| got[i].to_bits() != want[i].to_bits()).collect();
        assert!(
            bad.is_empty(),
            "{name}: {} of {} values differ, first at {}: got {} want {}",
            bad.len(),
            want.len(),
            bad[0],
            got[bad[0]],
            want[bad[0]]
        );

        // The same bytes at an odd address take the copying path.
        let mut shifted = vec![0u8; bytes.len() + 1];
        shifted[1..].copy_from_slice(&bytes);
        let mut got2 = vec![f32::NAN; want.len()];
        dequantize(ty, &shifted[1..], &mut got2).expect("misaligned");
        assert!(got2.iter().zip(&got).all(|(a, b)| a.to_bits() == b.to_bits()), "{name} misaligned");
    }
}

#[test]
fn dequant_rejects_bad_input() {
    let mut dst = [0.0f32; 32];
    assert!(matches!(dequantize(QuantType::Q4_0, &[0u8; 17], &mut dst), Err(KernelError::Shape { .. })));
    assert!(matches!(dequantize(QuantType::Q4_0, &[0u8; 18], &mut dst[..31]), Err(KernelError::Shape { .. })));
    assert!(matches!(dequantize(QuantType::IQ2_XXS, &[0u8; 66], &mut [0.0; 256]), Err(KernelError::Unsupported(..))));
    assert!(!supports(QuantType::Q8K));
}
