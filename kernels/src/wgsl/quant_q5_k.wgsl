// Q5_K (block_q5_K, 176 bytes, kept as is: 44 words): word 0 = (d, dmin),
// bytes 4..16 scales/mins as Q4_K, bytes 16..48 qh, bytes 48..176 qs.
// Group g: low 4 bits as Q4_K, fifth bit is bit g of qh[l].
fn scale_min_k4(base: u32, g: u32) -> vec2<f32> {
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
    let base = (row * (p.cols / 256u) + q / 64u) * 44u;
    let e = (q % 64u) * 4u;
    let g = e / 32u;
    let l = e % 32u;
    let lo = (w[base + 12u + (32u * (g / 2u) + l) / 4u] >> ((g & 1u) * 4u)) & 0x0F0F0F0Fu;
    let hi = ((w[base + 4u + l / 4u] >> g) & 0x01010101u) << 4u;
    let dm = unpack2x16float(w[base]);
    let sm = scale_min_k4(base, g);
    return vec4<f32>(unpack4xU8(lo | hi)) * (dm.x * sm.x) - dm.y * sm.y;
}
