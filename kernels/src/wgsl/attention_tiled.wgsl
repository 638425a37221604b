// Flash-style attention over the f16 KV cache, a KV head's whole query group
// per workgroup: workgroup (x, y, z) takes KV head kvh = x / p.head_chunks and
// heads hc*hg..(hc+1)*hg of its group (hc = x % head_chunks), query tokens
// y*qt..(y+1)*qt, and key split z (positions z*span..(z+1)*span). Its
// qt * hg <= 16 query rows (token-major, head fastest) share every K and V
// tile: each key is read from the cache once per workgroup, not once per
// query and head.
// Query token t (row tok0+t of q) sits at position pos0+t and sees keys
// max(0, pos - window + 1)..=pos (window 0 = unlimited); the sequence's cache
// rows start at kv_base.
// Bindings: 0 uniform AttnParams, 1 q (f32, n_q x n_heads x head_dim), 2 k
// cache, 3 v cache (f16 pairs read as vec4<u32>: 8 halves per load, rows of
// n_kv_heads*head_dim), 4 partials (f32, as attention.wgsl) or, with DIRECT
// (one split), the normalized output (q's shape).
// Workgroup: 64 threads; thread (row rho = lid/4, lane kk = lid%4) scores keys
// kk, kk+4, ... of each tile against its row's query and accumulates output
// dim pairs kk, kk+4, ... of its row. Per tile of BKT keys: load K (8 halves
// per thread per step, consecutive threads along a row), scores, online
// softmax update per row, load V over K's slots, then P·V. head_dim <= 128
// (BKT 32) or, with HD256, <= 256 (BKT 16); a multiple of 8.
// Workgroup memory rows are padded (odd word strides) so that the 4 keys or
// the 8 rows one memory phase reads sit in distinct banks.
const NEG_BIG: f32 = -1.0e30;
const ROWS: u32 = 16u;
#ifdef HD256
const HD_MAX: u32 = 256u;
const BKT: u32 = 16u;
#else
const HD_MAX: u32 = 128u;
const BKT: u32 = 32u;
#endif

@group(0) @binding(1) var<storage, read> q: array<f32>;
@group(0) @binding(2) var<storage, read> kc: array<vec4<u32>>;
@group(0) @binding(3) var<storage, read> vc: array<vec4<u32>>;
@group(0) @binding(4) var<storage, read_write> part: array<f32>;

// Scaled queries, rows of head_dim + 2 floats.
var<workgroup> q_sh: array<f32, ROWS * (HD_MAX + 2u)>;
// A K or V tile: BKT keys of head_dim / 2 + 1 words (f16 pairs).
var<workgroup> kv_sh: array<u32, BKT * (HD_MAX / 2u + 1u)>;
// Scores and probabilities of the tile, rows of BKT + 1.
var<workgroup> s_sh: array<f32, ROWS * (BKT + 1u)>;
var<workgroup> p_sh: array<f32, ROWS * (BKT + 1u)>;

// Copies keys k0..k0+cnt of head kvh from `cache` into kv_sh.
fn load_tile(is_v: bool, k0: u32, cnt: u32, kvh: u32, lid: u32) {
    let n8 = p.head_dim / 8u;
    let kv8 = p.n_kv_heads * n8;
    let stride = p.head_dim / 2u + 1u;
    for (var i = lid; i < cnt * n8; i += 64u) {
        let key = i / n8;
        let c = i % n8;
        let g = (p.kv_base + k0 + key) * kv8 + kvh * n8 + c;
        var v: vec4<u32>;
        if is_v { v = vc[g]; } else { v = kc[g]; }
        let o = key * stride + 4u * c;
        kv_sh[o] = v.x;
        kv_sh[o + 1u] = v.y;
        kv_sh[o + 2u] = v.z;
        kv_sh[o + 3u] = v.w;
    }
}

@compute @workgroup_size(64)
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    let group = p.n_heads / p.n_kv_heads;
    let kvh = wid.x / p.head_chunks;
    let h0 = kvh * group + (wid.x % p.head_chunks) * p.hg;
    let hg = min(p.hg, kvh * group + group - h0);
    let t0 = wid.y * p.qt;
    let s = wid.z;
    let rho = lid / 4u;
    let kk = lid % 4u;
    let hd = p.head_dim;
    let qs = hd + 2u;
    let stride = hd / 2u + 1u;
    let bs = BKT + 1u;

    // This thread's row: token t, head h (rows past the block are idle).
    let t = t0 + rho / hg;
    let h = h0 + rho % hg;
    let live = rho < p.qt * hg && t < p.n_q;
    let pos = p.pos0 + t;
    var lo = 0u;
    if p.window > 0u && pos + 1u > p.window { lo = pos + 1u - p.window; }

    // Keys any row of the block sees, within this split.
    let t_last = min(t0 + p.qt, p.n_q) - 1u;
    var blk_lo = 0u;
    if p.window > 0u && p.pos0 + t0 + 1u > p.window { blk_lo = p.pos0 + t0 + 1u - p.window; }
    let k_lo = max(blk_lo, s * p.span);
    let k_hi = min(p.pos0 + t_last + 1u, (s + 1u) * p.span);

    for (var i = lid; i < ROWS * hd; i += 64u) {
        let r = i / hd;
        let d = i % hd;
        let rt = t0 + r / hg;
        var v = 0.0;
        if r < p.qt * hg && rt < p.n_q {
            v = q[((p.tok0 + rt) * p.n_heads + h0 + r % hg) * hd + d] * p.scale;
        }
        q_sh[r * qs + d] = v;
    }

    var m = NEG_BIG;
    var l = 0.0;
    var acc: array<vec2<f32>, HD_MAX / 8u>;
    for (var i = 0u; i < HD_MAX / 8u; i++) { acc[i] = vec2<f32>(0.0); }

    for (var k0 = k_lo; k0 < k_hi; k0 += BKT) {
        let cnt = min(BKT, k_hi - k0);
        workgroupBarrier();
        load_tile(false, k0, cnt, kvh, lid);
        workgroupBarrier();
        // Scores of keys kk + 4j of the tile.
        for (var j = kk; j < BKT; j += 4u) {
            let key = k0 + j;
            var sc = NEG_BIG;
            if live && j < cnt && key >= lo && key <= pos {
                var a = 0.0;
                for (var w = 0u; w < hd / 2u; w++) {
                    let qv = vec2<f32>(q_sh[rho * qs + 2u * w], q_sh[rho * qs + 2u * w + 1u]);
                    a += dot(qv, unpack2x16float(kv_sh[j * stride + w]));
                }
                sc = a;
            }
            s_sh[rho * bs + j] = sc;
        }
        workgroupBarrier();
        // Online softmax: the row's max over the tile, then its probabilities.
        var tmax = NEG_BIG;
        for (var j = 0u; j < cnt; j++) { tmax = max(tmax, s_sh[rho * bs + j]); }
        let nm = max(m, tmax);
        let alpha = exp(m - nm);
        for (var j = kk; j < BKT; j += 4u) {
            let sc = s_sh[rho * bs + j];
            var e = 0.0;
            if sc > 0.5 * NEG_BIG { e = exp(sc - nm); }
            p_sh[rho * bs + j] = e;
        }
        // K is dead once every score is in s_sh: V takes its slots.
        load_tile(true, k0, cnt, kvh, lid);
        workgroupBarrier();
        var ps = 0.0;
        for (var j = 0u; j < cnt; j++) { ps += p_sh[rho * bs + j]; }
        l = l * alpha + ps;
        for (var i = 0u; i < HD_MAX / 8u; i++) {
            let w = kk + 4u * i;
            if w < hd / 2u {
                var a = acc[i] * alpha;
                for (var j = 0u; j < cnt; j++) {
                    a += p_sh[rho * bs + j] * unpack2x16float(kv_sh[j * stride + w]);
                }
                acc[i] = a;
            }
        }
        m = nm;
    }
    if !live { return; }
#ifdef DIRECT
    let inv = 1.0 / l;
    let ob = ((p.tok0 + t) * p.n_heads + h) * hd;
    for (var i = 0u; i < HD_MAX / 8u; i++) {
        let w = kk + 4u * i;
        if w < hd / 2u {
            part[ob + 2u * w] = acc[i].x * inv;
            part[ob + 2u * w + 1u] = acc[i].y * inv;
        }
    }
#else
    let base = ((t * p.n_heads + h) * p.n_splits + s) * (hd + 2u);
    if kk == 0u {
        part[base] = m;
        part[base + 1u] = l;
    }
    for (var i = 0u; i < HD_MAX / 8u; i++) {
        let w = kk + 4u * i;
        if w < hd / 2u {
            part[base + 2u + 2u * w] = acc[i].x;
            part[base + 2u + 2u * w + 1u] = acc[i].y;
        }
    }
#endif
}
