// Exact (erf) GELU in place: x[i] = 0.5 * x[i] * (1 + erf(x[i] / sqrt(2))),
// the feed-forward activation of BERT encoders.
// Bindings: 0 uniform GeluParams, 1 x (f32, read_write).
// Workgroup: 64 threads, one value each (workgroups along x, then y).
// WGSL has no erf: the rational approximation of the CPU kernel
// (`erf_fast`, Eigen's coefficients), within 1e-6 of the exact one.

struct GeluParams {
    n: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: GeluParams;
@group(0) @binding(1) var<storage, read_write> x: array<f32>;

fn erf_fast(v: f32) -> f32 {
    let z = clamp(v, -4.0, 4.0);
    let z2 = z * z;
    var a = z2 * -2.7261423e-10 + 2.7706814e-8;
    a = z2 * a + -2.101024e-6;
    a = z2 * a + -5.6925064e-5;
    a = z2 * a + -7.3499063e-4;
    a = z2 * a + -2.9546e-3;
    a = z2 * a + -1.6096033e-2;
    a = z * a;
    var b = z2 * -1.4566072e-5 + -2.1337406e-4;
    b = z2 * b + -1.682827e-3;
    b = z2 * b + -7.373329e-3;
    b = z2 * b + -1.426474e-2;
    return a / b;
}

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.y * nwg.x * 64u + gid.x;
    if i >= p.n { return; }
    let v = x[i];
    x[i] = 0.5 * v * (1.0 + erf_fast(v * 0.70710678118654752));
}
