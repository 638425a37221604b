//! Incremental detokenization that only ever returns whole UTF-8 characters.
//!
//! A byte-fallback or byte-level token can carry part of a character (a
//! Korean syllable is three bytes, an emoji four), so bytes are held until
//! the character is complete.

use super::Tokenizer;

/// Turns generated ids into text as they arrive.
#[derive(Debug, Default, Clone)]
pub struct StreamDecoder {
    /// Bytes of a character not yet complete (at most 3 once drained).
    pending: Vec<u8>,
}

impl StreamDecoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one token; returns the text that is now complete (possibly empty).
    /// Special tokens are rendered as their text, as in [`Tokenizer::decode`].
    pub fn push(&mut self, tok: &Tokenizer, id: u32) -> String {
        self.pending.extend_from_slice(&tok.token_bytes(id));
        self.drain(false)
    }

    /// Flushes what is left; an incomplete character becomes U+FFFD.
    pub fn finish(&mut self) -> String {
        self.drain(true)
    }

    fn drain(&mut self, flush: bool) -> String {
        let mut out = String::new();
        let mut rest: &[u8] = &self.pending;
        loop {
            match std::str::from_utf8(rest) {
                Ok(s) => {
                    out.push_str(s);
                    rest = &[];
                    break;
                }
                Err(e) => {
                    let (good, bad) = rest.split_at(e.valid_up_to());
                    // `good` was just validated, so this never falls back.
                    out.push_str(std::str::from_utf8(good).unwrap_or_default());
                    match e.error_len() {
                        // Invalid bytes can never become valid: replace them now.
                        Some(n) => {
                            out.push('\u{FFFD}');
                            rest = &bad[n..];
                        }
                        // A truncated character: wait for the rest unless flushing.
                        None if flush => {
                            out.push('\u{FFFD}');
                            rest = &[];
                            break;
                        }
                        None => {
                            rest = bad;
                            break;
                        }
                    }
                }
            }
        }
        self.pending = rest.to_vec();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain_bytes(chunks: &[&[u8]]) -> Vec<String> {
        let mut d = StreamDecoder::new();
        let mut outs = Vec::new();
        for c in chunks {
            d.pending.extend_from_slice(c);
            outs.push(d.drain(false));
        }
        outs.push(d.finish());
        outs
    }

    #[test]
    fn holds_partial_characters() {
        let han = "한".as_bytes();
        let outs = drain_bytes(&[&han[..1], &han[1..2], &han[2..], b"!"]);
        assert_eq!(outs, vec!["", "", "한", "!", ""]);
    }

    #[test]
    fn invalid_and_truncated_bytes_become_replacement() {
        let outs = drain_bytes(&[b"a\xFFb", &"🦀".as_bytes()[..2]]);
        assert_eq!(outs, vec!["a\u{FFFD}b", "", "\u{FFFD}"]);
    }
}
