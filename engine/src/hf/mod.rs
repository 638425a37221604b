//! Hugging Face model folders: `config.json`, `model.safetensors` (or
//! shards with `model.safetensors.index.json`), `tokenizer.json`,
//! `tokenizer_config.json` and `generation_config.json`.
//!
//! A folder is described in llama.cpp's terms — its config becomes the
//! `{arch}.*` metadata keys of a tensor-less [`Gguf`], its tensors get
//! llama.cpp names in one table per family — so the architecture files load
//! it exactly as a GGUF. Weights stay in the safetensors mmaps.
//!
//! ```no_run
//! let folder = infer_engine::hf::Folder::open("models/archs/qwen2_hf")?;
//! println!("{} with {} tensors", folder.arch, folder.tensors.len());
//! # Ok::<(), infer_engine::EngineError>(())
//! ```

pub mod config;
pub mod convert;
pub mod tensors;
pub mod vocab;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use infer_gguf::{Gguf, Metadata, QuantType, Value};
use serde_json::Value as Json;

use self::config::{bad, JsonFile};
use crate::error::Result;
use crate::tokenizer::{HfTokenizerSettings, Tokenizer};
use crate::weights::{ByteSource, ExternalTensor, WeightTable};

/// An opened folder: llama.cpp metadata, tensors and tokenizer files.
pub struct Folder {
    pub dir: PathBuf,
    /// GGUF architecture.
    pub arch: &'static str,
    /// `general.*`, `{arch}.*`, `tokenizer.chat_template` and the tokenizer's
    /// special-token keys (no vocabulary arrays).
    pub metadata: Metadata,
    pub sources: Vec<ByteSource>,
    /// By llama.cpp name.
    pub tensors: HashMap<String, ExternalTensor>,
    pub n_heads: usize,
    pub n_kv_heads: usize,
    /// The text of `tokenizer.json`.
    pub tokenizer_json: String,
    pub tokenizer_settings: HfTokenizerSettings,
    /// `tokenizer_config.json`'s other special tokens by kind (`unk`, `pad`,
    /// `sep`, `cls`, `mask`), for a conversion's `tokenizer.ggml.*_id` keys.
    pub special_tokens: Vec<(&'static str, Option<String>)>,
}

impl std::fmt::Debug for Folder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Folder").field("dir", &self.dir).field("arch", &self.arch).finish()
    }
}

/// Whether `path` is a model folder (rather than a GGUF file).
pub fn is_folder(path: &Path) -> bool {
    path.is_dir()
}

impl Folder {
    /// Reads the folder's config, tokenizer files and safetensors headers.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref().to_path_buf();
        let cfg = JsonFile::read(&dir.join("config.json"))?;
        let mapped = config::map_config(&cfg)?;
        let mut metadata = mapped.metadata;
        let name = dir.file_name().map_or_else(|| "model".into(), |n| n.to_string_lossy().into_owned());
        metadata.insert(1, ("general.name".into(), Value::String(name)));
        // sentence-transformers' pooling and truncation, for any family
        // (a decoder embedder's folder has them too).
        if let Some(p) = config::pooling_type(&dir)? {
            metadata.push((format!("{}.pooling_type", mapped.arch), Value::U32(p)));
        }
        if let Some(n) = config::max_seq_length(&dir)? {
            metadata.push((format!("{}.{}", mapped.arch, config::MAX_SEQ_LENGTH_KEY), Value::U32(n)));
        }
        let mut t = tensors::open(&dir, mapped.arch)?;
        if let Some(div) = mapped.rope_freqs {
            // llama3 scaling: the divisors llama.cpp's converter stores as a tensor.
            let bytes: Vec<u8> = div.iter().flat_map(|v| v.to_le_bytes()).collect();
            let n_bytes = bytes.len();
            t.sources.push(ByteSource::Owned(bytes));
            let origin = format!("{} (rope_scaling)", cfg.path.display());
            let source = t.sources.len() - 1;
            let freqs = ExternalTensor { dims: vec![div.len() as u64], ty: QuantType::F32, source, start: 0, n_bytes, origin };
            t.tensors.insert("rope_freqs.weight".into(), freqs);
        }
        if mapped.tied {
            // Some folders store the tied head anyway; the embeddings serve.
            t.tensors.remove("output.weight");
        }

        let tok_path = dir.join("tokenizer.json");
        let tokenizer_json =
            std::fs::read_to_string(&tok_path).map_err(|e| bad(&tok_path, format!("cannot be read: {e}")))?;
        let mut settings = HfTokenizerSettings::default();
        let mut special_tokens = Vec::new();
        let tc_path = dir.join("tokenizer_config.json");
        if tc_path.is_file() {
            let tc = JsonFile::read(&tc_path)?;
            settings.bos_text = token_text(&tc, "bos_token")?;
            settings.eos_text = token_text(&tc, "eos_token")?;
            settings.add_bos = tc.opt_bool("add_bos_token")?;
            settings.add_eos = tc.opt_bool("add_eos_token")?;
            for kind in ["unk", "pad", "sep", "cls", "mask"] {
                special_tokens.push((kind, token_text(&tc, &format!("{kind}_token"))?));
            }
            if let Some(tmpl) = chat_template(&tc)? {
                metadata.push(("tokenizer.chat_template".into(), Value::String(tmpl)));
            }
        }
        let jinja = dir.join("chat_template.jinja");
        if jinja.is_file() && !metadata.iter().any(|(k, _)| k == "tokenizer.chat_template") {
            let tmpl = std::fs::read_to_string(&jinja).map_err(|e| bad(&jinja, format!("cannot be read: {e}")))?;
            metadata.push(("tokenizer.chat_template".into(), Value::String(tmpl)));
        }
        let gc_path = dir.join("generation_config.json");
        if gc_path.is_file() {
            let gc = JsonFile::read(&gc_path)?;
            settings.extra_eog = match gc.get("eos_token_id") {
                None => vec![],
                Some(Json::Array(a)) => a.iter().map(|v| id_value(&gc, v)).collect::<Result<_>>()?,
                Some(v) => vec![id_value(&gc, v)?],
            };
        }
        Ok(Folder {
            dir,
            arch: mapped.arch,
            metadata,
            sources: t.sources,
            tensors: t.tensors,
            n_heads: mapped.n_heads,
            n_kv_heads: mapped.n_kv_heads,
            tokenizer_json,
            tokenizer_settings: settings,
            special_tokens,
        })
    }

    /// The tokenizer of `tokenizer.json` with the folder's settings.
    pub fn tokenizer(&self) -> Result<Tokenizer> {
        Tokenizer::from_hf_json(&self.tokenizer_json, &self.tokenizer_settings).map_err(|e| {
            bad(&self.dir.join("tokenizer.json"), e.to_string().trim_start_matches("tokenizer: ").to_string())
        })
    }

    /// The tokenizer's special-token keys (`tokenizer.ggml.bos_token_id`, …).
    pub fn tokenizer_keys(tok: &Tokenizer) -> Metadata {
        let mut m = Vec::new();
        if let Some(b) = tok.bos_id() {
            m.push(("tokenizer.ggml.bos_token_id".into(), Value::U32(b)));
        }
        if let Some(e) = tok.eos_id() {
            m.push(("tokenizer.ggml.eos_token_id".into(), Value::U32(e)));
        }
        m.push(("tokenizer.ggml.add_bos_token".into(), Value::Bool(tok.add_bos())));
        m.push(("tokenizer.ggml.add_eos_token".into(), Value::Bool(tok.add_eos())));
        m
    }

    /// The parts a [`Model`](crate::Model) is built from: the metadata as a
    /// tensor-less GGUF, a weight table over the safetensors maps, the tokenizer.
    pub fn into_parts(self) -> Result<(std::sync::Arc<Gguf>, WeightTable, Tokenizer)> {
        let tok = self.tokenizer()?;
        let mut metadata = self.metadata;
        metadata.extend(Self::tokenizer_keys(&tok));
        let gguf = std::sync::Arc::new(Gguf::from_metadata(&self.dir, metadata)?);
        let table = WeightTable::with_sources(gguf.clone(), self.sources, self.tensors);
        Ok((gguf, table, tok))
    }
}

/// A special token named in `tokenizer_config.json`: a string, or an
/// object with `content`.
fn token_text(f: &JsonFile, key: &str) -> Result<Option<String>> {
    match f.get(key) {
        None => Ok(None),
        Some(Json::String(s)) => Ok(Some(s.clone())),
        Some(Json::Object(o)) => match o.get("content") {
            Some(Json::String(s)) => Ok(Some(s.clone())),
            _ => Err(f.err(format!("field \"{key}\" has no \"content\" string"))),
        },
        Some(v) => Err(f.err(format!("field \"{key}\" is {v}, not a token"))),
    }
}

/// `chat_template`: a string, or a list of `{name, template}` of which
/// `default` (else the first) is taken.
fn chat_template(f: &JsonFile) -> Result<Option<String>> {
    match f.get("chat_template") {
        None => Ok(None),
        Some(Json::String(s)) => Ok(Some(s.clone())),
        Some(Json::Array(list)) => {
            let pick = list.iter().find(|t| t["name"] == "default").or(list.first());
            match pick.and_then(|t| t["template"].as_str()) {
                Some(s) => Ok(Some(s.to_string())),
                None => Err(f.err("field \"chat_template\" is a list without a template".into())),
            }
        }
        Some(v) => Err(f.err(format!("field \"chat_template\" is {v}, not a template"))),
    }
}

fn id_value(f: &JsonFile, v: &Json) -> Result<u32> {
    v.as_u64().and_then(|x| u32::try_from(x).ok()).ok_or_else(|| f.err(format!("token id {v} is not a valid id")))
}
