// block_dot for Q4_0 (see block_dot.wgsl): one block of 32 weights, scale
// read once; sum d*(q-8)*x = d*(sum q*x - 8*sum x). Quads 0..3 are the low
// nibbles of words 0..3, quads 4..7 the high nibbles (quant_q4_0.wgsl).
const QB: u32 = 8u;

fn block_dot(row: u32, b: u32, xq: u32) -> f32 {
    let blk = row * (p.cols / 32u) + b;
    var s = 0.0;
    var xs = vec4<f32>(0.0);
    for (var i = 0u; i < 4u; i++) {
        let word = w[blk * 4u + i];
        let x0 = xv(xq + i);
        let x1 = xv(xq + 4u + i);
        s += dot(nibbles(word, 0u), x0) + dot(nibbles(word, 4u), x1);
        xs += x0 + x1;
    }
    return (s - 8.0 * dot(xs, vec4<f32>(1.0))) * scale_half(blk);
}
