//! Tokenizer ids against llama.cpp's, on the real SmolLM2 (byte-level BPE)
//! and Gemma 3 (SentencePiece, 262,144 entries) vocabularies.

use std::time::{Duration, Instant};

use infer_engine::tokenizer::{StreamDecoder, Tokenizer};
use infer_gguf::Gguf;
use serde_json::Value as Json;

const SMOLLM2: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../models/SmolLM2-135M-Instruct.Q4_1.gguf");
const GEMMA3: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../models/gemma-3-270m-q4_k_m.gguf");
const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/data");

fn load(path: &str) -> (Tokenizer, Duration) {
    let g = Gguf::open(path).expect("open model");
    let t0 = Instant::now();
    let tok = Tokenizer::from_gguf(&g).expect("build tokenizer");
    (tok, t0.elapsed())
}

fn json(name: &str) -> Json {
    let text = std::fs::read_to_string(format!("{DATA}/{name}")).expect("read reference file");
    serde_json::from_str(&text).expect("parse reference file")
}

fn ids(v: &Json) -> Vec<u32> {
    v.as_array().expect("id array").iter().map(|x| x.as_u64().expect("id") as u32).collect()
}

fn eval_text() -> String {
    std::fs::read_to_string(format!("{DATA}/eval_text.txt")).expect("read eval_text.txt")
}

/// Every `tokenize[]` entry, with and without BOS/EOS; returns the texts.
fn check_tokenize_entries(tok: &Tokenizer, reference: &str) -> Vec<String> {
    let r = json(reference);
    let entries = r["tokenize"].as_array().expect("tokenize[]");
    assert!(!entries.is_empty());
    let mut failures = Vec::new();
    let mut texts = Vec::new();
    for e in entries {
        let text = e["text"].as_str().expect("text");
        let plain = tok.encode(text, false, true).expect("encode");
        let with_special = tok.encode(text, true, true).expect("encode");
        if plain != ids(&e["ids"]) {
            failures.push(format!("{text:?}: got {plain:?}, want {:?}", ids(&e["ids"])));
        }
        if with_special != ids(&e["ids_with_special"]) {
            failures.push(format!("{text:?} (special): got {with_special:?}, want {:?}", ids(&e["ids_with_special"])));
        }
        texts.push(text.to_string());
    }
    assert!(failures.is_empty(), "{reference}: {} mismatches:\n{}", failures.len(), failures.join("\n"));
    texts
}

fn check_eval_text(tok: &Tokenizer, reference: &str) -> Vec<u32> {
    let r = json(reference);
    let want = ids(&r["ids"]);
    let text = eval_text();
    let got = tok.encode(&text, true, true).expect("encode eval text");
    if got != want {
        let at = got.iter().zip(&want).position(|(a, b)| a != b).unwrap_or(got.len().min(want.len()));
        let lo = at.saturating_sub(3);
        panic!(
            "{reference}: first difference at token {at} (got {} tokens, want {}): got {:?}, want {:?}; text near: {:?}",
            got.len(),
            want.len(),
            &got[lo..(at + 5).min(got.len())],
            &want[lo..(at + 5).min(want.len())],
            tok.decode(&want[lo..(at + 5).min(want.len())]),
        );
    }
    got
}

fn check_round_trip(tok: &Tokenizer, texts: &[String]) {
    for text in texts {
        let ids = tok.encode(text, false, true).expect("encode");
        assert_eq!(&tok.decode(&ids), text, "round trip of {text:?} via {ids:?}");
    }
}

/// Streams `text`'s ids one at a time; the pieces must join to the text and
/// none may hold a replacement character.
fn check_stream(tok: &Tokenizer, text: &str) -> usize {
    let ids = tok.encode(text, false, true).expect("encode");
    let mut dec = StreamDecoder::new();
    let mut out = String::new();
    let mut held = 0;
    for &id in &ids {
        let piece = dec.push(tok, id);
        assert!(!piece.contains('\u{FFFD}'), "token {id} streamed a replacement character");
        if piece.is_empty() && !tok.token_bytes(id).is_empty() {
            held += 1;
        }
        out.push_str(&piece);
    }
    out.push_str(&dec.finish());
    assert_eq!(out, text);
    held
}

#[test]
fn tokenizer_smollm2_matches_llama_cpp() {
    let (tok, _) = load(SMOLLM2);
    assert_eq!(tok.vocab_size(), 49152);
    assert_eq!(tok.bos_id(), Some(1));
    assert_eq!(tok.eos_id(), Some(2));
    assert!(!tok.add_bos());
    let texts = check_tokenize_entries(&tok, "smollm2.llamacpp.json");
    check_round_trip(&tok, &texts);
    let ids = check_eval_text(&tok, "smollm2.eval_text.tokens.json");
    assert_eq!(tok.decode(&ids), eval_text());
}

#[test]
fn tokenizer_gemma3_matches_llama_cpp() {
    let (tok, elapsed) = load(GEMMA3);
    eprintln!("Gemma 3 tokenizer built in {elapsed:?}");
    assert_eq!(tok.vocab_size(), 262_144);
    assert_eq!(tok.bos_id(), Some(2));
    assert!(tok.add_bos());
    let limit = if cfg!(debug_assertions) { Duration::from_secs(10) } else { Duration::from_secs(1) };
    assert!(elapsed < limit, "building Gemma's tokenizer took {elapsed:?}");
    let texts = check_tokenize_entries(&tok, "gemma3.llamacpp.json");
    check_round_trip(&tok, &texts);
    let ids = check_eval_text(&tok, "gemma3.eval_text.tokens.json");
    assert_eq!(ids[0], 2, "BOS first");
    assert_eq!(tok.decode(&ids[1..]), eval_text());
}

#[test]
fn tokenizer_special_tokens_are_text_without_parse_special() {
    let (tok, _) = load(SMOLLM2);
    let text = "<|im_start|>user\nhi<|im_end|>";
    let parsed = tok.encode(text, false, true).unwrap();
    assert_eq!(parsed[0], 1);
    let plain = tok.encode(text, false, false).unwrap();
    assert!(!plain.contains(&1) && !plain.contains(&2), "{plain:?}");
    assert_eq!(tok.decode(&plain), text);
    assert!(tok.is_special(1) && !tok.is_special(plain[0]));
}

#[test]
fn tokenizer_end_of_generation_sets() {
    let (smol, _) = load(SMOLLM2);
    for t in ["<|im_end|>", "<|endoftext|>"] {
        let id = smol.token_id(t).unwrap();
        assert!(smol.is_eog(id), "{t} should end generation");
    }
    assert!(!smol.is_eog(smol.token_id("<|im_start|>").unwrap()));
    assert!(smol.eog_ids().contains(&2));

    let (gemma, _) = load(GEMMA3);
    let eot = gemma.token_id("<end_of_turn>").unwrap();
    assert!(gemma.is_eog(eot) && gemma.is_eog(1));
    assert!(!gemma.is_eog(gemma.token_id("<start_of_turn>").unwrap()));
}

#[test]
fn tokenizer_byte_tokens_decode_to_bytes() {
    let (gemma, _) = load(GEMMA3);
    let id = gemma.token_id("<0x0A>").unwrap();
    assert_eq!(gemma.token_bytes(id), b"\n");
    assert_eq!(gemma.piece(id), Some("<0x0A>"));
    let (smol, _) = load(SMOLLM2);
    let id = smol.token_id("Ġthe").unwrap();
    assert_eq!(smol.token_bytes(id), b" the");
}

#[test]
fn tokenizer_streaming_keeps_korean_and_emoji_whole() {
    let text = "대한민국의 수도는 서울입니다. emoji 🦀🔥👍🏽 done";
    let (smol, _) = load(SMOLLM2);
    // SmolLM2 splits these characters across byte-level tokens, so the
    // decoder must have held bytes back at least once.
    assert!(check_stream(&smol, text) > 0);
    let (gemma, _) = load(GEMMA3);
    check_stream(&gemma, text);
    // Byte-fallback pieces: a character Gemma has no token for.
    // Byte-fallback pieces: characters Gemma has no token for.
    let rare = "\u{10FFFD}\u{16A0}";
    let ids = gemma.encode(rare, false, false).unwrap();
    assert_eq!(ids.len(), 7, "{ids:?}");
    assert!(ids.iter().all(|&i| gemma.piece(i).is_some_and(|p| p.starts_with("<0x"))), "{ids:?}");
    assert!(check_stream(&gemma, rare) > 0);
}
