// Matrix-vector product on quantized weights (decode) for real GPUs:
// out[t*out_rows + row0 + r] = sum_c W[r][c] * x[t*cols + c], for one
// row-part of a weight. Bindings: 2 x (vec4 f32), the rest and the epilogue
// (store) as mat_out.wgsl; GATED sums rows r and r + rows of a [gate; up]
// weight.
// Workgroup: WG lanes (a pipeline constant: one subgroup where the adapter
// has a fixed subgroup size) computing NR consecutive rows (a pipeline
// constant, at most MAX_NR). A row is cut into units of 4*UQ weights (the
// matvec_<type> snippet: UQ, unit_quad() and unit_dot()); lane i takes units
// i, i+WG, ..., loads the unit's activations once and dots them with the
// unit of each of the NR rows (whole words, both nibbles, scales once per
// unit). The NR sums are reduced by subgroupAdd (SUBGROUP) then across
// subgroups through workgroup memory, or by a workgroup-memory tree.
// INT_DOT (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0): x comes as int8 blocks and unit_dot_i8() dots them
// with the weights' integers by dot4I8Packed (4 products per instruction
// where the device has integer dot products), scaled once per unit.
// NORM (mat_out.wgsl): the output norm fused in; x_quad() multiplies each
// loaded quad by the norm weight and sums its squares into one more slot.
// Workgroups run along x, then y (a dispatch dimension is capped at 65535).
override WG: u32 = 64u;
override NR: u32 = 2u;
/// Whether the workgroup is exactly one subgroup (no cross-subgroup step).
override ONE_SUBGROUP: bool = false;
const MAX_NR: u32 = 4u;
#ifdef GATED
const SLOTS: u32 = 2u * MAX_NR;
#else
#ifdef NORM
// One more slot: the sum of x^2 (mat_out.wgsl), reduced with the rows.
const SLOTS: u32 = MAX_NR + 1u;
#else
const SLOTS: u32 = MAX_NR;
#endif
#endif

#ifdef INT_DOT
// Activations as int8 blocks of 32 (quantize_q8.wgsl): one word per quad,
// then one f32 scale per block.
@group(0) @binding(2) var<storage, read> xq: array<u32>;
#else
@group(0) @binding(2) var<storage, read> x: array<vec4<f32>>;
#endif
#ifdef NORM
@group(0) @binding(7) var<storage, read> norm_w: array<vec4<f32>>;
#endif

#ifndef INT_DOT
// Quad q of token t's x, times the norm weight and its square added to
// `ss` under NORM.
fn x_quad(t: u32, q: u32, ss: ptr<function, f32>) -> vec4<f32> {
    let v = x[t * (p.cols / 4u) + q];
#ifdef NORM
    *ss += dot(v, v);
    return v * norm_w[q];
#else
    return v;
#endif
}
#endif

var<workgroup> part: array<f32, 2048>;

// The weight row of sum slot `s`: rows r0..r0+NR, then (GATED) their up rows.
fn slot_row(r0: u32, s: u32) -> u32 {
    if s < NR { return r0 + s; }
    return r0 + s - NR + p.rows;
}

@compute @workgroup_size(WG)
fn main(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
#ifdef SUBGROUP
    @builtin(subgroup_size) sgs: u32,
    @builtin(subgroup_invocation_id) sgl: u32,
#endif
) {
    let r0 = (wid.y * nwg.x + wid.x) * NR;
    if r0 >= p.rows { return; }
    let nr = min(NR, p.rows - r0);
#ifdef GATED
    let ns = 2u * NR;
#else
    let ns = NR;
#endif
#ifdef NORM
    let nred = ns + 1u;
#else
    let nred = ns;
#endif
    let nq = p.cols / 4u;
    let nu = nq / UQ;
    for (var t = 0u; t < p.n_tokens; t++) {
        var acc: array<f32, SLOTS>;
#ifdef INT_DOT
        // A unit lies within one block of 32.
        for (var u = lid; u < nu; u += WG) {
            var xr: array<u32, UQ>;
            for (var i = 0u; i < UQ; i++) {
                xr[i] = xq[t * nq + unit_quad(u, i)];
            }
            let dx = bitcast<f32>(xq[p.n_tokens * nq + (t * nq + unit_quad(u, 0u)) / 8u]);
            for (var s = 0u; s < ns; s++) {
                if s % NR < nr {
                    acc[s] += unit_dot_i8(slot_row(r0, s), u, &xr) * dx;
                }
            }
        }
#else
        var ss = 0.0;
        for (var u = lid; u < nu; u += WG) {
            var xr: array<vec4<f32>, UQ>;
            for (var i = 0u; i < UQ; i++) {
                xr[i] = x_quad(t, unit_quad(u, i), &ss);
            }
            for (var s = 0u; s < ns; s++) {
                if s % NR < nr {
                    acc[s] += unit_dot(slot_row(r0, s), u, &xr);
                }
            }
        }
        // F32/F16 rows need only be multiples of 4 long: the quads past the
        // last whole unit, one at a time.
        for (var q = nu * UQ + lid; q < nq; q += WG) {
            let xv = x_quad(t, q, &ss);
            for (var s = 0u; s < ns; s++) {
                if s % NR < nr {
                    acc[s] += dot(dq4(slot_row(r0, s), q), xv);
                }
            }
        }
#ifdef NORM
        acc[ns] = ss;
#endif
#endif
        // Sum slot s over the workgroup into part[s] (read after a barrier).
#ifdef SUBGROUP
        for (var s = 0u; s < nred; s++) {
            acc[s] = subgroupAdd(acc[s]);
        }
        let n_sg = (WG + sgs - 1u) / sgs;
        if !ONE_SUBGROUP {
            if sgl == 0u {
                for (var s = 0u; s < nred; s++) { part[s * 64u + lid / sgs] = acc[s]; }
            }
            workgroupBarrier();
            if lid == 0u {
                for (var s = 0u; s < nred; s++) {
                    var v = 0.0;
                    for (var g = 0u; g < n_sg; g++) { v += part[s * 64u + g]; }
                    acc[s] = v;
                }
            }
        }
#else
        for (var s = 0u; s < nred; s++) { part[s * WG + lid] = acc[s]; }
        workgroupBarrier();
        for (var h = WG / 2u; h > 0u; h >>= 1u) {
            if lid < h {
                for (var s = 0u; s < nred; s++) { part[s * WG + lid] += part[s * WG + lid + h]; }
            }
            workgroupBarrier();
        }
        for (var s = 0u; s < nred; s++) { acc[s] = part[s * WG]; }
#endif
        if lid == 0u {
            for (var i = 0u; i < nr; i++) {
#ifdef GATED
                store_gated(t, p.row0 + r0 + i, acc[i], acc[i + NR]);
#else
#ifdef NORM
                store(t, p.row0 + r0 + i, acc[i] * norm_factor(acc[ns]));
#else
                store(t, p.row0 + r0 + i, acc[i]);
#endif
#endif
            }
        }
        workgroupBarrier();
    }
}
