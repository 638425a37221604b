//! `tokenizer.json` as llama.cpp's `tokenizer.ggml.*` arrays (for
//! `infer convert`): model, pre-tokenizer name, tokens, token types, merges
//! and special-token ids, as `convert_hf_to_gguf.py` writes them.

use infer_gguf::{Metadata, Value, ValueType};
use serde_json::Value as Json;

use crate::error::{EngineError, Result};
use crate::tokenizer::Tokenizer;

/// The split regexes of the HF tokenizers llama.cpp names (from the
/// families' `tokenizer.json`).
const LLAMA3_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const QWEN2_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// `tokenizer.ggml.token_type` of a control token (`[CLS]`, `<s>`, …).
const CONTROL_TOKEN: i32 = 3;

fn err(detail: String) -> EngineError {
    EngineError::Tokenizer(format!("tokenizer.json: {detail}"))
}

/// llama.cpp's name (`tokenizer.ggml.pre`) for a byte-level BPE pre-tokenizer.
fn pre_name(pre: &Json) -> Result<&'static str> {
    let ty = |j: &Json| j["type"].as_str().unwrap_or("").to_string();
    let parts: Vec<&Json> = match ty(pre).as_str() {
        "Sequence" => pre["pretokenizers"].as_array().map(|a| a.iter().collect()).unwrap_or_default(),
        _ => vec![pre],
    };
    let kinds: Vec<String> = parts.iter().map(|p| ty(p)).collect();
    let kinds: Vec<&str> = kinds.iter().map(String::as_str).collect();
    let byte_level_regex = |p: &Json| p["use_regex"].as_bool().unwrap_or(true);
    match kinds.as_slice() {
        ["ByteLevel"] if byte_level_regex(parts[0]) => Ok("gpt-2"),
        ["Digits", "ByteLevel"] if parts[0]["individual_digits"] == true && byte_level_regex(parts[1]) => Ok("smollm"),
        ["Split", "ByteLevel"] if !byte_level_regex(parts[1]) => match parts[0]["pattern"]["Regex"].as_str() {
            Some(LLAMA3_SPLIT) => Ok("llama-bpe"),
            Some(QWEN2_SPLIT) => Ok("qwen2"),
            other => Err(err(format!("split regex {other:?} is not one llama.cpp names (llama-bpe, qwen2)"))),
        },
        other => Err(err(format!("pre-tokenizer {other:?} is not one llama.cpp names (gpt-2, smollm, llama-bpe, qwen2)"))),
    }
}

/// The `tokenizer.ggml.*` keys for `tok` (built from the same `json`).
/// `special` maps `tokenizer_config.json` kinds (`unk`, `pad`, …) to token text.
pub fn tokenizer_metadata(json_text: &str, tok: &Tokenizer, special: &[(&str, Option<String>)]) -> Result<Metadata> {
    let json: Json = serde_json::from_str(json_text).map_err(|e| err(format!("does not parse: {e}")))?;
    let model = &json["model"];
    let n = tok.vocab_size();
    let mut m: Metadata = Vec::new();
    let types: Vec<i32> = (0..n as u32).map(|id| tok.gguf_token_type(id)).collect();
    let pieces: Vec<String> = (0..n as u32).map(|id| tok.piece(id).unwrap_or_default().to_string()).collect();
    match model["type"].as_str() {
        Some("BPE") => {
            m.push(("tokenizer.ggml.model".into(), Value::String("gpt2".into())));
            m.push(("tokenizer.ggml.pre".into(), Value::String(pre_name(&json["pre_tokenizer"])?.into())));
            m.push(("tokenizer.ggml.tokens".into(), Value::str_array(&pieces)));
            let merges = model["merges"].as_array().ok_or_else(|| err("model.merges is missing".into()))?;
            let merges: Vec<String> = merges
                .iter()
                .map(|mg| match mg {
                    Json::String(s) => Ok(s.clone()),
                    Json::Array(p) if p.len() == 2 => Ok(format!("{} {}", p[0].as_str().unwrap_or(""), p[1].as_str().unwrap_or(""))),
                    other => Err(err(format!("merge {other} is neither \"a b\" nor [\"a\", \"b\"]"))),
                })
                .collect::<Result<_>>()?;
            m.push(("tokenizer.ggml.merges".into(), Value::str_array(&merges)));
        }
        Some("WordPiece") => {
            // llama.cpp's BERT vocabulary (`phantom` in its converter):
            // control tokens stay, `##` continuations lose the mark, every
            // other piece (`[unused0]` included) gets a phantom space.
            let phantom: Vec<String> = pieces
                .iter()
                .zip(&types)
                .map(|(p, &ty)| {
                    if ty == CONTROL_TOKEN {
                        p.clone()
                    } else if let Some(rest) = p.strip_prefix("##") {
                        rest.to_string()
                    } else {
                        format!("\u{2581}{p}")
                    }
                })
                .collect();
            m.push(("tokenizer.ggml.model".into(), Value::String("bert".into())));
            m.push(("tokenizer.ggml.pre".into(), Value::String("default".into())));
            m.push(("tokenizer.ggml.tokens".into(), Value::str_array(&phantom)));
            let normalizer = &json["normalizer"];
            let lowercase = normalizer["type"] != "BertNormalizer" || normalizer["lowercase"].as_bool().unwrap_or(true);
            m.push(("tokenizer.ggml.normalizer.lowercase".into(), Value::Bool(lowercase)));
        }
        other => return Err(err(format!("model type {other:?} cannot be converted (BPE, WordPiece)"))),
    }
    m.push(("tokenizer.ggml.token_type".into(), Value::Array(ValueType::I32, types.into_iter().map(Value::I32).collect())));
    for (kind, text) in special {
        let key = match *kind {
            "unk" => "unknown_token_id",
            "pad" => "padding_token_id",
            "sep" => "seperator_token_id",
            "cls" => "cls_token_id",
            "mask" => "mask_token_id",
            _ => continue,
        };
        if let Some(id) = text.as_deref().and_then(|t| tok.token_id(t)) {
            m.push((format!("tokenizer.ggml.{key}"), Value::U32(id)));
        }
    }
    Ok(m)
}
