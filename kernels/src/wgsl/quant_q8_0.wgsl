// Q8_0 (block_q8_0): quants 8 words (qs as i8), scales 1 half (d); w = d*q.
fn dq4(row: u32, q: u32) -> vec4<f32> {
    let blk = row * (p.cols / 32u) + q / 8u;
    return vec4<f32>(unpack4xI8(w[blk * 8u + q % 8u])) * scale_half(blk);
}
