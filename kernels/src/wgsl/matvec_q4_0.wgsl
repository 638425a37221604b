// unit_dot of matvec.wgsl for Q4_0: sum d*(q-8)*x = d*(sum q*x - 8*sum x).
fn unit_dot(row: u32, u: u32, xr: ptr<function, array<vec4<f32>, UQ>>) -> f32 {
    let blk = unit_block(row, u);
    let n = q4_unit(row, u);
    var s = 0.0;
    for (var i = 0u; i < 4u; i++) {
        s += dot(vec4<f32>(unpack4xU8(n[i])), (*xr)[i]);
    }
    return (s - 8.0 * xsum(xr)) * scale_half(blk);
}

#ifdef INT_DOT
// The unit's integer dot with int8 activations, times the weight scale:
// d*(sum q*qx - 8*sum qx) (the caller multiplies by the activation scale).
fn unit_dot_i8(row: u32, u: u32, xr: ptr<function, array<u32, UQ>>) -> f32 {
    let blk = unit_block(row, u);
    let n = q4_unit(row, u);
    var s = 0;
    for (var i = 0u; i < 4u; i++) {
        s += dot4I8Packed(n[i], (*xr)[i]);
    }
    return f32(s - 8 * xsum_i8(xr)) * scale_half(blk);
}
#endif
