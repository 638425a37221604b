//! WordPiece (`tokenizer.ggml.model = bert`), as Hugging Face's BERT
//! tokenizers do it: `BertNormalizer` (clean the text, lower-case, strip
//! accents through NFD, space out CJK characters), `BertPreTokenizer`
//! (whitespace and punctuation), then greedy longest-match WordPiece with
//! `[UNK]` for a word that has no split. The tokenizers crate runs the three
//! steps; we only rebuild its vocabulary from the GGUF's.
//!
//! llama.cpp's converter stores the vocabulary in "phantom space" form: a
//! word-initial piece gets a `▁` prefix and a continuation piece loses its
//! `##`; control tokens (`[CLS]`, `[SEP]`, …) stay as they are. We undo
//! that. We follow Hugging Face rather than llama.cpp's own WPM tokenizer,
//! which drops Hangul vowel and final jamo (see the embeddings reference).

use tokenizers::models::wordpiece::WordPiece as HfWordPiece;
use tokenizers::normalizers::bert::BertNormalizer;
use tokenizers::pre_tokenizers::bert::BertPreTokenizer;
use tokenizers::Tokenizer as HfTokenizer;

use super::attr;
use crate::{EngineError, Result};

/// BERT's limit: a longer word becomes `[UNK]` without being split.
const MAX_CHARS_PER_WORD: usize = 100;

/// The WordPiece model with BERT's normalizer and pre-tokenizer.
pub(super) struct WordPiece {
    hf: HfTokenizer,
}

/// The vocabulary string Hugging Face uses for a GGUF piece in phantom
/// space form: `▁word` → `word`, `piece` → `##piece`; control tokens as
/// they are.
pub(super) fn hf_piece(piece: &str, attrs: u8) -> String {
    if attrs & (attr::CONTROL | attr::UNKNOWN) != 0 {
        piece.to_string()
    } else if let Some(word) = piece.strip_prefix('\u{2581}') {
        word.to_string()
    } else {
        format!("##{piece}")
    }
}

impl WordPiece {
    /// `pieces` and `attrs` are the GGUF vocabulary; `unk` the id of `[UNK]`;
    /// `lowercase` from `tokenizer.ggml.normalizer.lowercase` (accents are
    /// stripped exactly when text is lower-cased, as `strip_accents: null` does).
    pub fn new(pieces: &[String], attrs: &[u8], unk: u32, lowercase: bool) -> Result<Self> {
        let mut vocab = ahash::AHashMap::with_capacity(pieces.len());
        for (i, (p, &a)) in pieces.iter().zip(attrs).enumerate() {
            vocab.entry(hf_piece(p, a)).or_insert(i as u32);
        }
        let unk_text = hf_piece(&pieces[unk as usize], attrs[unk as usize]);
        let model = HfWordPiece::builder()
            .vocab(vocab)
            .unk_token(unk_text)
            .continuing_subword_prefix("##".into())
            .max_input_chars_per_word(MAX_CHARS_PER_WORD)
            .build()
            .map_err(|e| EngineError::Tokenizer(format!("building the WordPiece model: {e}")))?;
        let mut hf = HfTokenizer::new(model);
        hf.with_normalizer(Some(BertNormalizer::new(true, true, None, lowercase)));
        hf.with_pre_tokenizer(Some(BertPreTokenizer));
        Ok(WordPiece { hf })
    }

    /// Appends the ids of `text` (no special tokens in it, none added).
    pub fn encode(&self, text: &str, out: &mut Vec<u32>) -> Result<()> {
        if text.is_empty() {
            return Ok(());
        }
        let enc = self.hf.encode_fast(text, false).map_err(|e| EngineError::Tokenizer(format!("WordPiece encoding: {e}")))?;
        out.extend_from_slice(enc.get_ids());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny() -> WordPiece {
        let pieces: Vec<String> = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "\u{2581}the", "\u{2581}cat", "s", "\u{2581}cafe", "\u{2581}!", "\u{2581}x"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let mut attrs = vec![attr::NORMAL; pieces.len()];
        attrs[..4].fill(attr::CONTROL);
        WordPiece::new(&pieces, &attrs, 1, true).unwrap()
    }

    #[test]
    fn phantom_space_pieces_map_back() {
        assert_eq!(hf_piece("\u{2581}the", attr::NORMAL), "the");
        assert_eq!(hf_piece("s", attr::NORMAL), "##s");
        assert_eq!(hf_piece("[CLS]", attr::CONTROL), "[CLS]");
    }

    #[test]
    fn normalizes_splits_and_falls_back_to_unk() {
        let wp = tiny();
        let mut ids = Vec::new();
        // Lower-cased, accent stripped, "cats" split as cat ##s, "!" split
        // off, "dog" has no split: [UNK].
        wp.encode("The CATS  Café! dog", &mut ids).unwrap();
        assert_eq!(ids, [4, 5, 6, 7, 8, 1]);
    }
}
