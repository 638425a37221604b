// Activations to int8 blocks for the integer-dot matvec (matvec.wgsl with
// INT_DOT): x (f32, n_blocks blocks of 32) to xq (u32) as q8_block.wgsl
// lays them out: block b at words 8b.., its scale at word 8*n_blocks + b.
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
    for (var i = 0u; i < 8u; i++) {
        v[i] = x[b * 8u + i];
    }
    q8_block(&v, b * 8u, p.n_blocks * 8u + b);
}
