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
}

@group(0) @binding(0) var<uniform> p: RopeParams;
@group(0) @binding(1) var<storage, read_write> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> x2: array<f32>;
@group(0) @binding(3) var<storage, read> mult: array<f32>;

// Pair `idx` (of n_heads * head_dim / 2 per token): the indices it rotates
// and the cosine and sine of its angle.
struct Rot { a: u32, b: u32, c: f32, s: f32 }

fn rotation(idx: u32, n_heads: u32) -> Rot {
    let half = p.n_rot / 2u;
    let i = idx % half;
    let th = idx / half; // token * n_heads + head
    let t = th / n_heads;
    let theta_scale = pow(p.base, -2.0 / f32(p.n_rot));
    var theta = f32(p.pos0 + t);
    for (var j = 0u; j < i; j++) { theta *= theta_scale; }
    if p.use_mult != 0u {
        theta *= p.freq_scale * mult[i];
    } else {
        theta *= p.freq_scale;
    }
    let base = (th + p.tok0 * n_heads) * p.head_dim;
    var a = base + 2u * i;
    var b = a + 1u;
    if p.neox != 0u { a = base + i; b = a + half; }
    return Rot(a, b, cos(theta) * p.mscale, sin(theta) * p.mscale);
}

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = gid.y * nwg.x * 64u + gid.x;
    if idx >= p.n_tokens * p.n_heads * (p.n_rot / 2u) { return; }
    let r = rotation(idx, p.n_heads);
    let x0 = x[r.a];
    let x1 = x[r.b];
    x[r.a] = x0 * r.c - x1 * r.s;
    x[r.b] = x0 * r.s + x1 * r.c;
}

@compute @workgroup_size(64)
fn rope_pair(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = gid.y * nwg.x * 64u + gid.x;
    let n1 = p.n_tokens * p.n_heads * (p.n_rot / 2u);
    if idx < n1 {
        let r = rotation(idx, p.n_heads);
        let x0 = x[r.a];
        let x1 = x[r.b];
        x[r.a] = x0 * r.c - x1 * r.s;
        x[r.b] = x0 * r.s + x1 * r.c;
    } else if idx < n1 + p.n_tokens * p.n_heads2 * (p.n_rot / 2u) {
        let r = rotation(idx - n1, p.n_heads2);
        let x0 = x2[r.a];
        let x1 = x2[r.b];
        x2[r.a] = x0 * r.c - x1 * r.s;
        x2[r.b] = x0 * r.s + x1 * r.c;
    }
}
