// unit_dot of matvec.wgsl for F16: 16 halves = 8 words per unit.
fn unit_dot(row: u32, u: u32, xr: ptr<function, array<vec4<f32>, UQ>>) -> f32 {
    let b = (row * p.cols) / 2u + 8u * u;
    var s = 0.0;
    for (var i = 0u; i < 4u; i++) {
        let v = vec4<f32>(unpack2x16float(w[b + 2u * i]), unpack2x16float(w[b + 2u * i + 1u]));
        s += dot(v, (*xr)[i]);
    }
    return s;
}
