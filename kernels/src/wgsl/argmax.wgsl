// Argmax over rows (greedy sampling): out[r] = the first index of the largest
// value of row r. Bindings: 0 uniform ArgmaxParams, 1 x (f32), 2 out (u32).
// Workgroup: 256 threads = one row; each thread scans a strided slice, then a
// tree reduction over (value, index) keeps the lower index on ties.
struct ArgmaxParams {
    rows: u32,
    dim: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: ArgmaxParams;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<u32>;

var<workgroup> vals: array<f32, 256>;
var<workgroup> idxs: array<u32, 256>;

@compute @workgroup_size(256)
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    let r = wid.x;
    if r >= p.rows { return; }
    let base = r * p.dim;
    var bv = -3.4e38;
    var bi = 0xFFFFFFFFu;
    for (var i = lid; i < p.dim; i += 256u) {
        let v = x[base + i];
        if v > bv { bv = v; bi = i; }
    }
    vals[lid] = bv;
    idxs[lid] = bi;
    workgroupBarrier();
    for (var s = 128u; s > 0u; s >>= 1u) {
        if lid < s {
            let ov = vals[lid + s];
            let oi = idxs[lid + s];
            if ov > vals[lid] || (ov == vals[lid] && oi < idxs[lid]) { vals[lid] = ov; idxs[lid] = oi; }
        }
        workgroupBarrier();
    }
    // No value above the start (all NaN): 0, as the CPU's argmax gives.
    if lid == 0u { out[r] = select(idxs[0], 0u, idxs[0] >= p.dim); }
}
