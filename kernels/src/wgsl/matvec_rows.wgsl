// Matrix-vector product (decode), one row per thread: out[t*out_rows + row0 + r]
// = sum_c W[r][c] * x[t*cols + c], for one row-part of a weight.
// Bindings: 0 uniform MatParams, 1 weights (re-laid blocks, u32), 2 x (vec4 f32),
// 3 out (f32). Workgroup: 64 threads, thread i takes row 64*group + i whole and
// dequantizes it quad by quad with dq4() from the quant_<type> snippet.
// No barriers and no shared memory: the variant for CPU-emulated devices
// (lavapipe), which run a workgroup's threads as SIMD lanes and pay a context
// switch per barrier; `matvec.wgsl` (a workgroup per row) suits real GPUs.
const WG: u32 = 64u;

struct MatParams {
    rows: u32,
    cols: u32,
    n_tokens: u32,
    row0: u32,
    out_rows: u32,
    scale_off: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: MatParams;
@group(0) @binding(1) var<storage, read> w: array<u32>;
@group(0) @binding(2) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(64)
fn main(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let r = gid.y * nwg.x * WG + gid.x;
    if r >= p.rows { return; }
    let nq = p.cols / 4u;
    for (var t = 0u; t < p.n_tokens; t++) {
        var acc = 0.0;
        for (var q = 0u; q < nq; q++) {
            acc += dot(dq4(r, q), x[t * nq + q]);
        }
        out[t * p.out_rows + p.row0 + r] = acc;
    }
}
