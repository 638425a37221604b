// unit_dot of matvec.wgsl for Q8_0: half a block (4 words of i8) per unit,
// the scale read once.
fn unit_dot(row: u32, u: u32, xr: ptr<function, array<vec4<f32>, UQ>>) -> f32 {
    let blk = row * (p.cols / 32u) + u / 2u;
    let b = blk * 8u + 4u * (u % 2u);
    var s = 0.0;
    for (var i = 0u; i < 4u; i++) {
        s += dot(vec4<f32>(unpack4xI8(w[b + i])), (*xr)[i]);
    }
    return s * scale_half(blk);
}

#ifdef INT_DOT
// The unit's integer dot with int8 activations, times the weight scale.
fn unit_dot_i8(row: u32, u: u32, xr: ptr<function, array<u32, UQ>>) -> f32 {
    let blk = row * (p.cols / 32u) + u / 2u;
    let b = blk * 8u + 4u * (u % 2u);
    var s = 0;
    for (var i = 0u; i < 4u; i++) {
        s += dot4I8Packed(w[b + i], (*xr)[i]);
    }
    return f32(s) * scale_half(blk);
}
#endif
