//! Multiply-accumulates per second of the CPU quantized matrix products, one
//! type at a time, for the shape of a 1B llama's FFN (8192 × 2048): the
//! figure to compare kernel changes by, without the rest of a forward pass.
//!
//! `cargo run --release -p infer-engine --example packed_gemm -- [TOKENS] [THREADS] [TYPES…]`
//! (defaults: 128 tokens, 1 thread, Q4_0 Q4_K Q5_K Q6_K Q8_0; `GEMM_SHAPE=ROWSxCOLS`
//! for another shape than 8192 × 2048).

use std::time::Instant;

use infer_engine::synth::{random_blocks, Rng};
use infer_gguf::QuantType;
use infer_kernels::cpu::{matmul, PackedMatrix, QMatrix};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let tokens: usize = args.first().map(|s| s.parse()).transpose()?.unwrap_or(128);
    let threads: usize = args.get(1).map(|s| s.parse()).transpose()?.unwrap_or(1);
    let names: Vec<String> = if args.len() > 2 {
        args[2..].to_vec()
    } else {
        ["Q4_0", "Q4_K", "Q5_K", "Q6_K", "Q8_0"].iter().map(|s| s.to_string()).collect()
    };
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build()?;
    // `GEMM_SHAPE=ROWSxCOLS` for another shape (e.g. 1536x384, an encoder's FFN).
    let (rows, cols) = match std::env::var("GEMM_SHAPE") {
        Ok(s) => {
            let (r, c) = s.split_once('x').ok_or("GEMM_SHAPE is ROWSxCOLS")?;
            (r.parse()?, c.parse()?)
        }
        Err(_) => (8192, 2048),
    };
    let mut rng = Rng::new(7);
    for name in names {
        let ty: QuantType = name.parse()?;
        let mut data = vec![0u8; rows * cols / ty.block_size() * ty.block_bytes()];
        random_blocks(ty, &mut data, &mut rng);
        let w = QMatrix::new(ty, &data, rows, cols)?;
        let packed = PackedMatrix::pack(&w);
        let w = QMatrix { packed: packed.as_ref(), ..w };
        let x: Vec<f32> = (0..tokens * cols).map(|_| rng.unit() * 2.0 - 1.0).collect();
        let mut out = vec![0f32; tokens * rows];
        let mut times = Vec::new();
        for _ in 0..15 {
            let t0 = Instant::now();
            pool.install(|| matmul(&w, &x, tokens, &mut out))?;
            times.push(t0.elapsed().as_secs_f64());
        }
        times.sort_by(f64::total_cmp);
        let (t, best) = (times[times.len() / 2], times[0]);
        let macs = (rows * cols * tokens) as f64;
        println!(
            "{name:6} {tokens:4} tokens {threads} thr: median {:7.2} ms {:6.1} GMAC/s, best {:7.2} ms {:6.1} GMAC/s",
            t * 1e3,
            macs / t / 1e9,
            best * 1e3,
            macs / best / 1e9
        );
    }
    Ok(())
}
