// The non-linear 4-bit table kvalues_iq4nl of ggml-common.h (IQ4_NL and
// IQ4_XS) and the 4 values of one nibble of each byte of a word.
var<private> IQ4NL: array<f32, 16> = array<f32, 16>(
    -127.0, -104.0, -83.0, -65.0, -49.0, -35.0, -22.0, -10.0,
    1.0, 13.0, 25.0, 38.0, 53.0, 69.0, 89.0, 113.0,
);

fn iq4_values(word: u32, shift: u32) -> vec4<f32> {
    let n = (word >> shift) & 0x0F0F0F0Fu;
    return vec4<f32>(IQ4NL[n & 15u], IQ4NL[(n >> 8u) & 15u], IQ4NL[(n >> 16u) & 15u], IQ4NL[n >> 24u]);
}
