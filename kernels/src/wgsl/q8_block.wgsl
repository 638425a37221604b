// One block of 32 activations to the int8 layout of the integer-dot matvec
// (matvec.wgsl with INT_DOT): words dst..dst+8 of `xq` hold values 4i..4i+4
// as i8, q = round(v * 127 / max|v|) (half to even), and word `scale_at`
// holds d = max|v| / 127 rounded to f16, as f32 bits (cpu::quantize_q8_act).
// The including kernel declares `xq` (u32, read_write). Shared by
// quantize_q8.wgsl and the norms that write their output this way too.
fn q8_block(v: ptr<function, array<vec4<f32>, 8>>, dst: u32, scale_at: u32) {
    var amax = 0.0;
    for (var i = 0u; i < 8u; i++) {
        let a = abs((*v)[i]);
        amax = max(amax, max(max(a.x, a.y), max(a.z, a.w)));
    }
    let id = select(0.0, 127.0 / amax, amax > 0.0);
    let d = unpack2x16float(pack2x16float(vec2<f32>(amax / 127.0, 0.0))).x;
    for (var i = 0u; i < 8u; i++) {
        xq[dst + i] = pack4xI8(vec4<i32>(round((*v)[i] * id)));
    }
    xq[scale_at] = bitcast<u32>(d);
}
