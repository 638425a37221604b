// unit_dot of matvec.wgsl for Q5_K (units as matvec_k4.wgsl; qh at word 4,
// qs at word 12): the fifth bit of weight l of group g is bit g of qh[l].
fn unit_dot(row: u32, u: u32, xr: ptr<function, array<vec4<f32>, UQ>>) -> f32 {
    let base = (row * (p.cols / 256u) + u / 16u) * 44u;
    let it = u % 16u;
    let v = it / 8u;
    let qa = w[base + 12u + 8u * v + it % 8u];
    let qb = w[base + 28u + 8u * v + it % 8u];
    let qh = w[base + 4u + it % 8u] >> (2u * v);
    let q = array<vec4<f32>, 4>(
        vec4<f32>(unpack4xU8((qa & 0x0F0F0F0Fu) | ((qh & 0x01010101u) << 4u))),
        vec4<f32>(unpack4xU8(((qa >> 4u) & 0x0F0F0F0Fu) | ((qh & 0x02020202u) << 3u))),
        vec4<f32>(unpack4xU8((qb & 0x0F0F0F0Fu) | ((qh & 0x10101010u)))),
        vec4<f32>(unpack4xU8(((qb >> 4u) & 0x0F0F0F0Fu) | ((qh & 0x20202020u) >> 1u))),
    );
    return k4_unit_sum(base, v, q, xr);
}
