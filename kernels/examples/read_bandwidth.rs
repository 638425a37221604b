//! Measures the memory read bandwidth the decode kernels can hope for: `T`
//! threads (default 2) each stream over their part of a buffer far larger
//! than the caches (default 2 GiB), summing it in eight independent
//! accumulator lanes so the loop is bound by the loads, not the adds.
//! Prints the median of 7 passes after one warm-up pass.
//!
//! ```text
//! cargo run --release -p infer-kernels --example read_bandwidth -- [THREADS] [MIB]
//! ```

use std::time::Instant;

use rayon::prelude::*;

fn main() {
    let mut args = std::env::args().skip(1);
    let threads: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(2);
    let mib: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(2048);
    let pool = match rayon::ThreadPoolBuilder::new().num_threads(threads).build() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("read_bandwidth: cannot start {threads} threads: {e}");
            std::process::exit(1);
        }
    };
    let n = mib * (1 << 20) / 8;
    // Written in parallel so each thread's pages are first touched by it.
    let mut buf = vec![0u64; n];
    pool.install(|| buf.par_chunks_mut(1 << 16).enumerate().for_each(|(i, c)| c.iter_mut().for_each(|v| *v = i as u64)));
    let chunk = n.div_ceil(threads);
    let pass = || {
        let t = Instant::now();
        let sum: u64 = pool.install(|| buf.par_chunks(chunk).map(sum_lanes).reduce(|| 0, u64::wrapping_add));
        std::hint::black_box(sum);
        t.elapsed().as_secs_f64()
    };
    pass();
    let mut secs: Vec<f64> = (0..7).map(|_| pass()).collect();
    secs.sort_by(f64::total_cmp);
    let gbs = (n * 8) as f64 / secs[3] / 1e9;
    println!("read bandwidth: {gbs:.1} GB/s ({threads} threads, {mib} MiB, median of 7 passes)");
}

/// Sums a slice in eight lanes (the compiler keeps them in vector registers).
fn sum_lanes(c: &[u64]) -> u64 {
    let mut lanes = [0u64; 8];
    let mut blocks = c.chunks_exact(8);
    for b in &mut blocks {
        for (l, v) in lanes.iter_mut().zip(b) {
            *l = l.wrapping_add(*v);
        }
    }
    let tail: u64 = blocks.remainder().iter().fold(0, |a, &v| a.wrapping_add(v));
    lanes.iter().fold(tail, |a, &v| a.wrapping_add(v))
}
