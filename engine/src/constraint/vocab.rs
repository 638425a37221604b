//! The vocabulary as the grammar engine sees it: every token's bytes in a
//! prefix tree (llguidance's `TokTrie`), plus the parser factory that
//! precomputes per-lexeme slices of that tree. Built once per tokenizer and
//! cached, since building it costs far more than one decode step.

use std::hash::{BuildHasher, Hasher};
use std::sync::{Arc, Mutex};

use llguidance::toktrie::{ApproximateTokEnv, SimpleVob, TokEnv, TokRxInfo, TokTrie};
use llguidance::ParserFactory;

use crate::tokenizer::Tokenizer;
use crate::{EngineError, Result};

/// Tokens of a vocabulary, prepared for constrained sampling.
pub struct ConstraintVocab {
    factory: ParserFactory,
    n_vocab: usize,
    eog: Vec<u32>,
    /// Text tokens holding a `,`, `]` or `}`: the only ones that can write
    /// another item or close a structure inside JSON (the ending guard's
    /// winding down looks at these alone, not the whole vocabulary).
    separators: SimpleVob,
}

impl std::fmt::Debug for ConstraintVocab {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConstraintVocab").field("n_vocab", &self.n_vocab).field("eog", &self.eog).finish()
    }
}

/// How many tokenizers' vocabularies stay cached (a process rarely holds more models).
const CACHE_SLOTS: usize = 4;

static CACHE: Mutex<Vec<(u64, Arc<ConstraintVocab>)>> = Mutex::new(Vec::new());

impl ConstraintVocab {
    /// The vocabulary of `tok`, built on first use and cached (keyed by a hash
    /// of its pieces, so a reloaded model finds its entry).
    pub fn for_tokenizer(tok: &Tokenizer) -> Result<Arc<Self>> {
        let key = fingerprint(tok);
        if let Some(v) = lock_cache().iter().find(|(k, _)| *k == key).map(|(_, v)| v.clone()) {
            return Ok(v);
        }
        let n = tok.vocab_size();
        let mut tokens = Vec::with_capacity(n);
        let mut special = Vec::new();
        for id in 0..n as u32 {
            if tok.is_special(id) || tok.is_eog(id) {
                special.push(id);
                tokens.push(tok.piece(id).unwrap_or_default().as_bytes().to_vec());
            } else {
                tokens.push(tok.token_bytes(id));
            }
        }
        let vocab = Arc::new(Self::new(tokens, &special, &tok.eog_ids())?);
        let mut cache = lock_cache();
        if cache.len() >= CACHE_SLOTS {
            cache.remove(0);
        }
        cache.push((key, vocab.clone()));
        Ok(vocab)
    }

    /// A vocabulary from each token's bytes. `special` ids (control tokens)
    /// are never produced by grammar text; `eog` ids end generation and are
    /// allowed only where the grammar may end.
    pub fn new(tokens: Vec<Vec<u8>>, special: &[u32], eog: &[u32]) -> Result<Self> {
        let n = tokens.len();
        let n32 = u32::try_from(n).map_err(|_| EngineError::Tokenizer(format!("{n} tokens are too many")))?;
        let Some(&first_eog) = eog.first() else {
            return Err(EngineError::Tokenizer(
                "the vocabulary has no end-of-generation token, so a constrained answer could never end".into(),
            ));
        };
        if let Some(bad) = special.iter().chain(eog).find(|&&id| id >= n32) {
            return Err(EngineError::Tokenizer(format!("token id {bad} is outside the vocabulary of {n}")));
        }
        let mut is_special = vec![false; n];
        for &id in special.iter().chain(eog) {
            is_special[id as usize] = true;
        }
        // The trie holds each byte string once: special tokens get the marker
        // byte in front (so text never matches them) and a repeated string
        // keeps only its first id.
        let mut seen = ahash::AHashSet::with_capacity(n);
        let words: Vec<Vec<u8>> = tokens
            .into_iter()
            .enumerate()
            .map(|(id, bytes)| {
                let mut w = if is_special[id] {
                    let mut w = vec![TokTrie::SPECIAL_TOKEN_MARKER];
                    w.extend_from_slice(&bytes);
                    w
                } else {
                    bytes
                };
                if w.is_empty() || !seen.insert(w.clone()) {
                    w = format!("\u{ff}<[duplicate or empty {id}]>").into_bytes();
                    w[0] = TokTrie::SPECIAL_TOKEN_MARKER;
                }
                w
            })
            .collect();
        let mut separators = SimpleVob::alloc(n);
        for (id, w) in words.iter().enumerate() {
            if !is_special[id] && w.iter().any(|b| matches!(b, b',' | b']' | b'}')) {
                separators.allow_token(id as u32);
            }
        }
        let info = TokRxInfo::new(n32, first_eog);
        let trie = TokTrie::from(&info, &words).with_eos_tokens(eog);
        let env: TokEnv = Arc::new(ApproximateTokEnv::new(trie));
        let mut factory =
            ParserFactory::new_simple(&env).map_err(|e| EngineError::Tokenizer(format!("building the token trie: {e:#}")))?;
        // The library must not write to stderr.
        factory.quiet();
        Ok(ConstraintVocab { factory, n_vocab: n, eog: eog.to_vec(), separators })
    }

    /// Number of tokens.
    pub fn n_vocab(&self) -> usize {
        self.n_vocab
    }

    /// End-of-generation ids.
    pub fn eog_ids(&self) -> &[u32] {
        &self.eog
    }

    /// The text of token `id` (empty for a control token); `None` for an end token.
    pub(crate) fn token_text(&self, id: u32) -> Option<&[u8]> {
        if self.eog.contains(&id) {
            return None;
        }
        let bytes = self.factory.tok_env().tok_trie().token(id);
        Some(if bytes.first() == Some(&TokTrie::SPECIAL_TOKEN_MARKER) { &[] } else { bytes })
    }

    /// See the field: tokens holding a `,`, `]` or `}`.
    pub(crate) fn separators(&self) -> &SimpleVob {
        &self.separators
    }

    pub(crate) fn factory(&self) -> &ParserFactory {
        &self.factory
    }
}

fn lock_cache() -> std::sync::MutexGuard<'static, Vec<(u64, Arc<ConstraintVocab>)>> {
    // A panic while holding the lock leaves the list intact; keep using it.
    CACHE.lock().unwrap_or_else(|e| e.into_inner())
}

/// A hash of everything the trie is built from.
fn fingerprint(tok: &Tokenizer) -> u64 {
    let mut h = ahash::RandomState::with_seeds(1, 2, 3, 4).build_hasher();
    h.write_usize(tok.vocab_size());
    for id in 0..tok.vocab_size() as u32 {
        let piece = tok.piece(id).unwrap_or_default();
        h.write_usize(piece.len());
        h.write(piece.as_bytes());
        h.write_u8(u8::from(tok.is_special(id)) | (u8::from(tok.is_eog(id)) << 1));
    }
    h.finish()
}
