// Attention over the f16 KV cache, split along the key positions (flash-decoding):
// each workgroup handles (head h = wid.x, query qi = wid.y, split s = wid.z) and
// writes a partial (max m, sum l, unnormalized output[head_dim]) that
// attention_reduce.wgsl combines. Query qi (row tok0+qi of q: one sequence's
// segment of the batch) sits at position pos0+qi and sees
// keys max(0, pos - window + 1)..=pos (window 0 = unlimited); split s covers
// positions s*span..(s+1)*span of that range. GQA: head h reads KV head
// h / (n_heads / n_kv_heads). The sequence's cache rows start at kv_base.
// Bindings: 0 uniform AttnParams, 1 q (f32, n_q x n_heads x head_dim),
// 2 k cache, 3 v cache (f16 pairs, rows of n_kv_heads*head_dim), 4 partials (f32),
// or with DIRECT (one split) the output (q's shape), normalized as
// attention_reduce.wgsl would: acc * (1 / l).
// Workgroup: 64 threads; per chunk of 64 keys each thread scores one key, then
// an online softmax update; thread i accumulates output dims i, i+64, ... (head_dim <= 512).
const WG: u32 = 64u;

@group(0) @binding(1) var<storage, read> q: array<f32>;
#ifdef F16
@group(0) @binding(2) var<storage, read> kc: array<vec2<f16>>;
@group(0) @binding(3) var<storage, read> vc: array<vec2<f16>>;
fn load_k(i: u32) -> vec2<f32> { return vec2<f32>(kc[i]); }
fn load_v(i: u32) -> vec2<f32> { return vec2<f32>(vc[i]); }
#else
@group(0) @binding(2) var<storage, read> kc: array<u32>;
@group(0) @binding(3) var<storage, read> vc: array<u32>;
fn load_k(i: u32) -> vec2<f32> { return unpack2x16float(kc[i]); }
fn load_v(i: u32) -> vec2<f32> { return unpack2x16float(vc[i]); }
#endif
@group(0) @binding(4) var<storage, read_write> part: array<f32>;

var<workgroup> q_sh: array<f32, 512>;
var<workgroup> probs: array<f32, 64>;

// Stands for -inf without producing NaN in exp(a - b).
const NEG_BIG: f32 = -1.0e30;

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
    let h = wid.x;
    let qi = wid.y;
    let s = wid.z;
    let kvh = h / (p.n_heads / p.n_kv_heads);
    let pos = p.pos0 + qi;
    var lo = 0u;
    if p.window > 0u && pos + 1u > p.window { lo = pos + 1u - p.window; }
    let s_lo = max(lo, s * p.span);
    let s_hi = min(pos + 1u, (s + 1u) * p.span);
    let qoff = ((p.tok0 + qi) * p.n_heads + h) * p.head_dim;
    for (var d = lid; d < p.head_dim; d += WG) { q_sh[d] = q[qoff + d] * p.scale; }
    workgroupBarrier();

    let kv_dim = p.n_kv_heads * p.head_dim;
    let half_d = p.head_dim / 2u;
    var m = NEG_BIG;
    var l = 0.0;
    var acc = array<f32, 8>(0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0);
    for (var c0 = s_lo; c0 < s_hi; c0 += WG) {
        let pp = c0 + lid;
        var sc = NEG_BIG;
        if pp < s_hi {
            let kb = ((p.kv_base + pp) * kv_dim + kvh * p.head_dim) / 2u;
            var dsum = 0.0;
            for (var i = 0u; i < half_d; i++) {
                let kv = load_k(kb + i);
                dsum += q_sh[2u * i] * kv.x + q_sh[2u * i + 1u] * kv.y;
            }
            sc = dsum;
        }
        let nm = max(m, wg_max(sc, lid));
        var e = 0.0;
        if pp < s_hi { e = exp(sc - nm); }
        probs[lid] = e;
        // wg_sum's barriers also publish probs[] to the workgroup.
        let cs = wg_sum(e, lid);
        let alpha = exp(m - nm);
        l = l * alpha + cs;
        let cnt = min(WG, s_hi - c0);
        for (var k = 0u; k < 8u; k++) {
            let d = lid + k * WG;
            if d < p.head_dim {
                var a = acc[k] * alpha;
                let vb = (p.kv_base + c0) * kv_dim + kvh * p.head_dim + d;
                for (var j = 0u; j < cnt; j++) {
                    let vi = vb + j * kv_dim;
                    a += probs[j] * load_v(vi / 2u)[vi & 1u];
                }
                acc[k] = a;
            }
        }
        m = nm;
        workgroupBarrier();
    }
#ifdef DIRECT
    let inv = 1.0 / l;
    for (var k = 0u; k < 8u; k++) {
        let d = lid + k * WG;
        if d < p.head_dim { part[qoff + d] = acc[k] * inv; }
    }
#else
    let base = ((qi * p.n_heads + h) * p.n_splits + s) * (p.head_dim + 2u);
    if lid == 0u {
        part[base] = m;
        part[base + 1u] = l;
    }
    for (var k = 0u; k < 8u; k++) {
        let d = lid + k * WG;
        if d < p.head_dim { part[base + 2u + d] = acc[k]; }
    }
#endif
}
