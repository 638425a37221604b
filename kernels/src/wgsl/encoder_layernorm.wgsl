// LayerNorm with bias over rows, in place (encoders such as BERT):
// x[r][i] = (x[r][i] - mean(x[r])) / sqrt(var(x[r]) + eps) * weight[i] + bias[i].
// Bindings: 0 uniform NormParams, 1 x (f32, read_write, rows * dim),
// 2 weight (f32, dim), 3 bias (f32, dim).
// Workgroup: 64 threads = one row (rows along workgroup x, then y); each
// thread sums a strided slice, first for the mean, then for the variance
// about it (two passes, as the CPU kernel does); it reads and writes only
// its own elements, so the row is normed in place.
const WG: u32 = 64u;

struct NormParams {
    rows: u32,
    dim: u32,
    eps: f32,
    _pad0: u32,
}

@group(0) @binding(0) var<uniform> p: NormParams;
@group(0) @binding(1) var<storage, read_write> x: array<f32>;
@group(0) @binding(2) var<storage, read> weight: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;

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
    let n = f32(p.dim);
    var s = 0.0;
    for (var i = lid; i < p.dim; i += WG) { s += x[base + i]; }
    let mean = wg_sum(s, lid) / n;
    var ss = 0.0;
    for (var i = lid; i < p.dim; i += WG) { let d = x[base + i] - mean; ss += d * d; }
    let inv = 1.0 / sqrt(wg_sum(ss, lid) / n + p.eps);
    for (var i = lid; i < p.dim; i += WG) { x[base + i] = (x[base + i] - mean) * inv * weight[i] + bias[i]; }
}
