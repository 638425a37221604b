//! Splitting special-token text out of the input before the model sees it
//! (llama.cpp's `tokenizer_st_partition`).
//!
//! llama.cpp tries every control, user-defined and unknown token, longest
//! first, and cuts each occurrence out of the text fragments still
//! unprocessed. We keep exactly that order but first run one Aho-Corasick
//! pass to find which of the (up to thousands of) special tokens occur at
//! all, so Gemma's 6,400 specials cost one scan instead of 6,400.

use aho_corasick::AhoCorasick;

use super::attr;
use crate::{EngineError, Result};

/// A piece of the input: raw text (a byte range) or an already-known token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Fragment {
    Text(usize, usize),
    Token(u32),
}

/// The special tokens in llama.cpp's order and a matcher over their text.
pub(super) struct Specials {
    /// Token ids, longest text first (ties by id).
    ids: Vec<u32>,
    /// Pattern `i` is the text of `ids[i]`.
    matcher: Option<AhoCorasick>,
}

impl Specials {
    pub fn new(pieces: &[String], attrs: &[u8]) -> Result<Self> {
        let mut ids: Vec<u32> = (0..pieces.len() as u32)
            .filter(|&i| attrs[i as usize] & (attr::CONTROL | attr::USER_DEFINED | attr::UNKNOWN) != 0)
            .collect();
        ids.sort_by(|&a, &b| pieces[b as usize].len().cmp(&pieces[a as usize].len()).then(a.cmp(&b)));
        let matcher = if ids.is_empty() {
            None
        } else {
            let patterns: Vec<&str> = ids.iter().map(|&i| pieces[i as usize].as_str()).collect();
            Some(
                AhoCorasick::new(&patterns)
                    .map_err(|e| EngineError::Tokenizer(format!("building the special-token matcher: {e}")))?,
            )
        };
        Ok(Specials { ids, matcher })
    }

    /// Splits `text` into raw fragments and special tokens. With
    /// `parse_special` off only user-defined tokens are split out, as in
    /// llama.cpp (control and unknown tokens stay plain text).
    pub fn partition(&self, text: &str, parse_special: bool, pieces: &[String], attrs: &[u8]) -> Vec<Fragment> {
        let mut frags = Vec::new();
        if text.is_empty() {
            return frags;
        }
        frags.push(Fragment::Text(0, text.len()));
        let Some(matcher) = &self.matcher else { return frags };

        // Which specials occur anywhere, in llama.cpp's order.
        let mut present: Vec<usize> = matcher.find_overlapping_iter(text).map(|m| m.pattern().as_usize()).collect();
        present.sort_unstable();
        present.dedup();

        for idx in present {
            let id = self.ids[idx];
            if !parse_special && attrs[id as usize] & (attr::CONTROL | attr::UNKNOWN) != 0 {
                continue;
            }
            let needle = pieces[id as usize].as_str();
            let mut next = Vec::with_capacity(frags.len() + 2);
            for f in frags {
                let Fragment::Text(start, end) = f else {
                    next.push(f);
                    continue;
                };
                let mut pos = start;
                // Both are UTF-8, so matches fall on character boundaries.
                while let Some(m) = text[pos..end].find(needle) {
                    let m = pos + m;
                    if m > pos {
                        next.push(Fragment::Text(pos, m));
                    }
                    next.push(Fragment::Token(id));
                    pos = m + needle.len();
                }
                if pos < end {
                    next.push(Fragment::Text(pos, end));
                }
            }
            frags = next;
        }
        frags
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup() -> (Vec<String>, Vec<u8>) {
        let pieces: Vec<String> = ["a", "<s>", "<|im_start|>", "\n\n", "<|im", "b"].iter().map(|s| s.to_string()).collect();
        let attrs = vec![attr::NORMAL, attr::CONTROL, attr::CONTROL, attr::USER_DEFINED, attr::CONTROL, attr::NORMAL];
        (pieces, attrs)
    }

    #[test]
    fn longest_first_and_user_defined_always() {
        let (pieces, attrs) = setup();
        let sp = Specials::new(&pieces, &attrs).unwrap();
        let text = "x<|im_start|>y\n\n<s>";
        let f = sp.partition(text, true, &pieces, &attrs);
        assert_eq!(
            f,
            vec![
                Fragment::Text(0, 1),
                Fragment::Token(2),
                Fragment::Text(13, 14),
                Fragment::Token(3),
                Fragment::Token(1)
            ]
        );
        // Without parse_special only the user-defined "\n\n" is split.
        let f = sp.partition(text, false, &pieces, &attrs);
        assert_eq!(f, vec![Fragment::Text(0, 14), Fragment::Token(3), Fragment::Text(16, 19)]);
    }
}
