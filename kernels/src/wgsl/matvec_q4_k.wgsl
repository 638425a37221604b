// unit_dot of matvec.wgsl for Q4_K (units as matvec_k4.wgsl; qs at word 4).
fn unit_dot(row: u32, u: u32, xr: ptr<function, array<vec4<f32>, UQ>>) -> f32 {
    let base = (row * (p.cols / 256u) + u / 16u) * 36u;
    let it = u % 16u;
    let v = it / 8u;
    let qa = w[base + 4u + 8u * v + it % 8u];
    let qb = w[base + 20u + 8u * v + it % 8u];
    let q = array<vec4<f32>, 4>(
        vec4<f32>(unpack4xU8(qa & 0x0F0F0F0Fu)),
        vec4<f32>(unpack4xU8((qa >> 4u) & 0x0F0F0F0Fu)),
        vec4<f32>(unpack4xU8(qb & 0x0F0F0F0Fu)),
        vec4<f32>(unpack4xU8((qb >> 4u) & 0x0F0F0F0Fu)),
    );
    return k4_unit_sum(base, v, q, xr);
}
