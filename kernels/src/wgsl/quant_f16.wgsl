// F16 weights: row-major, two halves per u32 (cols is a multiple of 4).
fn dq4(row: u32, q: u32) -> vec4<f32> {
    let b = (row * p.cols + q * 4u) >> 1u;
    return vec4<f32>(unpack2x16float(w[b]), unpack2x16float(w[b + 1u]));
}
