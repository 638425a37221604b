// RMSNorm over rows: out[r][i] = x[r][i] / sqrt(mean(x[r]^2) + eps) * weight[i].
// Bindings: 0 uniform NormParams, 1 x (f32), 2 weight (f32, dim), 3 out (f32).
// Two fused entry points save a dispatch or a copy each (same arithmetic):
// - `add_rmsnorm`: acc += x (the residual add), then out = rmsnorm(acc);
//   binding 4 acc (f32, read_write).
// - `rmsnorm_inplace`: out = rmsnorm(out) (bindings 0, 2, 3).
// - Q8 (`main` and `add_rmsnorm`): binding 5 also gets the output rows as
//   the int8 blocks of the integer-dot matvec (q8_block.wgsl): row r's block
//   b at word r*dim/4 + 8b, its scale at rows*dim/4 + r*dim/32 + b; the same
//   bytes quantize_q8.wgsl makes from `out`, without a dispatch of its own.
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
@group(0) @binding(4) var<storage, read_write> acc: array<f32>;

#ifdef Q8
@group(0) @binding(5) var<storage, read_write> xq: array<u32>;

// Row r of `out` (at `base`) to int8 blocks, one block per thread at a
// time, read back once the whole workgroup has written the row.
fn q8_row(r: u32, base: u32, lid: u32) {
    storageBarrier();
    let nb = p.dim / 32u;
    for (var b = lid; b < nb; b += WG) {
        var v: array<vec4<f32>, 8>;
        for (var i = 0u; i < 8u; i++) {
            let o = base + 32u * b + 4u * i;
            v[i] = vec4<f32>(out[o], out[o + 1u], out[o + 2u], out[o + 3u]);
        }
        q8_block(&v, r * (p.dim / 4u) + 8u * b, p.rows * (p.dim / 4u) + r * nb + b);
    }
}
#endif

// 1 / rms of a row whose threads hold partial sums of squares `ss`.
fn inv_rms(ss: f32, lid: u32) -> f32 {
    let total = wg_sum(ss, lid);
    return 1.0 / sqrt(total / f32(p.dim) + p.eps);
}

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
    let inv = inv_rms(ss, lid);
    for (var i = lid; i < p.dim; i += WG) { out[base + i] = x[base + i] * inv * weight[i]; }
#ifdef Q8
    q8_row(r, base, lid);
#endif
}

// Each thread reads and writes only its own strided elements, so the
// residual can be updated in place before the reduction.
@compute @workgroup_size(64)
fn add_rmsnorm(
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
    for (var i = lid; i < p.dim; i += WG) {
        let v = acc[base + i] + x[base + i];
        acc[base + i] = v;
        ss += v * v;
    }
    let inv = inv_rms(ss, lid);
    for (var i = lid; i < p.dim; i += WG) { out[base + i] = acc[base + i] * inv * weight[i]; }
#ifdef Q8
    q8_row(r, base, lid);
#endif
}

@compute @workgroup_size(64)
fn rmsnorm_inplace(
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
    for (var i = lid; i < p.dim; i += WG) { let v = out[base + i]; ss += v * v; }
    let inv = inv_rms(ss, lid);
    for (var i = lid; i < p.dim; i += WG) { out[base + i] = out[base + i] * inv * weight[i]; }
}
