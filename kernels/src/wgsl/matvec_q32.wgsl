// Units of matvec.wgsl for the 32-weight blocks with nibbles split as Q4_0
// (byte j: weight j low, j + 16 high): unit u is half h = u%2 of block u/2,
// words 2h and 2h+1 of its qs, both nibbles: quads 2h, 2h+1 (low) and
// 4+2h, 5+2h (high) of the block. unit_words() gives the two words and the
// four nibble quads in the order of unit_quad().
const UQ: u32 = 4u;

fn unit_quad(u: u32, i: u32) -> u32 {
    return (u / 2u) * 8u + 2u * (u % 2u) + (i & 1u) + (i >> 1u) * 4u;
}

fn unit_nibbles(w0: u32, w1: u32) -> array<u32, 4> {
    return array<u32, 4>(w0 & 0x0F0F0F0Fu, w1 & 0x0F0F0F0Fu, (w0 >> 4u) & 0x0F0F0F0Fu, (w1 >> 4u) & 0x0F0F0F0Fu);
}

// The block of unit u of `row`; the unit's nibbles for Q4_0 and Q4_1 (4 qs
// words a block).
fn unit_block(row: u32, u: u32) -> u32 {
    return row * (p.cols / 32u) + u / 2u;
}

fn q4_unit(row: u32, u: u32) -> array<u32, 4> {
    let b = unit_block(row, u) * 4u + 2u * (u % 2u);
    return unit_nibbles(w[b], w[b + 1u]);
}

fn xsum(xr: ptr<function, array<vec4<f32>, UQ>>) -> f32 {
    return dot((*xr)[0] + (*xr)[1] + (*xr)[2] + (*xr)[3], vec4<f32>(1.0));
}

#ifdef INT_DOT
// The sum of the unit's int8 activations.
fn xsum_i8(xr: ptr<function, array<u32, UQ>>) -> i32 {
    var xs = 0;
    for (var i = 0u; i < 4u; i++) {
        xs += dot4I8Packed(0x01010101u, (*xr)[i]);
    }
    return xs;
}
#endif
