// RMSNorm over rows: out[r][i] = x[r][i] / sqrt(mean(x[r]^2) + eps) * weight[i].
// Bindings: 0 uniform NormParams, 1 x (f32), 2 weight (f32, dim), 3 out (f32).
// Workgroup: 64 threads = one row (rows along workgroup x, then y); each
// thread sums squares over a strided slice, the workgroup adds them up.
const WG: u32 = 64u;

struct NormParams {
    rows: u32,
    dim: u32,
    eps: f32,
    _pad0: u32,
}

@group(0) @binding(0) var<uniform> p: NormParams;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> weight: array<f32>;
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
    let base = r * p.dim;
    var ss = 0.0;
    for (var i = lid; i < p.dim; i += WG) { let v = x[base + i]; ss += v * v; }
    let total = wg_sum(ss, lid);
    let inv = 1.0 / sqrt(total / f32(p.dim) + p.eps);
    for (var i = lid; i < p.dim; i += WG) { out[base + i] = x[base + i] * inv * weight[i]; }
}
