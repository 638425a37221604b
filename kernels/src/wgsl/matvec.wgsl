// Matrix-vector product on quantized weights (decode): out[t*out_rows + row0 + r]
// = sum_c W[r][c] * x[t*cols + c], for one row-part of a weight.
// Bindings: 2 x (vec4 f32), the rest and the epilogue (store) as mat_out.wgsl;
// GATED sums rows r and r + rows of a [gate; up] weight. Workgroup: 64 threads = one row; thread i takes quads i, i+64, ...
// dequantizing them with dq4() from the quant_<type> snippet, then the
// workgroup sums (subgroupAdd when available). Rows run along workgroup x, then y
// (a dispatch dimension is capped at 65535).
const WG: u32 = 64u;

@group(0) @binding(2) var<storage, read> x: array<vec4<f32>>;

@compute @workgroup_size(64)
fn main(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
#ifdef SUBGROUP
    @builtin(subgroup_size) sgs: u32,
    @builtin(subgroup_invocation_id) sgl: u32,
#endif
) {
#ifdef SUBGROUP
    sg_size = sgs;
    sg_lane = sgl;
#endif
    let r = wid.y * nwg.x + wid.x;
    if r >= p.rows { return; }
    let nq = p.cols / 4u;
    for (var t = 0u; t < p.n_tokens; t++) {
        var acc = 0.0;
#ifdef GATED
        var up = 0.0;
        for (var q = lid; q < nq; q += WG) {
            let xq = x[t * nq + q];
            acc += dot(dq4(r, q), xq);
            up += dot(dq4(r + p.rows, q), xq);
        }
        let total = wg_sum(acc, lid);
        let total_up = wg_sum(up, lid);
        if lid == 0u { store_gated(t, p.row0 + r, total, total_up); }
#else
        for (var q = lid; q < nq; q += WG) {
            acc += dot(dq4(r, q), x[t * nq + q]);
        }
        let total = wg_sum(acc, lid);
        if lid == 0u { store(t, p.row0 + r, total); }
#endif
    }
}
