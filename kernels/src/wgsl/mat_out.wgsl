// The params, weights and output of the matrix kernels (matvec, matmul and
// their CPU-device twins), and their epilogue: what a finished dot product
// `v` of token `t` and weight row `row` (row0 included) becomes.
// Bindings: 0 uniform MatParams, 1 weights (re-laid blocks, u32), 3 out
// (f32); SPLIT adds 4 and 5 (second and third outputs), BIAS adds 6 (bias,
// one value per weight row). The defines, set per pipeline (shaders.rs):
//   (none)  out[t*out_rows + row] = v (+ bias[row])
//   ACC     out[t*out_rows + row] += v (+ bias[row])   (a residual add)
//   SPLIT   rows 0..split1 to out, split1..split2 to out2, the rest to out3,
//           each with its own row stride (q|k|v or gate|up run as one weight)
//   GATED   the weight is [gate; up] (rows each): store_gated() writes
//           act(gate row)*(up row) to out, act = silu (SILU) or gelu_tanh,
//           with the formulas of elementwise.wgsl.
//   NORM    (with a plain store, one token) x is the raw residual and the
//           RMSNorm before the product is fused in: binding 7 holds the norm
//           weight g (the kernel multiplies each x quad by it on load and sums
//           x^2 from the same loads), and v is scaled by norm_factor() first.
struct MatParams {
    rows: u32,
    cols: u32,
    n_tokens: u32,
    row0: u32,
    out_rows: u32,
    scale_off: u32,
    /// First output token of the dispatch (the CPU-device kernels' windows).
    tok0: u32,
    split1: u32,
    split2: u32,
    /// The RMSNorm epsilon (NORM).
    eps: f32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: MatParams;
@group(0) @binding(1) var<storage, read> w: array<u32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
#ifdef SPLIT
@group(0) @binding(4) var<storage, read_write> out2: array<f32>;
@group(0) @binding(5) var<storage, read_write> out3: array<f32>;
#endif
#ifdef BIAS
@group(0) @binding(6) var<storage, read> bias: array<f32>;
#endif

fn store(t: u32, row: u32, v: f32) {
#ifdef BIAS
    let y = v + bias[row];
#else
    let y = v;
#endif
#ifdef SPLIT
    if row < p.split1 {
        out[t * p.split1 + row] = y;
    } else if row < p.split2 {
        out2[t * (p.split2 - p.split1) + row - p.split1] = y;
    } else {
        out3[t * (p.out_rows - p.split2) + row - p.split2] = y;
    }
#else
#ifdef ACC
    out[t * p.out_rows + row] += y;
#else
    out[t * p.out_rows + row] = y;
#endif
#endif
}

#ifdef NORM
// 1 / rms of the token's x from its sum of squares, as rmsnorm.wgsl.
fn norm_factor(ss: f32) -> f32 {
    return 1.0 / sqrt(ss / f32(p.cols) + p.eps);
}
#endif

#ifdef GATED
fn store_gated(t: u32, row: u32, g: f32, u: f32) {
#ifdef SILU
    out[t * p.out_rows + row] = g / (1.0 + exp(-g)) * u;
#else
    let a = clamp(0.7978846 * g * (1.0 + 0.044715 * g * g), -15.0, 15.0);
    let e = exp(2.0 * a);
    out[t * p.out_rows + row] = 0.5 * g * (1.0 + (e - 1.0) / (e + 1.0)) * u;
#endif
}
#endif
