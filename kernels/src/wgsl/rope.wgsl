// RoPE in place on x[n_tokens][n_heads][head_dim], token t at position pos0+t,
// rotating the first n_rot dims of each head. neox = 0: pairs (2i, 2i+1)
// (llama); neox = 1: pairs (i, i + n_rot/2). theta_i = pos * base^(-2i/n_rot),
// built by repeated multiplication as ops::rope_thetas does, then times
// freq_scale (linear position scaling; 1.0 = none) and, with use_mult,
// mult[i] (llama3 / LongRoPE / YaRN per-pair factors); cos and sin are
// scaled by mscale.
// Bindings: 0 uniform RopeParams, 1 x (f32, read_write), 3 mult (f32, read;
// a one-value dummy without use_mult).
// Workgroup: 64 threads; one thread per rotated pair, flattened over x then y.
// `rope_pair` rotates queries (binding 1, n_heads) and keys (binding 2,
// n_heads2 heads) in one dispatch: the pairs of q, then those of k.
// `rope_kv` does as `rope_pair` and also writes the rotated keys and the
// values (binding 4) into the f16 KV cache (bindings 5, 6) at rows kv_row0..:
// after the pairs of q, one thread per f16 pair of a key row (cache word),
// which for NEOX (n_rot a multiple of 4) also owns the word n_rot/4 ahead,
// so that every rotated value is read and written by one thread only.
struct RopeParams {
    n_tokens: u32,
    n_heads: u32,
    head_dim: u32,
    pos0: u32,
    base: f32,
    neox: u32,
    freq_scale: f32,
    // Heads of the second buffer (`rope_pair`).
    n_heads2: u32,
    n_rot: u32,
    mscale: f32,
    use_mult: u32,
    // First token of the rotated rows (one sequence's segment of the batch).
    tok0: u32,
    // Cache row of the segment's first token (`rope_kv`).
    kv_row0: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: RopeParams;
@group(0) @binding(1) var<storage, read_write> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> x2: array<f32>;
@group(0) @binding(3) var<storage, read> mult: array<f32>;

// Pair `idx` (of n_heads * head_dim / 2 per token): the indices it rotates
// and the cosine and sine of its angle.
struct Rot { a: u32, b: u32, c: f32, s: f32 }

// Cosine and sine of pair i's angle for token t of the segment.
fn cos_sin(i: u32, t: u32) -> vec2<f32> {
    let theta_scale = pow(p.base, -2.0 / f32(p.n_rot));
    var theta = f32(p.pos0 + t);
    for (var j = 0u; j < i; j++) { theta *= theta_scale; }
    if p.use_mult != 0u {
        theta *= p.freq_scale * mult[i];
    } else {
        theta *= p.freq_scale;
    }
    return vec2<f32>(cos(theta) * p.mscale, sin(theta) * p.mscale);
}

fn rotation(idx: u32, n_heads: u32) -> Rot {
    let half = p.n_rot / 2u;
    let i = idx % half;
    let th = idx / half; // token * n_heads + head
    let cs = cos_sin(i, th / n_heads);
    let base = (th + p.tok0 * n_heads) * p.head_dim;
    var a = base + 2u * i;
    var b = a + 1u;
    if p.neox != 0u { a = base + i; b = a + half; }
    return Rot(a, b, cs.x, cs.y);
}

// Rotates pair `idx` of x (n_heads heads) in place.
fn turn_q(idx: u32) {
    let r = rotation(idx, p.n_heads);
    let x0 = x[r.a];
    let x1 = x[r.b];
    x[r.a] = x0 * r.c - x1 * r.s;
    x[r.b] = x0 * r.s + x1 * r.c;
}

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = gid.y * nwg.x * 64u + gid.x;
    if idx >= p.n_tokens * p.n_heads * (p.n_rot / 2u) { return; }
    turn_q(idx);
}

@compute @workgroup_size(64)
fn rope_pair(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = gid.y * nwg.x * 64u + gid.x;
    let n1 = p.n_tokens * p.n_heads * (p.n_rot / 2u);
    if idx < n1 {
        turn_q(idx);
    } else if idx < n1 + p.n_tokens * p.n_heads2 * (p.n_rot / 2u) {
        let r = rotation(idx - n1, p.n_heads2);
        let x0 = x2[r.a];
        let x1 = x2[r.b];
        x2[r.a] = x0 * r.c - x1 * r.s;
        x2[r.b] = x0 * r.s + x1 * r.c;
    }
}

@group(0) @binding(4) var<storage, read> v: array<vec2<f32>>;
#ifdef F16
@group(0) @binding(5) var<storage, read_write> kc: array<vec2<f16>>;
@group(0) @binding(6) var<storage, read_write> vc: array<vec2<f16>>;
fn to_cache(x: vec2<f32>) -> vec2<f16> { return vec2<f16>(x); }
#else
@group(0) @binding(5) var<storage, read_write> kc: array<u32>;
@group(0) @binding(6) var<storage, read_write> vc: array<u32>;
fn to_cache(x: vec2<f32>) -> u32 { return pack2x16float(x); }
#endif

// Rotates x2[a], x2[b] in place by `cs`; returns the rotated pair.
fn turn_k(a: u32, b: u32, cs: vec2<f32>) -> vec2<f32> {
    let x0 = x2[a];
    let x1 = x2[b];
    let r = vec2<f32>(x0 * cs.x - x1 * cs.y, x0 * cs.y + x1 * cs.x);
    x2[a] = r.x;
    x2[b] = r.y;
    return r;
}

@compute @workgroup_size(64)
fn rope_kv(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = gid.y * nwg.x * 64u + gid.x;
    let n1 = p.n_tokens * p.n_heads * (p.n_rot / 2u);
    if idx < n1 {
        turn_q(idx);
        return;
    }
    // Word wi of head h of token t of the keys.
    let words = p.head_dim / 2u;
    let kw = idx - n1;
    if kw >= p.n_tokens * p.n_heads2 * words { return; }
    let wi = kw % words;
    let t = kw / (words * p.n_heads2);
    let kv_words = p.n_heads2 * words;
    let src = p.tok0 * kv_words + kw;
    let dst = p.kv_row0 * kv_words + kw;
    vc[dst] = to_cache(v[src]);
    let e = 2u * wi;
    let base = (p.tok0 * p.n_heads2 + kw / words) * p.head_dim;
    let half = p.n_rot / 2u;
    if e >= p.n_rot {
        kc[dst] = to_cache(vec2<f32>(x2[base + e], x2[base + e + 1u]));
    } else if p.neox == 0u {
        kc[dst] = to_cache(turn_k(base + e, base + e + 1u, cos_sin(wi, t)));
    } else if e < half {
        let r0 = turn_k(base + e, base + e + half, cos_sin(e, t));
        let r1 = turn_k(base + e + 1u, base + e + 1u + half, cos_sin(e + 1u, t));
        kc[dst] = to_cache(vec2<f32>(r0.x, r1.x));
        kc[dst + half / 2u] = to_cache(vec2<f32>(r0.y, r1.y));
    }
}
