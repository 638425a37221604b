//! Tokenizer built from the vocabulary in a GGUF file, giving the same ids as
//! llama.cpp (`llama-vocab.cpp`).
//!
//! - `tokenizer.ggml.model = gpt2`: byte-level BPE with merges, split first by
//!   the regexes that `tokenizer.ggml.pre` names (`bpe.rs`, `pretokenize.rs`).
//! - `tokenizer.ggml.model = llama`: SentencePiece vocabulary merged by score
//!   with `<0xNN>` byte fallback (`spm.rs`).
//! - `tokenizer.ggml.model = bert`: WordPiece with BERT's normalizer, as
//!   Hugging Face tokenizes (`wordpiece.rs`).
//!
//! - a Hugging Face `tokenizer.json` (a model folder): the `tokenizers`
//!   pipeline it describes (`hf.rs`).
//!
//! In all, special-token text is cut out first (`special.rs`), and BOS/EOS
//! are added per `tokenizer.ggml.add_bos_token` / `add_eos_token`.

mod bpe;
mod hf;
mod pretokenize;
mod special;
mod spm;
mod stream;
mod wordpiece;

use ahash::AHashMap;
use infer_gguf::Gguf;

pub use hf::HfTokenizerSettings;
pub use stream::StreamDecoder;

use crate::{EngineError, Result};
use bpe::{Bpe, ByteLevelDecoder};
use pretokenize::PreTokenizer;
use special::{Fragment, Specials};
use wordpiece::WordPiece;

/// Token attributes, from `tokenizer.ggml.token_type` (llama.cpp's
/// `llama_token_attr`, reduced to what tokenization reads).
pub(crate) mod attr {
    pub const NORMAL: u8 = 1;
    pub const UNKNOWN: u8 = 2;
    pub const CONTROL: u8 = 4;
    pub const USER_DEFINED: u8 = 8;
    pub const UNUSED: u8 = 16;
    pub const BYTE: u8 = 32;

    /// GGUF token type (1 normal … 6 byte) to attribute bits.
    pub fn from_gguf_type(t: i32) -> u8 {
        match t {
            1 => NORMAL,
            2 => UNKNOWN,
            3 => CONTROL,
            4 => USER_DEFINED,
            5 => UNUSED,
            6 => BYTE,
            _ => 0,
        }
    }
}

/// Text of tokens that end generation, as llama.cpp's EOG list.
const EOG_TEXTS: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<|return|>",
    "<|call|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "<|eom_id|>",
    "<EOT>",
    "_<EOT>",
    "<|end_of_text|>",
    "<end_of_utterance>",
    "<|flush|>",
    "<|calls|>",
    "</s>",
    "[EOT]",
    "[EOS]",
    "<eos>",
    "<turn|>",
    "<|tool_response>",
    "<｜end▁of▁sentence｜>",
];
/// Text that marks the end-of-turn token when `tokenizer.ggml.eot_token_id` is absent.
const EOT_TEXTS: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "<|end_of_text|>",
    "<EOT>",
    "_<EOT>",
    "<｜end▁of▁sentence｜>",
    "<end_of_utterance>",
];
/// Fill-in-the-middle pad/repo/separator tokens, which llama.cpp also treats as EOG.
const FIM_PAD_TEXTS: &[&str] = &["<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>"];
const FIM_REP_TEXTS: &[&str] = &["<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>", "<reponame>"];
const FIM_SEP_TEXTS: &[&str] = &["<|file_sep|>"];

/// The vocabulary algorithm.
enum Model {
    Bpe(Box<Bpe>),
    Spm,
    /// A `tokenizer.json` pipeline.
    Hf(Box<tokenizers::Tokenizer>),
    WordPiece(Box<WordPiece>),
}

/// A tokenizer loaded from GGUF metadata. `Send + Sync`; encoding takes `&self`.
pub struct Tokenizer {
    /// Vocabulary strings by id (`tokenizer.ggml.tokens`).
    pieces: Vec<String>,
    /// Merge scores by id (`tokenizer.ggml.scores`, 0 when absent).
    scores: Vec<f32>,
    /// `attr::*` bits by id.
    attrs: Vec<u8>,
    /// Text to id (the first id wins on a duplicate).
    lookup: AHashMap<String, u32>,
    model: Model,
    specials: Specials,
    /// For BPE vocabularies: GPT-2 character to byte.
    byte_level: Option<ByteLevelDecoder>,
    bos: Option<u32>,
    eos: Option<u32>,
    add_bos: bool,
    add_eos: bool,
    /// SPM: prepend a space to text that starts the input or follows a special token.
    add_space_prefix: bool,
    /// Sorted end-of-generation ids.
    eog: Vec<u32>,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("model", &match self.model {
                Model::Bpe(_) => "bpe",
                Model::Spm => "spm",
                Model::Hf(_) => "tokenizer.json",
                Model::WordPiece(_) => "wordpiece",
            })
            .field("vocab_size", &self.pieces.len())
            .field("bos", &self.bos)
            .field("eos", &self.eos)
            .field("eog", &self.eog)
            .finish()
    }
}

/// An optional token id key; ids outside the vocabulary are ignored, as
/// llama.cpp does (it warns and keeps its default).
fn opt_id(g: &Gguf, key: &str, n: usize) -> Option<u32> {
    let v = g.get(key)?.as_i128()?;
    (v >= 0 && (v as u128) < n as u128).then_some(v as u32)
}

impl Tokenizer {
    /// Builds the tokenizer from the `tokenizer.ggml.*` keys of `g`.
    pub fn from_gguf(g: &Gguf) -> Result<Self> {
        let model_name = g.str("tokenizer.ggml.model")?;
        let tokens = g.str_array("tokenizer.ggml.tokens")?;
        let n = tokens.len();
        if n == 0 {
            return Err(EngineError::Tokenizer("tokenizer.ggml.tokens is empty".into()));
        }
        if u32::try_from(n).is_err() {
            return Err(EngineError::Tokenizer(format!("tokenizer.ggml.tokens has {n} entries, more than ids can hold")));
        }
        if g.array("tokenizer.ggml.tokens")?.len() != n {
            return Err(EngineError::Tokenizer("tokenizer.ggml.tokens has entries that are not strings".into()));
        }
        let types = g.opt("tokenizer.ggml.token_type", Gguf::i32_array)?;
        if let Some(t) = &types {
            if t.len() < n {
                return Err(EngineError::Tokenizer(format!(
                    "tokenizer.ggml.token_type has {} entries for {n} tokens",
                    t.len()
                )));
            }
        }
        let scores = match g.opt("tokenizer.ggml.scores", Gguf::f32_array)? {
            Some(s) if s.len() < n => {
                return Err(EngineError::Tokenizer(format!("tokenizer.ggml.scores has {} entries for {n} tokens", s.len())))
            }
            Some(mut s) => {
                s.truncate(n);
                s
            }
            None => vec![0.0; n],
        };

        let mut pieces = Vec::with_capacity(n);
        let mut lookup = AHashMap::with_capacity(n);
        for (i, t) in tokens.iter().enumerate() {
            // llama.cpp renames empty entries so they can never match text.
            let text = if t.is_empty() { format!("[EMPTY_{i}]") } else { (*t).to_string() };
            lookup.entry(text.clone()).or_insert(i as u32);
            pieces.push(text);
        }
        let mut attrs: Vec<u8> = match &types {
            Some(t) => t[..n].iter().map(|&x| attr::from_gguf_type(x)).collect(),
            None => vec![attr::NORMAL; n],
        };

        let (model, byte_level, default_add_bos, default_space_prefix) = match model_name {
            "gpt2" => {
                let pre_key = "tokenizer.ggml.pre";
                let pre_name = if g.get(pre_key).is_some() { Some(g.str(pre_key)?) } else { None };
                let pre = PreTokenizer::for_name(pre_name)?;
                let merges = g.str_array("tokenizer.ggml.merges")?;
                let bpe = Bpe::new(&lookup, &merges, &pre)?;
                (Model::Bpe(Box::new(bpe)), Some(ByteLevelDecoder::new()), pre.add_bos, false)
            }
            "llama" => (Model::Spm, None, true, true),
            "bert" => {
                let unk = opt_id(g, "tokenizer.ggml.unknown_token_id", n)
                    .ok_or_else(|| EngineError::Tokenizer("tokenizer.ggml.unknown_token_id is missing or out of range".into()))?;
                let lowercase = g.opt("tokenizer.ggml.normalizer.lowercase", Gguf::bool)?.unwrap_or(true);
                let wp = WordPiece::new(&pieces, &attrs, unk, lowercase)?;
                (Model::WordPiece(Box::new(wp)), None, true, false)
            }
            other => {
                return Err(EngineError::Tokenizer(format!(
                    "unsupported tokenizer model \"{other}\" (tokenizer.ggml.model); supported: gpt2, llama, bert"
                )))
            }
        };
        let add_space_prefix = g.opt("tokenizer.ggml.add_space_prefix", Gguf::bool)?.unwrap_or(default_space_prefix);
        let add_bos = g.opt("tokenizer.ggml.add_bos_token", Gguf::bool)?.unwrap_or(default_add_bos);
        let add_eos = g.opt("tokenizer.ggml.add_eos_token", Gguf::bool)?.unwrap_or(false);
        let bos = opt_id(g, "tokenizer.ggml.bos_token_id", n);
        let eos = opt_id(g, "tokenizer.ggml.eos_token_id", n);
        if add_bos && bos.is_none() {
            return Err(EngineError::Tokenizer(
                "tokenizer.ggml.add_bos_token is true but tokenizer.ggml.bos_token_id is missing or out of range".into(),
            ));
        }
        if add_eos && eos.is_none() {
            return Err(EngineError::Tokenizer(
                "tokenizer.ggml.add_eos_token is true but tokenizer.ggml.eos_token_id is missing or out of range".into(),
            ));
        }

        let eog = end_of_generation_ids(g, &pieces, &lookup, &mut attrs, eos);
        let specials = Specials::new(&pieces, &attrs)?;
        Ok(Tokenizer {
            pieces,
            scores,
            attrs,
            lookup,
            model,
            specials,
            byte_level,
            bos,
            eos,
            add_bos,
            add_eos,
            add_space_prefix,
            eog,
        })
    }

    /// Text to ids. `add_special`: add BOS/EOS per the model's flags;
    /// `parse_special`: turn control-token text (e.g. `<|im_start|>`) into
    /// its id. User-defined tokens are always matched, as in llama.cpp.
    pub fn encode(&self, text: &str, add_special: bool, parse_special: bool) -> Result<Vec<u32>> {
        let frags = self.specials.partition(text, parse_special, &self.pieces, &self.attrs);
        let mut out = Vec::with_capacity(text.len() / 3 + 2);
        if add_special && self.add_bos {
            out.extend(self.bos);
        }
        match &self.model {
            Model::Spm => {
                // A space goes before text that starts the input or follows a
                // special token, like SentencePiece's dummy prefix.
                let mut prev_special = true;
                for f in frags {
                    match f {
                        Fragment::Text(a, b) => {
                            let mut t = String::with_capacity(b - a + 4);
                            if self.add_space_prefix && prev_special {
                                t.push(' ');
                            }
                            t.push_str(&text[a..b]);
                            spm::tokenize(self, &t.replace(' ', "\u{2581}"), &mut out)?;
                            prev_special = false;
                        }
                        Fragment::Token(id) => {
                            out.push(id);
                            prev_special = true;
                        }
                    }
                }
            }
            Model::Bpe(bpe) => {
                for f in frags {
                    match f {
                        Fragment::Text(a, b) => bpe.encode(&text[a..b], &mut out)?,
                        Fragment::Token(id) => out.push(id),
                    }
                }
            }
            Model::Hf(hf) => {
                for f in frags {
                    match f {
                        Fragment::Text(a, b) => Self::encode_hf(hf, &text[a..b], &mut out)?,
                        Fragment::Token(id) => out.push(id),
                    }
                }
            }
            Model::WordPiece(wp) => {
                for f in frags {
                    match f {
                        Fragment::Text(a, b) => wp.encode(&text[a..b], &mut out)?,
                        Fragment::Token(id) => out.push(id),
                    }
                }
            }
        }
        if add_special && self.add_eos {
            out.extend(self.eos);
        }
        Ok(out)
    }

    /// Ids to text (lossy UTF-8); special tokens are rendered as their text.
    /// Like llama.cpp's detokenizer, the space SentencePiece prefixes is
    /// dropped from the first token when `add_space_prefix` is set.
    pub fn decode(&self, ids: &[u32]) -> String {
        let mut bytes = Vec::with_capacity(ids.len() * 4);
        for (i, &id) in ids.iter().enumerate() {
            let start = bytes.len();
            self.push_token_bytes(id, &mut bytes);
            if i == 0 && self.add_space_prefix && bytes.get(start) == Some(&b' ') {
                bytes.remove(start);
            }
        }
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// The bytes token `id` stands for: `▁` as space for SentencePiece,
    /// GPT-2 characters mapped back to bytes, `<0xNN>` as the byte, special
    /// tokens as their text. Empty for an unknown id or an unused token.
    pub fn token_bytes(&self, id: u32) -> Vec<u8> {
        let mut out = Vec::new();
        self.push_token_bytes(id, &mut out);
        out
    }

    fn push_token_bytes(&self, id: u32, out: &mut Vec<u8>) {
        let Some(text) = self.pieces.get(id as usize) else { return };
        let a = self.attrs[id as usize];
        if a & (attr::UNKNOWN | attr::CONTROL | attr::USER_DEFINED) != 0 {
            out.extend_from_slice(text.as_bytes());
        } else if a & attr::NORMAL != 0 {
            match &self.byte_level {
                Some(d) => d.decode(text, out),
                None => out.extend_from_slice(text.replace('\u{2581}', " ").as_bytes()),
            }
        } else if a & attr::BYTE != 0 {
            if let Some(b) = parse_byte_piece(text) {
                out.push(b);
            }
        }
    }

    /// The raw vocabulary string of `id`.
    pub fn piece(&self, id: u32) -> Option<&str> {
        self.pieces.get(id as usize).map(String::as_str)
    }

    /// The id of a vocabulary string.
    pub fn token_id(&self, piece: &str) -> Option<u32> {
        self.lookup.get(piece).copied()
    }

    pub fn vocab_size(&self) -> usize {
        self.pieces.len()
    }

    pub fn bos_id(&self) -> Option<u32> {
        self.bos
    }

    pub fn eos_id(&self) -> Option<u32> {
        self.eos
    }

    /// Whether `encode(.., add_special = true, ..)` prepends BOS.
    pub fn add_bos(&self) -> bool {
        self.add_bos
    }

    /// Whether `encode(.., add_special = true, ..)` appends EOS.
    pub fn add_eos(&self) -> bool {
        self.add_eos
    }

    /// Whether generation should stop at `id` (llama.cpp's EOG set).
    pub fn is_eog(&self, id: u32) -> bool {
        self.eog.binary_search(&id).is_ok()
    }

    /// All end-of-generation ids, ascending.
    pub fn eog_ids(&self) -> Vec<u32> {
        self.eog.clone()
    }

    /// The token's GGUF type (`tokenizer.ggml.token_type`: 1 normal,
    /// 2 unknown, 3 control, 4 user-defined, 5 unused, 6 byte).
    pub fn gguf_token_type(&self, id: u32) -> i32 {
        let a = self.attrs.get(id as usize).copied().unwrap_or(attr::UNUSED);
        [(attr::CONTROL, 3), (attr::USER_DEFINED, 4), (attr::UNKNOWN, 2), (attr::BYTE, 6), (attr::UNUSED, 5)]
            .iter()
            .find(|(bit, _)| a & bit != 0)
            .map_or(1, |&(_, t)| t)
    }

    /// Control or user-defined token.
    pub fn is_special(&self, id: u32) -> bool {
        self.attrs.get(id as usize).is_some_and(|a| a & (attr::CONTROL | attr::USER_DEFINED) != 0)
    }

    /// `vocab`'s id for `text`, for the merge loops.
    pub(super) fn lookup(&self, text: &str) -> Option<u32> {
        self.lookup.get(text).copied()
    }

    pub(super) fn score(&self, id: u32) -> f32 {
        self.scores[id as usize]
    }

    /// The byte-fallback token for `b`: `<0xNN>`, else the byte as a one-character token.
    pub(super) fn byte_token(&self, b: u8) -> Result<u32> {
        let hex = format!("<0x{b:02X}>");
        self.lookup(&hex)
            .or_else(|| std::str::from_utf8(&[b]).ok().and_then(|s| self.lookup(s)))
            .ok_or_else(|| EngineError::Tokenizer(format!("no byte-fallback token {hex} in the vocabulary")))
    }
}

/// `<0xNN>` → the byte.
fn parse_byte_piece(text: &str) -> Option<u8> {
    let hex = text.strip_prefix("<0x")?.strip_suffix('>')?;
    u8::from_str_radix(hex, 16).ok()
}

/// llama.cpp's end-of-generation set: EOS, EOT, EOM, the FIM pad/repo/sep
/// tokens and every token whose text is a known end marker. Tokens taken
/// this way become control tokens, as llama.cpp forces them.
fn end_of_generation_ids(
    g: &Gguf,
    pieces: &[String],
    lookup: &AHashMap<String, u32>,
    attrs: &mut [u8],
    eos: Option<u32>,
) -> Vec<u32> {
    let n = pieces.len();
    // llama.cpp scans a hash map, so which of several matches it picks is
    // unspecified; we take the lowest id.
    let by_text = |texts: &[&str]| texts.iter().filter_map(|t| lookup.get(*t).copied()).min();
    let eot = opt_id(g, "tokenizer.ggml.eot_token_id", n).or_else(|| by_text(EOT_TEXTS));
    let eom = opt_id(g, "tokenizer.ggml.eom_token_id", n).or_else(|| by_text(&["<|eom_id|>"]));
    let fim_pad = opt_id(g, "tokenizer.ggml.fim_pad_token_id", n).or_else(|| by_text(FIM_PAD_TEXTS));
    let fim_rep = opt_id(g, "tokenizer.ggml.fim_rep_token_id", n).or_else(|| by_text(FIM_REP_TEXTS));
    let fim_sep = opt_id(g, "tokenizer.ggml.fim_sep_token_id", n).or_else(|| by_text(FIM_SEP_TEXTS));

    let mut eog: Vec<u32> = EOG_TEXTS.iter().filter_map(|t| lookup.get(*t).copied()).collect();
    eog.extend([eos, eot, eom, fim_pad, fim_rep, fim_sep].into_iter().flatten());
    // llama.cpp: with both <|return|> and <|call|> (gpt-oss), <|end|> only ends a message.
    if lookup.contains_key("<|return|>") && lookup.contains_key("<|call|>") {
        if let Some(end) = lookup.get("<|end|>") {
            eog.retain(|id| id != end);
        }
    }
    // llama.cpp: with <|tool_response> (Gemma 4), </s> is ordinary text.
    if lookup.contains_key("<|tool_response>") {
        if let Some(s) = lookup.get("</s>") {
            eog.retain(|id| id != s);
        }
    }
    for id in eog.iter().copied().chain([eot, eom].into_iter().flatten()) {
        attrs[id as usize] |= attr::CONTROL;
    }
    eog.sort_unstable();
    eog.dedup();
    eog
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_pieces_parse() {
        assert_eq!(parse_byte_piece("<0x0A>"), Some(10));
        assert_eq!(parse_byte_piece("<0xFF>"), Some(255));
        assert_eq!(parse_byte_piece("<0xZZ>"), None);
        assert_eq!(parse_byte_piece("hello"), None);
    }

    #[test]
    fn tokenizer_is_send_sync() {
        fn check<T: Send + Sync>() {}
        check::<Tokenizer>();
        check::<StreamDecoder>();
    }
}
