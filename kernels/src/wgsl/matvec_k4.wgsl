// Units of matvec.wgsl for Q4_K and Q5_K: 16 units of 16 weights per
// super-block (16 lanes share one, as ggml-vulkan's mul_mat_vec_q4_k does).
// Unit u: super-block u/16, it = u%16, v = it/8, l = 4*(it%8): groups
// 2v, 2v+1, 4+2v, 5+2v, weights l..l+4 of each (quads in that order), from
// the qs words at bytes 32v + l (low, high nibble) and 64 + 32v + l.
const UQ: u32 = 4u;

fn unit_quad(u: u32, i: u32) -> u32 {
    let it = u % 16u;
    return (u / 16u) * 64u + 16u * (it / 8u) + (it % 8u) + 8u * (i & 1u) + 32u * (i >> 1u);
}

// The 6-bit scales (first) and mins (second) of the unit's 4 groups, from
// the 12 scale bytes at words base+1..base+4 (get_scale_min_k4 of
// ggml-quants.c, all 8 groups with word operations).
fn k4_unit_scales(base: u32, v: u32) -> array<vec4<f32>, 2> {
    let s0 = w[base + 1u];
    let s1 = w[base + 2u];
    let s2 = w[base + 3u];
    let sc_lo = vec4<f32>(unpack4xU8(s0 & 0x3F3F3F3Fu));
    let m_lo = vec4<f32>(unpack4xU8(s1 & 0x3F3F3F3Fu));
    let sc_hi = vec4<f32>(unpack4xU8((s2 & 0x0F0F0F0Fu) | ((s0 >> 2u) & 0x30303030u)));
    let m_hi = vec4<f32>(unpack4xU8(((s2 >> 4u) & 0x0F0F0F0Fu) | ((s1 >> 2u) & 0x30303030u)));
    let g = 2u * v;
    return array<vec4<f32>, 2>(
        vec4<f32>(sc_lo[g], sc_lo[g + 1u], sc_hi[g], sc_hi[g + 1u]),
        vec4<f32>(m_lo[g], m_lo[g + 1u], m_hi[g], m_hi[g + 1u]),
    );
}

// d*sum sc*q*x - dmin*sum m*x over the unit, given its 4 quads of q.
fn k4_unit_sum(base: u32, v: u32, q: array<vec4<f32>, 4>, xr: ptr<function, array<vec4<f32>, UQ>>) -> f32 {
    let sm = k4_unit_scales(base, v);
    let one = vec4<f32>(1.0);
    let qx = vec4<f32>(dot(q[0], (*xr)[0]), dot(q[1], (*xr)[1]), dot(q[2], (*xr)[2]), dot(q[3], (*xr)[3]));
    let xs = vec4<f32>(dot((*xr)[0], one), dot((*xr)[1], one), dot((*xr)[2], one), dot((*xr)[3], one));
    let dm = unpack2x16float(w[base]);
    return dm.x * dot(qx, sm[0]) - dm.y * dot(xs, sm[1]);
}
