// Tiled matrix product on quantized weights (prefill and multi-sequence
// batches): out[t*out_rows + row0 + r] = sum_c W[r][c] * x[t*cols + c], for
// one row-part of a weight.
// Bindings: 2 x (vec4 f32), the rest and the epilogue (store; not GATED) as
// mat_out.wgsl.
// Workgroup: 16 x TY threads computing a 64-row x (4*TY)-token tile, 4 x 4
// outputs per thread: rows lx + 16i, tokens ly + TY*j (i, j < 4). TY = 16
// (64 x 64 tiles) or, with NARROW, 4 (64 x 16 tiles for small batches).
// Per K-step of 32 columns the workgroup dequantizes the 64 x 32 weight tile
// from whole u32 words (load_w of matmul_load.wgsl, one (row, word group)
// task per thread) and copies the x tile, both into workgroup memory (f16
// with F16, else f32); then each thread does 16 vec4 dots per quad.
// Bank conflicts: quad q of tile row i sits at slot q ^ swz(i), so the
// threads of one memory phase (8 reading vec4<f32>, 16 reading vec4<f16>)
// that read quad q of consecutive rows hit distinct banks, as do the 8
// threads writing the 8 quads of one token.
// Every output sums its dots in the same order whatever the tile, its place
// in the tile or the batch: a token's rows do not depend on the other tokens
// of the batch (for one precision; NARROW is always f32).
@group(0) @binding(2) var<storage, read> x: array<vec4<f32>>;

#ifdef NARROW
const TY: u32 = 4u;
#else
const TY: u32 = 16u;
#endif
const BM: u32 = 64u;
const BN: u32 = 4u * TY;
const NT: u32 = 16u * TY;

#ifdef F16
var<workgroup> wt: array<vec4<f16>, 512>;
var<workgroup> xt: array<vec4<f16>, BN * 8u>;
fn to_tile(v: vec4<f32>) -> vec4<f16> { return vec4<f16>(v); }
// A vec4<f16> spans two banks: rows 2i and 2i+1 share a key, one half-bank apart.
fn swz(i: u32) -> u32 { return (i >> 1u) & 7u; }
#else
var<workgroup> wt: array<vec4<f32>, 512>;
var<workgroup> xt: array<vec4<f32>, BN * 8u>;
fn to_tile(v: vec4<f32>) -> vec4<f32> { return v; }
fn swz(i: u32) -> u32 { return i & 7u; }
#endif

fn put_w(lr: u32, q: u32, v: vec4<f32>) {
    wt[lr * 8u + (q ^ swz(lr))] = to_tile(v);
}

@compute @workgroup_size(16, TY)
fn main(@builtin(local_invocation_id) l3: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let lx = l3.x;
    let ly = l3.y;
    let lid = ly * 16u + lx;
    let r0 = wid.x * BM;
    let t0 = wid.y * BN;
    let nq = p.cols / 4u;
    // acc[j][i]: token ly + TY*j, row lx + 16i.
    var acc = array<vec4<f32>, 4>(vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0));
    for (var kb = 0u; kb * 8u < nq; kb++) {
        // Rows and tokens past the end are not loaded: their slots only feed
        // outputs that are not stored.
        for (var task = lid; task < BM * 4u; task += NT) {
            let lr = task / 4u;
            if r0 + lr < p.rows { load_w(lr, r0 + lr, kb, task % 4u); }
        }
        for (var task = lid; task < BN * 8u; task += NT) {
            let lt = task / 8u;
            let q = task % 8u;
            let cq = kb * 8u + q;
            if t0 + lt < p.n_tokens {
                var v = vec4<f32>(0.0);
                if cq < nq { v = x[(t0 + lt) * nq + cq]; }
                xt[lt * 8u + (q ^ swz(lt))] = to_tile(v);
            }
        }
        workgroupBarrier();
        // Rows lx + 16i share swz(lx); tokens ly + TY*j have their own.
        let sw = swz(lx);
        for (var q = 0u; q < 8u; q++) {
            let a0 = vec4<f32>(wt[lx * 8u + (q ^ sw)]);
            let a1 = vec4<f32>(wt[(lx + 16u) * 8u + (q ^ sw)]);
            let a2 = vec4<f32>(wt[(lx + 32u) * 8u + (q ^ sw)]);
            let a3 = vec4<f32>(wt[(lx + 48u) * 8u + (q ^ sw)]);
            for (var j = 0u; j < 4u; j++) {
                let lt = ly + TY * j;
                let b = vec4<f32>(xt[lt * 8u + (q ^ swz(lt))]);
                acc[j] += vec4<f32>(dot(a0, b), dot(a1, b), dot(a2, b), dot(a3, b));
            }
        }
        workgroupBarrier();
    }
    for (var j = 0u; j < 4u; j++) {
        let t = t0 + ly + TY * j;
        if t < p.n_tokens {
            for (var i = 0u; i < 4u; i++) {
                let r = r0 + lx + 16u * i;
                if r < p.rows { store(t, p.row0 + r, acc[j][i]); }
            }
        }
    }
}
