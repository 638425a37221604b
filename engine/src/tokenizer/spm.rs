//! SentencePiece-style merging by score (`tokenizer.ggml.model = llama`).
//!
//! Written here rather than with the tokenizers crate: llama.cpp does not run
//! SentencePiece's BPE or unigram algorithm but its own greedy loop (from
//! `llm_tokenizer_spm_session`): start from single characters, repeatedly
//! merge the adjacent pair whose concatenation is the vocabulary entry with
//! the highest score (ties to the leftmost pair), then fall back to
//! `<0xNN>` byte tokens for any character left that is not a token. The
//! crate's models rank merges differently, so their ids would not match.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use super::Tokenizer;
use crate::Result;

/// A run of the text: `start..start + len`; `len == 0` once merged away.
#[derive(Clone, Copy)]
struct Symbol {
    start: usize,
    len: usize,
    prev: Option<usize>,
    next: Option<usize>,
}

/// A candidate merge of `left` with `right` into a token of `score`.
struct Bigram {
    score: f32,
    left: usize,
    right: usize,
    /// Byte length of the merged text; a mismatch means a side changed.
    size: usize,
}

impl PartialEq for Bigram {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Bigram {}
impl PartialOrd for Bigram {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Bigram {
    /// Max-heap order: higher score first, then the leftmost pair.
    fn cmp(&self, other: &Self) -> Ordering {
        self.score.total_cmp(&other.score).then_with(|| other.left.cmp(&self.left))
    }
}

/// Appends the ids of `text` (spaces already escaped to `▁`).
pub(super) fn tokenize(tok: &Tokenizer, text: &str, out: &mut Vec<u32>) -> Result<()> {
    let mut symbols: Vec<Symbol> = Vec::with_capacity(text.len());
    for (start, c) in text.char_indices() {
        let i = symbols.len();
        symbols.push(Symbol {
            start,
            len: c.len_utf8(),
            prev: i.checked_sub(1),
            next: if start + c.len_utf8() == text.len() { None } else { Some(i + 1) },
        });
    }
    if symbols.is_empty() {
        return Ok(());
    }

    let mut queue = BinaryHeap::new();
    let try_add = |symbols: &[Symbol], queue: &mut BinaryHeap<Bigram>, left: Option<usize>, right: Option<usize>| {
        let (Some(l), Some(r)) = (left, right) else { return };
        let (a, b) = (symbols[l], symbols[r]);
        let merged = &text[a.start..b.start + b.len];
        // Any vocabulary entry counts, as in llama.cpp (control tokens too).
        if let Some(id) = tok.lookup(merged) {
            queue.push(Bigram { score: tok.score(id), left: l, right: r, size: merged.len() });
        }
    };

    for i in 1..symbols.len() {
        try_add(&symbols, &mut queue, Some(i - 1), Some(i));
    }

    while let Some(bg) = queue.pop() {
        let (l, r) = (symbols[bg.left], symbols[bg.right]);
        if l.len == 0 || r.len == 0 || l.len + r.len != bg.size {
            continue;
        }
        // Merge the right symbol into the left one and unlink it.
        symbols[bg.left].len += r.len;
        symbols[bg.right].len = 0;
        symbols[bg.left].next = r.next;
        if let Some(n) = r.next {
            symbols[n].prev = Some(bg.left);
        }
        let left = symbols[bg.left];
        try_add(&symbols, &mut queue, left.prev, Some(bg.left));
        try_add(&symbols, &mut queue, Some(bg.left), left.next);
    }

    let mut cur = Some(0);
    while let Some(i) = cur {
        let s = symbols[i];
        let piece = &text[s.start..s.start + s.len];
        match tok.lookup(piece) {
            Some(id) => out.push(id),
            // Only single characters can be missing: merges always form tokens.
            None => {
                for &b in piece.as_bytes() {
                    out.push(tok.byte_token(b)?);
                }
            }
        }
        cur = s.next;
    }
    Ok(())
}
