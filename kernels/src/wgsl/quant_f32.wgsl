// F32 weights: row-major f32 bits, no scales.
fn dq4(row: u32, q: u32) -> vec4<f32> {
    let b = row * p.cols + q * 4u;
    return vec4<f32>(bitcast<f32>(w[b]), bitcast<f32>(w[b + 1u]), bitcast<f32>(w[b + 2u]), bitcast<f32>(w[b + 3u]));
}
