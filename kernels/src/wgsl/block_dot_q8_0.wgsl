// block_dot for Q8_0 (see block_dot.wgsl): one block of 32 weights, scale
// read once; word i holds quad i as i8.
const QB: u32 = 8u;

fn block_dot(row: u32, b: u32, xq: u32) -> f32 {
    let blk = row * (p.cols / 32u) + b;
    var s = 0.0;
    for (var i = 0u; i < 8u; i++) {
        s += dot(vec4<f32>(unpack4xI8(w[blk * 8u + i])), xv(xq + i));
    }
    return s * scale_half(blk);
}
