// Q4_0 (ggml-common.h block_q4_0): quants 4 words (qs), scales 1 half (d).
// Byte j holds weight j (low nibble) and weight j+16 (high nibble); w = d*(q-8).
fn dq4(row: u32, q: u32) -> vec4<f32> {
    let blk = row * (p.cols / 32u) + q / 8u;
    let j = q % 8u;
    let word = w[blk * 4u + (j % 4u)];
    return (nibbles(word, (j / 4u) * 4u) - 8.0) * scale_half(blk);
}
