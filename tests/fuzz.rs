//! Every fuzz target of `infer-fuzz-targets`, bounded: its seeds, the
//! checked-in corpus (`fuzz/corpus/TARGET/`, where crashes cargo-fuzz found
//! go as regression inputs), then inputs from a deterministic mutator for a
//! few seconds (`INFER_FUZZ_SECS`, default 3). No input may panic (each
//! runs under `catch_unwind`) or take longer than `SLOW`; a failure prints
//! the input and saves it to `target/fuzz-failures/`.
//!
//! `scripts/fuzz.sh` runs the same targets under cargo-fuzz for longer.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use infer_fuzz_targets::mutate::{mutate, Rng};
use infer_fuzz_targets::{http, target, TARGETS};

/// One input taking longer than this is a finding (a hang in the making).
const SLOW: Duration = Duration::from_secs(20);

fn budget() -> Duration {
    let secs = std::env::var("INFER_FUZZ_SECS").ok().and_then(|s| s.parse::<f64>().ok()).unwrap_or(3.0);
    Duration::from_secs_f64(secs)
}

/// The files of `fuzz/corpus/<name>/`, if any.
fn corpus(name: &str) -> Vec<Vec<u8>> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus").join(name);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir).into_iter().flatten().filter_map(|e| e.ok().map(|e| e.path())).collect();
    files.sort();
    files.iter().filter_map(|p| std::fs::read(p).ok()).collect()
}

/// The input as text for a failure message, cut to a readable length.
fn show(input: &[u8]) -> String {
    let s = String::from_utf8_lossy(&input[..input.len().min(300)]).into_owned();
    if input.len() > 300 {
        format!("{s:?}… ({} bytes)", input.len())
    } else {
        format!("{s:?}")
    }
}

/// Runs target `name` on its seeds, its corpus and mutated inputs; returns
/// how many inputs ran.
fn fuzz(name: &str) -> usize {
    let t = target(name).unwrap_or_else(|| panic!("no fuzz target {name}"));
    let mut inputs = (t.seeds)();
    for c in corpus(name) {
        if !inputs.contains(&c) {
            inputs.push(c);
        }
    }
    assert!(!inputs.is_empty(), "{name} has no seeds");
    let n_seeds = inputs.len();
    let mut failures = Vec::new();
    let mut run_one = |input: &[u8], what: String| {
        let start = Instant::now();
        let result = catch_unwind(AssertUnwindSafe(|| (t.run)(input)));
        let took = start.elapsed();
        let fault = match result {
            Err(p) => Some(p.downcast_ref::<String>().cloned().or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string())).unwrap_or_default()),
            Ok(()) if took > SLOW => Some(format!("took {took:?}")),
            Ok(()) => None,
        };
        if let Some(msg) = fault {
            let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/fuzz-failures");
            let file = dir.join(format!("{name}-{}.bin", failures.len()));
            let _ = std::fs::create_dir_all(&dir).and_then(|_| std::fs::write(&file, input));
            failures.push(format!("{what}: {msg}\n  input {} (saved to {})", show(input), file.display()));
        }
    };
    for (i, input) in inputs.iter().enumerate() {
        run_one(input, format!("seed {i}"));
    }
    let mut rng = Rng::new(0x1f_22 ^ name.len() as u64);
    let deadline = Instant::now() + budget();
    let mut n_mutated = 0;
    while Instant::now() < deadline {
        let base = &inputs[rng.below(n_seeds)];
        let other = &inputs[rng.below(n_seeds)];
        let input = mutate(base, other, &mut rng);
        run_one(&input, format!("mutation {n_mutated}"));
        n_mutated += 1;
    }
    assert!(failures.is_empty(), "{name}: {} of {} inputs failed:\n{}", failures.len(), n_seeds + n_mutated, failures.join("\n"));
    assert!(n_mutated > 0, "{name}: the budget ran out before any mutated input");
    println!("{name}: {n_seeds} seeds and {n_mutated} mutated inputs, no faults");
    n_seeds + n_mutated
}

#[test]
fn every_target_has_a_test_here() {
    let tested = ["parse_bytes", "hf_config", "safetensors_header", "tokenizer_json", "tokenizer", "chat_template", "grammar", "http_body"];
    for t in TARGETS {
        assert!(tested.contains(&t.name), "fuzz target {} has no test in tests/fuzz.rs", t.name);
    }
}

#[test]
fn fuzz_parse_bytes() {
    fuzz("parse_bytes");
}

#[test]
fn fuzz_hf_config() {
    fuzz("hf_config");
}

#[test]
fn fuzz_safetensors_header() {
    fuzz("safetensors_header");
}

#[test]
fn fuzz_tokenizer_json() {
    fuzz("tokenizer_json");
}

#[test]
fn fuzz_tokenizer() {
    fuzz("tokenizer");
}

#[test]
fn fuzz_chat_template() {
    fuzz("chat_template");
}

#[test]
fn fuzz_grammar() {
    fuzz("grammar");
}

#[test]
fn fuzz_http_body() {
    fuzz("http_body");
}

/// The 100 MB string, once: past the body limit it is a 413 in
/// OpenAI's shape (checked by the target), read no further than the limit.
#[test]
fn http_100_mb_string_is_413() {
    let (status, answer) = http::post(&http::synth_app(), "/v1/chat/completions", http::huge_string_body(100 << 20));
    assert_eq!(status, 413, "{answer}");
}

/// The targets reach past the first check: the tiny folder the reader
/// targets mutate loads as it is ...
#[test]
fn the_tiny_hf_folder_loads() {
    let dir = std::env::temp_dir().join(format!("infer-fuzz-test-folder-{}", std::process::id()));
    infer_fuzz_targets::readers::write_tiny_folder(&dir);
    let model = infer_engine::Model::load(&dir, infer_engine::ModelOptions::default());
    let _ = std::fs::remove_dir_all(&dir);
    let model = model.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(model.config().n_layers, 1);
    assert_eq!(model.tokenizer().vocab_size(), 260);
}

/// ... and every valid HTTP seed is answered 200.
#[test]
fn the_valid_http_seeds_succeed() {
    for (sel, body) in http::valid_bodies() {
        let app = if sel & 8 != 0 { http::embedding_app() } else { http::synth_app() };
        let path = http::ENDPOINTS[(sel & 7) as usize % http::ENDPOINTS.len()];
        if path == "/v1/embeddings" && sel & 8 == 0 {
            continue; // the synthetic model cannot embed: a 400, sent to the other app below
        }
        let (status, answer) = http::post(&app, path, body.to_string().into_bytes());
        assert_eq!(status, 200, "POST {path} {body}: {answer}");
    }
    let embed = serde_json::json!({"input": ["a", "b"], "encoding_format": "base64"});
    let (status, answer) = http::post(&http::embedding_app(), "/v1/embeddings", embed.to_string().into_bytes());
    assert_eq!(status, 200, "{answer}");
}
