//! Deterministic mutation test: thousands of corrupted copies of a real
//! model's header go through `parse_bytes`; any panic fails the test.
//!
//! A fixed-seed xorshift PRNG keeps runs reproducible without extra
//! dependencies; the failing iteration number is printed on panic.

mod common;

use common::Rng;
use infer_gguf::{parse_bytes, Gguf};


/// Values that make length and count fields interesting.
const SPECIAL: [u64; 8] = [0, 1, 3, 0x7F, 0xFFFF_FFFF, 1 << 32, i64::MAX as u64, u64::MAX];

/// Applies one to four random mutations to `buf`. `table` is where the
/// tensor table roughly starts.
fn mutate(rng: &mut Rng, buf: &mut Vec<u8>, table: usize) {
    for _ in 0..1 + rng.below(4) {
        if buf.is_empty() {
            return;
        }
        // Most edits hit the structured parts: the first 64 KiB (counts,
        // first keys, small metadata values) and the tensor table at the end;
        // the rest land anywhere, mostly inside vocabulary strings.
        let (lo, hi) = match rng.below(10) {
            0..=3 => (0, 64 * 1024),
            4..=6 => (table, buf.len()),
            _ => (0, buf.len()),
        };
        let hi = hi.min(buf.len());
        let lo = lo.min(hi - 1);
        let at = lo + rng.below(hi - lo);
        match rng.below(5) {
            0 => buf[at] ^= 1 << rng.below(8),
            1 => buf[at] = rng.next() as u8,
            2 => {
                let v = SPECIAL[rng.below(SPECIAL.len())].to_le_bytes();
                let n = if rng.below(2) == 0 { 4 } else { 8 };
                let end = (at + n).min(buf.len());
                buf[at..end].copy_from_slice(&v[..end - at]);
            }
            3 => buf.truncate(at),
            _ => {
                let v = rng.next().to_le_bytes();
                let end = (at + 8).min(buf.len());
                buf[at..end].copy_from_slice(&v[..end - at]);
            }
        }
    }
}

fn run(path: &str, iterations: usize, seed: u64) {
    let g = Gguf::open(path).unwrap_or_else(|e| panic!("{e} (run scripts/fetch-models.sh)"));
    // The header plus a little tensor data: enough to parse everything, so
    // unmutated copies fail only at the tensor bounds check.
    let end = (g.data_offset() as usize + 4096).min(g.bytes().len());
    let original = &g.bytes()[..end];
    // 24..80 bytes per tensor entry; 96 is a safe over-estimate.
    let table = (g.data_offset() as usize).saturating_sub(96 * g.tensors().len());
    let mut rng = Rng(seed);
    let mut rejected = 0;
    for i in 0..iterations {
        let mut buf = original.to_vec();
        mutate(&mut rng, &mut buf, table);
        let r = std::panic::catch_unwind(|| parse_bytes(&buf).is_err());
        match r {
            Ok(err) => rejected += err as usize,
            Err(_) => panic!("{path}: iteration {i} (seed {seed:#x}) panicked"),
        }
    }
    // Nearly every copy is rejected (truncated data at least); this guards
    // against the test silently parsing nothing.
    assert!(rejected > iterations / 2, "{rejected} of {iterations} rejected");
}

#[test]
fn mutated_smollm2_headers_never_panic() {
    run("models/SmolLM2-135M-Instruct.Q4_1.gguf", 3500, 0x5EED_0001);
}

#[test]
fn mutated_gemma3_headers_never_panic() {
    run("models/gemma-3-270m-q4_k_m.gguf", 700, 0x5EED_0002);
}
