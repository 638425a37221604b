// Helpers for the quant_<type>.wgsl snippets. Weights are re-laid at upload
// (see gpu/weights.rs): per part, a quants region of `QW` u32 words per block
// starting at word 0, then a scales region of f16 values (two per u32) starting
// at word `p.scale_off`. The including kernel declares `w: array<u32>` and a
// params struct `p` with fields `cols` and `scale_off`.

// The f16 scale number `h` of the scales region.
fn scale_half(h: u32) -> f32 {
    return unpack2x16float(w[p.scale_off + (h >> 1u)])[h & 1u];
}

// Byte `i` counted from word `base`.
fn wbyte(base: u32, i: u32) -> u32 {
    return (w[base + (i >> 2u)] >> ((i & 3u) * 8u)) & 0xFFu;
}

fn nibbles(word: u32, shift: u32) -> vec4<f32> {
    return vec4<f32>(unpack4xU8((word >> shift) & 0x0F0F0F0Fu));
}
