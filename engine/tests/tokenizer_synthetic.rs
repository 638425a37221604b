//! Tokenizers built from tiny hand-made GGUF files: error paths and the
//! SentencePiece merge rules on a vocabulary small enough to reason about.

use infer_engine::tokenizer::Tokenizer;
use infer_engine::EngineError;
use infer_gguf::{Gguf, GgufWriter, Value};

/// Writes `meta` to a temporary GGUF and opens it.
fn gguf_with(name: &str, meta: Vec<(&str, Value)>) -> Gguf {
    let mut w = GgufWriter::new();
    w.add_metadata("general.architecture", Value::String("llama".into()));
    for (k, v) in meta {
        w.add_metadata(k, v);
    }
    let path = std::env::temp_dir().join(format!("infer-tok-{}-{name}.gguf", std::process::id()));
    w.write_to_path(&path).expect("write gguf");
    let g = Gguf::open(&path).expect("open gguf");
    let _ = std::fs::remove_file(&path);
    g
}

fn bpe_meta(pre: &str) -> Vec<(&'static str, Value)> {
    vec![
        ("tokenizer.ggml.model", Value::String("gpt2".into())),
        ("tokenizer.ggml.pre", Value::String(pre.into())),
        ("tokenizer.ggml.tokens", Value::str_array(&["a", "b", "ab", "Ġ", "Ġab", "<|end|>"])),
        ("tokenizer.ggml.token_type", Value::i32_array(&[1, 1, 1, 1, 1, 3])),
        ("tokenizer.ggml.merges", Value::str_array(&["a b", "Ġ ab"])),
    ]
}

#[test]
fn tokenizer_unknown_pre_tokenizer_is_named() {
    let g = gguf_with("badpre", bpe_meta("no-such-pre"));
    let err = Tokenizer::from_gguf(&g).unwrap_err();
    assert!(matches!(err, EngineError::Tokenizer(_)), "{err:?}");
    assert!(err.to_string().contains("no-such-pre"), "{err}");
}

#[test]
fn tokenizer_unknown_model_is_named() {
    let mut meta = bpe_meta("default");
    meta[0].1 = Value::String("wordpiece-ish".into());
    let err = Tokenizer::from_gguf(&gguf_with("badmodel", meta)).unwrap_err();
    assert!(err.to_string().contains("wordpiece-ish"), "{err}");
}

#[test]
fn tokenizer_tiny_bpe_merges_and_specials() {
    let tok = Tokenizer::from_gguf(&gguf_with("bpe", bpe_meta("gpt2"))).unwrap();
    assert_eq!(tok.encode("ab ab", false, false).unwrap(), vec![2, 4]);
    assert_eq!(tok.encode("ab<|end|>", false, true).unwrap(), vec![2, 5]);
    assert_eq!(tok.decode(&[2, 4, 5]), "ab ab<|end|>");
    assert!(tok.is_eog(5));
}

/// A SentencePiece vocabulary: specials, the 256 byte tokens, then pieces
/// whose scores decide the merge order.
fn spm_meta(extra: Vec<(&'static str, Value)>) -> Vec<(&'static str, Value)> {
    let mut tokens: Vec<String> = vec!["<unk>".into(), "<s>".into(), "</s>".into()];
    let mut types = vec![2, 3, 3];
    let mut scores = vec![0.0f32; 3];
    for b in 0..=255u32 {
        tokens.push(format!("<0x{b:02X}>"));
        types.push(6);
        scores.push(0.0);
    }
    // "▁a" + "b" must lose to "a" + "b" (score -1 beats -2), then "▁" + "ab".
    for (t, s) in [("▁", -5.0), ("a", -3.0), ("b", -3.0), ("ab", -1.0), ("▁a", -2.0), ("▁ab", -4.0)] {
        tokens.push(t.into());
        types.push(1);
        scores.push(s);
    }
    let mut meta = vec![
        ("tokenizer.ggml.model", Value::String("llama".into())),
        ("tokenizer.ggml.tokens", Value::str_array(&tokens)),
        ("tokenizer.ggml.token_type", Value::i32_array(&types)),
        ("tokenizer.ggml.scores", Value::f32_array(&scores)),
        ("tokenizer.ggml.bos_token_id", Value::U32(1)),
        ("tokenizer.ggml.eos_token_id", Value::U32(2)),
    ];
    meta.extend(extra);
    meta
}

#[test]
fn tokenizer_tiny_spm_merges_by_score_with_byte_fallback() {
    let tok = Tokenizer::from_gguf(&gguf_with("spm", spm_meta(vec![]))).unwrap();
    let id = |p: &str| tok.token_id(p).unwrap();
    // Space prefix on, BOS on by default for SentencePiece.
    assert_eq!(tok.encode("ab", true, false).unwrap(), vec![1, id("▁ab")]);
    // "é" has no token: its two UTF-8 bytes.
    assert_eq!(tok.encode("é", false, false).unwrap(), vec![id("▁"), id("<0xC3>"), id("<0xA9>")]);
    let ids = tok.encode("ab é", false, false).unwrap();
    assert_eq!(tok.decode(&ids), "ab é");
    // A special token resets the space prefix.
    assert_eq!(tok.encode("</s>ab", false, true).unwrap(), vec![2, id("▁ab")]);
}

#[test]
fn tokenizer_spm_without_space_prefix_and_with_eos() {
    let meta = spm_meta(vec![
        ("tokenizer.ggml.add_space_prefix", Value::Bool(false)),
        ("tokenizer.ggml.add_eos_token", Value::Bool(true)),
        ("tokenizer.ggml.add_bos_token", Value::Bool(false)),
    ]);
    let tok = Tokenizer::from_gguf(&gguf_with("spm2", meta)).unwrap();
    let id = |p: &str| tok.token_id(p).unwrap();
    assert_eq!(tok.encode("ab", true, false).unwrap(), vec![id("ab"), 2]);
    assert_eq!(tok.encode("ab", false, false).unwrap(), vec![id("ab")]);
}
