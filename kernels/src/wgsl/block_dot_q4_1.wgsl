// block_dot for Q4_1 (see block_dot.wgsl): one block of 32 weights, (d, m)
// read once; sum (d*q + m)*x = d*sum q*x + m*sum x. Nibble order as
// quant_q4_1.wgsl.
const QB: u32 = 8u;

fn block_dot(row: u32, b: u32, xq: u32) -> f32 {
    let blk = row * (p.cols / 32u) + b;
    let dm = unpack2x16float(w[p.scale_off + blk]);
    var s = 0.0;
    var xs = vec4<f32>(0.0);
    for (var i = 0u; i < 4u; i++) {
        let word = w[blk * 4u + i];
        let x0 = xv(xq + i);
        let x1 = xv(xq + 4u + i);
        s += dot(nibbles(word, 0u), x0) + dot(nibbles(word, 4u), x1);
        xs += x0 + x1;
    }
    return s * dm.x + dot(xs, vec4<f32>(1.0)) * dm.y;
}
