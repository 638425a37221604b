//! The engine's compute thread pool.
//!
//! Forward passes run *inside* the pool (`install`), so the calling thread is
//! one of its workers: each op's parallel loop then starts without handing
//! work from a foreign thread to sleeping workers and blocking on a latch,
//! which costs more than a small matmul at decode time.

use std::sync::OnceLock;

static POOL: OnceLock<rayon::ThreadPool> = OnceLock::new();

/// Sets the number of compute threads (default: logical CPUs). Only the first
/// call before any computation takes effect; returns whether it did.
pub fn set_threads(n: usize) -> bool {
    let mut set = false;
    POOL.get_or_init(|| {
        set = true;
        build(n)
    });
    set
}

fn build(n: usize) -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new()
        .num_threads(n.max(1))
        .thread_name(|i| format!("infer-{i}"))
        .build()
        .unwrap_or_else(|_| rayon::ThreadPoolBuilder::new().build().expect("a default rayon pool"))
}

/// Runs `f` on the compute pool.
pub fn install<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    POOL.get_or_init(|| build(std::thread::available_parallelism().map_or(1, |n| n.get()))).install(f)
}

/// Threads in the compute pool.
pub fn n_threads() -> usize {
    install(rayon::current_num_threads)
}
