//! CPU kernel benches: quantized matrix-vector (decode) and matrix-matrix
//! (prompt, 64 tokens) products for each integer-kernel weight type, and the
//! activation quantizers. Matrices hold random valid blocks
//! (`infer_engine::synth::random_blocks`).
//!
//! Throughput is reported in weight bytes per second, so the matvec figures
//! read directly against the machine's memory bandwidth. Run with
//! `cargo bench --bench kernels`.

use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use infer_engine::synth::{random_blocks, Rng};
use infer_engine::threads;
use infer_gguf::blocks::BlockQ8K;
use infer_gguf::QuantType;
use infer_kernels::cpu::{matmul, quantize_q8_act, quantize_q8_k, BlockQ8Act, PackedMatrix, QMatrix};

const TYPES: [QuantType; 7] = [
    QuantType::Q4_0,
    QuantType::Q4_1,
    QuantType::Q5_0,
    QuantType::Q8_0,
    QuantType::Q4K,
    QuantType::Q5K,
    QuantType::Q6K,
];
/// (rows, cols): attention projection and FFN up/gate of a 1B llama.
const SHAPES: [(usize, usize); 2] = [(2048, 2048), (8192, 2048)];

fn weights(ty: QuantType, rows: usize, cols: usize, rng: &mut Rng) -> Vec<u8> {
    let mut w = vec![0u8; rows * cols / ty.block_size() * ty.block_bytes()];
    random_blocks(ty, &mut w, rng);
    w
}

fn activations(n: usize, rng: &mut Rng) -> Vec<f32> {
    (0..n).map(|_| rng.unit() * 2.0 - 1.0).collect()
}

fn bench_matmul(c: &mut Criterion, n_tokens: usize, group_name: &str) {
    let mut rng = Rng::new(1);
    let mut g = c.benchmark_group(group_name);
    for ty in TYPES {
        for (rows, cols) in SHAPES {
            let data = weights(ty, rows, cols, &mut rng);
            let w = QMatrix::new(ty, &data, rows, cols).expect("valid shape");
            let x = activations(n_tokens * cols, &mut rng);
            let mut out = vec![0f32; n_tokens * rows];
            g.throughput(Throughput::Bytes(data.len() as u64));
            let id = BenchmarkId::new(ty.name(), format!("{rows}x{cols}"));
            // Inside the engine's pool, as the forward pass calls it.
            g.bench_function(id, |b| {
                b.iter(|| threads::install(|| matmul(&w, &x, n_tokens, &mut out).expect("matmul")))
            });
            // The repacked layout the engine uses for this type, when it has one.
            if let Some(p) = PackedMatrix::pack(&w) {
                let wp = QMatrix { packed: Some(&p), ..w };
                let id = BenchmarkId::new(format!("{}_x8", ty.name()), format!("{rows}x{cols}"));
                g.bench_function(id, |b| {
                    b.iter(|| threads::install(|| matmul(&wp, &x, n_tokens, &mut out).expect("matmul")))
                });
            }
        }
    }
    g.finish();
}

fn matvec(c: &mut Criterion) {
    bench_matmul(c, 1, "matvec");
}

fn matmul64(c: &mut Criterion) {
    bench_matmul(c, 64, "matmul_n64");
}

fn quantize(c: &mut Criterion) {
    let mut rng = Rng::new(2);
    let mut g = c.benchmark_group("quantize_act");
    for (n_tokens, cols) in [(1, 2048), (64, 2048), (1, 8192)] {
        let x = activations(n_tokens * cols, &mut rng);
        g.throughput(Throughput::Elements(x.len() as u64));
        let mut q8 = vec![BlockQ8Act { d: 0.0, s: 0.0, qs: [0; 32] }; x.len() / 32];
        g.bench_function(BenchmarkId::new("q8_act", format!("{n_tokens}x{cols}")), |b| {
            b.iter(|| quantize_q8_act(&x, &mut q8))
        });
        let mut q8k = vec![BlockQ8K { d: 0.0, qs: [0; 256], bsums: [0; 16] }; x.len() / 256];
        g.bench_function(BenchmarkId::new("q8_k", format!("{n_tokens}x{cols}")), |b| {
            b.iter(|| quantize_q8_k(&x, &mut q8k))
        });
    }
    g.finish();
}

fn config() -> Criterion {
    // Short runs so the whole suite finishes in a few minutes on two cores.
    Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
}

criterion_group! { name = benches; config = config(); targets = matvec, matmul64, quantize }
criterion_main!(benches);
