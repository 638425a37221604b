//! A folder's safetensors files: `model.safetensors`, or the shards that
//! `model.safetensors.index.json` lists, mapped (no copy) and indexed by
//! llama.cpp tensor name through one name table per family.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;

use infer_gguf::QuantType;
use memmap2::Mmap;
use safetensors::{Dtype, SafeTensors};
use serde_json::Value as Json;

use super::config::{bad, JsonFile};
use crate::error::Result;
use crate::weights::{ByteSource, ExternalTensor};

/// Tensors outside the layers: HF name → llama.cpp name.
const DECODER_GLOBAL: &[(&str, &str)] = &[
    ("model.embed_tokens.weight", "token_embd.weight"),
    ("model.norm.weight", "output_norm.weight"),
    ("lm_head.weight", "output.weight"),
];
/// Prefix of a decoder layer's tensors, followed by `N.`.
const DECODER_LAYER_PREFIX: &str = "model.layers.";
/// A decoder layer's tensors: HF suffix → llama.cpp suffix (after `blk.N.`).
const DECODER_LAYER: &[(&str, &str)] = &[
    ("input_layernorm.weight", "attn_norm.weight"),
    ("self_attn.q_proj.weight", "attn_q.weight"),
    ("self_attn.k_proj.weight", "attn_k.weight"),
    ("self_attn.v_proj.weight", "attn_v.weight"),
    ("self_attn.q_proj.bias", "attn_q.bias"),
    ("self_attn.k_proj.bias", "attn_k.bias"),
    ("self_attn.v_proj.bias", "attn_v.bias"),
    ("self_attn.o_proj.weight", "attn_output.weight"),
    ("self_attn.q_norm.weight", "attn_q_norm.weight"),
    ("self_attn.k_norm.weight", "attn_k_norm.weight"),
    ("post_attention_layernorm.weight", "ffn_norm.weight"),
    ("mlp.gate_proj.weight", "ffn_gate.weight"),
    ("mlp.up_proj.weight", "ffn_up.weight"),
    ("mlp.down_proj.weight", "ffn_down.weight"),
];

const BERT_GLOBAL: &[(&str, &str)] = &[
    ("embeddings.word_embeddings.weight", "token_embd.weight"),
    ("embeddings.position_embeddings.weight", "position_embd.weight"),
    ("embeddings.token_type_embeddings.weight", "token_types.weight"),
    ("embeddings.LayerNorm.weight", "token_embd_norm.weight"),
    ("embeddings.LayerNorm.bias", "token_embd_norm.bias"),
];
const BERT_LAYER_PREFIX: &str = "encoder.layer.";
const BERT_LAYER: &[(&str, &str)] = &[
    ("attention.self.query.weight", "attn_q.weight"),
    ("attention.self.query.bias", "attn_q.bias"),
    ("attention.self.key.weight", "attn_k.weight"),
    ("attention.self.key.bias", "attn_k.bias"),
    ("attention.self.value.weight", "attn_v.weight"),
    ("attention.self.value.bias", "attn_v.bias"),
    ("attention.output.dense.weight", "attn_output.weight"),
    ("attention.output.dense.bias", "attn_output.bias"),
    ("attention.output.LayerNorm.weight", "attn_output_norm.weight"),
    ("attention.output.LayerNorm.bias", "attn_output_norm.bias"),
    ("intermediate.dense.weight", "ffn_up.weight"),
    ("intermediate.dense.bias", "ffn_up.bias"),
    ("output.dense.weight", "ffn_down.weight"),
    ("output.dense.bias", "ffn_down.bias"),
    ("output.LayerNorm.weight", "layer_output_norm.weight"),
    ("output.LayerNorm.bias", "layer_output_norm.bias"),
];

/// The llama.cpp name of HF tensor `name` in a model of architecture
/// `arch`; `None` for tensors infer does not read (a pooler, buffers).
pub fn gguf_name(arch: &str, name: &str) -> Option<String> {
    let (global, prefix, layer) = match arch {
        "bert" => (BERT_GLOBAL, BERT_LAYER_PREFIX, BERT_LAYER),
        _ => (DECODER_GLOBAL, DECODER_LAYER_PREFIX, DECODER_LAYER),
    };
    // BertForX checkpoints put the encoder under `bert.`.
    let name = if arch == "bert" { name.strip_prefix("bert.").unwrap_or(name) } else { name };
    if let Some(&(_, g)) = global.iter().find(|(h, _)| *h == name) {
        return Some(g.to_string());
    }
    let rest = name.strip_prefix(prefix)?;
    let (n, suffix) = rest.split_once('.')?;
    let n: usize = n.parse().ok()?;
    layer.iter().find(|(h, _)| *h == suffix).map(|(_, g)| format!("blk.{n}.{g}"))
}

/// The safetensors files of `dir` and the tensors they hold, by llama.cpp name.
pub struct FolderTensors {
    pub sources: Vec<ByteSource>,
    pub tensors: HashMap<String, ExternalTensor>,
}

/// Opens the weights of `dir` (single file or index + shards).
pub fn open(dir: &Path, arch: &str) -> Result<FolderTensors> {
    let index_path = dir.join("model.safetensors.index.json");
    let single = dir.join("model.safetensors");
    // Shard file → the tensors the index says it holds.
    let mut listed: Vec<(String, BTreeSet<String>)> = Vec::new();
    if index_path.is_file() {
        let index = JsonFile::read(&index_path)?;
        let Some(Json::Object(map)) = index.get("weight_map") else {
            return Err(index.err("field \"weight_map\" is missing or not an object".into()));
        };
        for (tensor, file) in map {
            let Some(file) = file.as_str() else {
                return Err(index.err(format!("weight_map entry \"{tensor}\" is {file}, not a file name")));
            };
            if file.contains(['/', '\\']) || file.starts_with('.') || file.is_empty() {
                return Err(index.err(format!("weight_map entry \"{tensor}\" names \"{file}\", not a file of the folder")));
            }
            match listed.iter_mut().find(|(f, _)| f == file) {
                Some((_, set)) => {
                    set.insert(tensor.clone());
                }
                None => listed.push((file.to_string(), BTreeSet::from([tensor.clone()]))),
            }
        }
        for (file, _) in &listed {
            if !dir.join(file).is_file() {
                return Err(index.err(format!("lists shard \"{file}\", which is not in the folder")));
            }
        }
    } else if single.is_file() {
        listed.push(("model.safetensors".into(), BTreeSet::new()));
    } else {
        return Err(bad(dir, "has no model.safetensors and no model.safetensors.index.json".into()));
    }

    let mut out = FolderTensors { sources: Vec::new(), tensors: HashMap::new() };
    for (file, expected) in listed {
        let path = dir.join(&file);
        let f = std::fs::File::open(&path).map_err(|e| bad(&path, format!("cannot be opened: {e}")))?;
        // SAFETY: a read-only map; like every mmap reader we rely on the
        // file not being truncated while the model is loaded.
        let map = unsafe { Mmap::map(&f) }.map_err(|e| bad(&path, format!("cannot be mapped: {e}")))?;
        let (header_len, meta) = SafeTensors::read_metadata(&map)
            .map_err(|e| bad(&path, format!("bad safetensors header: {}", describe(&e))))?;
        let data_start = 8 + header_len;
        let infos = meta.tensors();
        for name in &expected {
            if !infos.contains_key(name) {
                return Err(bad(
                    &path,
                    format!("has no tensor \"{name}\", which model.safetensors.index.json places in it"),
                ));
            }
        }
        let source = out.sources.len();
        for (name, info) in infos {
            let Some(gname) = gguf_name(arch, &name) else { continue };
            let ty = match info.dtype {
                Dtype::F32 => QuantType::F32,
                Dtype::F16 => QuantType::F16,
                Dtype::BF16 => QuantType::BF16,
                other => {
                    return Err(bad(&path, format!("tensor \"{name}\" has dtype {other:?}; infer reads F32, F16 and BF16")))
                }
            };
            let mut dims: Vec<u64> = info.shape.iter().rev().map(|&d| d as u64).collect();
            if dims.is_empty() {
                dims.push(1);
            }
            if dims.contains(&0) || dims.len() > infer_gguf::MAX_DIMS {
                return Err(bad(&path, format!("tensor \"{name}\" has shape {:?}, which infer cannot use", info.shape)));
            }
            let (s, e) = info.data_offsets;
            let origin = format!("{} (tensor \"{name}\")", path.display());
            let t = ExternalTensor { dims, ty, source, start: data_start + s, n_bytes: e - s, origin };
            if out.tensors.insert(gname.clone(), t).is_some() {
                return Err(bad(&path, format!("tensor \"{name}\" ({gname}) appears twice in the folder")));
            }
        }
        out.sources.push(ByteSource::Map { path, map });
    }
    Ok(out)
}

/// The safetensors error in words (its `Display` says little for some).
fn describe(e: &safetensors::SafeTensorError) -> String {
    use safetensors::SafeTensorError as E;
    match e {
        E::HeaderTooSmall => "the file is shorter than the 8-byte header length".into(),
        E::HeaderTooLarge => "the header length is over the 100 MB limit".into(),
        E::InvalidHeaderLength => "the header length runs past the end of the file".into(),
        E::InvalidHeader(_) => "the header is not UTF-8".into(),
        E::InvalidHeaderDeserialization(j) => format!("the header is not valid JSON: {j}"),
        E::InvalidOffset(name) => format!("the data offsets of tensor \"{name}\" do not follow the previous tensor's"),
        E::TensorInvalidInfo => "a tensor's data offsets do not match its shape and dtype".into(),
        E::MetadataIncompleteBuffer => "the tensors' data does not end where the file ends".into(),
        E::ValidationOverflow => "a tensor's shape overflows".into(),
        other => format!("{other:?}"),
    }
}
