// Matrix-vector product (decode) for CPU-emulated devices, one row per
// thread: out[tok0*out_rows + row0 + r] = sum_c W[r][c] * x[c], for one
// row-part of a weight. Bindings: 0 uniform MatParams, 1 weights (re-laid
// blocks, u32), 2 x (uniform window of 4096 vec4, the token's row at its
// start), 3 out (f32). Workgroup: 64 threads, thread i takes row
// 64*group + i whole, a block at a time with block_dot() from the
// block_dot[_<type>] snippet (scales decoded once per block).
// Why this shape: llvmpipe runs a workgroup's threads as SIMD lanes, pays a
// coroutine switch per barrier and loads from storage buffers one lane at a
// time, while uniform loads are vector gathers. `matvec.wgsl` (a workgroup
// per row) suits real GPUs.
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
@group(0) @binding(2) var<uniform> xu: array<vec4<f32>, 4096>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

fn xv(i: u32) -> vec4<f32> {
    return xu[i];
}

@compute @workgroup_size(64)
fn main(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let r = gid.y * nwg.x * WG + gid.x;
    if r >= p.rows { return; }
    let nb = p.cols / (4u * QB);
    var acc = 0.0;
    for (var b = 0u; b < nb; b++) {
        acc += block_dot(r, b, b * QB);
    }
    out[p.tok0 * p.out_rows + p.row0 + r] = acc;
}
