//! Pre-tokenizer splits for byte-level BPE vocabularies, chosen by
//! `tokenizer.ggml.pre` as llama.cpp does (`llm_tokenizer_bpe` in
//! llama-vocab.cpp).
//!
//! Each entry is a list of regexes applied in turn: every regex splits each
//! piece left by the previous one, keeping both the matches and the text
//! between them (the tokenizers crate's `Split` with `Isolated` behaviour).

use crate::{EngineError, Result};

/// GPT-2's split, shared by most families.
const GPT2: &str = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)";

/// Llama 3's split with the case-insensitive contractions spelled out, as
/// llama.cpp adapts it.
const LLAMA3: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// Qwen 2: Llama 3's split with single digits.
const QWEN2: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// How a byte-level BPE vocabulary splits text before merging.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct PreTokenizer {
    /// The `tokenizer.ggml.pre` value it was chosen by.
    pub name: String,
    /// Regexes applied in order.
    pub regexes: Vec<&'static str>,
    /// A whole pre-token that is already in the vocabulary is taken as is
    /// (Llama 3's `ignore_merges`).
    pub ignore_merges: bool,
    /// Default of `tokenizer.ggml.add_bos_token` for this family.
    pub add_bos: bool,
}

impl PreTokenizer {
    /// The split for `name`; `None` (key absent) means llama.cpp's default.
    pub fn for_name(name: Option<&str>) -> Result<Self> {
        let key = name.unwrap_or("default");
        let (regexes, ignore_merges, add_bos): (Vec<&'static str>, bool, bool) = match key {
            "default" => (vec![r"[\p{P}\$\+<=>\^~\|]+", GPT2, r"\p{N}+", r"[0-9][0-9][0-9]"], false, false),
            "llama3" | "llama-v3" | "llama-bpe" | "falcon3" | "falcon-h1" | "pixtral" | "midm-2.0" | "lfm2" => {
                (vec![LLAMA3], true, true)
            }
            "dbrx" | "smaug-bpe" | "glm4" | "chatglm-bpe" => (vec![LLAMA3], false, false),
            "qwen2" | "deepseek-r1-qwen" | "megrez" | "stablelm2" | "hunyuan" => (vec![QWEN2], false, false),
            "smollm" | "starcoder" | "refact" | "command-r" | "codeshell" | "exaone" | "minerva-7b" => {
                (vec![r"\p{N}", GPT2], false, false)
            }
            "gpt2" | "gpt-2" | "phi-2" | "mpt" | "olmo" | "jais" | "jina-es" | "jina-de" | "jina-v2-es"
            | "jina-v2-de" | "gigachat" | "a.x-4.0" | "mellum" | "modern-bert" | "exaone4" | "trillion"
            | "granite-docling" => (vec![GPT2], false, false),
            "falcon" => (vec![r"[\p{P}\$\+<=>\^~\|`]+", GPT2, r"[0-9][0-9][0-9]"], false, false),
            "deepseek-coder" => {
                (vec![r"[\r\n]", r"\s?\p{L}+", r"\s?\p{P}+", r"[一-龥ࠀ-一가-퟿]+", r"\p{N}"], false, false)
            }
            other => {
                return Err(EngineError::Tokenizer(format!(
                    "unknown pre-tokenizer type \"{other}\" (tokenizer.ggml.pre); supported: default, llama3, \
                     llama-bpe, qwen2, smollm, gpt2, starcoder, falcon, deepseek-coder and their aliases"
                )))
            }
        };
        Ok(PreTokenizer { name: key.to_string(), regexes, ignore_merges, add_bos })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_name_is_named_in_the_error() {
        let err = PreTokenizer::for_name(Some("no-such-pre")).unwrap_err().to_string();
        assert!(err.contains("no-such-pre"), "{err}");
    }

    #[test]
    fn aliases_share_a_split() {
        let a = PreTokenizer::for_name(Some("llama3")).unwrap();
        let b = PreTokenizer::for_name(Some("llama-bpe")).unwrap();
        assert_eq!(a.regexes, b.regexes);
        assert!(a.ignore_merges && a.add_bos);
        assert_eq!(PreTokenizer::for_name(None).unwrap().name, "default");
    }
}
