// unit_dot of matvec.wgsl for Q5_0 (w = d*(q-16)) and Q5_1 (w = d*q + m,
// Q5_1 defined): the fifth bits from qh (high_bits() of quant_q5_*.wgsl),
// bit e for weight e of the block.
// The unit's 4 quads of 5-bit values, 4 bytes a word, in unit_quad() order.
fn q5_unit(row: u32, u: u32) -> array<u32, 4> {
    let blk = unit_block(row, u);
    let h = u % 2u;
    let b = blk * 5u + 1u + 2u * h;
    let qh = w[blk * 5u];
    var n = unit_nibbles(w[b], w[b + 1u]);
    for (var i = 0u; i < 4u; i++) {
        n[i] |= high_bits(qh, 8u * h + 4u * (i & 1u) + 16u * (i >> 1u));
    }
    return n;
}

fn unit_dot(row: u32, u: u32, xr: ptr<function, array<vec4<f32>, UQ>>) -> f32 {
    let blk = unit_block(row, u);
    let n = q5_unit(row, u);
    var s = 0.0;
    for (var i = 0u; i < 4u; i++) {
        s += dot(vec4<f32>(unpack4xU8(n[i])), (*xr)[i]);
    }
#ifdef Q5_1
    let dm = unpack2x16float(w[p.scale_off + blk]);
    return s * dm.x + xsum(xr) * dm.y;
#else
    return (s - 16.0 * xsum(xr)) * scale_half(blk);
#endif
}

#ifdef INT_DOT
// The unit's integer dot with int8 activations, as unit_dot() (the caller
// multiplies by the activation scale).
fn unit_dot_i8(row: u32, u: u32, xr: ptr<function, array<u32, UQ>>) -> f32 {
    let blk = unit_block(row, u);
    let n = q5_unit(row, u);
    var s = 0;
    for (var i = 0u; i < 4u; i++) {
        s += dot4I8Packed(n[i], (*xr)[i]);
    }
#ifdef Q5_1
    let dm = unpack2x16float(w[p.scale_off + blk]);
    return f32(s) * dm.x + f32(xsum_i8(xr)) * dm.y;
#else
    return f32(s - 16 * xsum_i8(xr)) * scale_half(blk);
#endif
}
#endif
