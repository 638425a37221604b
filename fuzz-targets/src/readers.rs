//! The file readers: GGUF bytes, and the three files of a Hugging Face
//! folder (`config.json`, `model.safetensors`, `tokenizer.json`), each
//! fuzzed inside an otherwise valid tiny folder loaded as a whole model.

use std::path::{Path, PathBuf};

use infer_engine::tokenizer::HfTokenizerSettings;
use infer_engine::{Model, ModelOptions, Tokenizer};
use serde_json::json;

/// Any bytes parse as GGUF or fail with an error.
pub fn parse_bytes(data: &[u8]) {
    let _ = infer_gguf::parse_bytes(data);
}

pub fn gguf_seeds() -> Vec<Vec<u8>> {
    let mut w = infer_gguf::GgufWriter::new();
    w.add_metadata("general.architecture", infer_gguf::Value::String("llama".into()));
    w.add_metadata("llama.block_count", infer_gguf::Value::U32(1));
    w.add_metadata("tokenizer.ggml.tokens", infer_gguf::Value::str_array(&["a", "b"]));
    let _ = w.add_tensor("t", infer_gguf::QuantType::F32, &[4], vec![0u8; 16]);
    let mut bytes = std::io::Cursor::new(Vec::new());
    let _ = w.write(&mut bytes);
    vec![bytes.into_inner(), b"GGUF".to_vec(), Vec::new()]
}

/// `config.json` of the tiny folder replaced by `data`.
pub fn hf_config(data: &[u8]) {
    load_folder_with("config.json", data);
}

/// `model.safetensors` of the tiny folder replaced by `data`.
pub fn safetensors_header(data: &[u8]) {
    load_folder_with("model.safetensors", data);
}

/// `tokenizer.json` parsed on its own (then used on a few strings), and as
/// the tiny folder's.
pub fn tokenizer_json(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(tok) = Tokenizer::from_hf_json(text, &HfTokenizerSettings::default()) {
            for s in ["Hello world", "<|im_start|>user\n\u{0}\u{10ffff}", ""] {
                if let Ok(ids) = tok.encode(s, true, true) {
                    assert!(ids.iter().all(|&id| (id as usize) < tok.vocab_size()), "an id past the vocabulary for {s:?}: {ids:?}");
                    let _ = tok.decode(&ids);
                }
            }
        }
    }
    load_folder_with("tokenizer.json", data);
}

pub fn config_seeds() -> Vec<Vec<u8>> {
    let base = tiny_config();
    let mut out = vec![to_bytes(&base)];
    let mut with = |k: &str, v: serde_json::Value| {
        let mut c = base.clone();
        c[k] = v;
        out.push(to_bytes(&c));
    };
    with("rope_scaling", json!({"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}));
    with("rope_parameters", json!({"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32}));
    with("architectures", json!(["Qwen3ForCausalLM"]));
    with("architectures", json!(["BertModel"]));
    with("head_dim", json!(4));
    with("sliding_window", json!(16));
    let llama3 = json!({"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 1.0, "original_max_position_embeddings": 0});
    for (k, v) in [("head_dim", json!(4294967295u32)), ("num_attention_heads", json!(16)), ("hidden_size", json!(1)), ("rope_theta", json!(0.0))] {
        let mut c = base.clone();
        c[k] = v;
        c["rope_scaling"] = llama3.clone();
        out.push(to_bytes(&c));
    }
    for (k, v) in [("num_hidden_layers", json!(4294967295u32)), ("vocab_size", json!(1)), ("max_position_embeddings", json!(4294967295u32)),
        ("intermediate_size", json!(4294967295u32)), ("num_key_value_heads", json!(3)), ("rms_norm_eps", json!(-1.0)), ("sliding_window", json!(0))] {
        let mut c = base.clone();
        c[k] = v;
        out.push(to_bytes(&c));
    }
    out.push(b"{\"architectures\": [\"LlamaForCausalLM\"], \"hidden_size\": 1e999999}".to_vec());
    out
}

pub fn safetensors_seeds() -> Vec<Vec<u8>> {
    let file = |header: &str, data_len: usize| {
        let mut out = (header.len() as u64).to_le_bytes().to_vec();
        out.extend_from_slice(header.as_bytes());
        out.resize(out.len() + data_len, 0);
        out
    };
    let e = "model.embed_tokens.weight";
    vec![
        tiny_safetensors(),
        tiny_safetensors()[..64].to_vec(),
        u64::MAX.to_le_bytes().to_vec(),
        file(&format!(r#"{{"{e}":{{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,0]}}}}"#), 0),
        file(&format!(r#"{{"{e}":{{"dtype":"F32","shape":[2],"data_offsets":[0,8]}},"{e}":{{"dtype":"F32","shape":[2],"data_offsets":[8,16]}}}}"#), 16),
        file(&format!(r#"{{"{e}":{{"dtype":"I64","shape":[1],"data_offsets":[0,8]}}}}"#), 8),
        file(&format!(r#"{{"{e}":{{"dtype":"F16","shape":[],"data_offsets":[0,2]}}}}"#), 2),
        file(&format!(r#"{{"{e}":{{"dtype":"F32","shape":[0,8],"data_offsets":[0,0]}}}}"#), 0),
        file(&format!(r#"{{"{e}":{{"dtype":"F32","shape":[2],"data_offsets":[8,0]}}}}"#), 8),
        file(r#"{"__metadata__":{"format":"pt"},"a":{"dtype":"BF16","shape":[1,1,1,1,1,1,1,1,1],"data_offsets":[0,2]}}"#, 2),
    ]
}

pub fn tokenizer_json_seeds() -> Vec<Vec<u8>> {
    let mut wordpiece = json!({
        "added_tokens": [{"id": 0, "content": "[PAD]", "special": true}, {"id": 1, "content": "[UNK]", "special": true}],
        "normalizer": {"type": "BertNormalizer", "clean_text": true, "handle_chinese_chars": true, "strip_accents": null, "lowercase": true},
        "pre_tokenizer": {"type": "BertPreTokenizer"},
        "decoder": {"type": "WordPiece", "prefix": "##", "cleanup": true},
        "model": {"type": "WordPiece", "unk_token": "[UNK]", "continuing_subword_prefix": "##", "max_input_chars_per_word": 100,
                  "vocab": {"[PAD]": 0, "[UNK]": 1, "hello": 2, "world": 3, "##s": 4}}
    });
    let unigram = json!({
        "added_tokens": [{"id": 0, "content": "<unk>", "special": true}],
        "normalizer": null,
        "pre_tokenizer": {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "always", "split": true},
        "decoder": {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "always", "split": true},
        "model": {"type": "Unigram", "unk_id": 0, "byte_fallback": false, "vocab": [["<unk>", 0.0], ["▁a", -1.0], ["b", -2.0], ["▁", -3.0]]}
    });
    let mut out = vec![tiny_tokenizer_json().into_bytes(), to_bytes(&wordpiece), to_bytes(&unigram)];
    wordpiece["model"]["vocab"] = json!({});
    out.push(to_bytes(&wordpiece));
    out
}

fn to_bytes(v: &serde_json::Value) -> Vec<u8> {
    serde_json::to_vec_pretty(v).unwrap_or_default()
}

/// Loads the tiny folder with `file` holding `data`: any bytes load or fail
/// with an error.
fn load_folder_with(file: &str, data: &[u8]) {
    let dir = folder_for(file);
    let path = dir.join(file);
    if let Err(e) = std::fs::write(&path, data) {
        panic!("cannot write {}: {e}", path.display());
    }
    if let Err(e) = Model::load(&dir, ModelOptions::default()) {
        assert!(!e.to_string().is_empty(), "an error without a message loading {file}");
    }
}

/// A folder per fuzzed file, made once per process: the other files hold
/// the valid tiny model.
fn folder_for(file: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("infer-fuzz-hf-{}-{}", std::process::id(), file.replace('.', "_")));
    if !dir.join("tokenizer_config.json").is_file() {
        write_tiny_folder(&dir);
    }
    dir
}

/// Writes the tiny llama folder (width 8, one layer, 260 tokens) to `dir`.
pub fn write_tiny_folder(dir: &Path) {
    let files: [(&str, Vec<u8>); 4] = [
        ("config.json", to_bytes(&tiny_config())),
        ("model.safetensors", tiny_safetensors()),
        ("tokenizer.json", tiny_tokenizer_json().into_bytes()),
        (
            "tokenizer_config.json",
            to_bytes(&json!({"bos_token": "<|im_start|>", "eos_token": "<|im_end|>", "add_bos_token": false,
                "chat_template": "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"})),
        ),
    ];
    let made = std::fs::create_dir_all(dir).and_then(|_| files.iter().try_for_each(|(name, bytes)| std::fs::write(dir.join(name), bytes)));
    if let Err(e) = made {
        panic!("cannot write the tiny folder {}: {e}", dir.display());
    }
}

const DIM: usize = 8;
const FFN: usize = 16;
const KV_DIM: usize = 4;
const VOCAB: usize = 260;

fn tiny_config() -> serde_json::Value {
    json!({
        "architectures": ["LlamaForCausalLM"], "model_type": "llama",
        "hidden_size": DIM, "intermediate_size": FFN, "num_attention_heads": 2, "num_key_value_heads": 1,
        "num_hidden_layers": 1, "vocab_size": VOCAB, "max_position_embeddings": 64, "rms_norm_eps": 1e-5,
        "rope_theta": 10000.0, "tie_word_embeddings": true, "bos_token_id": 258, "eos_token_id": 259
    })
}

/// The tiny llama's weights in F32: small values, norms 1.
fn tiny_safetensors() -> Vec<u8> {
    let l = "model.layers.0";
    let tensors: Vec<(String, Vec<usize>)> = vec![
        ("model.embed_tokens.weight".into(), vec![VOCAB, DIM]),
        (format!("{l}.input_layernorm.weight"), vec![DIM]),
        (format!("{l}.self_attn.q_proj.weight"), vec![DIM, DIM]),
        (format!("{l}.self_attn.k_proj.weight"), vec![KV_DIM, DIM]),
        (format!("{l}.self_attn.v_proj.weight"), vec![KV_DIM, DIM]),
        (format!("{l}.self_attn.o_proj.weight"), vec![DIM, DIM]),
        (format!("{l}.post_attention_layernorm.weight"), vec![DIM]),
        (format!("{l}.mlp.gate_proj.weight"), vec![FFN, DIM]),
        (format!("{l}.mlp.up_proj.weight"), vec![FFN, DIM]),
        (format!("{l}.mlp.down_proj.weight"), vec![DIM, FFN]),
        ("model.norm.weight".into(), vec![DIM]),
    ];
    let mut header = serde_json::Map::new();
    let mut data = Vec::new();
    for (name, shape) in &tensors {
        let n: usize = shape.iter().product();
        let start = data.len();
        for i in 0..n {
            let v = if shape.len() == 1 { 1.0f32 } else { ((i * 7919 % 201) as f32 - 100.0) * 1e-3 };
            data.extend_from_slice(&v.to_le_bytes());
        }
        header.insert(name.clone(), json!({"dtype": "F32", "shape": shape, "data_offsets": [start, data.len()]}));
    }
    let mut h = serde_json::to_vec(&header).unwrap_or_default();
    // The data starts 8-aligned, as safetensors writers pad it.
    while h.len() % 8 != 0 {
        h.push(b' ');
    }
    let mut out = (h.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(&h);
    out.extend_from_slice(&data);
    out
}

/// GPT-2's byte-to-character map (printable bytes stand for themselves,
/// the others for code points from 256 up).
pub(crate) fn byte_char(b: u8) -> char {
    let printable = |b: u8| (b'!'..=b'~').contains(&b) || (0xa1..=0xac).contains(&b) || b >= 0xae;
    if printable(b) {
        return char::from(b);
    }
    let n = (0..b).filter(|&x| !printable(x)).count() as u32;
    char::from_u32(256 + n).unwrap_or('?')
}

/// Byte-level BPE over the 256 bytes, two merges, two special tokens.
fn tiny_tokenizer_json() -> String {
    let mut vocab = serde_json::Map::new();
    for b in 0..=255u8 {
        vocab.insert(byte_char(b).to_string(), json!(b));
    }
    let space = byte_char(b' ');
    vocab.insert(format!("{space}t"), json!(256));
    vocab.insert("he".into(), json!(257));
    let special = |id: usize, s: &str| json!({"id": id, "content": s, "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true});
    let byte_level = json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true});
    json!({
        "version": "1.0",
        "added_tokens": [special(258, "<|im_start|>"), special(259, "<|im_end|>")],
        "normalizer": null,
        "pre_tokenizer": byte_level,
        "post_processor": null,
        "decoder": byte_level,
        "model": {"type": "BPE", "dropout": null, "unk_token": null, "fuse_unk": false, "byte_fallback": false,
                  "vocab": vocab, "merges": [format!("{space} t"), "h e".to_string()]}
    })
    .to_string()
}
