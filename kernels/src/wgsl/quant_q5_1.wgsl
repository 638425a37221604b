// Q5_1 (block_q5_1): quants 5 words (qh, qs[16]), scales 2 halves (d, m); w = d*q + m.
fn high_bits(qh: u32, first: u32) -> u32 {
    let hb = (qh >> first) & 0xFu;
    return ((hb & 1u) | ((hb & 2u) << 7u) | ((hb & 4u) << 14u) | ((hb & 8u) << 21u)) << 4u;
}

fn dq4(row: u32, q: u32) -> vec4<f32> {
    let blk = row * (p.cols / 32u) + q / 8u;
    let j = q % 8u;
    let qh = w[blk * 5u];
    let lo = (w[blk * 5u + 1u + (j % 4u)] >> ((j / 4u) * 4u)) & 0x0F0F0F0Fu;
    let dm = unpack2x16float(w[p.scale_off + blk]);
    return vec4<f32>(unpack4xU8(lo | high_bits(qh, j * 4u))) * dm.x + dm.y;
}
