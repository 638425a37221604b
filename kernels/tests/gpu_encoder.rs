//! GPU encoder kernels (LayerNorm with bias, exact GELU, attention within
//! segments) against their references in `infer_kernels::ops`, on both
//! kernel paths.

mod gpu_util;

use gpu_util::{assert_close, both, rand_f32, rng};
use infer_kernels::gpu::SegmentAttn;
use infer_kernels::ops;

/// Reductions in a different order: a few ulps of the largest value.
const NORM_REL_TOL: f32 = 1e-5;
/// The rational erf of the kernel is within 1e-6 of the exact one.
const GELU_REL_TOL: f32 = 1e-5;
/// Sums of exponentials in another order, one division moved.
const ATTN_REL_TOL: f32 = 1e-5;

#[test]
fn gpu_layernorm_matches_reference() {
    let (rows, dim) = (5, 384);
    let mut r = rng(11);
    // Rows off zero, so the mean matters.
    let x: Vec<f32> = rand_f32(&mut r, rows * dim, 3.0).iter().map(|v| v + 2.0).collect();
    let (w, b) = (rand_f32(&mut r, dim, 1.0), rand_f32(&mut r, dim, 0.5));
    let mut want = vec![0.0; rows * dim];
    for (o, xr) in want.chunks_exact_mut(dim).zip(x.chunks_exact(dim)) {
        ops::layernorm_ref(xr, &w, &b, 1e-12, o);
    }
    for ctx in both() {
        let (xb, wb, bb) = (ctx.upload_f32(&x).unwrap(), ctx.upload_f32(&w).unwrap(), ctx.upload_f32(&b).unwrap());
        let mut s = ctx.step();
        s.layernorm(&xb, &wb, &bb, (rows, dim), 1e-12).unwrap();
        s.read(&xb);
        let got = s.submit().unwrap()[0].f32();
        assert_close(&format!("layernorm sg={}", ctx.uses_subgroups()), &got, &want, NORM_REL_TOL);
    }
}

#[test]
fn gpu_gelu_matches_reference() {
    // Past ±4/√2 the erf clamps; the tails in both directions.
    let x: Vec<f32> = (0..1000).map(|i| (i as f32 - 500.0) / 50.0).collect();
    let want: Vec<f32> = x.iter().map(|&v| ops::gelu_erf(v)).collect();
    let ctx = gpu_util::fast();
    let xb = ctx.upload_f32(&x).unwrap();
    let mut s = ctx.step();
    s.gelu(&xb, x.len()).unwrap();
    s.read(&xb);
    assert_close("gelu", &s.submit().unwrap()[0].f32(), &want, GELU_REL_TOL);
}

#[test]
fn gpu_segment_attention_matches_reference() {
    // Three texts of different lengths (one past the 64 threads), GQA 4:2.
    let segs = [(0usize, 3usize), (3, 70), (73, 1)];
    let (n_heads, n_kv_heads, hd) = (4, 2, 32);
    let n = 74;
    let mut r = rng(12);
    let q = rand_f32(&mut r, n * n_heads * hd, 1.0);
    let k = rand_f32(&mut r, n * n_kv_heads * hd, 1.0);
    let v = rand_f32(&mut r, n * n_kv_heads * hd, 1.0);
    let scale = 1.0 / (hd as f32).sqrt();
    let mut want = vec![0.0; n * n_heads * hd];
    ops::attention_segments_ref(&q, &k, &v, &segs, n_heads, n_kv_heads, hd, scale, &mut want);
    for ctx in both() {
        let (qb, kb, vb) = (ctx.upload_f32(&q).unwrap(), ctx.upload_f32(&k).unwrap(), ctx.upload_f32(&v).unwrap());
        let ob = ctx.buffer(n * n_heads * hd).unwrap();
        let mut s = ctx.step();
        for &(tok0, len) in &segs {
            let shape = SegmentAttn { tok0, n: len, n_heads, n_kv_heads, head_dim: hd, scale };
            s.segment_attention(&qb, &kb, &vb, &ob, shape).unwrap();
        }
        s.read(&ob);
        let got = s.submit().unwrap()[0].f32();
        assert_close(&format!("segment attention sg={}", ctx.uses_subgroups()), &got, &want, ATTN_REL_TOL);
    }
    // A segment past the kernel's key table is refused, not cut.
    let ctx = gpu_util::fast();
    let big = ctx.buffer(2000 * 64).unwrap();
    let shape = SegmentAttn { tok0: 0, n: 2000, n_heads: 2, n_kv_heads: 2, head_dim: 32, scale };
    assert!(ctx.step().segment_attention(&big, &big, &big, &big, shape).is_err());
}
