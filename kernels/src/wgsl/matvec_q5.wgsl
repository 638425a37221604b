// unit_dot of matvec.wgsl for Q5_0 (w = d*(q-16)) and Q5_1 (w = d*q + m,
// Q5_1 defined): the fifth bits from qh (high_bits() of quant_q5_*.wgsl),
// bit e for weight e of the block.
fn unit_dot(row: u32, u: u32, xr: ptr<function, array<vec4<f32>, UQ>>) -> f32 {
    let blk = row * (p.cols / 32u) + u / 2u;
    let h = u % 2u;
    let b = blk * 5u + 1u + 2u * h;
    let qh = w[blk * 5u];
    let n = unit_nibbles(w[b], w[b + 1u]);
    var s = 0.0;
    for (var i = 0u; i < 4u; i++) {
        let first = 8u * h + 4u * (i & 1u) + 16u * (i >> 1u);
        s += dot(vec4<f32>(unpack4xU8(n[i] | high_bits(qh, first))), (*xr)[i]);
    }
#ifdef Q5_1
    let dm = unpack2x16float(w[p.scale_off + blk]);
    return s * dm.x + xsum(xr) * dm.y;
#else
    return (s - 16.0 * xsum(xr)) * scale_half(blk);
#endif
}
