//! A tokenizer backed by a Hugging Face `tokenizer.json` (the `tokenizers`
//! crate), behind the same API as the GGUF ones: special-token text is cut
//! out first as for GGUF vocabularies, the rest goes to the HF pipeline
//! (normalizer, pre-tokenizer, model) with its own special tokens off, and
//! BOS/EOS are added per the folder's settings.

use ahash::AHashMap;
use serde_json::Value as Json;
use tokenizers::Tokenizer as HfTokenizer;

use super::bpe::ByteLevelDecoder;
use super::special::Specials;
use super::{attr, end_of_generation_ids, Model, Tokenizer};
use crate::{EngineError, Result};

/// What a folder says about special tokens beyond `tokenizer.json`
/// (`tokenizer_config.json`, `generation_config.json`).
#[derive(Debug, Clone, Default)]
pub struct HfTokenizerSettings {
    /// BOS/EOS token text (`bos_token`, `eos_token`).
    pub bos_text: Option<String>,
    pub eos_text: Option<String>,
    /// `add_bos_token` / `add_eos_token`; when absent, whatever the
    /// tokenizer's post-processor adds around a text.
    pub add_bos: Option<bool>,
    pub add_eos: Option<bool>,
    /// More end-of-generation ids (`generation_config.json`'s `eos_token_id`).
    pub extra_eog: Vec<u32>,
}

/// The pieces of a parsed `tokenizer.json` that the engine needs beyond the
/// `tokenizers` object: the vocabulary in id order and how pieces decode.
pub(crate) struct HfVocab {
    pub pieces: Vec<String>,
    pub attrs: Vec<u8>,
    /// The decoder is byte-level (GPT-2 characters stand for bytes).
    pub byte_level: bool,
    /// SentencePiece-style `▁` for spaces.
    pub metaspace: bool,
}

/// Ids a vocabulary may skip (see [`vocab`]).
const MAX_VOCAB_HOLES: usize = 1 << 16;

/// Reads the vocabulary and decoding facts from `tokenizer.json`'s JSON.
pub(crate) fn vocab(hf: &HfTokenizer, json: &Json) -> Result<HfVocab> {
    let count = hf.get_vocab_size(true);
    if count == 0 || u32::try_from(count).is_err() {
        return Err(EngineError::Tokenizer(format!("tokenizer.json has {count} tokens")));
    }
    // The table runs to the largest id, not the count: the model encodes to
    // every id it lists, so each must be below vocab_size(). A few holes are
    // skipped added-token ids; a table mostly of holes is a broken file.
    let vocab = hf.get_vocab(true);
    let Some((far_text, far_id)) = vocab.iter().max_by_key(|(_, &id)| id) else {
        return Err(EngineError::Tokenizer("tokenizer.json has no tokens".into()));
    };
    let n = *far_id as usize + 1;
    if n > count + MAX_VOCAB_HOLES {
        return Err(EngineError::Tokenizer(format!(
            "tokenizer.json gives token {far_text:?} the id {far_id}, but it has only {count} tokens"
        )));
    }
    let mut pieces: Vec<Option<String>> = vec![None; n];
    for (text, id) in vocab {
        if let Some(slot) = pieces.get_mut(id as usize) {
            *slot = Some(text);
        }
    }
    let byte_fallback = json["model"]["byte_fallback"].as_bool().unwrap_or(false);
    let mut attrs = vec![attr::NORMAL; n];
    let pieces: Vec<String> = pieces
        .into_iter()
        .enumerate()
        .map(|(i, p)| match p {
            // Ids with no text (holes in the vocabulary) can never match.
            None => {
                attrs[i] = attr::UNUSED;
                format!("[EMPTY_{i}]")
            }
            Some(p) => {
                if byte_fallback && super::parse_byte_piece(&p).is_some() {
                    attrs[i] = attr::BYTE;
                }
                p
            }
        })
        .collect();
    for (id, tok) in hf.get_added_tokens_decoder() {
        if let Some(a) = attrs.get_mut(id as usize) {
            *a = if tok.special { attr::CONTROL } else { attr::USER_DEFINED };
        }
    }
    let decoder = &json["decoder"];
    let kinds: Vec<&str> = match decoder["type"].as_str() {
        Some("Sequence") => decoder["decoders"].as_array().into_iter().flatten().filter_map(|d| d["type"].as_str()).collect(),
        Some(t) => vec![t],
        None => vec![],
    };
    let metaspace = kinds.contains(&"Metaspace")
        || decoder["decoders"].as_array().into_iter().flatten().any(|d| d["pattern"]["String"].as_str() == Some("\u{2581}"));
    Ok(HfVocab { pieces, attrs, byte_level: kinds.contains(&"ByteLevel"), metaspace })
}

impl Tokenizer {
    /// Builds a tokenizer from the text of a `tokenizer.json` and the
    /// folder's settings.
    pub fn from_hf_json(text: &str, settings: &HfTokenizerSettings) -> Result<Self> {
        let bad = |e: String| EngineError::Tokenizer(format!("tokenizer.json does not parse: {e}"));
        let json: Json = serde_json::from_str(text).map_err(|e| bad(e.to_string()))?;
        let mut hf: HfTokenizer = text.parse().map_err(|e: tokenizers::Error| bad(e.to_string()))?;
        // A file's own padding and truncation (BERT folders ship `Fixed`
        // 128 and `max_length` 128) would pad every text and cut long ones;
        // the engine cuts to its context itself.
        hf.with_padding(None);
        hf.with_truncation(None).map_err(|e| bad(e.to_string()))?;
        let v = vocab(&hf, &json)?;
        let HfVocab { pieces, mut attrs, byte_level, metaspace } = v;
        let n = pieces.len();
        let mut lookup = AHashMap::with_capacity(n);
        for (i, p) in pieces.iter().enumerate() {
            lookup.entry(p.clone()).or_insert(i as u32);
        }
        // What the post-processor puts around a text: BOS/EOS ids and defaults.
        let (around_bos, around_eos) = special_around(&hf)?;
        let id_of = |t: &Option<String>| t.as_deref().and_then(|t| lookup.get(t).copied());
        let bos = id_of(&settings.bos_text).or(around_bos);
        let eos = id_of(&settings.eos_text).or(around_eos);
        let add_bos = settings.add_bos.unwrap_or(around_bos.is_some());
        let add_eos = settings.add_eos.unwrap_or(around_eos.is_some());
        if add_bos && bos.is_none() {
            return Err(EngineError::Tokenizer("add_bos_token is true but the folder names no BOS token".into()));
        }
        if add_eos && eos.is_none() {
            return Err(EngineError::Tokenizer("add_eos_token is true but the folder names no EOS token".into()));
        }
        // Our partition handles special tokens (and `parse_special`); the HF
        // pipeline sees only the text between them.
        hf.set_encode_special_tokens(true);
        let empty = infer_gguf::Gguf::from_metadata("tokenizer.json", Vec::new())?;
        let mut eog = end_of_generation_ids(&empty, &pieces, &lookup, &mut attrs, eos);
        for &id in &settings.extra_eog {
            if (id as usize) < n {
                eog.push(id);
                attrs[id as usize] |= attr::CONTROL;
            }
        }
        eog.sort_unstable();
        eog.dedup();
        let specials = Specials::new(&pieces, &attrs)?;
        Ok(Tokenizer {
            scores: vec![0.0; n],
            pieces,
            attrs,
            lookup,
            model: Model::Hf(Box::new(hf)),
            specials,
            byte_level: byte_level.then(ByteLevelDecoder::new),
            bos,
            eos,
            add_bos,
            add_eos,
            add_space_prefix: metaspace,
            eog,
        })
    }

    /// Appends the HF pipeline's ids for a text fragment.
    pub(super) fn encode_hf(hf: &HfTokenizer, text: &str, out: &mut Vec<u32>) -> Result<()> {
        let enc = hf.encode(text, false).map_err(|e| EngineError::Tokenizer(format!("tokenizer.json: {e}")))?;
        out.extend_from_slice(enc.get_ids());
        Ok(())
    }
}

/// The single ids the post-processor adds before and after a text (BOS and
/// EOS, or BERT's `[CLS]` and `[SEP]`), found by encoding a word with and
/// without special tokens.
fn special_around(hf: &HfTokenizer) -> Result<(Option<u32>, Option<u32>)> {
    let enc = |add| {
        hf.encode("a", add).map(|e| e.get_ids().to_vec()).map_err(|e| EngineError::Tokenizer(format!("tokenizer.json: {e}")))
    };
    let (plain, with) = (enc(false)?, enc(true)?);
    let Some(at) = (0..=with.len().saturating_sub(plain.len())).find(|&i| with[i..].starts_with(&plain)) else {
        return Ok((None, None));
    };
    let before = (at == 1).then(|| with[0]);
    let after = (with.len() == at + plain.len() + 1).then(|| with[with.len() - 1]);
    Ok((before, after))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bpe(vocab: serde_json::Value) -> String {
        serde_json::json!({
            "version": "1.0", "truncation": null, "padding": null, "added_tokens": [], "normalizer": null,
            "pre_tokenizer": null, "post_processor": null, "decoder": null,
            "model": {"type": "BPE", "dropout": null, "unk_token": null, "fuse_unk": false, "byte_fallback": false,
                      "vocab": vocab, "merges": ["a b"]}
        })
        .to_string()
    }

    /// Found by fuzzing (tests/fuzz.rs, `tokenizer_json`): a vocabulary
    /// with an id past its token count encoded to that id, which is not
    /// below vocab_size() (and would index past the embeddings).
    #[test]
    fn every_id_a_vocabulary_lists_is_below_its_size() {
        let tok = Tokenizer::from_hf_json(&bpe(serde_json::json!({"a": 0, "b": 1, "ab": 300})), &HfTokenizerSettings::default()).unwrap();
        assert_eq!(tok.vocab_size(), 301);
        let ids = tok.encode("abab", false, false).unwrap();
        assert_eq!(ids, [300, 300]);
        assert_eq!(tok.decode(&ids), "abab");
        let far = bpe(serde_json::json!({"a": 0, "b": 1, "ab": 4_000_000_000u32}));
        let e = Tokenizer::from_hf_json(&far, &HfTokenizerSettings::default()).unwrap_err().to_string();
        assert!(e.contains("\"ab\" the id 4000000000") && e.contains("only 3 tokens"), "{e}");
    }
}
