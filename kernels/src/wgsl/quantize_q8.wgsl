// Activations to int8 blocks for the integer-dot matvec (matvec.wgsl with
// INT_DOT): x (f32, n_blocks blocks of 32) to xq (u32): word 8b + i holds
// values 4i..4i+4 of block b as i8 (q = round(v * 127 / max|v|), half to
// even; d = max|v| / 127 rounded to f16, as cpu::quantize_q8_act), and word 8*n_blocks + b holds d as f32 bits.
// Bindings: 0 params, 1 x (vec4 f32), 2 xq. Workgroup: 64 threads, one block each.
struct QuantizeParams {
    n_blocks: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: QuantizeParams;
@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> xq: array<u32>;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let b = gid.y * nwg.x * 64u + gid.x;
    if b >= p.n_blocks { return; }
    var v: array<vec4<f32>, 8>;
    var amax = 0.0;
    for (var i = 0u; i < 8u; i++) {
        v[i] = x[b * 8u + i];
        let a = abs(v[i]);
        amax = max(amax, max(max(a.x, a.y), max(a.z, a.w)));
    }
    let id = select(0.0, 127.0 / amax, amax > 0.0);
    // The scale rounded to f16 as the CPU's quantize_q8_act stores it.
    let d = unpack2x16float(pack2x16float(vec2<f32>(amax / 127.0, 0.0))).x;
    for (var i = 0u; i < 8u; i++) {
        xq[b * 8u + i] = pack4xI8(vec4<i32>(round(v[i] * id)));
    }
    xq[p.n_blocks * 8u + b] = bitcast<u32>(d);
}
