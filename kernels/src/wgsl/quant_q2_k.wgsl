// Q2_K (block_q2_K, 84 bytes) re-laid: quants 20 words = scales[16] then
// qs[64], scales region one word per block = (d, dmin). Element e of a
// super-block: n = e/128, s = (e%128)/32, l = e%32: 2 bits (2s) of
// qs[32n + l], scale byte sc[8n + 2s + l/16] (low nibble scale, high min);
// w = d*(sc&15)*q - dmin*(sc>>4).
fn dq4(row: u32, q: u32) -> vec4<f32> {
    let blk = row * (p.cols / 256u) + q / 64u;
    let base = blk * 20u;
    let e = (q % 64u) * 4u;
    let n = e / 128u;
    let s = (e % 128u) / 32u;
    let l = e % 32u;
    let qv = (w[base + 4u + (32u * n + l) / 4u] >> (2u * s)) & 0x03030303u;
    let sc = wbyte(base, 8u * n + 2u * s + l / 16u);
    let dm = unpack2x16float(w[p.scale_off + blk]);
    return vec4<f32>(unpack4xU8(qv)) * (dm.x * f32(sc & 15u)) - dm.y * f32(sc >> 4u);
}
