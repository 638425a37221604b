// Q4_K (block_q4_K, 144 bytes, kept as is: 36 words): word 0 = (d, dmin),
// bytes 4..16 = 6-bit scales/mins of 8 groups of 32 (get_scale_min_k4),
// bytes 16..144 = qs; group g uses nibble (g&1) of qs[32*(g/2) ..][..32].
// w = d*sc*q - dmin*m.
fn scale_min_k4(base: u32, g: u32) -> vec2<f32> {
    // Scale bytes start at byte 4 of the block.
    let s = base * 4u + 4u;
    if g < 4u {
        return vec2<f32>(f32(wbyte(0u, s + g) & 63u), f32(wbyte(0u, s + g + 4u) & 63u));
    }
    let a = wbyte(0u, s + g + 4u);
    let sc = (a & 0xFu) | ((wbyte(0u, s + g - 4u) >> 6u) << 4u);
    let m = (a >> 4u) | ((wbyte(0u, s + g) >> 6u) << 4u);
    return vec2<f32>(f32(sc), f32(m));
}

fn dq4(row: u32, q: u32) -> vec4<f32> {
    let base = (row * (p.cols / 256u) + q / 64u) * 36u;
    let e = (q % 64u) * 4u;
    let g = e / 32u;
    let l = e % 32u;
    let word = w[base + 4u + (32u * (g / 2u) + l) / 4u];
    let dm = unpack2x16float(w[base]);
    let sm = scale_min_k4(base, g);
    return nibbles(word, (g & 1u) * 4u) * (dm.x * sm.x) - dm.y * sm.y;
}
