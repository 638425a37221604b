// Units of matvec.wgsl for types whose quads lie in order: 16 weights
// (4 quads) per unit, quad i of unit u is quad 4u + i of the row.
const UQ: u32 = 4u;

fn unit_quad(u: u32, i: u32) -> u32 {
    return 4u * u + i;
}
