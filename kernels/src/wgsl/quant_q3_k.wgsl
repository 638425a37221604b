// Q3_K (block_q3_K, 110 bytes) re-laid: quants 27 words = hmask[32], qs[64],
// scales[12], then d in the scales region. Element e: n = e/128, s =
// (e%128)/32, l = e%32: low 2 bits (2s) of qs[32n + l], high bit (4n + s) of
// hmask[l] (clear means minus 4), 6-bit scale g = 8n + 2s + l/16: low 4 bits
// nibble g/8 of byte g%8, high 2 bits (2*(g/4)) of byte 8 + g%4, minus 32;
// w = d*sc*(q - 4).
fn q3_scale(base: u32, g: u32) -> f32 {
    let lo = (wbyte(base + 24u, g % 8u) >> (4u * (g / 8u))) & 15u;
    let hi = (wbyte(base + 24u, 8u + g % 4u) >> (2u * (g / 4u))) & 3u;
    return f32(i32(lo | (hi << 4u)) - 32);
}

fn dq4(row: u32, q: u32) -> vec4<f32> {
    let blk = row * (p.cols / 256u) + q / 64u;
    let base = blk * 27u;
    let e = (q % 64u) * 4u;
    let n = e / 128u;
    let s = (e % 128u) / 32u;
    let l = e % 32u;
    let lo = (w[base + 8u + (32u * n + l) / 4u] >> (2u * s)) & 0x03030303u;
    let hi = (w[base + l / 4u] >> (4u * n + s)) & 0x01010101u;
    let sc = q3_scale(base, 8u * n + 2u * s + l / 16u);
    return (vec4<f32>(unpack4xU8(lo | (hi << 2u))) - 4.0) * (scale_half(blk) * sc);
}
