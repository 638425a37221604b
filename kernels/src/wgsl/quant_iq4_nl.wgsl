// IQ4_NL (block_iq4_nl): quants 4 words (qs), scales 1 half (d); nibbles as
// Q4_0, each an index into the non-linear table kvalues_iq4nl of
// ggml-common.h (quant_iq4_table.wgsl); w = d*table[q].
fn dq4(row: u32, q: u32) -> vec4<f32> {
    let blk = row * (p.cols / 32u) + q / 8u;
    let j = q % 8u;
    return iq4_values(w[blk * 4u + (j % 4u)], (j / 4u) * 4u) * scale_half(blk);
}
