// unit_dot of matvec.wgsl for IQ4_NL: nibbles as Q4_0 through the table
// (quant_iq4_table.wgsl), w = d*table[q].
fn unit_dot(row: u32, u: u32, xr: ptr<function, array<vec4<f32>, UQ>>) -> f32 {
    let blk = unit_block(row, u);
    let b = blk * 4u + 2u * (u % 2u);
    let w0 = w[b];
    let w1 = w[b + 1u];
    let s = dot(iq4_values(w0, 0u), (*xr)[0]) + dot(iq4_values(w1, 0u), (*xr)[1])
        + dot(iq4_values(w0, 4u), (*xr)[2]) + dot(iq4_values(w1, 4u), (*xr)[3]);
    return s * scale_half(blk);
}
