// Workgroup reductions shared by matvec, rmsnorm, softmax and attention.
// Included after the kernel's own source, which defines `const WG: u32`
// (the workgroup size, at most 256) and, in the SUBGROUP variant, fills
// `sg_size` / `sg_lane` from the entry point's builtins.
// Every thread of the workgroup must call these (they hold barriers).

var<workgroup> red: array<f32, 256>;

#ifdef SUBGROUP
var<private> sg_size: u32;
var<private> sg_lane: u32;

fn wg_sum(v: f32, lid: u32) -> f32 {
    let s = subgroupAdd(v);
    if sg_lane == 0u { red[lid / sg_size] = s; }
    workgroupBarrier();
    var t = 0.0;
    for (var i = 0u; i < (WG + sg_size - 1u) / sg_size; i++) { t += red[i]; }
    workgroupBarrier();
    return t;
}

fn wg_max(v: f32, lid: u32) -> f32 {
    let s = subgroupMax(v);
    if sg_lane == 0u { red[lid / sg_size] = s; }
    workgroupBarrier();
    var t = red[0];
    for (var i = 1u; i < (WG + sg_size - 1u) / sg_size; i++) { t = max(t, red[i]); }
    workgroupBarrier();
    return t;
}
#else
fn wg_sum(v: f32, lid: u32) -> f32 {
    red[lid] = v;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
        if lid < s { red[lid] += red[lid + s]; }
        workgroupBarrier();
    }
    let t = red[0];
    workgroupBarrier();
    return t;
}

fn wg_max(v: f32, lid: u32) -> f32 {
    red[lid] = v;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
        if lid < s { red[lid] = max(red[lid], red[lid + s]); }
        workgroupBarrier();
    }
    let t = red[0];
    workgroupBarrier();
    return t;
}
#endif
