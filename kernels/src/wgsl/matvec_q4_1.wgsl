// unit_dot of matvec.wgsl for Q4_1: sum (d*q + m)*x = d*sum q*x + m*sum x.
fn unit_dot(row: u32, u: u32, xr: ptr<function, array<vec4<f32>, UQ>>) -> f32 {
    let blk = unit_block(row, u);
    let n = q4_unit(row, u);
    let dm = unpack2x16float(w[p.scale_off + blk]);
    var s = 0.0;
    for (var i = 0u; i < 4u; i++) {
        s += dot(vec4<f32>(unpack4xU8(n[i])), (*xr)[i]);
    }
    return s * dm.x + xsum(xr) * dm.y;
}

#ifdef INT_DOT
// The unit's integer dot with int8 activations: d*sum q*qx + m*sum qx (the
// caller multiplies by the activation scale).
fn unit_dot_i8(row: u32, u: u32, xr: ptr<function, array<u32, UQ>>) -> f32 {
    let blk = unit_block(row, u);
    let n = q4_unit(row, u);
    let dm = unpack2x16float(w[p.scale_off + blk]);
    var s = 0;
    for (var i = 0u; i < 4u; i++) {
        s += dot4I8Packed(n[i], (*xr)[i]);
    }
    return f32(s) * dm.x + f32(xsum_i8(xr)) * dm.y;
}
#endif
