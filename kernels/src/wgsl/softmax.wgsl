// Softmax over rows, in place (max-subtracted, as ops::softmax_ref).
// Bindings: 0 uniform SoftmaxParams, 1 x (f32, read_write).
// Workgroup: 64 threads = one row (rows along workgroup x, then y).
const WG: u32 = 64u;

struct SoftmaxParams {
    rows: u32,
    dim: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: SoftmaxParams;
@group(0) @binding(1) var<storage, read_write> x: array<f32>;

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
    let base = r * p.dim;
    var m = -3.0e38;
    for (var i = lid; i < p.dim; i += WG) { m = max(m, x[base + i]); }
    let mx = wg_max(m, lid);
    var s = 0.0;
    for (var i = lid; i < p.dim; i += WG) { let e = exp(x[base + i] - mx); x[base + i] = e; s += e; }
    let inv = 1.0 / wg_sum(s, lid);
    for (var i = lid; i < p.dim; i += WG) { x[base + i] *= inv; }
}
