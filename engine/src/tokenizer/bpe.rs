//! Byte-level BPE (`tokenizer.ggml.model = gpt2`), run by the tokenizers crate.
//!
//! The crate reproduces llama.cpp's merge loop exactly (lowest rank first,
//! ties to the leftmost pair) and its regex splits, so we only feed it the
//! vocabulary, the merges and the pre-tokenizer. Special tokens are split off
//! before we get here (see `special.rs`), so its added-token machinery is not
//! used.

use std::collections::HashMap;

use tokenizers::models::bpe::BPE;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::{SplitDelimiterBehavior, Tokenizer as HfTokenizer};

use super::pretokenize::PreTokenizer;
use crate::{EngineError, Result};

fn hf_err(what: &str, e: impl std::fmt::Display) -> EngineError {
    EngineError::Tokenizer(format!("{what}: {e}"))
}

/// The BPE model and its pre-tokenizer.
pub(super) struct Bpe {
    hf: HfTokenizer,
}

impl Bpe {
    /// `lookup` is the vocabulary (text to id), `merges` the
    /// `tokenizer.ggml.merges` strings ("left right", rank = index).
    pub fn new(lookup: &ahash::AHashMap<String, u32>, merges: &[&str], pre: &PreTokenizer) -> Result<Self> {
        let vocab = lookup.clone();
        let mut pairs = Vec::with_capacity(merges.len());
        for m in merges {
            // llama.cpp splits at the first space after the first byte, so a
            // left part that is itself a space still parses.
            let Some(pos) = m.bytes().skip(1).position(|b| b == b' ').map(|p| p + 1) else {
                continue;
            };
            let (a, b) = (&m[..pos], &m[pos + 1..]);
            // The tokenizers crate rejects merges whose parts or result are not
            // tokens; llama.cpp would never produce a usable token from them.
            if lookup.contains_key(a) && lookup.contains_key(b) && lookup.contains_key(&format!("{a}{b}")) {
                pairs.push((a.to_string(), b.to_string()));
            }
        }
        let model = BPE::builder()
            .vocab_and_merges(vocab, pairs)
            .ignore_merges(pre.ignore_merges)
            .build()
            .map_err(|e| hf_err("building the BPE model", e))?;
        let mut steps = Vec::with_capacity(pre.regexes.len() + 1);
        for re in &pre.regexes {
            let split = Split::new(SplitPattern::Regex((*re).to_string()), SplitDelimiterBehavior::Isolated, false)
                .map_err(|e| hf_err(&format!("pre-tokenizer \"{}\" regex {re}", pre.name), e))?;
            steps.push(PreTokenizerWrapper::Split(split));
        }
        // Bytes to GPT-2's printable characters; the regexes already split.
        steps.push(PreTokenizerWrapper::ByteLevel(ByteLevel::new(false, false, false)));
        let mut hf = HfTokenizer::new(model);
        hf.with_pre_tokenizer(Some(PreTokenizerWrapper::Sequence(Sequence::new(steps))));
        Ok(Bpe { hf })
    }

    /// Appends the ids of `text` (raw text, no special tokens in it).
    pub fn encode(&self, text: &str, out: &mut Vec<u32>) -> Result<()> {
        if text.is_empty() {
            return Ok(());
        }
        let enc = self.hf.encode_fast(text, false).map_err(|e| hf_err("BPE encoding", e))?;
        out.extend_from_slice(enc.get_ids());
        Ok(())
    }
}

/// GPT-2's byte-to-character table: printable Latin-1 bytes map to
/// themselves, the rest to U+0100 upwards in byte order.
fn byte_to_char_table() -> [char; 256] {
    let mut table = ['\0'; 256];
    let mut n = 0u32;
    for b in 0..=255u8 {
        let printable = matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
        table[b as usize] = if printable {
            b as char
        } else {
            let c = char::from_u32(256 + n).unwrap_or('\0');
            n += 1;
            c
        };
    }
    table
}

/// The inverse of GPT-2's byte mapping.
pub(super) struct ByteLevelDecoder {
    char_to_byte: HashMap<char, u8>,
}

impl ByteLevelDecoder {
    pub fn new() -> Self {
        let table = byte_to_char_table();
        ByteLevelDecoder { char_to_byte: table.iter().enumerate().map(|(b, &c)| (c, b as u8)).collect() }
    }

    /// The bytes a byte-level piece stands for. A character outside the
    /// table (not produced by GPT-2's mapping) is kept as its UTF-8.
    pub fn decode(&self, piece: &str, out: &mut Vec<u8>) {
        for c in piece.chars() {
            match self.char_to_byte.get(&c) {
                Some(&b) => out.push(b),
                None => {
                    let mut buf = [0u8; 4];
                    out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_table_matches_gpt2() {
        let t = byte_to_char_table();
        assert_eq!(t[b' ' as usize], 'Ġ');
        assert_eq!(t[b'\n' as usize], 'Ċ');
        assert_eq!(t[b'a' as usize], 'a');
        assert_eq!(t[0xAD], 'Ń');
        let d = ByteLevelDecoder::new();
        let mut out = Vec::new();
        d.decode("ĠHelloĊ", &mut out);
        assert_eq!(out, b" Hello\n");
    }
}
