// Q6_K (block_q6_K) re-laid: quants 52 words = ql[128], qh[64], scales[16]
// (i8), then d in the scales region. Element e: half n = e/128, r = e%128,
// k = r/32, l = r%32: low nibble (k>>1) of ql[64n + 32(k&1) + l], 2 bits
// (2k) of qh[32n + l], scale sc[8n + l/16 + 2k]; w = d*sc*(q-32).
fn dq4(row: u32, q: u32) -> vec4<f32> {
    let blk = row * (p.cols / 256u) + q / 64u;
    let base = blk * 52u;
    let e = (q % 64u) * 4u;
    let n = e / 128u;
    let r = e % 128u;
    let k = r / 32u;
    let l = r % 32u;
    let lo = (w[base + (64u * n + 32u * (k & 1u) + l) / 4u] >> ((k >> 1u) * 4u)) & 0x0F0F0F0Fu;
    let hi = ((w[base + 32u + (32u * n + l) / 4u] >> (2u * k)) & 0x03030303u) << 4u;
    let sc_byte = wbyte(base + 48u, 8u * n + l / 16u + 2u * k);
    let sc = f32(bitcast<i32>(sc_byte << 24u) >> 24u);
    return (vec4<f32>(unpack4xU8(lo | hi)) - 32.0) * (scale_half(blk) * sc);
}
