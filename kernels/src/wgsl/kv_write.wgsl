// Writes n_tokens new rows of K and V (f32, kv_dim each, from token tok0 of
// the batch) into the f16 KV cache at rows pos0..pos0+n_tokens. The cache holds f16 pairs: as vec2<f16> with
// shader-f16 (F16 variant), else as u32 from pack2x16float; same bytes.
// Bindings: 0 uniform KvParams, 1 k (f32), 2 v (f32), 3 k cache, 4 v cache.
// Workgroup: 64 threads; one thread per pair of values, flattened over x then y.

struct KvParams {
    n_tokens: u32,
    kv_dim: u32,
    pos0: u32,
    tok0: u32,
}

@group(0) @binding(0) var<uniform> p: KvParams;
@group(0) @binding(1) var<storage, read> k: array<vec2<f32>>;
@group(0) @binding(2) var<storage, read> v: array<vec2<f32>>;
#ifdef F16
@group(0) @binding(3) var<storage, read_write> kc: array<vec2<f16>>;
@group(0) @binding(4) var<storage, read_write> vc: array<vec2<f16>>;
fn to_cache(x: vec2<f32>) -> vec2<f16> { return vec2<f16>(x); }
#else
@group(0) @binding(3) var<storage, read_write> kc: array<u32>;
@group(0) @binding(4) var<storage, read_write> vc: array<u32>;
fn to_cache(x: vec2<f32>) -> u32 { return pack2x16float(x); }
#endif

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.y * nwg.x * 64u + gid.x;
    if i >= p.n_tokens * p.kv_dim / 2u { return; }
    let dst = p.pos0 * p.kv_dim / 2u + i;
    let src = p.tok0 * p.kv_dim / 2u + i;
    kc[dst] = to_cache(k[src]);
    vc[dst] = to_cache(v[src]);
}
