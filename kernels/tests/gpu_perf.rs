//! Timing of the GPU ops at SmolLM2-135M's shapes (ignored; run with
//! `cargo test --release -p infer-kernels --test gpu_perf -- --ignored --nocapture`).

mod gpu_util;

use std::time::Instant;

use gpu_util::{fast, rand_f32, rand_tensor, rng};
use infer_kernels::gpu::{AttnShape, GpuKvCache, GpuStep, GpuWeight};
use infer_kernels::QuantType;

fn time(what: &str, reps: usize, mut f: impl FnMut(&mut GpuStep)) {
    let ctx = fast();
    // Warm-up compiles the pipelines.
    let mut s = ctx.step();
    f(&mut s);
    s.submit().unwrap();
    let t = Instant::now();
    let mut s = ctx.step();
    for _ in 0..reps {
        f(&mut s);
    }
    s.submit().unwrap();
    let ms = t.elapsed().as_secs_f64() * 1e3 / reps as f64;
    eprintln!("{what:40} {ms:8.3} ms");
}

#[test]
#[ignore]
fn gpu_op_timings() {
    let ctx = fast();
    let (dim, ffn, vocab, kv) = (576, 1536, 49152, 192);
    let ty = QuantType::Q4_1;
    let mk = |rows, cols| {
        GpuWeight::upload(
            ctx,
            ty,
            &rand_tensor(&mut rng(1), ty, rows, cols),
            rows,
            cols,
        )
        .unwrap()
    };
    let (wq, wk, wup, wdown) = (mk(dim, dim), mk(kv, dim), mk(ffn, dim), mk(dim, ffn));
    let head = GpuWeight::upload(
        ctx,
        QuantType::Q8_0,
        &rand_tensor(&mut rng(2), QuantType::Q8_0, vocab, dim),
        vocab,
        dim,
    )
    .unwrap();
    let n_max = 64;
    let x = ctx
        .upload_f32(&rand_f32(&mut rng(3), n_max * ffn, 1.0))
        .unwrap();
    let y = ctx.buffer(n_max * vocab.max(ffn)).unwrap();
    let norm = ctx.upload_f32(&rand_f32(&mut rng(4), dim, 1.0)).unwrap();
    let cache = GpuKvCache::new(ctx, 256, kv).unwrap();
    let reps = 30;
    for n in [1usize, 64] {
        time(&format!("n={n} matmul q 576x576"), reps, |s| {
            s.matmul(&wq, &x, n, &y).unwrap()
        });
        time(&format!("n={n} matmul k 192x576"), reps, |s| {
            s.matmul(&wk, &x, n, &y).unwrap()
        });
        time(&format!("n={n} matmul up 1536x576"), reps, |s| {
            s.matmul(&wup, &x, n, &y).unwrap()
        });
        time(&format!("n={n} matmul down 576x1536"), reps, |s| {
            s.matmul(&wdown, &x, n, &y).unwrap()
        });
        time(&format!("n={n} matmul head q8_0 49152x576"), 3, |s| {
            s.matmul(&head, &x, n, &y).unwrap()
        });
        time(&format!("n={n} rmsnorm 576"), reps, |s| {
            s.rmsnorm(&x, &norm, n, dim, 1e-5, &y).unwrap()
        });
        time(&format!("n={n} rope 9x64"), reps, |s| {
            s.rope(&y, n, 9, 64, 10, 10000.0, false).unwrap()
        });
        time(&format!("n={n} add 576"), reps, |s| {
            s.add(&y, &x, n * dim).unwrap()
        });
        time(&format!("n={n} silu_mul 1536"), reps, |s| {
            s.silu_mul(&y, &x, n * ffn).unwrap()
        });
        time(&format!("n={n} kv_write"), reps, |s| {
            s.kv_write(&cache, &x, &x, n, 0).unwrap()
        });
        for pos0 in [0usize, 100] {
            let sh = AttnShape {
                n_q: n,
                n_heads: 9,
                n_kv_heads: 3,
                head_dim: 64,
                pos0,
                window: 0,
                scale: 0.125,
            };
            time(&format!("n={n} attention pos0={pos0}"), reps, |s| {
                s.attention(&x, &cache, sh, &y).unwrap()
            });
        }
        time(&format!("n={n} argmax vocab"), reps, |s| {
            s.argmax(&y, n, vocab, &x).unwrap()
        });
    }
}
