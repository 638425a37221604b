//! Rendered chat prompts against llama.cpp's, byte for byte.

use infer_engine::chat::{ChatMessage, ChatTemplate};
use infer_engine::tokenizer::Tokenizer;
use infer_gguf::Gguf;
use serde_json::Value as Json;

const SMOLLM2: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../models/SmolLM2-135M-Instruct.Q4_1.gguf");
const GEMMA3: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../models/gemma-3-270m-q4_k_m.gguf");
const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/data");

fn template(path: &str) -> (ChatTemplate, Tokenizer) {
    let g = Gguf::open(path).expect("open model");
    let tok = Tokenizer::from_gguf(&g).expect("tokenizer");
    (ChatTemplate::from_gguf(&g, &tok).expect("chat template"), tok)
}

fn check_reference(t: &ChatTemplate, reference: &str) {
    let text = std::fs::read_to_string(format!("{DATA}/{reference}")).expect("read reference");
    let r: Json = serde_json::from_str(&text).expect("parse reference");
    let chats = r["chat"].as_array().expect("chat[]");
    assert!(!chats.is_empty());
    for c in chats {
        let messages: Vec<ChatMessage> = serde_json::from_value(c["messages"].clone()).expect("messages");
        let want = c["rendered_prompt"].as_str().expect("rendered_prompt");
        let got = t.render(&messages, true).expect("render");
        assert_eq!(got, want, "{reference}: messages {messages:?}");
    }
}

#[test]
fn chat_smollm2_template_matches_llama_cpp() {
    let (t, _) = template(SMOLLM2);
    assert!(!t.is_fallback());
    assert_eq!(t.end_of_turn_token(), Some("<|im_end|>"));
    check_reference(&t, "smollm2.llamacpp.json");
}

#[test]
fn chat_gemma3_without_template_falls_back_to_chatml() {
    let (t, tok) = template(GEMMA3);
    assert!(t.is_fallback());
    assert_eq!(t.end_of_turn_token(), Some("<|im_end|>"));
    check_reference(&t, "gemma3.llamacpp.json");
    // The fallback's text must tokenize without error on Gemma's vocabulary.
    let prompt = t.render(&[ChatMessage::new("user", "hi")], true).unwrap();
    assert!(!tok.encode(&prompt, true, true).unwrap().is_empty());
}

#[test]
fn chat_rendered_prompt_tokenizes_with_special_tokens() {
    let (t, tok) = template(SMOLLM2);
    let prompt = t.render(&[ChatMessage::new("user", "Name three colors.")], true).unwrap();
    let ids = tok.encode(&prompt, true, true).unwrap();
    let im_start = tok.token_id("<|im_start|>").unwrap();
    assert_eq!(ids[0], im_start);
    assert_eq!(ids.iter().filter(|&&i| i == im_start).count(), 3);
}

#[test]
fn chat_template_errors_carry_minijinja_message() {
    // An unknown filter fails at compile or render time, depending on minijinja.
    let err = match ChatTemplate::new("{{ messages[0].content | no_such_filter }}", "", "") {
        Err(e) => e,
        Ok(t) => t.render(&[ChatMessage::new("user", "x")], false).unwrap_err(),
    };
    assert!(err.to_string().contains("no_such_filter"), "{err}");
    let t = ChatTemplate::new("{{ raise_exception('only user turns') }}", "", "").unwrap();
    let err = t.render(&[], false).unwrap_err();
    assert!(err.to_string().contains("only user turns"), "{err}");
}
