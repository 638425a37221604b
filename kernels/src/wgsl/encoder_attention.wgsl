// Bidirectional attention inside one segment of the batch (one text of an
// encoder): for query row t of the segment and head h,
// out[t][h] = softmax_j(q[t][h] · k[j][kvh] * scale) · v[j][kvh] over the
// segment's rows j = tok0..tok0 + n and no others; no cache, no causal mask.
// Bindings: 0 uniform EncAttnParams, 1 q (f32, rows of n_heads * head_dim),
// 2 k, 3 v (f32, rows of n_kv_heads * head_dim), 4 out (f32, like q).
// Workgroup: 64 threads = one (query row, head): row along workgroup x,
// head along y. The query head is staged in workgroup memory; each thread
// scores a strided share of the keys into `scores` (up to MAX_KEYS), the
// max and the sum of the exponentials are workgroup reductions, then
// thread d sums the weighted values of dims d, d + 64, ...
const WG: u32 = 64u;
const MAX_KEYS: u32 = 1024u;
const MAX_HEAD_DIM: u32 = 256u;

struct EncAttnParams {
    n: u32,
    n_heads: u32,
    n_kv_heads: u32,
    head_dim: u32,
    tok0: u32,
    scale: f32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: EncAttnParams;
@group(0) @binding(1) var<storage, read> q: array<f32>;
@group(0) @binding(2) var<storage, read> k: array<f32>;
@group(0) @binding(3) var<storage, read> v: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;

var<workgroup> scores: array<f32, MAX_KEYS>;
var<workgroup> qh: array<f32, MAX_HEAD_DIM>;

@compute @workgroup_size(64)
fn main(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
#ifdef SUBGROUP
    @builtin(subgroup_size) sgs: u32,
    @builtin(subgroup_invocation_id) sgl: u32,
#endif
) {
#ifdef SUBGROUP
    sg_size = sgs;
    sg_lane = sgl;
#endif
    let hd = p.head_dim;
    let t = p.tok0 + wid.x;
    let h = wid.y;
    let kv_dim = p.n_kv_heads * hd;
    let kvh = h / (p.n_heads / p.n_kv_heads);
    let qb = t * p.n_heads * hd + h * hd;
    for (var d = lid; d < hd; d += WG) { qh[d] = q[qb + d]; }
    workgroupBarrier();
    var m = -3.0e38;
    for (var j = lid; j < p.n; j += WG) {
        let kb = (p.tok0 + j) * kv_dim + kvh * hd;
        var s = 0.0;
        for (var d = 0u; d < hd; d++) { s += qh[d] * k[kb + d]; }
        s *= p.scale;
        scores[j] = s;
        m = max(m, s);
    }
    let mx = wg_max(m, lid);
    var l = 0.0;
    for (var j = lid; j < p.n; j += WG) {
        let e = exp(scores[j] - mx);
        scores[j] = e;
        l += e;
    }
    // The reduction's barriers also make every thread's `scores` visible.
    let inv = 1.0 / wg_sum(l, lid);
    for (var d = lid; d < hd; d += WG) {
        var acc = 0.0;
        for (var j = 0u; j < p.n; j++) { acc += scores[j] * v[(p.tok0 + j) * kv_dim + kvh * hd + d]; }
        out[qb + d] = acc * inv;
    }
}
