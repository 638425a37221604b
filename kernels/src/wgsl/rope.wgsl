// RoPE in place on x[n_tokens][n_heads][head_dim], token t at position pos0+t,
// rotating the full head_dim. neox = 0: pairs (2i, 2i+1) (llama);
// neox = 1: pairs (i, i + head_dim/2). theta_i = pos * base^(-2i/head_dim),
// built by repeated multiplication as ops::rope_thetas does, then times
// freq_scale (linear position scaling; 1.0 = none).
// Bindings: 0 uniform RopeParams, 1 x (f32, read_write).
// Workgroup: 64 threads; one thread per rotated pair, flattened over x then y.
struct RopeParams {
    n_tokens: u32,
    n_heads: u32,
    head_dim: u32,
    pos0: u32,
    base: f32,
    neox: u32,
    freq_scale: f32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: RopeParams;
@group(0) @binding(1) var<storage, read_write> x: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let half = p.head_dim / 2u;
    let idx = gid.y * nwg.x * 64u + gid.x;
    if idx >= p.n_tokens * p.n_heads * half { return; }
    let i = idx % half;
    let th = idx / half; // token * n_heads + head
    let t = th / p.n_heads;
    let theta_scale = pow(p.base, -2.0 / f32(p.head_dim));
    var theta = f32(p.pos0 + t);
    for (var j = 0u; j < i; j++) { theta *= theta_scale; }
    theta *= p.freq_scale;
    let c = cos(theta);
    let s = sin(theta);
    let base = th * p.head_dim;
    var a = base + 2u * i;
    var b = a + 1u;
    if p.neox != 0u { a = base + i; b = a + half; }
    let x0 = x[a];
    let x1 = x[b];
    x[a] = x0 * c - x1 * s;
    x[b] = x0 * s + x1 * c;
}
