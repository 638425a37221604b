// unit_dot of matvec.wgsl for any weight type, through dq4() quad by quad
// (the types without a unit kernel of their own: F32, BF16, Q2_K, Q3_K,
// IQ4_XS).
fn unit_dot(row: u32, u: u32, xr: ptr<function, array<vec4<f32>, UQ>>) -> f32 {
    var s = 0.0;
    for (var i = 0u; i < UQ; i++) {
        s += dot(dq4(row, unit_quad(u, i)), (*xr)[i]);
    }
    return s;
}
