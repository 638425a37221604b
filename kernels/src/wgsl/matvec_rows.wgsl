// Matrix-vector product (decode) for CPU-emulated devices, one row per
// thread: out[tok0*out_rows + row0 + r] = sum_c W[r][c] * x[c], for one
// row-part of a weight. Bindings: 2 x (uniform window of 4096 vec4, the
// token's row at its start), the rest and the epilogue (store) as
// mat_out.wgsl; GATED takes rows r and r + rows of a [gate; up] weight. Workgroup: 64 threads, thread i takes row
// 64*group + i whole, a block at a time with block_dot() from the
// block_dot[_<type>] snippet (scales decoded once per block). NORM: the
// output norm fused in (see xv() and mat_out.wgsl).
// Why this shape: llvmpipe runs a workgroup's threads as SIMD lanes, pays a
// coroutine switch per barrier and loads from storage buffers one lane at a
// time, while uniform loads are vector gathers. `matvec.wgsl` (a workgroup
// per row) suits real GPUs.
const WG: u32 = 64u;

@group(0) @binding(2) var<uniform> xu: array<vec4<f32>, 4096>;

#ifdef NORM
// The fused output norm (mat_out.wgsl): each quad of x is loaded once per
// row, so its square adds to the thread's sum as it goes.
@group(0) @binding(7) var<uniform> gu: array<vec4<f32>, 4096>;
var<private> ss: f32;

fn xv(i: u32) -> vec4<f32> {
    let v = xu[i];
    ss += dot(v, v);
    return v * gu[i];
}
#else
fn xv(i: u32) -> vec4<f32> {
    return xu[i];
}
#endif

@compute @workgroup_size(64)
fn main(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let r = gid.y * nwg.x * WG + gid.x;
    if r >= p.rows { return; }
    let nb = p.cols / (4u * QB);
    var acc = 0.0;
#ifdef GATED
    var up = 0.0;
    for (var b = 0u; b < nb; b++) {
        acc += block_dot(r, b, b * QB);
        up += block_dot(r + p.rows, b, b * QB);
    }
    store_gated(p.tok0, p.row0 + r, acc, up);
#else
    for (var b = 0u; b < nb; b++) {
        acc += block_dot(r, b, b * QB);
    }
#ifdef NORM
    acc *= norm_factor(ss);
#endif
    store(p.tok0, p.row0 + r, acc);
#endif
}
