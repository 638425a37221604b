// Combines the split partials of attention.wgsl: for (head = wid.x, query = wid.y),
// M = max m_s, out[d] = sum_s acc_s[d] e^(m_s - M) / sum_s l_s e^(m_s - M).
// Bindings: 0 uniform AttnParams (as attention.wgsl), 1 partials (f32),
// 2 out (f32, n_q x n_heads x head_dim). Workgroup: 64 threads over the dims.
@group(0) @binding(1) var<storage, read> part: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    let h = wid.x;
    let qi = wid.y;
    let stride = p.head_dim + 2u;
    let base = (qi * p.n_heads + h) * p.n_splits * stride;
    var mx = -1.0e30;
    for (var s = 0u; s < p.n_splits; s++) { mx = max(mx, part[base + s * stride]); }
    var l = 0.0;
    for (var s = 0u; s < p.n_splits; s++) {
        l += part[base + s * stride + 1u] * exp(part[base + s * stride] - mx);
    }
    let inv = 1.0 / l;
    let ob = ((p.tok0 + qi) * p.n_heads + h) * p.head_dim;
    for (var d = lid; d < p.head_dim; d += 64u) {
        var o = 0.0;
        for (var s = 0u; s < p.n_splits; s++) {
            o += part[base + s * stride + 2u + d] * exp(part[base + s * stride] - mx);
        }
        out[ob + d] = o * inv;
    }
}
