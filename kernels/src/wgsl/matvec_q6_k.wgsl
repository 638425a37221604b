// Units of matvec.wgsl for Q6_K (re-laid as quant_q6_k.wgsl): 16 units of
// 16 weights per super-block. Unit u: super-block u/16, it = u%16, half
// n = it/8, l = 4*(it%8): quads k = 0..3 at weight 128n + 32k + l, low
// nibbles from the ql words at bytes 64n + l (k = 0, 2) and 64n + 32 + l
// (k = 1, 3), 2 bits (2k) from the qh word at byte 32n + l, scales
// sc[8n + l/16 + 2k]; w = d*sc*(q-32).
const UQ: u32 = 4u;

fn unit_quad(u: u32, i: u32) -> u32 {
    let it = u % 16u;
    return (u / 16u) * 64u + 32u * (it / 8u) + 8u * i + (it % 8u);
}

fn unit_dot(row: u32, u: u32, xr: ptr<function, array<vec4<f32>, UQ>>) -> f32 {
    let blk = row * (p.cols / 256u) + u / 16u;
    let base = blk * 52u;
    let it = u % 16u;
    let n = it / 8u;
    let j = it % 8u;
    let qa = w[base + 16u * n + j];
    let qb = w[base + 16u * n + 8u + j];
    let qh = w[base + 32u + 8u * n + j];
    // Scale bytes l/16 + {0, 2} of words 2n, 2n+1 of the scales: sc of k = 0, 2, 1, 3.
    let sh = 8u * (j / 4u);
    let sa = w[base + 48u + 2u * n] >> sh;
    let sb = w[base + 49u + 2u * n] >> sh;
    let sc = vec4<f32>(unpack4xI8((sa & 0x00FF00FFu) | ((sb & 0x00FF00FFu) << 8u)));
    let q0 = vec4<f32>(unpack4xU8((qa & 0x0F0F0F0Fu) | ((qh & 0x03030303u) << 4u)));
    let q1 = vec4<f32>(unpack4xU8((qb & 0x0F0F0F0Fu) | ((qh & 0x0C0C0C0Cu) << 2u)));
    let q2 = vec4<f32>(unpack4xU8(((qa >> 4u) & 0x0F0F0F0Fu) | (qh & 0x30303030u)));
    let q3 = vec4<f32>(unpack4xU8(((qb >> 4u) & 0x0F0F0F0Fu) | ((qh & 0xC0C0C0C0u) >> 2u)));
    let one = vec4<f32>(1.0);
    let qx = vec4<f32>(
        dot(q0 - 32.0, (*xr)[0]),
        dot(q1 - 32.0, (*xr)[1]),
        dot(q2 - 32.0, (*xr)[2]),
        dot(q3 - 32.0, (*xr)[3]),
    );
    return scale_half(blk) * dot(qx, vec4<f32>(sc.x, sc.z, sc.y, sc.w));
}
