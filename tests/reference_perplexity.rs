//! Perplexity (llama.cpp's method, 256-token chunks over eval_text.txt)
//! within 1% of llama.cpp's figures.

mod common;

use common::*;
use infer_engine::{Model, ModelOptions};

const PPL_REL_TOL: f64 = 0.01;

fn check(name: &str, want: f64) {
    let model = Model::load(model_path(name), ModelOptions::default()).unwrap();
    let text = std::fs::read_to_string(data_path("eval_text.txt")).unwrap();
    let tokens = model.tokenizer().encode(&text, true, true).unwrap();
    let r = infer_engine::perplexity::perplexity(&model, &tokens, 256, 0, |_, _| {}).unwrap();
    assert_eq!(r.chunks, 29);
    let rel = (r.ppl - want).abs() / want;
    assert!(rel < PPL_REL_TOL, "{name}: PPL {:.4}, llama.cpp {want} ({:.2}% off)", r.ppl, rel * 100.0);
}

#[test]
fn smollm2_perplexity_matches_llama_cpp() {
    check(SMOLLM2, 20.8533);
}

#[test]
fn gemma3_perplexity_matches_llama_cpp() {
    check(GEMMA3, 16.4292);
}
