//! The engine API: sessions shared across threads, and clear errors for bad input.

mod common;

use std::sync::Arc;

use common::*;
use infer_engine::{EngineError, GenerateOptions, Model, ModelOptions, SamplerParams, SessionParams};
use infer_gguf::{GgufWriter, QuantType, Value};

fn generate(model: &Arc<Model>, prompt: &str, n: usize) -> (Vec<u32>, String) {
    let mut s = model.session(SessionParams { n_ctx: 256, ..Default::default() }).unwrap();
    let ids = model.prompt_tokens(prompt).unwrap();
    let params = SamplerParams { seed: 42, ..Default::default() };
    let mut g = s.generate(&ids, params, GenerateOptions { max_tokens: n, stop: vec![] }).unwrap();
    let mut text = String::new();
    for t in g.by_ref() {
        text.push_str(&t.unwrap().text);
    }
    (g.ids().to_vec(), text)
}

#[test]
fn two_sessions_in_two_threads_match_each_alone() {
    let model = Model::load(model_path(SMOLLM2), ModelOptions::default()).unwrap();
    let a_alone = generate(&model, "Once upon a time", 12);
    let b_alone = generate(&model, "The best way to learn", 12);
    let (m1, m2) = (model.clone(), model.clone());
    let ta = std::thread::spawn(move || generate(&m1, "Once upon a time", 12));
    let tb = std::thread::spawn(move || generate(&m2, "The best way to learn", 12));
    assert_eq!(ta.join().unwrap(), a_alone);
    assert_eq!(tb.join().unwrap(), b_alone);
    assert_eq!(a_alone.0.len(), 12);
}

#[test]
fn same_seed_same_output_and_stop_strings_cut() {
    let model = Model::load(model_path(SMOLLM2), ModelOptions::default()).unwrap();
    assert_eq!(generate(&model, "Tell me a story", 10), generate(&model, "Tell me a story", 10));
    // A stop string ends generation and is not part of the text.
    let mut s = model.session(SessionParams { n_ctx: 128, ..Default::default() }).unwrap();
    let ids = model.prompt_tokens("The capital of France is").unwrap();
    let opts = GenerateOptions { max_tokens: 32, stop: vec!["United".into()] };
    let mut g = s.generate(&ids, SamplerParams::greedy(), opts).unwrap();
    let text: String = g.by_ref().map(|t| t.unwrap().text).collect();
    assert_eq!(g.finish_reason(), Some(infer_engine::FinishReason::Stop), "text: {text:?}");
    assert!(!text.contains("United") && text.starts_with(" Paris"), "{text:?}");
}

#[test]
fn bad_input_gives_clear_errors() {
    let model = Model::load(model_path(SMOLLM2), ModelOptions::default()).unwrap();
    let mut s = model.session(SessionParams { n_ctx: 16, ..Default::default() }).unwrap();
    // Empty prompt.
    let e = s.generate(&[], SamplerParams::greedy(), GenerateOptions::default()).err().unwrap();
    assert!(matches!(e, EngineError::EmptyPrompt), "{e}");
    // A prompt longer than the context.
    let long = model.prompt_tokens(&"word ".repeat(40)).unwrap();
    let e = s.generate(&long, SamplerParams::greedy(), GenerateOptions::default()).err().unwrap();
    assert!(matches!(e, EngineError::PromptTooLong { n_ctx: 16, .. }), "{e}");
    assert!(e.to_string().contains("16"));
    // Running out of context stops with a clear error (no context shift).
    let short = model.prompt_tokens("Hello there, how are").unwrap();
    let opts = GenerateOptions { max_tokens: 64, stop: vec![] };
    let results: Vec<_> = s.generate(&short, SamplerParams::greedy(), opts).unwrap().collect();
    let last = results.last().unwrap();
    assert!(matches!(last, Err(EngineError::ContextFull { n_ctx: 16 })), "{last:?}");
    // With context shift, generation goes on past the context.
    let mut s = model.session(SessionParams { n_ctx: 16, context_shift: true, ..Default::default() }).unwrap();
    let opts = GenerateOptions { max_tokens: 30, stop: vec![] };
    let mut g = s.generate(&short, SamplerParams::greedy(), opts).unwrap();
    for t in g.by_ref() {
        t.unwrap();
    }
    assert_eq!(g.ids().len(), 30);
}

fn write_tiny(path: &std::path::Path, arch: &str, with_attn_q: bool) {
    let mut w = GgufWriter::new();
    w.add_metadata("general.architecture", Value::String(arch.into()));
    w.add_metadata(&format!("{arch}.block_count"), Value::U32(1));
    w.add_metadata(&format!("{arch}.embedding_length"), Value::U32(32));
    w.add_metadata(&format!("{arch}.feed_forward_length"), Value::U32(64));
    w.add_metadata(&format!("{arch}.attention.head_count"), Value::U32(2));
    w.add_metadata(&format!("{arch}.vocab_size"), Value::U32(8));
    let f32s = |n: usize| vec![0u8; n * 4];
    w.add_tensor("token_embd.weight", QuantType::F32, &[32, 8], f32s(256)).unwrap();
    w.add_tensor("output_norm.weight", QuantType::F32, &[32], f32s(32)).unwrap();
    w.add_tensor("blk.0.attn_norm.weight", QuantType::F32, &[32], f32s(32)).unwrap();
    if with_attn_q {
        w.add_tensor("blk.0.attn_q.weight", QuantType::F32, &[32, 32], f32s(1024)).unwrap();
    }
    w.write_to_path(path).unwrap();
}

#[test]
fn unknown_architecture_and_missing_tensors_are_named() {
    let dir = std::env::temp_dir();
    let p = dir.join(format!("infer-test-arch-{}.gguf", std::process::id()));
    write_tiny(&p, "mamba9", true);
    let e = Model::load(&p, ModelOptions::default()).err().unwrap();
    assert!(matches!(e, EngineError::UnknownArchitecture { .. }), "{e}");
    assert!(e.to_string().contains("mamba9"));

    write_tiny(&p, "llama", false);
    let e = Model::load(&p, ModelOptions::default()).err().unwrap();
    assert!(matches!(e, EngineError::MissingTensor { .. }), "{e}");
    assert!(e.to_string().contains("blk.0.attn_q.weight"), "{e}");
    std::fs::remove_file(&p).ok();
}
