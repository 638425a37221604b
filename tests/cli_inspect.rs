//! `infer inspect` end to end: runs the built binary on both models.
//!
//! (The binary is found or built by `common::infer_bin`.)

mod common;

use std::process::{Command, Output};

use common::infer_bin;

use serde_json::Value;

fn inspect(args: &[&str]) -> Output {
    Command::new(infer_bin()).arg("inspect").args(args).env_remove("INFER_MODEL").output().expect("running infer")
}

fn inspect_json(model: &str) -> Value {
    let out = inspect(&["-m", model, "--json"]);
    assert!(out.status.success(), "infer inspect failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("inspect --json prints one JSON object")
}

fn tensor<'a>(j: &'a Value, name: &str) -> &'a Value {
    j["tensors"].as_array().and_then(|ts| ts.iter().find(|t| t["name"] == name)).unwrap_or_else(|| panic!("no {name}"))
}

#[test]
fn smollm2_json() {
    let j = inspect_json("models/SmolLM2-135M-Instruct.Q4_1.gguf");
    assert_eq!(j["metadata"]["general.architecture"], "llama");
    assert_eq!(j["metadata"]["llama.block_count"], 30);
    let tokens = &j["metadata"]["tokenizer.ggml.tokens"];
    assert_eq!(tokens["type"], "array<string>");
    assert_eq!(tokens["len"], 49152);
    assert_eq!(tokens["head"][0], "<|endoftext|>");
    assert_eq!(j["tensors"].as_array().map(Vec::len), Some(272));
    let t = tensor(&j, "token_embd.weight");
    assert_eq!(t["type"], "q8_0");
    assert_eq!(t["shape"], serde_json::json!([576, 49152]));
    assert_eq!(t["bytes"], 576 / 32 * 34 * 49152);
    assert_eq!(t["offset"], 0);
    assert_eq!(j["file_size"], 98362432);
}

#[test]
fn gemma3_json() {
    let j = inspect_json("models/gemma-3-270m-q4_k_m.gguf");
    assert_eq!(j["metadata"]["general.architecture"], "gemma3");
    assert_eq!(j["metadata"]["gemma3.attention.sliding_window"], 512);
    let tensors = j["tensors"].as_array().expect("tensors");
    assert_eq!(tensors.len(), 236);
    for ty in ["q4_K", "q5_0", "q6_K", "q8_0"] {
        assert!(tensors.iter().any(|t| t["type"] == ty), "no {ty} tensor");
    }
}

#[test]
fn text_output_has_the_sections() {
    let out = inspect(&["-m", "models/SmolLM2-135M-Instruct.Q4_1.gguf"]);
    assert!(out.status.success());
    let s = String::from_utf8_lossy(&out.stdout);
    for part in ["GGUF version: 3", "architecture: llama", "llama.block_count = 30", "vocab size:    49152",
        "chat template: present", "token_embd.weight", "q8_0", "by type:", "file size:"]
    {
        assert!(s.contains(part), "text output lacks {part:?}");
    }
}

#[test]
fn corrupted_file_fails_with_the_reader_error() {
    let src = std::fs::read("models/SmolLM2-135M-Instruct.Q4_1.gguf").expect("run scripts/fetch-models.sh");
    let path = std::env::temp_dir().join(format!("infer-cli-corrupt-{}.gguf", std::process::id()));
    // A bad tensor count: far more tensors than the file could hold.
    let mut bytes = src[..4096].to_vec();
    bytes[8..16].copy_from_slice(&u64::MAX.to_le_bytes());
    std::fs::write(&path, &bytes).expect("write temp file");
    let out = inspect(&["-m", path.to_str().expect("utf-8 temp path"), "--json"]);
    std::fs::remove_file(&path).ok();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("tensor count") && err.contains("offset 8"), "stderr: {err}");
    assert!(out.stdout.is_empty());
}

#[test]
fn missing_model_says_how_to_fetch() {
    let out = inspect(&["-m", "models/does-not-exist.gguf"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("scripts/fetch-models.sh"), "stderr: {err}");
}
