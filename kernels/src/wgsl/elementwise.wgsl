// Element-wise ops over n f32 values, one thread each (workgroup 64, flattened
// over x then y). Bindings: 0 uniform EltParams, 1 a (f32, read),
// 2 out (f32, read_write); `scale` and `fill` do not use binding 1.
//   silu_mul: out = silu(out) * a      (SwiGLU: out holds gate, a holds up)
//   gelu_mul: out = gelu_tanh(out) * a (GeGLU)
//   add:      out = out + a            (residual)
//   scale:    out = out * p.scale
//   add_bias: out[i] += a[i % width]   (a row bias on every token)
//   axpy:     out[out_off + i] += p.scale * a[a_off + i]  (an expert's weighted row)
//   fill:     out[i] = p.scale
struct EltParams {
    n: u32,
    scale: f32,
    width: u32,
    a_off: u32,
    out_off: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: EltParams;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

fn index(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return gid.y * nwg.x * 64u + gid.x;
}

@compute @workgroup_size(64)
fn silu_mul(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(gid, nwg);
    if i >= p.n { return; }
    let g = out[i];
    out[i] = g / (1.0 + exp(-g)) * a[i];
}

@compute @workgroup_size(64)
fn gelu_mul(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(gid, nwg);
    if i >= p.n { return; }
    let g = out[i];
    // tanh written out: WGSL tanh overflows to NaN for large inputs on some drivers.
    let u = clamp(0.7978846 * g * (1.0 + 0.044715 * g * g), -15.0, 15.0);
    let e = exp(2.0 * u);
    out[i] = 0.5 * g * (1.0 + (e - 1.0) / (e + 1.0)) * a[i];
}

@compute @workgroup_size(64)
fn add(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(gid, nwg);
    if i >= p.n { return; }
    out[i] += a[i];
}

@compute @workgroup_size(64)
fn scale(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(gid, nwg);
    if i >= p.n { return; }
    out[i] *= p.scale;
}

@compute @workgroup_size(64)
fn add_bias(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(gid, nwg);
    if i >= p.n { return; }
    out[i] += a[i % p.width];
}

@compute @workgroup_size(64)
fn axpy(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(gid, nwg);
    if i >= p.n { return; }
    out[p.out_off + i] += p.scale * a[p.a_off + i];
}

@compute @workgroup_size(64)
fn fill(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(gid, nwg);
    if i >= p.n { return; }
    out[i] = p.scale;
}
