// unit_dot of matvec.wgsl for Q4_0: sum d*(q-8)*x = d*(sum q*x - 8*sum x).
fn unit_dot(row: u32, u: u32, xr: ptr<function, array<vec4<f32>, UQ>>) -> f32 {
    let blk = row * (p.cols / 32u) + u / 2u;
    let b = blk * 4u + 2u * (u % 2u);
    let n = unit_nibbles(w[b], w[b + 1u]);
    var s = 0.0;
    for (var i = 0u; i < 4u; i++) {
        s += dot(vec4<f32>(unpack4xU8(n[i])), (*xr)[i]);
    }
    return (s - 8.0 * xsum(xr)) * scale_half(blk);
}
