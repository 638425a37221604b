// Q5_0 (block_q5_0): quants 5 words (qh, qs[16]), scales 1 half (d).
// Fifth bit of weight i is bit i of qh; w = d*(q-16).
fn high_bits(qh: u32, first: u32) -> u32 {
    let hb = (qh >> first) & 0xFu;
    // Spread 4 bits to bit 4 of each byte.
    return ((hb & 1u) | ((hb & 2u) << 7u) | ((hb & 4u) << 14u) | ((hb & 8u) << 21u)) << 4u;
}

fn dq5(blk: u32, j: u32) -> vec4<f32> {
    let qh = w[blk * 5u];
    let lo = (w[blk * 5u + 1u + (j % 4u)] >> ((j / 4u) * 4u)) & 0x0F0F0F0Fu;
    return vec4<f32>(unpack4xU8(lo | high_bits(qh, j * 4u)));
}

fn dq4(row: u32, q: u32) -> vec4<f32> {
    let blk = row * (p.cols / 32u) + q / 8u;
    return (dq5(blk, q % 8u) - 16.0) * scale_half(blk);
}
