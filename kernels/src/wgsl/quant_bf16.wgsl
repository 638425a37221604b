// BF16 weights: row-major, two per u32 (cols is a multiple of 4); a bf16 is
// the top half of an f32.
fn bf16_pair(word: u32) -> vec2<f32> {
    return vec2<f32>(bitcast<f32>(word << 16u), bitcast<f32>(word & 0xFFFF0000u));
}

fn dq4(row: u32, q: u32) -> vec4<f32> {
    let b = (row * p.cols + q * 4u) >> 1u;
    return vec4<f32>(bf16_pair(w[b]), bf16_pair(w[b + 1u]));
}
