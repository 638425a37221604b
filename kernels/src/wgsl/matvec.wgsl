// Matrix-vector product on quantized weights (decode): out[t*out_rows + row0 + r]
// = sum_c W[r][c] * x[t*cols + c], for one row-part of a weight.
// Bindings: 0 uniform MatParams, 1 weights (re-laid blocks, u32), 2 x (vec4 f32),
// 3 out (f32). Workgroup: 64 threads = one row; thread i takes quads i, i+64, ...
// dequantizing them with dq4() from the quant_<type> snippet, then the
// workgroup sums (subgroupAdd when available). Rows run along workgroup x, then y
// (a dispatch dimension is capped at 65535).
const WG: u32 = 64u;

struct MatParams {
    rows: u32,
    cols: u32,
    n_tokens: u32,
    row0: u32,
    out_rows: u32,
    scale_off: u32,
    tok0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: MatParams;
@group(0) @binding(1) var<storage, read> w: array<u32>;
@group(0) @binding(2) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

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
        for (var q = lid; q < nq; q += WG) {
            acc += dot(dq4(r, q), x[t * nq + q]);
        }
        let total = wg_sum(acc, lid);
        if lid == 0u { out[t * p.out_rows + p.row0 + r] = total; }
    }
}
