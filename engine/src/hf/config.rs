//! `config.json` to llama.cpp's metadata keys: one function per family,
//! writing the keys `convert_hf_to_gguf.py` writes, so the architecture
//! files read a folder exactly as they read a GGUF.

use std::path::{Path, PathBuf};

use infer_gguf::{Metadata, Value};
use serde_json::{Map, Value as Json};

use crate::error::{EngineError, Result};

/// The HF model classes a folder may name, and the GGUF architecture each becomes.
pub const CLASSES: &[(&str, &str)] = &[
    ("LlamaForCausalLM", "llama"),
    ("MistralForCausalLM", "llama"),
    ("Qwen2ForCausalLM", "qwen2"),
    ("Qwen3ForCausalLM", "qwen3"),
    ("BertModel", "bert"),
];

/// What `config.json` says, in llama.cpp's terms.
#[derive(Debug)]
pub struct MappedConfig {
    /// GGUF architecture (`general.architecture`).
    pub arch: &'static str,
    /// The `{arch}.*` keys (and `general.architecture`).
    pub metadata: Metadata,
    /// llama3 rope scaling: the `rope_freqs` divisors llama.cpp's converter
    /// computes (one per rotated pair).
    pub rope_freqs: Option<Vec<f32>>,
    pub n_heads: usize,
    pub n_kv_heads: usize,
    /// `tie_word_embeddings`.
    pub tied: bool,
}

/// A parsed JSON object with typed field access that names the file.
pub struct JsonFile {
    pub path: PathBuf,
    pub map: Map<String, Json>,
}

impl JsonFile {
    /// Reads and parses `path`, which must hold a JSON object.
    pub fn read(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| bad(path, format!("cannot be read: {e}")))?;
        match serde_json::from_str::<Json>(&text) {
            Ok(Json::Object(map)) => Ok(JsonFile { path: path.to_path_buf(), map }),
            Ok(_) => Err(bad(path, "is not a JSON object".into())),
            Err(e) => Err(bad(path, format!("is not valid JSON: {e}"))),
        }
    }

    pub fn err(&self, detail: String) -> EngineError {
        bad(&self.path, detail)
    }

    /// A field that is present and not null.
    pub fn get(&self, key: &str) -> Option<&Json> {
        self.map.get(key).filter(|v| !v.is_null())
    }

    pub fn opt_u64(&self, key: &str) -> Result<Option<u64>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v.as_u64().map(Some).ok_or_else(|| self.err(format!("field \"{key}\" is {v}, not a whole number"))),
        }
    }

    pub fn u64(&self, key: &str) -> Result<u64> {
        self.opt_u64(key)?.ok_or_else(|| self.err(format!("field \"{key}\" is missing")))
    }

    /// A required positive count that fits in u32.
    pub fn count(&self, key: &str) -> Result<u32> {
        let v = self.u64(key)?;
        u32::try_from(v).ok().filter(|&v| v > 0).ok_or_else(|| self.err(format!("field \"{key}\" is {v}; expected 1..2^32")))
    }

    pub fn opt_f32(&self, key: &str) -> Result<Option<f32>> {
        opt_f32_in(self, &self.map, key)
    }

    pub fn opt_bool(&self, key: &str) -> Result<Option<bool>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v.as_bool().map(Some).ok_or_else(|| self.err(format!("field \"{key}\" is {v}, not true or false"))),
        }
    }

    pub fn opt_str(&self, key: &str) -> Result<Option<&str>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v.as_str().map(Some).ok_or_else(|| self.err(format!("field \"{key}\" is {v}, not a string"))),
        }
    }
}

fn opt_f32_in(f: &JsonFile, map: &Map<String, Json>, key: &str) -> Result<Option<f32>> {
    match map.get(key).filter(|v| !v.is_null()) {
        None => Ok(None),
        Some(v) => v.as_f64().map(|x| Some(x as f32)).ok_or_else(|| f.err(format!("field \"{key}\" is {v}, not a number"))),
    }
}

pub(crate) fn bad(path: &Path, detail: String) -> EngineError {
    EngineError::Folder { path: path.display().to_string(), detail }
}

/// Maps `config.json` to llama.cpp's keys for its architecture.
pub fn map_config(c: &JsonFile) -> Result<MappedConfig> {
    let classes = match c.get("architectures") {
        Some(Json::Array(a)) => a.iter().filter_map(Json::as_str).collect::<Vec<_>>(),
        Some(v) => return Err(c.err(format!("field \"architectures\" is {v}, not a list of class names"))),
        None => return Err(c.err("field \"architectures\" is missing".into())),
    };
    let Some(&(_, arch)) = CLASSES.iter().find(|(class, _)| classes.contains(class)) else {
        let supported = CLASSES.iter().map(|(c, _)| *c).collect::<Vec<_>>().join(", ");
        return Err(c.err(format!("model class {classes:?} is not supported (supported: {supported})")));
    };
    match arch {
        "bert" => bert(c),
        _ => decoder(c, arch),
    }
}

fn put(m: &mut Metadata, arch: &str, key: &str, v: Value) {
    m.push((format!("{arch}.{key}"), v));
}

/// llama, mistral, qwen2, qwen3: the keys of llama.cpp's `LlamaModel` /
/// `Qwen2Model` / `Qwen3Model` converters.
fn decoder(c: &JsonFile, arch: &'static str) -> Result<MappedConfig> {
    let mut m: Metadata = vec![("general.architecture".into(), Value::String(arch.into()))];
    let dim = c.count("hidden_size")?;
    let n_heads = c.count("num_attention_heads")?;
    let n_kv_heads = c.opt_u64("num_key_value_heads")?.map_or(Ok(n_heads), |v| {
        u32::try_from(v).ok().filter(|&v| v > 0).ok_or_else(|| c.err(format!("field \"num_key_value_heads\" is {v}")))
    })?;
    let head_dim = match c.opt_u64("head_dim")? {
        Some(h) => u32::try_from(h).ok().filter(|&h| h > 0).ok_or_else(|| c.err(format!("field \"head_dim\" is {h}")))?,
        None => dim / n_heads,
    };
    // llama3 scaling builds a table of head_dim / 2 divisors before any
    // tensor is read: a huge width must fail here, not as an 8 GB allocation.
    if head_dim as usize > crate::arch::MAX_HEAD_DIM {
        let max = crate::arch::MAX_HEAD_DIM;
        return Err(c.err(format!("the head width is {head_dim} (head_dim, or hidden_size / num_attention_heads); infer reads at most {max}")));
    }
    put(&mut m, arch, "context_length", Value::U32(c.count("max_position_embeddings")?));
    put(&mut m, arch, "embedding_length", Value::U32(dim));
    put(&mut m, arch, "feed_forward_length", Value::U32(c.count("intermediate_size")?));
    put(&mut m, arch, "block_count", Value::U32(c.count("num_hidden_layers")?));
    put(&mut m, arch, "attention.head_count", Value::U32(n_heads));
    put(&mut m, arch, "attention.head_count_kv", Value::U32(n_kv_heads));
    if c.get("head_dim").is_some() {
        put(&mut m, arch, "attention.key_length", Value::U32(head_dim));
        put(&mut m, arch, "attention.value_length", Value::U32(head_dim));
    }
    put(&mut m, arch, "rope.dimension_count", Value::U32(head_dim));
    put(&mut m, arch, "vocab_size", Value::U32(c.count("vocab_size")?));
    if let Some(eps) = c.opt_f32("rms_norm_eps")? {
        put(&mut m, arch, "attention.layer_norm_rms_epsilon", Value::F32(eps));
    }
    // Qwen2 folders carry a window they do not use unless `use_sliding_window`.
    let window = c.opt_u64("sliding_window")?.filter(|_| c.opt_bool("use_sliding_window").ok().flatten() != Some(false));
    if let Some(w) = window {
        let w = u32::try_from(w).map_err(|_| c.err(format!("field \"sliding_window\" is {w}")))?;
        put(&mut m, arch, "attention.sliding_window", Value::U32(w));
    }
    let rope_freqs = rope(c, arch, head_dim, &mut m)?;
    Ok(MappedConfig {
        arch,
        metadata: m,
        rope_freqs,
        n_heads: n_heads as usize,
        n_kv_heads: n_kv_heads as usize,
        tied: c.opt_bool("tie_word_embeddings")?.unwrap_or(false),
    })
}

/// RoPE base and scaling, from the old (`rope_theta`, `rope_scaling`) or
/// the new (`rope_parameters`) layout. Returns llama3's frequency divisors.
fn rope(c: &JsonFile, arch: &str, head_dim: u32, m: &mut Metadata) -> Result<Option<Vec<f32>>> {
    let params = match c.get("rope_parameters").or(c.get("rope_scaling")) {
        Some(Json::Object(p)) => Some(p),
        Some(v) => return Err(c.err(format!("field \"rope_scaling\" is {v}, not an object"))),
        None => None,
    };
    let theta = match c.opt_f32("rope_theta")? {
        Some(t) => Some(t),
        None => params.map(|p| opt_f32_in(c, p, "rope_theta")).transpose()?.flatten(),
    };
    if let Some(t) = theta {
        put(m, arch, "rope.freq_base", Value::F32(t));
    }
    let Some(p) = params else { return Ok(None) };
    let ty = p.get("rope_type").or(p.get("type")).and_then(Json::as_str).unwrap_or("default");
    let num = |key: &str| opt_f32_in(c, p, key);
    let need = |key: &str| num(key)?.ok_or_else(|| c.err(format!("rope scaling \"{ty}\" needs field \"{key}\"")));
    match ty {
        "default" => Ok(None),
        "linear" => {
            put(m, arch, "rope.scaling.type", Value::String("linear".into()));
            put(m, arch, "rope.scaling.factor", Value::F32(need("factor")?));
            Ok(None)
        }
        "yarn" => {
            put(m, arch, "rope.scaling.type", Value::String("yarn".into()));
            put(m, arch, "rope.scaling.factor", Value::F32(need("factor")?));
            if let Some(o) = num("original_max_position_embeddings")? {
                put(m, arch, "rope.scaling.original_context_length", Value::U32(o as u32));
            }
            for (hf, key) in [("beta_fast", "yarn_beta_fast"), ("beta_slow", "yarn_beta_slow"), ("attention_factor", "attn_factor")] {
                if let Some(v) = num(hf)? {
                    put(m, arch, &format!("rope.scaling.{key}"), Value::F32(v));
                }
            }
            Ok(None)
        }
        "llama3" => {
            let base = theta.unwrap_or(10_000.0);
            let (factor, low, high) = (need("factor")?, need("low_freq_factor")?, need("high_freq_factor")?);
            let orig = need("original_max_position_embeddings")?;
            Ok(Some(llama3_divisors(base, head_dim as usize, factor, low, high, orig)))
        }
        other => Err(c.err(format!("rope scaling type \"{other}\" is not supported (default, linear, yarn, llama3)"))),
    }
}

/// The per-pair frequency divisors of llama3 rope scaling, as
/// `LlamaModel.generate_extra_tensors` in llama.cpp's converter computes them.
pub fn llama3_divisors(base: f32, head_dim: usize, factor: f32, low: f32, high: f32, orig_ctx: f32) -> Vec<f32> {
    let (low_wavelen, high_wavelen) = (orig_ctx / low, orig_ctx / high);
    (0..head_dim / 2)
        .map(|i| {
            let freq = 1.0 / (base as f64).powf(2.0 * i as f64 / head_dim as f64) as f32;
            let wavelen = 2.0 * std::f32::consts::PI / freq;
            if wavelen < high_wavelen {
                1.0
            } else if wavelen > low_wavelen {
                factor
            } else {
                let smooth = (orig_ctx / wavelen - low) / (high - low);
                1.0 / ((1.0 - smooth) / factor + smooth)
            }
        })
        .collect()
}

/// BertModel: the keys of llama.cpp's `BertModel` converter. The pooling
/// comes from a sentence-transformers `1_Pooling/config.json` when the
/// folder has one (see [`pooling_type`]).
fn bert(c: &JsonFile) -> Result<MappedConfig> {
    let arch = "bert";
    let mut m: Metadata = vec![("general.architecture".into(), Value::String(arch.into()))];
    let n_heads = c.count("num_attention_heads")?;
    put(&mut m, arch, "context_length", Value::U32(c.count("max_position_embeddings")?));
    put(&mut m, arch, "embedding_length", Value::U32(c.count("hidden_size")?));
    put(&mut m, arch, "feed_forward_length", Value::U32(c.count("intermediate_size")?));
    put(&mut m, arch, "block_count", Value::U32(c.count("num_hidden_layers")?));
    put(&mut m, arch, "attention.head_count", Value::U32(n_heads));
    put(&mut m, arch, "attention.layer_norm_epsilon", Value::F32(c.opt_f32("layer_norm_eps")?.unwrap_or(1e-12)));
    put(&mut m, arch, "attention.causal", Value::Bool(false));
    put(&mut m, arch, "vocab_size", Value::U32(c.count("vocab_size")?));
    if let Some(n) = c.opt_u64("type_vocab_size")? {
        m.push(("tokenizer.ggml.token_type_count".into(), Value::U32(n as u32)));
    }
    if let Some(act) = c.opt_str("hidden_act")? {
        if act != "gelu" {
            return Err(c.err(format!("hidden_act \"{act}\" is not supported for BERT (gelu)")));
        }
    }
    Ok(MappedConfig {
        arch,
        metadata: m,
        rope_freqs: None,
        n_heads: n_heads as usize,
        n_kv_heads: n_heads as usize,
        tied: false,
    })
}

/// llama.cpp's pooling type (1 mean, 2 CLS, 3 last) from a
/// sentence-transformers `1_Pooling/config.json`; `None` without one.
pub fn pooling_type(dir: &Path) -> Result<Option<u32>> {
    let path = dir.join("1_Pooling").join("config.json");
    if !path.is_file() {
        return Ok(None);
    }
    let p = JsonFile::read(&path)?;
    let on = |k: &str| p.opt_bool(k).map(|v| v.unwrap_or(false));
    if on("pooling_mode_mean_tokens")? {
        Ok(Some(1))
    } else if on("pooling_mode_cls_token")? {
        Ok(Some(2))
    } else if on("pooling_mode_lasttoken")? {
        Ok(Some(3))
    } else {
        Err(p.err("no supported pooling mode is set (mean_tokens, cls_token, lasttoken)".into()))
    }
}

/// infer's own metadata key (`{arch}.embedding.max_seq_length`) for the
/// length sentence-transformers truncates at, which can be shorter than
/// the position table (`context_length`); llama.cpp ignores it.
pub const MAX_SEQ_LENGTH_KEY: &str = "embedding.max_seq_length";

/// sentence-transformers' `max_seq_length` from `sentence_bert_config.json`
/// (256 for all-MiniLM-L6-v2, whose positions go to 512); `None` without one.
pub fn max_seq_length(dir: &Path) -> Result<Option<u32>> {
    let path = dir.join("sentence_bert_config.json");
    if !path.is_file() {
        return Ok(None);
    }
    let f = JsonFile::read(&path)?;
    match f.opt_u64("max_seq_length")? {
        None => Ok(None),
        Some(n) => u32::try_from(n)
            .ok()
            .filter(|&n| n >= 2)
            .map(Some)
            .ok_or_else(|| f.err(format!("field \"max_seq_length\" is {n}; expected 2..2^32"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(v: Json) -> JsonFile {
        let Json::Object(map) = v else { panic!("not an object: {v}") };
        JsonFile { path: PathBuf::from("config.json"), map }
    }

    fn llama(extra: Json) -> JsonFile {
        let mut v = serde_json::json!({
            "architectures": ["LlamaForCausalLM"], "hidden_size": 64, "intermediate_size": 128, "num_attention_heads": 4,
            "num_key_value_heads": 2, "num_hidden_layers": 1, "vocab_size": 300, "max_position_embeddings": 64,
            "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                             "original_max_position_embeddings": 8192}
        });
        for (k, x) in extra.as_object().into_iter().flatten() {
            v[k] = x.clone();
        }
        config(v)
    }

    #[test]
    fn llama3_scaling_gives_one_divisor_per_rotated_pair() {
        let m = map_config(&llama(serde_json::json!({}))).unwrap();
        assert_eq!(m.rope_freqs.map(|d| d.len()), Some(8));
    }

    /// Found by fuzzing (tests/fuzz.rs, `hf_config`): head_dim 2^32 - 1
    /// with llama3 rope scaling asked for 8 GB of divisors and aborted.
    #[test]
    fn a_huge_head_width_is_an_error_not_an_allocation() {
        for extra in [serde_json::json!({"head_dim": 4294967295u32}), serde_json::json!({"hidden_size": 4294967295u32, "num_attention_heads": 1})] {
            let e = map_config(&llama(extra.clone())).unwrap_err().to_string();
            assert!(e.contains("config.json") && e.contains("head width is 4294967295"), "{extra}: {e}");
        }
    }
}
