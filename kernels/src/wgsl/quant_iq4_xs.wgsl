// IQ4_XS (block_iq4_xs, 136 bytes) re-laid: quants 33 words = scales_l[4]
// then qs[128]; scales region one word per block = (d, scales_h as raw
// bits). Group g (32 weights): 6-bit scale ls = nibble g of scales_l |
// bits 2g..2g+2 of scales_h << 4; nibbles as Q4_0 within qs[16g..16g+16],
// indices into the IQ4_NL table (quant_iq4_table.wgsl); w = d*(ls-32)*table[q].
fn dq4(row: u32, q: u32) -> vec4<f32> {
    let blk = row * (p.cols / 256u) + q / 64u;
    let base = blk * 33u;
    let e = (q % 64u) * 4u;
    let g = e / 32u;
    let j = e % 32u;
    let dh = w[p.scale_off + blk];
    let ls = ((w[base] >> (4u * g)) & 15u) | (((dh >> (16u + 2u * g)) & 3u) << 4u);
    let d = unpack2x16float(dh).x * f32(i32(ls) - 32);
    return iq4_values(w[base + 1u + 4u * g + (j % 16u) / 4u], (j / 16u) * 4u) * d;
}
