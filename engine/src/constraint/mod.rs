//! Structured output: a token-level constraint that masks the logits at every
//! step so the generated text matches a JSON schema, a GBNF grammar (as
//! llama.cpp's `--grammar`), or a Lark grammar.
//!
//! The grammar engine is `llguidance` (an Earley parser over a lexer, with the
//! token mask computed by walking a prefix tree of the vocabulary against the
//! parser state). GBNF is translated to its Lark dialect by [`gbnf`].
//!
//! A [`Constraint`] is compiled once (and is cheap to clone); each sequence
//! being generated gets its own [`ConstraintState`] from
//! [`Constraint::start`]. End-of-generation tokens are allowed only where the
//! grammar may end, and once it can take no more text they are the only
//! tokens allowed, so generation ends when the grammar is complete.
//!
//! ```no_run
//! use infer_engine::constraint::Constraint;
//! # fn main() -> infer_engine::Result<()> {
//! let model = infer_engine::Model::load("model.gguf", Default::default())?;
//! let schema = serde_json::json!({"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]});
//! let constraint = Constraint::json_schema(&schema, model.tokenizer())?;
//! let mut state = constraint.start();
//! let mut logits = vec![0.0f32; model.config().vocab];
//! state.mask(&mut logits)?; // forbidden tokens are now -inf
//! # Ok(()) }
//! ```

mod ending;
mod formats;
pub mod gbnf;
mod schema;
mod vocab;

use std::sync::Arc;

use llguidance::api::TopLevelGrammar;
use llguidance::toktrie::SimpleVob;
use llguidance::Matcher;

use crate::tokenizer::Tokenizer;
use crate::{EngineError, Result};

pub use formats::bound_string_formats;
pub use schema::close_object_schemas;
pub use vocab::ConstraintVocab;

use ending::{JsonEnding, Move};

/// How a [`Constraint`] was given, for messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConstraintKind {
    JsonSchema,
    Gbnf,
    Lark,
    Regex,
}

/// A compiled grammar bound to a vocabulary. Clone it freely (the parser
/// tables are shared); call [`Constraint::start`] once per sequence.
#[derive(Clone)]
pub struct Constraint {
    vocab: Arc<ConstraintVocab>,
    /// A matcher in its initial state; every sequence starts from a copy.
    initial: Matcher,
    kind: ConstraintKind,
    /// Steer a looping or over-budget JSON answer to its end (see [`ending`]).
    json_ending: bool,
}

impl std::fmt::Debug for Constraint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Constraint").field("kind", &self.kind).field("vocab", &self.vocab).finish()
    }
}

/// JSON is generated compactly (`{"a": 1, "b": [2, 3]}`): free whitespace lets
/// a small model pad forever instead of finishing.
fn compact_json_options() -> serde_json::Value {
    serde_json::json!({"whitespace_flexible": false, "item_separator": ", ", "key_separator": ": "})
}

impl Constraint {
    /// Output that is one JSON value valid against `schema` (draft 2020-12
    /// keywords: `type`, `properties`, `required`, `additionalProperties`,
    /// `enum`, `const`, `items`, `prefixItems`, `minItems`/`maxItems`,
    /// `minLength`/`maxLength`, `pattern`, `format`, `minimum`/`maximum`,
    /// `anyOf`, `oneOf`, `allOf`, `$ref` to `$defs`, …). A keyword the engine
    /// cannot enforce is an error, never silently ignored.
    pub fn json_schema(schema: &serde_json::Value, tok: &Tokenizer) -> Result<Self> {
        Self::json_schema_with_vocab(schema, ConstraintVocab::for_tokenizer(tok)?)
    }

    /// [`Constraint::json_schema`] for a prepared vocabulary.
    ///
    /// Object schemas that list `properties` allow no other keys unless
    /// `additionalProperties` says so, as llama.cpp's grammars do
    /// ([`close_object_schemas`]); see [`Constraint::json_schema_strict_with_vocab`]
    /// for OpenAI's `strict: true`.
    pub fn json_schema_with_vocab(schema: &serde_json::Value, vocab: Arc<ConstraintVocab>) -> Result<Self> {
        Self::json_schema_strict_with_vocab(schema, vocab, false)
    }

    /// [`Constraint::json_schema_with_vocab`], and with `strict` no object
    /// allows a key outside its `properties`, whatever it says (OpenAI's
    /// `strict: true`).
    pub fn json_schema_strict_with_vocab(schema: &serde_json::Value, vocab: Arc<ConstraintVocab>, strict: bool) -> Result<Self> {
        let schema = match schema {
            serde_json::Value::Object(_) => prepared_schema(schema, strict),
            serde_json::Value::Bool(true) => prepared_schema(&serde_json::json!({}), strict),
            serde_json::Value::Bool(false) => {
                return Err(EngineError::Schema("the schema `false` accepts no value".into()));
            }
            other => {
                let kind = json_kind(other);
                return Err(EngineError::Schema(format!("a schema must be an object or a boolean, not {kind}")));
            }
        };
        let grammar = TopLevelGrammar::from_json_schema(schema);
        Ok(Self::compile(grammar, vocab, ConstraintKind::JsonSchema)?.with_json_ending())
    }

    /// Any JSON object (`response_format: {"type": "json_object"}`).
    pub fn json_object(tok: &Tokenizer) -> Result<Self> {
        Self::json_object_with_vocab(ConstraintVocab::for_tokenizer(tok)?)
    }

    /// [`Constraint::json_object`] for a prepared vocabulary.
    pub fn json_object_with_vocab(vocab: Arc<ConstraintVocab>) -> Result<Self> {
        Self::json_schema_with_vocab(&serde_json::json!({"type": "object"}), vocab)
    }

    /// Output matching a GBNF grammar (llama.cpp's syntax; `root` is the start rule).
    pub fn gbnf(text: &str, tok: &Tokenizer) -> Result<Self> {
        Self::gbnf_with_vocab(text, ConstraintVocab::for_tokenizer(tok)?)
    }

    /// [`Constraint::gbnf`] for a prepared vocabulary.
    pub fn gbnf_with_vocab(text: &str, vocab: Arc<ConstraintVocab>) -> Result<Self> {
        let lark = gbnf::to_lark(text)?;
        Self::compile(TopLevelGrammar::from_lark(lark), vocab, ConstraintKind::Gbnf)
    }

    /// Output matching a grammar in llguidance's Lark dialect (`start` is the start rule).
    pub fn lark(text: &str, tok: &Tokenizer) -> Result<Self> {
        Self::lark_with_vocab(text, ConstraintVocab::for_tokenizer(tok)?)
    }

    /// [`Constraint::lark`] for a prepared vocabulary.
    pub fn lark_with_vocab(text: &str, vocab: Arc<ConstraintVocab>) -> Result<Self> {
        let grammar = TopLevelGrammar::from_lark(text.to_string());
        Self::compile(grammar, vocab, ConstraintKind::Lark)
    }

    /// Output matching a regular expression (Rust `regex` syntax) as a whole.
    pub fn regex(pattern: &str, tok: &Tokenizer) -> Result<Self> {
        let grammar = TopLevelGrammar::from_regex(pattern);
        Self::compile(grammar, ConstraintVocab::for_tokenizer(tok)?, ConstraintKind::Regex)
    }

    fn compile(grammar: TopLevelGrammar, vocab: Arc<ConstraintVocab>, kind: ConstraintKind) -> Result<Self> {
        let err = |msg: String| match kind {
            ConstraintKind::JsonSchema => EngineError::Schema(msg),
            _ => EngineError::Grammar(msg),
        };
        let parser = vocab.factory().create_parser(grammar).map_err(|e| err(format!("{e:#}")))?;
        let initial = Matcher::new(Ok(parser));
        if let Some(e) = initial.get_error() {
            return Err(err(e));
        }
        // A grammar with no sentence (`root ::= root`) compiles, then fails
        // at the first mask with llguidance's state dump: refuse it here,
        // naming the fault, so a request gets a 400 rather than a 500.
        let first = initial.deep_clone().compute_mask_or_eos();
        if first.as_ref().map_or(true, |m| m.is_zero()) {
            let why = first.err().map(|e| format!(" ({})", format!("{e:#}").lines().next().unwrap_or_default())).unwrap_or_default();
            return Err(err(format!("the grammar matches no output: no rule reaches text{why}")));
        }
        Ok(Constraint { vocab, initial, kind, json_ending: false })
    }

    /// Watches the output as JSON (tool calls' markup around it is fine) and
    /// steers it to its end when it loops or the token budget runs low,
    /// within what the grammar allows ([`ending`]). On for JSON schemas;
    /// for a Lark grammar whose sentences are JSON, such as tool calls.
    pub fn with_json_ending(mut self) -> Self {
        self.json_ending = true;
        self
    }

    /// What the constraint was built from.
    pub fn kind(&self) -> ConstraintKind {
        self.kind
    }

    /// The vocabulary it is bound to.
    pub fn vocab(&self) -> &Arc<ConstraintVocab> {
        &self.vocab
    }

    /// A fresh per-sequence state at the start of the output.
    pub fn start(&self) -> ConstraintState {
        ConstraintState {
            matcher: self.initial.deep_clone(),
            vocab: self.vocab.clone(),
            mask: None,
            n_accepted: 0,
            ending: self.json_ending.then(JsonEnding::default),
        }
    }
}

/// `schema` with its objects closed and the compact-JSON options.
fn prepared_schema(schema: &serde_json::Value, strict: bool) -> serde_json::Value {
    let mut schema = schema.clone();
    close_object_schemas(&mut schema, strict);
    bound_string_formats(&mut schema);
    if let serde_json::Value::Object(map) = &mut schema {
        map.entry("x-guidance").or_insert_with(compact_json_options);
    }
    schema
}

/// [`prepared_schema`] as a `%json` body in a Lark grammar.
pub(crate) fn compact_schema_json(schema: &serde_json::Value, strict: bool) -> String {
    prepared_schema(schema, strict).to_string()
}

fn json_kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

/// One sequence's position in a [`Constraint`]'s grammar.
pub struct ConstraintState {
    matcher: Matcher,
    vocab: Arc<ConstraintVocab>,
    /// The allowed set for the current position, computed on first use.
    mask: Option<SimpleVob>,
    n_accepted: usize,
    ending: Option<JsonEnding>,
}

impl Clone for ConstraintState {
    /// An independent copy (e.g. to try a continuation without losing this one).
    fn clone(&self) -> Self {
        ConstraintState {
            matcher: self.matcher.deep_clone(),
            vocab: self.vocab.clone(),
            mask: self.mask.clone(),
            n_accepted: self.n_accepted,
            ending: self.ending.clone(),
        }
    }
}

impl std::fmt::Debug for ConstraintState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConstraintState").field("n_accepted", &self.n_accepted).finish()
    }
}

impl ConstraintState {
    fn current_mask(&mut self) -> Result<&SimpleVob> {
        if self.mask.is_none() {
            let m = self.matcher.compute_mask_or_eos().map_err(|e| EngineError::Constraint(format!("{e:#}")))?;
            if m.is_zero() {
                return Err(EngineError::Constraint(format!(
                    "no token of the vocabulary can continue the output after {} tokens",
                    self.n_accepted
                )));
            }
            let m = match &self.ending {
                Some(e) if e.is_closing() => closing_tokens(&m, e, &self.vocab),
                Some(e) if e.is_winding_down() => winding_down_tokens(m, e, &self.vocab),
                _ => m,
            };
            self.mask = Some(m);
        }
        // Set just above.
        self.mask.as_ref().ok_or_else(|| EngineError::Constraint("mask missing".into()))
    }

    /// Sets the logits of every token the grammar forbids here to −∞
    /// (including ids beyond the tokenizer's vocabulary).
    pub fn mask(&mut self, logits: &mut [f32]) -> Result<()> {
        let n = self.vocab.n_vocab();
        let words = self.current_mask()?.as_slice();
        for (w, chunk) in logits.chunks_mut(32).enumerate() {
            let bits = words.get(w).copied().unwrap_or(0);
            if bits == u32::MAX && (w + 1) * 32 <= n {
                continue;
            }
            for (b, l) in chunk.iter_mut().enumerate() {
                if bits & (1 << b) == 0 || w * 32 + b >= n {
                    *l = f32::NEG_INFINITY;
                }
            }
        }
        Ok(())
    }

    /// Calls `f` with every allowed id below `limit`, ascending.
    pub fn for_each_allowed(&mut self, limit: usize, mut f: impl FnMut(u32)) -> Result<()> {
        let limit = limit.min(self.vocab.n_vocab());
        self.current_mask()?.iter_set_entries(|i| {
            if i < limit {
                f(i as u32)
            }
        });
        Ok(())
    }

    /// Every allowed id, ascending.
    pub fn allowed_tokens(&mut self) -> Result<Vec<u32>> {
        let mut out = Vec::new();
        self.for_each_allowed(usize::MAX, |i| out.push(i))?;
        Ok(out)
    }

    /// Whether the grammar allows `id` next.
    pub fn is_allowed(&mut self, id: u32) -> Result<bool> {
        Ok((id as usize) < self.vocab.n_vocab() && self.current_mask()?.is_allowed(id))
    }

    /// Advances past `id`; an error when the grammar forbids it.
    pub fn accept(&mut self, id: u32) -> Result<()> {
        if !self.is_allowed(id)? {
            return Err(EngineError::Constraint(format!(
                "token {id} is not allowed by the grammar after {} tokens",
                self.n_accepted
            )));
        }
        self.mask = None;
        self.n_accepted += 1;
        // A finished grammar has nothing left to match the end token against.
        if self.matcher.is_stopped() && self.vocab.eog_ids().contains(&id) {
            return Ok(());
        }
        self.matcher.consume_token(id).map_err(|e| EngineError::Constraint(format!("{e:#}")))?;
        if let Some(e) = &mut self.ending {
            e.accepted(self.vocab.token_text(id), self.n_accepted);
        }
        Ok(())
    }

    /// Tells the state how many tokens the generation may take in all, so
    /// a JSON answer is closed before they run out ([`Constraint::with_json_ending`]).
    pub fn set_max_tokens(&mut self, max_tokens: usize) {
        if let Some(e) = &mut self.ending {
            e.set_budget(max_tokens);
        }
    }

    /// The answer was closed because the token budget ran low: it is
    /// complete (it parses) but shorter than the model would have made it,
    /// so the generation reports [`crate::FinishReason::Length`].
    pub fn cut_short(&self) -> bool {
        self.ending.as_ref().is_some_and(JsonEnding::cut_short)
    }

    /// The grammar can take no more text: only end-of-generation tokens are
    /// allowed now (or one was accepted).
    pub fn is_complete(&self) -> bool {
        self.matcher.is_stopped()
    }

    /// The output so far is a whole match (an end-of-generation token may come next).
    pub fn is_accepting(&mut self) -> bool {
        self.matcher.is_accepting().unwrap_or(false)
    }

    /// Tokens accepted so far.
    pub fn n_accepted(&self) -> usize {
        self.n_accepted
    }
}

/// Past half the budget: where some allowed token closes the array or
/// object being written (or ends the answer), the tokens that would write
/// another item or key are left out. An open array thus ends after the
/// item being written, and optional keys are left out, instead of the
/// budget cutting the answer short; a string or number being written is
/// finished as the model likes.
fn winding_down_tokens(allowed: SimpleVob, ending: &JsonEnding, vocab: &ConstraintVocab) -> SimpleVob {
    // Inside a structure only a token holding `,`, `]` or `}` can write more
    // or close (plus an end token), so those alone are looked at; at the top
    // level, after the answer, every allowed token counts.
    let mut candidates = allowed.clone();
    if !ending.at_top_level() {
        candidates.and(vocab.separators());
        for &id in vocab.eog_ids() {
            if allowed.is_allowed(id) {
                candidates.allow_token(id);
            }
        }
    }
    let mut more = Vec::new();
    let mut can_close = false;
    candidates.iter_set_entries(|i| match ending.next_move(vocab.token_text(i as u32)) {
        Move::More => more.push(i as u32),
        Move::Close => can_close = true,
        Move::Within => {}
    });
    if !can_close || more.is_empty() {
        return allowed;
    }
    let mut out = allowed;
    for id in more {
        out.disallow_token(id);
    }
    out
}

/// The tokens of `allowed` that leave the least to close (an end token, where
/// allowed, before any other).
fn closing_tokens(allowed: &SimpleVob, ending: &JsonEnding, vocab: &ConstraintVocab) -> SimpleVob {
    let mut best = i32::MAX;
    let mut ids = Vec::new();
    allowed.iter_set_entries(|i| {
        let cost = ending.cost_after(vocab.token_text(i as u32));
        if cost < best {
            best = cost;
            ids.clear();
        }
        if cost == best {
            ids.push(i as u32);
        }
    });
    // Nothing closes anything: at least do not write the loop's block again.
    if let Some(next) = ending.loop_next_byte().filter(|_| best >= ending.cost_now()) {
        let other: Vec<u32> =
            ids.iter().copied().filter(|&id| vocab.token_text(id).is_none_or(|t| t.first() != Some(&next))).collect();
        if !other.is_empty() {
            ids = other;
        }
        // Prefer a token bringing a byte the loop never wrote (an e-mail's
        // `@`, a domain's `.`): what the format still needs is among them.
        let block = ending.loop_block();
        let new: Vec<u32> = ids
            .iter()
            .copied()
            .filter(|&id| vocab.token_text(id).is_some_and(|t| t.iter().any(|b| !block.contains(b))))
            .collect();
        if !new.is_empty() {
            ids = new;
        }
    }
    let mut out = SimpleVob::alloc(allowed.len());
    for id in ids {
        out.allow_token(id);
    }
    out
}

#[cfg(test)]
mod tests;
