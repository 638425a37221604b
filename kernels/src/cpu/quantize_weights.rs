//! Weight quantization: f32 rows to GGUF's Q8_0 and Q4_0 blocks, as
//! llama.cpp's reference `quantize_row_q8_0_ref` / `quantize_row_q4_0_ref`
//! (`ggml-quants.c`) write them, for quantizing a model while it loads or
//! converts. Block layouts: `infer_gguf::blocks`.

use half::f16;
use infer_gguf::blocks::{BlockQ4_0, BlockQ8_0};
use infer_gguf::QuantType;

use crate::KernelError;

/// Quantizes `x` (a multiple of 32 values) into Q8_0 blocks appended to
/// `out`: `d = amax / 127`, `q = round(x / d)`.
pub fn quantize_q8_0(x: &[f32], out: &mut Vec<u8>) {
    for chunk in x.chunks_exact(32) {
        let amax = chunk.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let d = amax / 127.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        let mut b = BlockQ8_0 { d: f16::from_f32(d), qs: [0; 32] };
        for (q, v) in b.qs.iter_mut().zip(chunk) {
            *q = (v * id).round() as i8;
        }
        out.extend_from_slice(bytemuck::bytes_of(&b));
    }
}

/// Quantizes `x` (a multiple of 32 values) into Q4_0 blocks appended to
/// `out`: the value of largest magnitude maps to -8, `d = max / -8`,
/// `q = min(15, trunc(x / d + 8.5))`; value `j` in the low nibble of byte
/// `j`, value `j + 16` in its high nibble.
pub fn quantize_q4_0(x: &[f32], out: &mut Vec<u8>) {
    for chunk in x.chunks_exact(32) {
        let max = chunk.iter().fold(0.0f32, |m, &v| if v.abs() > m.abs() { v } else { m });
        let d = max / -8.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        let q = |v: f32| ((v * id + 8.5) as i32).clamp(0, 15) as u8;
        let mut b = BlockQ4_0 { d: f16::from_f32(d), qs: [0; 16] };
        for j in 0..16 {
            b.qs[j] = q(chunk[j]) | (q(chunk[j + 16]) << 4);
        }
        out.extend_from_slice(bytemuck::bytes_of(&b));
    }
}

/// Whether [`quantize_row`] writes type `ty`.
pub fn quantizes_to(ty: QuantType) -> bool {
    matches!(ty, QuantType::Q8_0 | QuantType::Q4_0 | QuantType::F16 | QuantType::F32)
}

/// Appends row `x` as type `ty` (Q8_0, Q4_0, F16 or F32) to `out`.
pub fn quantize_row(ty: QuantType, x: &[f32], out: &mut Vec<u8>) -> Result<(), KernelError> {
    if !x.len().is_multiple_of(ty.block_size()) {
        return Err(KernelError::Shape {
            op: "quantize_row",
            detail: format!("a row of {} values is not a multiple of the {ty} block size {}", x.len(), ty.block_size()),
        });
    }
    match ty {
        QuantType::Q8_0 => quantize_q8_0(x, out),
        QuantType::Q4_0 => quantize_q4_0(x, out),
        QuantType::F16 => out.extend(x.iter().flat_map(|v| f16::from_f32(*v).to_le_bytes())),
        QuantType::F32 => out.extend(x.iter().flat_map(|v| v.to_le_bytes())),
        other => return Err(KernelError::Unsupported(other, "quantize_row")),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(n: usize) -> Vec<f32> {
        (0..n).map(|i| ((i * 37 % 101) as f32 - 50.0) / 17.0).collect()
    }

    /// Each type round-trips through the dequantizer within half a step of
    /// its grid (Q4_0: a whole step, as its grid stops at +7 while the
    /// largest magnitude maps to -8).
    #[test]
    fn round_trip_within_half_a_step() {
        let x = values(256);
        for (ty, steps) in [(QuantType::Q8_0, 127.0f32), (QuantType::Q4_0, 4.0), (QuantType::F16, 1024.0)] {
            let mut bytes = Vec::new();
            quantize_row(ty, &x, &mut bytes).unwrap();
            assert_eq!(bytes.len(), ty.bytes_for(256).unwrap() as usize);
            let mut back = vec![0.0f32; 256];
            crate::dequant::dequantize(ty, &bytes, &mut back).unwrap();
            for (a, b) in x.chunks(32).zip(back.chunks(32)) {
                let amax = a.iter().fold(0.0f32, |m, v| m.max(v.abs()));
                let tol = amax / steps * 0.5 + amax * 1e-3;
                for (u, v) in a.iter().zip(b) {
                    assert!((u - v).abs() <= tol, "{ty}: {u} came back as {v} (tolerance {tol})");
                }
            }
        }
    }

    #[test]
    fn zero_block_stays_zero_and_odd_rows_are_refused() {
        let mut bytes = Vec::new();
        quantize_row(QuantType::Q4_0, &[0.0; 32], &mut bytes).unwrap();
        let mut back = [1.0f32; 32];
        crate::dequant::dequantize(QuantType::Q4_0, &bytes, &mut back).unwrap();
        assert!(back.iter().all(|&v| v == 0.0));
        assert!(quantize_row(QuantType::Q8_0, &[0.0; 33], &mut bytes).is_err());
        assert!(quantize_row(QuantType::Q4K, &[0.0; 256], &mut bytes).is_err());
    }
}
