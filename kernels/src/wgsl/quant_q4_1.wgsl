// Q4_1 (block_q4_1): quants 4 words (qs), scales 2 halves (d, m); w = d*q + m.
fn dq4(row: u32, q: u32) -> vec4<f32> {
    let blk = row * (p.cols / 32u) + q / 8u;
    let j = q % 8u;
    let word = w[blk * 4u + (j % 4u)];
    let dm = unpack2x16float(w[p.scale_off + blk]);
    return nibbles(word, (j / 4u) * 4u) * dm.x + dm.y;
}
