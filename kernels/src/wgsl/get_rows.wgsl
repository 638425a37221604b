// Embedding lookup from a quantized matrix: out[t*cols + c] = W[ids[t]][c] for
// the ids that fall in this row-part (rows row0..row0+rows); other tokens are
// left for the dispatch of their part.
// Bindings: 0 uniform RowsParams, 1 weights (u32), 2 ids (u32), 3 out (vec4 f32).
// Workgroup: 64 threads along the row's quads; workgroup y = token.
struct RowsParams {
    rows: u32,
    cols: u32,
    n_ids: u32,
    row0: u32,
    scale_off: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: RowsParams;
@group(0) @binding(1) var<storage, read> w: array<u32>;
@group(0) @binding(2) var<storage, read> ids: array<u32>;
@group(0) @binding(3) var<storage, read_write> out: array<vec4<f32>>;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let t = gid.y;
    let q = gid.x;
    let nq = p.cols / 4u;
    if t >= p.n_ids || q >= nq { return; }
    let id = ids[t];
    if id < p.row0 || id >= p.row0 + p.rows { return; }
    out[t * nq + q] = dq4(id - p.row0, q);
}
