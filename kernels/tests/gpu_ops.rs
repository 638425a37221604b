//! GPU element-wise, norm, RoPE, softmax, argmax and attention kernels
//! against the references in `infer_kernels::ops`, on both kernel paths.

mod gpu_util;

use gpu_util::{assert_close, both, fast, gpu_kernels, rand_f32, rng};
use half::f16;
use infer_kernels::gpu::{AttnShape, GpuContext, GpuKvCache, GpuWeight, RopeShape};
use infer_kernels::QuantType;
use infer_kernels::ops;

/// Reductions in a different order: a few ulps of the largest value.
const NORM_REL_TOL: f32 = 1e-5;
/// GPU sin/cos/pow are not correctly rounded; angles up to ~1000 rad.
const ROPE_REL_TOL: f32 = 2e-4;
const ELTWISE_REL_TOL: f32 = 1e-5;
/// K/V are rounded to f16 before the reference sees them; what is left is
/// the order of the online softmax.
const ATTN_REL_TOL: f32 = 1e-4;

fn run(
    ctx: &GpuContext,
    f: impl FnOnce(&mut infer_kernels::gpu::GpuStep),
) -> infer_kernels::gpu::GpuStep {
    let mut s = ctx.step();
    f(&mut s);
    s
}

#[test]
fn gpu_rmsnorm_matches_reference() {
    let (rows, dim) = (6, 640);
    let mut r = rng(1);
    let x = rand_f32(&mut r, rows * dim, 3.0);
    let w = rand_f32(&mut r, dim, 1.0);
    let mut want = vec![0.0; rows * dim];
    for (o, xr) in want.chunks_exact_mut(dim).zip(x.chunks_exact(dim)) {
        ops::rmsnorm_ref(xr, &w, 1e-6, o);
    }
    for ctx in both() {
        let (xb, wb, ob) = (
            ctx.upload_f32(&x).unwrap(),
            ctx.upload_f32(&w).unwrap(),
            ctx.buffer(rows * dim).unwrap(),
        );
        let mut s = run(ctx, |s| s.rmsnorm(&xb, &wb, rows, dim, 1e-6, &ob).unwrap());
        s.read(&ob);
        assert_close(
            &format!("rmsnorm sg={}", ctx.uses_subgroups()),
            &s.submit().unwrap()[0].f32(),
            &want,
            NORM_REL_TOL,
        );
    }
}

#[test]
fn gpu_rope_matches_reference_both_orderings() {
    let (n_tokens, n_heads, head_dim, pos0) = (5, 3, 64, 1000);
    let x = rand_f32(&mut rng(2), n_tokens * n_heads * head_dim, 1.0);
    for neox in [false, true] {
        let mut want = x.clone();
        for (t, tok) in want.chunks_exact_mut(n_heads * head_dim).enumerate() {
            ops::rope_ref(tok, head_dim, pos0 + t, 10000.0, neox);
        }
        let ctx = fast();
        let xb = ctx.upload_f32(&x).unwrap();
        let mut s = run(ctx, |s| {
            s.rope(&xb, n_tokens, n_heads, head_dim, pos0, 10000.0, neox)
                .unwrap()
        });
        s.read(&xb);
        assert_close(
            &format!("rope neox={neox}"),
            &s.submit().unwrap()[0].f32(),
            &want,
            ROPE_REL_TOL,
        );
    }
}

/// The fused norms compute what the unfused ops do: the residual add then
/// RMSNorm, and RMSNorm in place.
#[test]
fn gpu_fused_norms_match_reference() {
    let (rows, dim) = (6, 640);
    let mut r = rng(11);
    let (acc, x) = (
        rand_f32(&mut r, rows * dim, 3.0),
        rand_f32(&mut r, rows * dim, 1.0),
    );
    let w = rand_f32(&mut r, dim, 1.0);
    let sum: Vec<f32> = acc.iter().zip(&x).map(|(a, b)| a + b).collect();
    let mut want = vec![0.0; rows * dim];
    for (o, xr) in want.chunks_exact_mut(dim).zip(sum.chunks_exact(dim)) {
        ops::rmsnorm_ref(xr, &w, 1e-6, o);
    }
    for ctx in both() {
        let (ab, xb, wb, ob) = (
            ctx.upload_f32(&acc).unwrap(),
            ctx.upload_f32(&x).unwrap(),
            ctx.upload_f32(&w).unwrap(),
            ctx.buffer(rows * dim).unwrap(),
        );
        let mut s = run(ctx, |s| {
            s.add_rmsnorm(&ab, &xb, &wb, rows, dim, 1e-6, &ob).unwrap()
        });
        s.read(&ab);
        s.read(&ob);
        let got = s.submit().unwrap();
        let sg = ctx.uses_subgroups();
        assert_eq!(got[0].f32(), sum, "add_rmsnorm: the residual sg={sg}");
        assert_close(
            &format!("add_rmsnorm sg={sg}"),
            &got[1].f32(),
            &want,
            NORM_REL_TOL,
        );
        let sb = ctx.upload_f32(&sum).unwrap();
        let mut s = run(ctx, |s| {
            s.rmsnorm_inplace(&sb, &wb, rows, dim, 1e-6).unwrap()
        });
        s.read(&sb);
        assert_close(
            &format!("rmsnorm_inplace sg={sg}"),
            &s.submit().unwrap()[0].f32(),
            &want,
            NORM_REL_TOL,
        );
    }
}

/// Partial rotation, per-pair factors and a magnitude scale (llama3,
/// LongRoPE, YaRN) against the scaled reference, both orderings.
#[test]
fn gpu_rope_scaled_matches_reference() {
    let (n_tokens, n_heads, head_dim, n_rot, pos0) = (4, 3, 64, 32, 300);
    let mut r = rng(21);
    let x = rand_f32(&mut r, n_tokens * n_heads * head_dim, 1.0);
    let mult: Vec<f32> = rand_f32(&mut r, n_rot / 2, 1.0).iter().map(|v| 0.2 + v.abs()).collect();
    for neox in [false, true] {
        let mut want = x.clone();
        for (t, tok) in want.chunks_exact_mut(n_heads * head_dim).enumerate() {
            ops::rope_scaled_ref(tok, head_dim, n_rot, pos0 + t, 5e5, 0.5, Some(&mult), 1.1, neox);
        }
        let ctx = fast();
        let (xb, mb) = (ctx.upload_f32(&x).unwrap(), ctx.upload_f32(&mult).unwrap());
        let shape = RopeShape {
            tok0: 0,
            n_tokens,
            head_dim,
            n_rot,
            pos0,
            base: 5e5,
            freq_scale: 0.5,
            neox,
            mscale: 1.1,
            mult: Some(&mb),
        };
        let mut s = run(ctx, |s| s.rope_with(&xb, n_heads, shape).unwrap());
        s.read(&xb);
        assert_close(&format!("rope scaled neox={neox}"), &s.submit().unwrap()[0].f32(), &want, ROPE_REL_TOL);
    }
}

/// Row bias, weighted row accumulation and fill: the MoE and bias kernels.
#[test]
fn gpu_bias_axpy_fill_match_reference() {
    let (rows, width) = (5, 96);
    let mut r = rng(22);
    let x = rand_f32(&mut r, rows * width, 1.0);
    let bias = rand_f32(&mut r, width, 1.0);
    let a = rand_f32(&mut r, 3 * width, 1.0);
    let mut want_bias = x.clone();
    want_bias.chunks_exact_mut(width).for_each(|row| ops::add_ref(row, &bias));
    let mut want_axpy = x.clone();
    for (o, v) in want_axpy[2 * width..3 * width].iter_mut().zip(&a[width..2 * width]) {
        *o += 0.375 * v;
    }
    for ctx in both() {
        let (xb, bb) = (ctx.upload_f32(&x).unwrap(), ctx.upload_f32(&bias).unwrap());
        let (yb, ab) = (ctx.upload_f32(&x).unwrap(), ctx.upload_f32(&a).unwrap());
        let zb = ctx.upload_f32(&x).unwrap();
        let mut s = run(ctx, |s| {
            s.add_bias(&xb, &bb, rows * width, width).unwrap();
            s.axpy(&yb, 2 * width, &ab, width, width, 0.375).unwrap();
            s.fill(&zb, -2.5, rows * width).unwrap();
        });
        s.read(&xb);
        s.read(&yb);
        s.read(&zb);
        let got = s.submit().unwrap();
        assert_close("add_bias", &got[0].f32(), &want_bias, ELTWISE_REL_TOL);
        assert_close("axpy", &got[1].f32(), &want_axpy, ELTWISE_REL_TOL);
        assert_close("fill", &got[2].f32(), &vec![-2.5; rows * width], ELTWISE_REL_TOL);
    }
}

/// RoPE on queries and keys in one dispatch, as two separate ones.
#[test]
fn gpu_rope_pair_matches_reference() {
    let (n_tokens, n_heads, n_kv_heads, head_dim, pos0) = (5, 9, 3, 64, 77);
    let mut r = rng(12);
    let q = rand_f32(&mut r, n_tokens * n_heads * head_dim, 1.0);
    let k = rand_f32(&mut r, n_tokens * n_kv_heads * head_dim, 1.0);
    for neox in [false, true] {
        let (mut want_q, mut want_k) = (q.clone(), k.clone());
        for (t, tok) in want_q.chunks_exact_mut(n_heads * head_dim).enumerate() {
            ops::rope_ref(tok, head_dim, pos0 + t, 10000.0, neox);
        }
        for (t, tok) in want_k.chunks_exact_mut(n_kv_heads * head_dim).enumerate() {
            ops::rope_ref(tok, head_dim, pos0 + t, 10000.0, neox);
        }
        let ctx = fast();
        let (qb, kb) = (ctx.upload_f32(&q).unwrap(), ctx.upload_f32(&k).unwrap());
        let mut s = run(ctx, |s| {
            let shape = RopeShape {
                tok0: 0,
                n_tokens,
                head_dim,
                n_rot: head_dim,
                pos0,
                base: 10000.0,
                freq_scale: 1.0,
                neox,
                mscale: 1.0,
                mult: None,
            };
            s.rope_pair(&qb, &kb, (n_heads, n_kv_heads), shape).unwrap()
        });
        s.read(&qb);
        s.read(&kb);
        let got = s.submit().unwrap();
        assert_close(
            &format!("rope_pair q neox={neox}"),
            &got[0].f32(),
            &want_q,
            ROPE_REL_TOL,
        );
        assert_close(
            &format!("rope_pair k neox={neox}"),
            &got[1].f32(),
            &want_k,
            ROPE_REL_TOL,
        );
    }
}

#[test]
fn gpu_gates_add_and_scale_match_reference() {
    let n = 1000;
    let mut r = rng(3);
    let (g, u) = (rand_f32(&mut r, n, 6.0), rand_f32(&mut r, n, 2.0));
    let ctx = fast();
    let mut want_silu = vec![0.0; n];
    ops::swiglu_ref(&g, &u, &mut want_silu);
    let mut want_gelu = vec![0.0; n];
    ops::geglu_ref(&g, &u, &mut want_gelu);
    let mut want_add = g.clone();
    ops::add_ref(&mut want_add, &u);
    let want_scale: Vec<f32> = g.iter().map(|v| v * 25.3).collect();
    let bufs: Vec<_> = (0..4).map(|_| ctx.upload_f32(&g).unwrap()).collect();
    let ub = ctx.upload_f32(&u).unwrap();
    let mut s = ctx.step();
    s.silu_mul(&bufs[0], &ub, n).unwrap();
    s.gelu_mul(&bufs[1], &ub, n).unwrap();
    s.add(&bufs[2], &ub, n).unwrap();
    s.scale(&bufs[3], 25.3, n).unwrap();
    for b in &bufs {
        s.read(b);
    }
    let got = s.submit().unwrap();
    assert_close("silu_mul", &got[0].f32(), &want_silu, ELTWISE_REL_TOL);
    assert_close("gelu_mul", &got[1].f32(), &want_gelu, ELTWISE_REL_TOL);
    assert_close("add", &got[2].f32(), &want_add, ELTWISE_REL_TOL);
    assert_close("scale", &got[3].f32(), &want_scale, ELTWISE_REL_TOL);
}

#[test]
fn gpu_softmax_and_argmax_match_reference() {
    let (rows, dim) = (3, 5000);
    let mut x = rand_f32(&mut rng(4), rows * dim, 20.0);
    // A tie: the first index must win.
    x[dim + 17] = 25.0;
    x[dim + 4000] = 25.0;
    let mut want = x.clone();
    want.chunks_exact_mut(dim).for_each(ops::softmax_ref);
    let want_idx: Vec<u32> = x
        .chunks_exact(dim)
        .map(|r| {
            r.iter()
                .enumerate()
                .fold(0, |b, (i, &v)| if v > r[b] { i } else { b }) as u32
        })
        .collect();
    assert_eq!(want_idx[1], 17);
    for ctx in both() {
        let xb = ctx.upload_f32(&x).unwrap();
        let idx = ctx.buffer(rows).unwrap();
        let mut s = ctx.step();
        s.argmax(&xb, rows, dim, &idx).unwrap();
        s.softmax(&xb, rows, dim).unwrap();
        s.read(&idx);
        s.read(&xb);
        let got = s.submit().unwrap();
        assert_eq!(got[0].u32(), want_idx, "argmax");
        assert_close(
            &format!("softmax sg={}", ctx.uses_subgroups()),
            &got[1].f32(),
            &want,
            NORM_REL_TOL,
        );
    }
}

fn round_f16(v: &[f32]) -> Vec<f32> {
    v.iter().map(|&x| f16::from_f32(x).to_f32()).collect()
}

/// Reference for query at position `pos` over cache rows (f16-rounded).
#[allow(clippy::too_many_arguments)]
fn attn_want(q: &[f32], k: &[f32], v: &[f32], sh: &AttnShape, pos: usize, out: &mut [f32]) {
    let kv_dim = sh.n_kv_heads * sh.head_dim;
    let lo = if sh.window > 0 && pos + 1 > sh.window {
        pos + 1 - sh.window
    } else {
        0
    };
    let n_kv = pos + 1 - lo;
    ops::attention_ref(
        q,
        &k[lo * kv_dim..(pos + 1) * kv_dim],
        &v[lo * kv_dim..(pos + 1) * kv_dim],
        n_kv,
        sh.n_heads,
        sh.n_kv_heads,
        sh.head_dim,
        sh.scale,
        out,
    );
}

fn check_attention(ctx: &GpuContext, n_ctx: usize, n_q: usize, window: usize, head_dim: usize, seed: u64) {
    check_attention_at(ctx, (n_ctx, n_q, window, head_dim, seed), 0, 0)
}

/// As `check_attention`, with the queries at rows `tok0..` of bigger q/out
/// buffers and the sequence's cache rows from `kv_base` (a batch segment).
fn check_attention_at(
    ctx: &GpuContext,
    shape: (usize, usize, usize, usize, u64),
    tok0: usize,
    kv_base: usize,
) {
    check_attention_gqa(ctx, (4, 2), shape, tok0, kv_base)
}

/// As `check_attention_at` with `n_heads` query heads over `n_kv_heads`.
fn check_attention_gqa(
    ctx: &GpuContext,
    (n_heads, n_kv_heads): (usize, usize),
    (n_ctx, n_q, window, head_dim, seed): (usize, usize, usize, usize, u64),
    tok0: usize,
    kv_base: usize,
) {
    let kv_dim = n_kv_heads * head_dim;
    let mut r = rng(seed);
    let k = rand_f32(&mut r, n_ctx * kv_dim, 1.0);
    let v = rand_f32(&mut r, n_ctx * kv_dim, 1.0);
    let q = rand_f32(&mut r, n_q * n_heads * head_dim, 1.0);
    let pos0 = n_ctx - n_q;
    let sh = AttnShape {
        n_q,
        n_heads,
        n_kv_heads,
        head_dim,
        pos0,
        window,
        scale: 1.0 / (head_dim as f32).sqrt(),
        tok0: 0,
        kv_base: 0,
    };
    let (k16, v16) = (round_f16(&k), round_f16(&v));
    let qd = n_heads * head_dim;
    let mut want = vec![0.0; n_q * qd];
    for i in 0..n_q {
        attn_want(
            &q[i * qd..(i + 1) * qd],
            &k16,
            &v16,
            &sh,
            pos0 + i,
            &mut want[i * qd..(i + 1) * qd],
        );
    }
    let cache = GpuKvCache::new(ctx, kv_base + n_ctx + 8, kv_dim).unwrap();
    // Earlier positions in one write, the new tokens in the same step as attention.
    let (kb, vb) = (ctx.upload_f32(&k).unwrap(), ctx.upload_f32(&v).unwrap());
    let mut s = ctx.step();
    s.kv_write(&cache, &kb, &vb, pos0, kv_base).unwrap();
    s.submit().unwrap();
    // The new rows sit after `tok0` rows of other sequences' tokens.
    let pad = |x: &[f32], w: usize| [vec![9.0; tok0 * w], x.to_vec()].concat();
    let (kn, vn) = (
        ctx.upload_f32(&pad(&k[pos0 * kv_dim..], kv_dim)).unwrap(),
        ctx.upload_f32(&pad(&v[pos0 * kv_dim..], kv_dim)).unwrap(),
    );
    let (qb, ob) = (ctx.upload_f32(&pad(&q, qd)).unwrap(), ctx.buffer((tok0 + n_q) * qd).unwrap());
    let mut s = ctx.step();
    s.kv_write_rows(&cache, &kn, &vn, tok0, n_q, kv_base + pos0).unwrap();
    s.attention(&qb, &cache, AttnShape { tok0, kv_base, ..sh }, &ob).unwrap();
    s.read(&ob);
    let what = format!(
        "attention {n_heads}/{n_kv_heads} heads of {head_dim} n_ctx={n_ctx} n_q={n_q} window={window} f16/sg/cpu-kernels={}/{}/{}",
        ctx.uses_f16(),
        ctx.uses_subgroups(),
        ctx.uses_cpu_device_kernels()
    );
    assert_close(&what, &s.submit().unwrap()[0].f32()[tok0 * qd..], &want, ATTN_REL_TOL);
}

#[test]
fn gpu_attention_of_a_batch_segment_matches_reference() {
    for ctx in both() {
        // Decode and a prompt chunk of a sequence whose cache starts at row 300,
        // their rows after those of other sequences.
        check_attention_at(ctx, (200, 1, 0, 64, 11), 3, 300);
        check_attention_at(ctx, (50, 20, 7, 64, 12), 5, 64);
    }
}

#[test]
fn gpu_attention_decode_matches_reference() {
    for ctx in both() {
        // 700 keys: 3 splits of the key range, the last one partial.
        check_attention(ctx, 700, 1, 0, 64, 5);
        check_attention(ctx, 700, 1, 100, 64, 6);
        check_attention(ctx, 1, 1, 0, 256, 7);
    }
}

#[test]
fn gpu_attention_prefill_causal_and_sliding_match_reference() {
    for ctx in both() {
        check_attention(ctx, 90, 80, 0, 64, 8);
        check_attention(ctx, 90, 80, 17, 64, 9);
    }
    check_attention(fast(), 40, 40, 0, 256, 10);
}

#[test]
fn gpu_tiled_attention_matches_reference_for_query_groups() {
    let ctx = gpu_kernels();
    // GQA ratios 1, 4 and 8 (and 3, 7: query blocks of 5 and 2 tokens; 20:
    // a group over two workgroups), prefill over several 32-key tiles and
    // decode over split keys, causal and sliding (Gemma 3's local layers).
    for (heads, i) in [((4, 4), 0), ((8, 2), 1), ((8, 1), 2), ((6, 2), 3), ((14, 2), 4), ((20, 1), 5)] {
        let seed = 20 + 4 * i as u64;
        check_attention_gqa(ctx, heads, (100, 70, 0, 64, seed), 0, 0);
        check_attention_gqa(ctx, heads, (100, 70, 23, 64, seed + 1), 2, 40);
        check_attention_gqa(ctx, heads, (700, 1, 0, 64, seed + 2), 0, 0);
        check_attention_gqa(ctx, heads, (700, 1, 100, 64, seed + 3), 1, 30);
    }
    // head_dim 96 (a multiple of 8) and Gemma 3's 256 (16-key tiles),
    // a first token alone, and a batch of decode queries.
    check_attention_gqa(ctx, (8, 2), (60, 60, 0, 96, 50), 0, 0);
    check_attention_gqa(ctx, (4, 1), (90, 40, 17, 256, 51), 3, 8);
    check_attention_gqa(ctx, (4, 1), (300, 1, 0, 256, 52), 0, 0);
    check_attention_gqa(ctx, (8, 2), (1, 1, 0, 64, 53), 0, 0);
    check_attention_gqa(ctx, (8, 2), (40, 3, 0, 128, 54), 0, 0);
    // A prompt chunk late in a long context: split keys for several query blocks.
    check_attention_gqa(ctx, (8, 2), (600, 20, 0, 64, 55), 0, 0);
}

#[test]
fn gpu_buffers_over_the_binding_limit_are_named_errors() {
    // A context of its own: the cap is per context.
    let ctx = GpuContext::new().unwrap();
    ctx.set_max_storage_binding(64 << 10);
    assert_eq!(ctx.max_storage_binding(), 64 << 10);
    let err = ctx.buffer(20_000).unwrap_err().to_string();
    assert!(err.contains("an activation buffer needs 80000 bytes") && err.contains("binding of 65536 bytes"), "{err}");
    let err = ctx.buffer_for("slot Up", 20_000).unwrap_err().to_string();
    assert!(err.contains("slot Up needs 80000 bytes"), "{err}");
    let err = GpuKvCache::new(&ctx, 1000, 64).unwrap_err().to_string();
    assert!(err.contains("KV cache of 1000 rows x 64") && err.contains("128000 bytes") && err.contains("at most 512 rows fit"), "{err}");
    // Weights over the cap are split into parts of rows.
    let w = GpuWeight::upload(&ctx, QuantType::F32, &vec![0u8; 100 * 256 * 4], 100, 256).unwrap();
    assert!(w.n_parts() >= 2, "{} parts", w.n_parts());
    // Sized to the limit: the largest cache that fits works.
    let (n_ctx, n_q) = (512, 4);
    let cache = GpuKvCache::new(&ctx, n_ctx, 64).unwrap();
    let kv = ctx.upload_f32(&rand_f32(&mut rng(60), n_q * 64, 1.0)).unwrap();
    let (qb, ob) = (ctx.upload_f32(&rand_f32(&mut rng(61), n_q * 2 * 32, 1.0)).unwrap(), ctx.buffer(n_q * 2 * 32).unwrap());
    let mut s = ctx.step();
    s.kv_write(&cache, &kv, &kv, n_q, n_ctx - n_q).unwrap();
    let sh = AttnShape { n_q, n_heads: 2, n_kv_heads: 2, head_dim: 32, pos0: n_ctx - n_q, scale: 0.2, ..Default::default() };
    s.attention(&qb, &cache, sh, &ob).unwrap();
    s.read(&ob);
    assert!(s.submit().unwrap()[0].f32().iter().all(|v| v.is_finite()));
}

/// `rope_kv` against `rope_pair` then `kv_write_rows`: the same rotated q
/// and k, and the same cache (seen through attention over it), for both
/// pairings, a partial rotation, factors, and a segment at rows `tok0..`.
#[test]
fn gpu_rope_kv_matches_rope_then_kv_write() {
    let (tok0, n_tokens, n_heads, n_kv_heads, head_dim, pos0, kv_row0) = (2, 3, 4, 2, 64, 40, 100);
    let kv_dim = n_kv_heads * head_dim;
    let mut r = rng(21);
    let q = rand_f32(&mut r, (tok0 + n_tokens) * n_heads * head_dim, 1.0);
    let k = rand_f32(&mut r, (tok0 + n_tokens) * kv_dim, 1.0);
    let v = rand_f32(&mut r, (tok0 + n_tokens) * kv_dim, 1.0);
    let mult: Vec<f32> = (0..head_dim / 2).map(|i| 1.0 + i as f32 / 64.0).collect();
    for ctx in both() {
        let mb = ctx.upload_f32(&mult).unwrap();
        for (neox, n_rot, with_mult) in [(false, 64, false), (true, 64, false), (true, 32, true), (false, 48, false)] {
            let shape = RopeShape {
                tok0,
                n_tokens,
                head_dim,
                n_rot,
                pos0,
                base: 10000.0,
                freq_scale: 0.5,
                neox,
                mscale: 1.1,
                mult: with_mult.then_some(&mb),
            };
            let attn = AttnShape {
                n_q: n_tokens,
                n_heads,
                n_kv_heads,
                head_dim,
                pos0: 0,
                window: 0,
                scale: 0.125,
                tok0,
                kv_base: kv_row0,
            };
            let mut outs = Vec::new();
            for fused in [false, true] {
                let (qb, kb, vb) = (ctx.upload_f32(&q).unwrap(), ctx.upload_f32(&k).unwrap(), ctx.upload_f32(&v).unwrap());
                let cache = GpuKvCache::new(ctx, kv_row0 + n_tokens, kv_dim).unwrap();
                let ob = ctx.buffer(q.len()).unwrap();
                let mut s = ctx.step();
                if fused {
                    s.rope_kv(&qb, &kb, &vb, &cache, (n_heads, n_kv_heads), shape, kv_row0).unwrap();
                } else {
                    s.rope_pair(&qb, &kb, (n_heads, n_kv_heads), shape).unwrap();
                    s.kv_write_rows(&cache, &kb, &vb, tok0, n_tokens, kv_row0).unwrap();
                }
                s.attention(&qb, &cache, attn, &ob).unwrap();
                s.read(&qb);
                s.read(&kb);
                s.read(&ob);
                outs.push(s.submit().unwrap());
            }
            for (i, what) in ["q", "k", "attention"].iter().enumerate() {
                let what = format!("rope_kv {what} neox={neox} n_rot={n_rot} mult={with_mult} f16={}", ctx.uses_f16());
                assert_close(&what, &outs[1][i].f32(), &outs[0][i].f32(), ELTWISE_REL_TOL);
            }
        }
    }
}
