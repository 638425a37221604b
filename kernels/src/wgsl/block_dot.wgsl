// block_dot(row, b, xq) for matvec_rows.wgsl, any weight type: the dot of
// quads b*QB..(b+1)*QB of `row` with x quads xq..xq+QB, through dq4(). The
// including code sets `QB` (quads per step) and defines xv(i) (quad i of x).
fn block_dot(row: u32, b: u32, xq: u32) -> f32 {
    var s = 0.0;
    for (var i = 0u; i < QB; i++) {
        s += dot(dq4(row, b * QB + i), xv(xq + i));
    }
    return s;
}
