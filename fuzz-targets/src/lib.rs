//! # infer-fuzz-targets
//!
//! The bodies of infer's fuzz targets as plain functions, so one copy of
//! each runs two ways: under cargo-fuzz with libFuzzer and sanitizers
//! (`fuzz/fuzz_targets/*.rs`, nightly, `scripts/fuzz.sh`), and on stable in
//! the bounded test `tests/fuzz.rs` (the seeds here plus a deterministic
//! mutator, a few seconds per target).
//!
//! A target takes any bytes. Whatever they hold, it must return: a reader
//! or compiler may fail, but with an error, never a panic, an abort or a
//! hang, and the HTTP target checks each answer's status and shape. A
//! target panics when it finds a fault, which both harnesses report with
//! the input.
//!
//! The targets load small models from `models/` (`scripts/fetch-models.sh`)
//! or `INFER_MODELS`; the HTTP and grammar targets write a tiny synthetic
//! model to the temp directory instead, so their requests cost microseconds.

mod fixtures;
pub mod http;
pub mod mutate;
pub mod readers;
pub mod text;

/// One fuzz target: its name (the cargo-fuzz binary's), its body and the
/// inputs it starts from.
pub struct Target {
    pub name: &'static str,
    pub run: fn(&[u8]),
    pub seeds: fn() -> Vec<Vec<u8>>,
}

/// Every target, in the order the bounded test runs them.
pub const TARGETS: &[Target] = &[
    Target { name: "parse_bytes", run: readers::parse_bytes, seeds: readers::gguf_seeds },
    Target { name: "hf_config", run: readers::hf_config, seeds: readers::config_seeds },
    Target { name: "safetensors_header", run: readers::safetensors_header, seeds: readers::safetensors_seeds },
    Target { name: "tokenizer_json", run: readers::tokenizer_json, seeds: readers::tokenizer_json_seeds },
    Target { name: "tokenizer", run: text::tokenizer, seeds: text::tokenizer_seeds },
    Target { name: "chat_template", run: text::chat_template, seeds: text::chat_template_seeds },
    Target { name: "grammar", run: text::grammar, seeds: text::grammar_seeds },
    Target { name: "http_body", run: http::http_body, seeds: http::seeds },
];

/// The target named `name`.
pub fn target(name: &str) -> Option<&'static Target> {
    TARGETS.iter().find(|t| t.name == name)
}
