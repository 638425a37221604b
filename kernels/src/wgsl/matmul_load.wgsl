// Weight-tile loaders of matmul.wgsl, one per weight type (the define W_<TYPE>
// picks it; W_GENERIC goes through dq4() for types without one).
// load_w(lr, r, kb, s): thread task s (0..4) of weight row r (tile row lr)
// for the K-step kb (columns 32*kb..32*kb+32) dequantizes 8 weights from
// whole u32 words of quants, the block's scales read once, and puts them as
// two quads with put_w(). The layouts are those of the quant_<type>.wgsl
// snippet included beside this one (same words, same formulas as dq4()).

#ifdef W_F32
// Quads 2s, 2s+1 of the step, 4 words each; rows are only multiples of 4
// long, so quads past the row are zeros.
fn load_w(lr: u32, r: u32, kb: u32, s: u32) {
    let nq = p.cols / 4u;
    for (var i = 0u; i < 2u; i++) {
        let q = kb * 8u + 2u * s + i;
        var v = vec4<f32>(0.0);
        if q < nq {
            let b = r * p.cols + q * 4u;
            v = bitcast<vec4<f32>>(vec4<u32>(w[b], w[b + 1u], w[b + 2u], w[b + 3u]));
        }
        put_w(lr, 2u * s + i, v);
    }
}
#endif

#ifdef W_F16
// Quads 2s, 2s+1 of the step, 2 words (4 halves) each; zeros past the row.
fn load_w(lr: u32, r: u32, kb: u32, s: u32) {
    let nq = p.cols / 4u;
    for (var i = 0u; i < 2u; i++) {
        let q = kb * 8u + 2u * s + i;
        var v = vec4<f32>(0.0);
        if q < nq {
            let b = (r * p.cols + q * 4u) >> 1u;
            v = vec4<f32>(unpack2x16float(w[b]), unpack2x16float(w[b + 1u]));
        }
        put_w(lr, 2u * s + i, v);
    }
}
#endif

#ifdef W_Q4_0
// Word s of the block: low nibbles are quad s, high nibbles quad s + 4.
fn load_w(lr: u32, r: u32, kb: u32, s: u32) {
    let blk = r * (p.cols / 32u) + kb;
    let word = w[blk * 4u + s];
    let d = scale_half(blk);
    put_w(lr, s, (nibbles(word, 0u) - 8.0) * d);
    put_w(lr, s + 4u, (nibbles(word, 4u) - 8.0) * d);
}
#endif

#ifdef W_Q4_1
fn load_w(lr: u32, r: u32, kb: u32, s: u32) {
    let blk = r * (p.cols / 32u) + kb;
    let word = w[blk * 4u + s];
    let dm = unpack2x16float(w[p.scale_off + blk]);
    put_w(lr, s, nibbles(word, 0u) * dm.x + dm.y);
    put_w(lr, s + 4u, nibbles(word, 4u) * dm.x + dm.y);
}
#endif

#ifdef W_Q5_0
// As Q4_0, the fifth bits of quads s and s + 4 from qh bits 4s.. and 16+4s..
fn load_w(lr: u32, r: u32, kb: u32, s: u32) {
    let blk = r * (p.cols / 32u) + kb;
    let qh = w[blk * 5u];
    let word = w[blk * 5u + 1u + s];
    let d = scale_half(blk);
    let lo = vec4<f32>(unpack4xU8((word & 0x0F0F0F0Fu) | high_bits(qh, 4u * s)));
    let hi = vec4<f32>(unpack4xU8(((word >> 4u) & 0x0F0F0F0Fu) | high_bits(qh, 16u + 4u * s)));
    put_w(lr, s, (lo - 16.0) * d);
    put_w(lr, s + 4u, (hi - 16.0) * d);
}
#endif

#ifdef W_Q5_1
fn load_w(lr: u32, r: u32, kb: u32, s: u32) {
    let blk = r * (p.cols / 32u) + kb;
    let qh = w[blk * 5u];
    let word = w[blk * 5u + 1u + s];
    let dm = unpack2x16float(w[p.scale_off + blk]);
    let lo = vec4<f32>(unpack4xU8((word & 0x0F0F0F0Fu) | high_bits(qh, 4u * s)));
    let hi = vec4<f32>(unpack4xU8(((word >> 4u) & 0x0F0F0F0Fu) | high_bits(qh, 16u + 4u * s)));
    put_w(lr, s, lo * dm.x + dm.y);
    put_w(lr, s + 4u, hi * dm.x + dm.y);
}
#endif

#ifdef W_Q8_0
// Words 2s, 2s+1 of the block are quads 2s, 2s+1 (i8).
fn load_w(lr: u32, r: u32, kb: u32, s: u32) {
    let blk = r * (p.cols / 32u) + kb;
    let d = scale_half(blk);
    put_w(lr, 2u * s, vec4<f32>(unpack4xI8(w[blk * 8u + 2u * s])) * d);
    put_w(lr, 2u * s + 1u, vec4<f32>(unpack4xI8(w[blk * 8u + 2u * s + 1u])) * d);
}
#endif

#ifdef W_KMIN
// Q4_K/Q5_K: (d * scale, dmin * min) of group g of the super-block at word base.
fn group_scale_min(base: u32, g: u32) -> vec2<f32> {
    let dm = unpack2x16float(w[base]);
    let sm = scale_min_k4(base, g);
    return vec2<f32>(dm.x * sm.x, dm.y * sm.y);
}
#endif

#ifdef W_Q4_K
// The step is group g = kb % 8 of a super-block: quads 2s, 2s+1 are nibble
// (g & 1) of qs words 8*(g/2) + 2s, +1; scale and min decoded once.
fn load_w(lr: u32, r: u32, kb: u32, s: u32) {
    let base = (r * (p.cols / 256u) + kb / 8u) * 36u;
    let g = kb % 8u;
    let dm = group_scale_min(base, g);
    let qw = base + 4u + 8u * (g / 2u) + 2u * s;
    let sh = (g & 1u) * 4u;
    put_w(lr, 2u * s, nibbles(w[qw], sh) * dm.x - dm.y);
    put_w(lr, 2u * s + 1u, nibbles(w[qw + 1u], sh) * dm.x - dm.y);
}
#endif

#ifdef W_Q5_K
// As Q4_K, the fifth bit of each byte is bit g of the qh words 2s, 2s+1.
fn load_w(lr: u32, r: u32, kb: u32, s: u32) {
    let base = (r * (p.cols / 256u) + kb / 8u) * 44u;
    let g = kb % 8u;
    let dm = group_scale_min(base, g);
    let qw = base + 12u + 8u * (g / 2u) + 2u * s;
    let sh = (g & 1u) * 4u;
    for (var i = 0u; i < 2u; i++) {
        let lo = (w[qw + i] >> sh) & 0x0F0F0F0Fu;
        let hi = ((w[base + 4u + 2u * s + i] >> g) & 0x01010101u) << 4u;
        put_w(lr, 2u * s + i, vec4<f32>(unpack4xU8(lo | hi)) * dm.x - dm.y);
    }
}
#endif

#ifdef W_Q6_K
// Group g = kb % 8: half n = g/4, k = g%4; weights l = 8s..8s+8 of the
// group take low nibble (k>>1) of ql, 2 bits (2k) of qh, one scale byte.
fn load_w(lr: u32, r: u32, kb: u32, s: u32) {
    let blk = r * (p.cols / 256u) + kb / 8u;
    let base = blk * 52u;
    let g = kb % 8u;
    let n = g / 4u;
    let k = g % 4u;
    let sc_byte = wbyte(base + 48u, 8u * n + s / 2u + 2u * k);
    let d = scale_half(blk) * f32(bitcast<i32>(sc_byte << 24u) >> 24u);
    let lw = base + (64u * n + 32u * (k & 1u)) / 4u + 2u * s;
    let hw = base + 32u + (32u * n) / 4u + 2u * s;
    for (var i = 0u; i < 2u; i++) {
        let lo = (w[lw + i] >> ((k >> 1u) * 4u)) & 0x0F0F0F0Fu;
        let hi = ((w[hw + i] >> (2u * k)) & 0x03030303u) << 4u;
        put_w(lr, 2u * s + i, (vec4<f32>(unpack4xU8(lo | hi)) - 32.0) * d);
    }
}
#endif

#ifdef W_GENERIC
// Any other type: quads 2s, 2s+1 through dq4(); zeros past the row.
fn load_w(lr: u32, r: u32, kb: u32, s: u32) {
    let nq = p.cols / 4u;
    for (var i = 0u; i < 2u; i++) {
        let q = kb * 8u + 2u * s + i;
        var v = vec4<f32>(0.0);
        if q < nq { v = dq4(r, q); }
        put_w(lr, 2u * s + i, v);
    }
}
#endif
