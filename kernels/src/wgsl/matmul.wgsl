// Tiled matrix product on quantized weights (prefill): out[t*out_rows + row0 + r]
// = sum_c W[r][c] * x[t*cols + c], for one row-part of a weight.
// Bindings and epilogue (store; not GATED) as matvec.wgsl. Workgroup: 16x16 threads computing a 32-row x
// 32-token tile, 2x2 outputs per thread. Per K-step of 32 columns each thread
// dequantizes one quad of W (dq4) and loads one vec4 of x into workgroup memory.
@group(0) @binding(2) var<storage, read> x: array<vec4<f32>>;

const TILE: u32 = 32u;
// [row or token][k] with k in 0..32, as 8 vec4 per row.
var<workgroup> wt: array<vec4<f32>, 256>;
var<workgroup> xt: array<vec4<f32>, 256>;

@compute @workgroup_size(16, 16)
fn main(@builtin(local_invocation_id) lid3: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let lid = lid3.y * 16u + lid3.x;
    let r0 = wid.x * TILE;
    let t0 = wid.y * TILE;
    let nq = p.cols / 4u;
    // The tile slot this thread loads: row/token `li`, quad `lq` of the K-step.
    let li = lid / 8u;
    let lq = lid % 8u;
    var acc = array<f32, 4>(0.0, 0.0, 0.0, 0.0);
    for (var k0 = 0u; k0 < nq; k0 += 8u) {
        let q = k0 + lq;
        var wv = vec4<f32>(0.0);
        if r0 + li < p.rows && q < nq { wv = dq4(r0 + li, q); }
        wt[lid] = wv;
        var xv = vec4<f32>(0.0);
        if t0 + li < p.n_tokens && q < nq { xv = x[(t0 + li) * nq + q]; }
        xt[lid] = xv;
        workgroupBarrier();
        for (var k = 0u; k < 8u; k++) {
            let w0 = wt[lid3.x * 8u + k];
            let w1 = wt[(lid3.x + 16u) * 8u + k];
            let x0 = xt[lid3.y * 8u + k];
            let x1 = xt[(lid3.y + 16u) * 8u + k];
            acc[0] += dot(w0, x0);
            acc[1] += dot(w1, x0);
            acc[2] += dot(w0, x1);
            acc[3] += dot(w1, x1);
        }
        workgroupBarrier();
    }
    for (var i = 0u; i < 4u; i++) {
        let r = r0 + lid3.x + (i & 1u) * 16u;
        let t = t0 + lid3.y + (i >> 1u) * 16u;
        if r < p.rows && t < p.n_tokens { store(t, p.row0 + r, acc[i]); }
    }
}
