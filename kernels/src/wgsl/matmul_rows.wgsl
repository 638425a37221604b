// Matrix product (prefill) for CPU-emulated devices: out[(tok0+t)*out_rows +
// row0 + r] = sum_c W[r][c] * x[t*cols + c] for the n_tokens tokens of one
// uniform window of x, for one row-part of a weight.
// Bindings: 2 x (uniform window of 4096 vec4 holding the window's tokens),
// the rest and the epilogue (store; not GATED) as mat_out.wgsl.
// Workgroup: 64 threads along rows; workgroup y picks 4 tokens. Each thread
// dequantizes its row quad by quad with dq4() and multiplies each quad by
// the 4 tokens: no barriers, no shared memory (see matvec_rows.wgsl).
@group(0) @binding(2) var<uniform> xu: array<vec4<f32>, 4096>;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let r = gid.x;
    let t0 = gid.y * 4u;
    if r >= p.rows || t0 >= p.n_tokens { return; }
    let nq = p.cols / 4u;
    // Tokens past the window's last read zeros or clamped values; their
    // sums are not written.
    let x0 = t0 * nq;
    let x1 = min(x0 + nq, 4096u - nq);
    let x2 = min(x1 + nq, 4096u - nq);
    let x3 = min(x2 + nq, 4096u - nq);
    var a = vec4<f32>(0.0);
    for (var q = 0u; q < nq; q++) {
        let wv = dq4(r, q);
        a += vec4<f32>(dot(wv, xu[x0 + q]), dot(wv, xu[x1 + q]), dot(wv, xu[x2 + q]), dot(wv, xu[x3 + q]));
    }
    let t = p.tok0 + t0;
    let row = p.row0 + r;
    let nt = min(4u, p.n_tokens - t0);
    store(t, row, a.x);
    if nt > 1u { store(t + 1u, row, a.y); }
    if nt > 2u { store(t + 2u, row, a.z); }
    if nt > 3u { store(t + 3u, row, a.w); }
}
