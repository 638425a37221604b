//! GPU matvec, matmul and get_rows on real tensors from the two test models,
//! against `cpu::matmul_ref` / `cpu::get_row`: one tensor per type, and
//! gemma's 262,144 x 640 Q8_0 embedding (178 MB), which is split over
//! several buffers on devices with a 128 MiB storage binding limit.

mod gpu_util;

use std::path::PathBuf;

use gpu_util::{assert_close, fast, other_kernels, rand_f32, rng};
use infer_gguf::Gguf;
use infer_kernels::cpu::{get_row, matmul_ref, QMatrix};
use infer_kernels::gpu::{GpuContext, GpuWeight};
use infer_kernels::QuantType;

const MATMUL_REL_TOL: f32 = 1e-4;
const GET_ROWS_REL_TOL: f32 = 1e-6;

fn model(name: &str) -> Gguf {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../models")
        .join(name);
    Gguf::open(&p).unwrap_or_else(|e| panic!("{}: {e} (run scripts/fetch-models.sh)", p.display()))
}

/// Checks matvec (all rows) and a 5-token matmul on tensor `name`.
fn check_tensor(ctx: &GpuContext, g: &Gguf, name: &str, ty: QuantType) {
    let t = g.tensor(name).unwrap();
    assert_eq!(t.ty(), ty, "{name}");
    let (cols, rows) = (t.dims()[0] as usize, t.dims()[1] as usize);
    let m = QMatrix::new(ty, t.data, rows, cols).unwrap();
    let w = GpuWeight::upload(ctx, ty, t.data, rows, cols).unwrap();
    for n_tokens in [1, 5] {
        let x = rand_f32(&mut rng(rows as u64), n_tokens * cols, 1.0);
        let mut want = vec![0.0; n_tokens * rows];
        matmul_ref(&m, &x, n_tokens, &mut want).unwrap();
        let (xb, ob) = (ctx.upload_f32(&x).unwrap(), ctx.buffer(want.len()).unwrap());
        let mut s = ctx.step();
        s.matmul(&w, &xb, n_tokens, &ob).unwrap();
        s.read(&ob);
        assert_close(
            &format!("{name} n_tokens={n_tokens}"),
            &s.submit().unwrap()[0].f32(),
            &want,
            MATMUL_REL_TOL,
        );
    }
}

#[test]
fn gpu_smollm2_q4_1_and_q8_0_tensors() {
    let g = model("SmolLM2-135M-Instruct.Q4_1.gguf");
    for ctx in [fast(), other_kernels()] {
        check_tensor(ctx, &g, "blk.0.ffn_down.weight", QuantType::Q4_1);
        check_tensor(ctx, &g, "blk.0.attn_v.weight", QuantType::Q4_1);
    }
    check_tensor(fast(), &g, "token_embd.weight", QuantType::Q8_0);
}

#[test]
fn gpu_gemma3_q4_k_q5_0_q6_k_q8_0_tensors() {
    let g = model("gemma-3-270m-q4_k_m.gguf");
    check_tensor(fast(), &g, "blk.0.attn_output.weight", QuantType::Q4K);
    check_tensor(fast(), &g, "blk.0.attn_q.weight", QuantType::Q5_0);
    check_tensor(fast(), &g, "blk.0.ffn_down.weight", QuantType::Q6K);
    check_tensor(fast(), &g, "blk.0.attn_v.weight", QuantType::Q8_0);
}

#[test]
fn gpu_gemma3_embedding_is_split_and_still_right() {
    let ctx = fast();
    let g = model("gemma-3-270m-q4_k_m.gguf");
    let t = g.tensor("token_embd.weight").unwrap();
    let (cols, rows) = (t.dims()[0] as usize, t.dims()[1] as usize);
    let m = QMatrix::new(t.ty(), t.data, rows, cols).unwrap();
    let w = GpuWeight::upload(ctx, t.ty(), t.data, rows, cols).unwrap();
    let binding = ctx.limits().max_storage_buffer_binding_size;
    if t.data.len() as u64 > binding {
        assert!(w.n_parts() >= 2, "{} bytes in one part", t.data.len());
    }
    // Tied output head: logits for every row, greedy token on the GPU.
    let x = rand_f32(&mut rng(11), cols, 1.0);
    let mut want = vec![0.0; rows];
    matmul_ref(&m, &x, 1, &mut want).unwrap();
    let want_tok = want
        .iter()
        .enumerate()
        .fold(0, |b, (i, &v)| if v > want[b] { i } else { b });
    let (xb, ob, tok) = (
        ctx.upload_f32(&x).unwrap(),
        ctx.buffer(rows).unwrap(),
        ctx.buffer(1).unwrap(),
    );
    let mut s = ctx.step();
    s.matmul(&w, &xb, 1, &ob).unwrap();
    s.argmax(&ob, 1, rows, &tok).unwrap();
    s.read(&ob);
    s.read(&tok);
    let got = s.submit().unwrap();
    assert_close(
        &format!("token_embd matvec, {} parts", w.n_parts()),
        &got[0].f32(),
        &want,
        MATMUL_REL_TOL,
    );
    assert_eq!(got[1].u32()[0] as usize, want_tok, "argmax over the logits");
    // Embedding rows on both sides of every part boundary.
    let ids: Vec<u32> = vec![0, 1, 130_000, 131_071, 131_072, 200_000, rows as u32 - 1];
    let mut want = vec![0.0; ids.len() * cols];
    for (i, &id) in ids.iter().enumerate() {
        get_row(&m, id as usize, &mut want[i * cols..(i + 1) * cols]).unwrap();
    }
    let (idb, ob) = (
        ctx.upload_u32(&ids).unwrap(),
        ctx.buffer(want.len()).unwrap(),
    );
    let mut s = ctx.step();
    s.get_rows(&w, &idb, ids.len(), &ob).unwrap();
    s.read(&ob);
    assert_close(
        "token_embd get_rows",
        &s.submit().unwrap()[0].f32(),
        &want,
        GET_ROWS_REL_TOL,
    );
}
