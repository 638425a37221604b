//! Hugging Face folders: the tiny random qwen2 model as a folder
//! (`models/archs/qwen2_hf`, copied by the fetch script) gives the GGUF's
//! logits and HF's; `convert` turns it into a GGUF that gives them again;
//! `--quantize q8_0` stays within a looser bound. Hostile folders (lying
//! safetensors headers, a missing shard, config field or tensor, a broken
//! tokenizer.json) fail with errors naming the file and the problem, and
//! mutated safetensors headers never panic.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use common::Rng;
use infer_engine::{Logits, Model, ModelOptions, SessionParams, StreamDecoder};
use infer_gguf::QuantType;
use serde_json::{json, Value};

/// The bound tests/arch_reference.rs puts on |logit − HF|.
const LOGIT_TOL: f32 = 0.05;
/// Folder and GGUF hold the same F16 values and run the same kernels.
const SAME_WEIGHTS_TOL: f32 = 1e-4;
/// Q8_0 weights quantized at load (and 8-bit activations in the CPU's
/// Q8_0 kernels), against the F16 weights' logits: measured 0.29 on these
/// random weights, whose logits have a std of about 1.2.
const Q8_0_TOL: f32 = 0.5;
/// Holds llama3's 177-token prompt.
const N_CTX: usize = 256;

fn archs(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models/archs").join(name)
}

fn load(path: &Path, quantize: Option<QuantType>) -> Arc<Model> {
    let opts = ModelOptions { n_ctx: N_CTX, quantize, ..Default::default() };
    Model::load(path, opts).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The prompts of a reference, with llama3's long prompt last.
fn prompts(r: &Value) -> Vec<&Value> {
    let mut v: Vec<&Value> = r["prompts"].as_array().expect("prompts").iter().collect();
    v.extend(r.get("long_prompt"));
    v
}

/// Logits at every position of every reference prompt.
fn all_logits(model: &Arc<Model>, r: &Value) -> Vec<Vec<f32>> {
    prompts(r)
        .into_iter()
        .map(|p| {
            let ids = common::ids(&p["ids"]);
            let mut s = model.session(SessionParams { n_ctx: N_CTX, ..Default::default() }).unwrap();
            s.eval(&ids, Logits::All).unwrap().to_vec()
        })
        .collect()
}

fn max_diff(a: &[Vec<f32>], b: &[Vec<f32>]) -> f32 {
    a.iter().zip(b).flat_map(|(x, y)| x.iter().zip(y).map(|(u, v)| (u - v).abs())).fold(0.0, f32::max)
}

/// Worst |logit − HF| over HF's top-10 at every position and the full last-position logits.
fn worst_vs_hf(name: &str, logits: &[Vec<f32>], r: &Value, vocab: usize) -> f32 {
    let bin = std::fs::read(common::data_path(&format!("archs/{name}.last_logits.bin"))).expect("last_logits.bin");
    let mut worst = 0.0f32;
    for (pi, p) in prompts(r).into_iter().enumerate() {
        let row = &logits[pi];
        for (pos, hf) in p["hf"]["positions"].as_array().expect("positions").iter().enumerate() {
            for e in hf["top10"].as_array().expect("top10") {
                let (id, want) = (e[0].as_u64().expect("id") as usize, e[1].as_f64().expect("logit") as f32);
                worst = worst.max((row[pos * vocab + id] - want).abs());
            }
        }
        let want = &bin[pi * vocab * 4..(pi + 1) * vocab * 4];
        let last = &row[row.len() - vocab..];
        for (a, b) in last.iter().zip(want.chunks_exact(4)) {
            worst = worst.max((a - f32::from_le_bytes([b[0], b[1], b[2], b[3]])).abs());
        }
    }
    worst
}

#[test]
fn qwen2_folder_matches_gguf_and_hf() {
    let r = common::reference("archs/qwen2.json");
    let folder = load(&archs("qwen2_hf"), None);
    let gguf = load(&archs("qwen2.gguf"), None);
    let c = folder.config();
    assert_eq!((c.arch, c.n_layers, c.dim, c.n_heads, c.n_kv_heads, c.vocab), ("qwen2", 2, 128, 4, 2, 49152));
    assert!(c.rope.neox && (c.rope.base - 1e6).abs() < 1.0 && (c.rms_eps - 1e-6).abs() < 1e-9);
    let from_folder = all_logits(&folder, &r);
    let d_gguf = max_diff(&from_folder, &all_logits(&gguf, &r));
    let d_hf = worst_vs_hf("qwen2", &from_folder, &r, c.vocab);
    eprintln!("qwen2 folder: max |logit - GGUF| {d_gguf:.2e}, max |logit - HF| {d_hf:.2e}");
    assert!(d_gguf <= SAME_WEIGHTS_TOL, "folder vs GGUF logits differ by {d_gguf}");
    assert!(d_hf <= LOGIT_TOL, "folder vs HF logits differ by {d_hf}");
}

#[test]
fn qwen2_folder_tokenizer_gives_reference_ids() {
    let r = common::reference("archs/qwen2.json");
    let folder = load(&archs("qwen2_hf"), None);
    let gguf = load(&archs("qwen2.gguf"), None);
    let (tf, tg) = (folder.tokenizer(), gguf.tokenizer());
    assert_eq!((tf.bos_id(), tf.eos_id(), tf.add_bos()), (Some(1), Some(2), false));
    assert!(tf.is_eog(2) && tf.is_special(1));
    for p in r["prompts"].as_array().expect("prompts") {
        let text = p["text"].as_str().expect("text");
        let ids = tf.encode(text, true, true).unwrap();
        assert_eq!(ids, common::ids(&p["ids"]), "{text:?}");
        assert_eq!(tf.decode(&ids), text);
        let mut stream = StreamDecoder::new();
        let streamed: String = ids.iter().map(|&id| stream.push(tf, id)).collect::<String>() + &stream.finish();
        assert_eq!(streamed, text);
    }
    // Special-token text: parsed as one id only when asked, as for GGUF vocabularies.
    let chat = "<|im_start|>user\nHi 123<|im_end|>";
    assert_eq!(tf.encode(chat, true, true).unwrap(), tg.encode(chat, true, true).unwrap());
    assert_eq!(tf.encode(chat, true, false).unwrap(), tg.encode(chat, true, false).unwrap());
    assert_eq!(folder.chat_tokens(&[infer_engine::ChatMessage::new("user", "Hi")]).unwrap()[0], 1);
}

#[test]
fn convert_round_trips_and_q8_0_loads_close() {
    let r = common::reference("archs/qwen2.json");
    let folder = load(&archs("qwen2_hf"), None);
    let want = all_logits(&folder, &r);
    let out = std::env::temp_dir().join(format!("infer-hf-convert-{}.gguf", std::process::id()));
    let report = infer_engine::hf::convert::convert(&archs("qwen2_hf"), &out, QuantType::F16).unwrap();
    assert_eq!(report.arch, "qwen2");
    let g = infer_gguf::Gguf::open(&out).unwrap();
    assert_eq!(g.str("tokenizer.ggml.model").unwrap(), "gpt2");
    assert_eq!(g.str_array("tokenizer.ggml.tokens").unwrap().len(), 49152);
    assert_eq!(g.tensor("blk.0.attn_q.weight").unwrap().ty(), QuantType::F16);
    assert_eq!(g.tensor("blk.0.attn_q.bias").unwrap().ty(), QuantType::F32);
    let converted = load(&out, None);
    let d = max_diff(&want, &all_logits(&converted, &r));
    // The converted file's own GGUF tokenizer gives the same ids.
    for p in r["prompts"].as_array().expect("prompts") {
        let text = p["text"].as_str().expect("text");
        assert_eq!(converted.tokenizer().encode(text, true, true).unwrap(), common::ids(&p["ids"]), "{text:?}");
    }
    std::fs::remove_file(&out).ok();
    eprintln!("converted f16: max |logit - folder| {d:.2e}");
    assert!(d <= SAME_WEIGHTS_TOL, "converted GGUF vs folder logits differ by {d}");

    let q8 = load(&archs("qwen2_hf"), Some(QuantType::Q8_0));
    assert!(q8.weights().infos().iter().any(|w| w.ty == QuantType::Q8_0));
    let d8 = max_diff(&want, &all_logits(&q8, &r));
    eprintln!("q8_0 at load: max |logit - f16| {d8:.2e}");
    assert!(d8 <= Q8_0_TOL, "q8_0 logits differ from f16 by {d8}");
}

/// HF names of the llama.cpp layer tensors (the inverse of the engine's table).
const HF_LAYER: &[(&str, &str)] = &[
    ("attn_norm.weight", "input_layernorm.weight"),
    ("attn_q.weight", "self_attn.q_proj.weight"),
    ("attn_k.weight", "self_attn.k_proj.weight"),
    ("attn_v.weight", "self_attn.v_proj.weight"),
    ("attn_output.weight", "self_attn.o_proj.weight"),
    ("attn_q_norm.weight", "self_attn.q_norm.weight"),
    ("attn_k_norm.weight", "self_attn.k_norm.weight"),
    ("ffn_norm.weight", "post_attention_layernorm.weight"),
    ("ffn_gate.weight", "mlp.gate_proj.weight"),
    ("ffn_up.weight", "mlp.up_proj.weight"),
    ("ffn_down.weight", "mlp.down_proj.weight"),
];

/// Writes the HF folder a reference GGUF was converted from: tensors renamed
/// back, llama's q/k rows back in rotate-half order, `rope_freqs` dropped
/// (the config's rope scaling stands for it), config from the reference.
fn folder_from_gguf(name: &str, r: &Value) -> PathBuf {
    let g = infer_gguf::Gguf::open(archs(&format!("{name}.gguf"))).unwrap();
    let llama = g.architecture().unwrap() == "llama";
    let heads = |key: &str| g.arch_u32(key).unwrap() as usize;
    let mut header = serde_json::Map::new();
    let mut data = Vec::new();
    for t in g.tensors() {
        let hf = match t.name.as_str() {
            "token_embd.weight" => "model.embed_tokens.weight".to_string(),
            "output_norm.weight" => "model.norm.weight".to_string(),
            "output.weight" => "lm_head.weight".to_string(),
            "rope_freqs.weight" => continue,
            other => {
                let rest = other.strip_prefix("blk.").expect("layer tensor");
                let (l, suffix) = rest.split_once('.').unwrap();
                let (_, h) = HF_LAYER.iter().find(|(gg, _)| *gg == suffix).unwrap_or_else(|| panic!("{other}"));
                format!("model.layers.{l}.{h}")
            }
        };
        let bytes = g.tensor(&t.name).unwrap().data;
        let (rows, _) = t.rows_cols();
        let row_bytes = bytes.len() / rows;
        let n_heads = match t.name.rsplit('.').nth(1) {
            Some("attn_q") if llama => Some(heads("attention.head_count")),
            Some("attn_k") if llama => Some(heads("attention.head_count_kv")),
            _ => None,
        };
        let start = data.len();
        match n_heads {
            Some(h) => {
                let perm = infer_engine::hf::convert::rope_permutation(rows, h).unwrap();
                let mut hf_rows = vec![0u8; bytes.len()];
                for (r, &from) in perm.iter().enumerate() {
                    hf_rows[from * row_bytes..(from + 1) * row_bytes].copy_from_slice(&bytes[r * row_bytes..(r + 1) * row_bytes]);
                }
                data.extend_from_slice(&hf_rows);
            }
            None => data.extend_from_slice(bytes),
        }
        let shape: Vec<u64> = t.dims.iter().rev().copied().collect();
        let dtype = if t.ty == QuantType::F16 { "F16" } else { "F32" };
        header.insert(hf, json!({"dtype": dtype, "shape": shape, "data_offsets": [start, data.len()]}));
    }
    let mut h = serde_json::to_vec(&Value::Object(header)).unwrap();
    while h.len() % 8 != 0 {
        h.push(b' ');
    }
    let dir = std::env::temp_dir().join(format!("infer-hf-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut file = (h.len() as u64).to_le_bytes().to_vec();
    file.extend_from_slice(&h);
    file.extend_from_slice(&data);
    std::fs::write(dir.join("model.safetensors"), file).unwrap();
    std::fs::write(dir.join("config.json"), r["hf_config"].to_string()).unwrap();
    for f in ["tokenizer.json", "tokenizer_config.json"] {
        std::fs::copy(archs("qwen2_hf").join(f), dir.join(f)).unwrap();
    }
    dir
}

/// A family's folder (rebuilt from its reference GGUF) against HF and the
/// GGUF; its conversion gives back the GGUF's tensors.
fn family_via_folder(name: &str) {
    let r = common::reference(&format!("archs/{name}.json"));
    let dir = folder_from_gguf(name, &r);
    let folder = load(&dir, None);
    let gguf = load(&archs(&format!("{name}.gguf")), None);
    let logits = all_logits(&folder, &r);
    let d_hf = worst_vs_hf(name, &logits, &r, folder.config().vocab);
    let d_gguf = max_diff(&logits, &all_logits(&gguf, &r));
    eprintln!("{name} folder: max |logit - HF| {d_hf:.2e}, max |logit - GGUF| {d_gguf:.2e}");
    assert!(d_hf <= LOGIT_TOL, "{name}: folder vs HF logits differ by {d_hf}");
    assert!(d_gguf <= 1e-3, "{name}: folder vs GGUF logits differ by {d_gguf}");

    let out = dir.join("converted.gguf");
    infer_engine::hf::convert::convert(&dir, &out, QuantType::F16).unwrap();
    let (a, b) = (infer_gguf::Gguf::open(&out).unwrap(), infer_gguf::Gguf::open(archs(&format!("{name}.gguf"))).unwrap());
    for t in b.tensors() {
        let (x, y) = (a.tensor(&t.name).unwrap(), b.tensor(&t.name).unwrap());
        assert_eq!((x.ty(), x.dims()), (y.ty(), y.dims()), "{name}: {}", t.name);
        if t.name == "rope_freqs.weight" {
            let f = |v: &[u8]| v.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect::<Vec<_>>();
            for (u, v) in f(x.data).iter().zip(f(y.data)) {
                assert!((u - v).abs() <= 1e-5 * v.abs(), "{name}: rope_freqs {u} vs {v}");
            }
        } else {
            assert!(x.data == y.data, "{name}: tensor {} differs from llama.cpp's conversion", t.name);
        }
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn llama3_folder_matches_hf_and_converts_back() {
    family_via_folder("llama3");
}

#[test]
fn mistral_folder_matches_hf_and_converts_back() {
    family_via_folder("mistral");
}

#[test]
fn qwen3_folder_matches_hf_and_converts_back() {
    family_via_folder("qwen3");
}

// ---- A tiny synthetic folder, and hostile variants of it ----

/// Tiny qwen2 shapes: dim 32, 2 heads of 16, 1 KV head, FFN 64, vocab 16, 1 layer.
fn tiny_tensors() -> Vec<(String, Vec<usize>)> {
    let l = "model.layers.0.";
    let mut t = vec![("model.embed_tokens.weight".to_string(), vec![16, 32]), ("model.norm.weight".into(), vec![32])];
    for (n, s) in [
        ("input_layernorm.weight", vec![32]),
        ("self_attn.q_proj.weight", vec![32, 32]),
        ("self_attn.q_proj.bias", vec![32]),
        ("self_attn.k_proj.weight", vec![16, 32]),
        ("self_attn.k_proj.bias", vec![16]),
        ("self_attn.v_proj.weight", vec![16, 32]),
        ("self_attn.v_proj.bias", vec![16]),
        ("self_attn.o_proj.weight", vec![32, 32]),
        ("post_attention_layernorm.weight", vec![32]),
        ("mlp.gate_proj.weight", vec![64, 32]),
        ("mlp.up_proj.weight", vec![64, 32]),
        ("mlp.down_proj.weight", vec![32, 64]),
    ] {
        t.push((format!("{l}{n}"), s));
    }
    t
}

/// A safetensors file of F32 tensors with deterministic values.
fn safetensors(tensors: &[(String, Vec<usize>)]) -> Vec<u8> {
    let mut header = serde_json::Map::new();
    let mut data = Vec::new();
    for (name, shape) in tensors {
        // Values follow from the name, so shards hold what one file would.
        let i: usize = name.bytes().map(usize::from).sum();
        let n: usize = shape.iter().product();
        let start = data.len();
        for k in 0..n {
            let v = (((k * 7 + i * 13) % 23) as f32 - 11.0) / 40.0 + if shape.len() == 1 { 1.0 } else { 0.0 };
            data.extend_from_slice(&v.to_le_bytes());
        }
        header.insert(name.clone(), json!({"dtype": "F32", "shape": shape, "data_offsets": [start, data.len()]}));
    }
    let mut h = serde_json::to_vec(&Value::Object(header)).unwrap();
    while h.len() % 8 != 0 {
        h.push(b' ');
    }
    let mut out = (h.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(&h);
    out.extend_from_slice(&data);
    out
}

fn tiny_config() -> Value {
    json!({
        "architectures": ["Qwen2ForCausalLM"], "hidden_size": 32, "intermediate_size": 64,
        "num_attention_heads": 2, "num_key_value_heads": 1, "num_hidden_layers": 1,
        "max_position_embeddings": 64, "vocab_size": 16, "rms_norm_eps": 1e-6,
        "rope_theta": 10000.0, "tie_word_embeddings": true
    })
}

fn tiny_tokenizer() -> Value {
    let words = ["<unk>", "<s>", "</s>", "a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k", "l", "m"];
    let vocab: serde_json::Map<String, Value> = words.iter().enumerate().map(|(i, w)| (w.to_string(), json!(i))).collect();
    let added: Vec<Value> = (0..3)
        .map(|i| json!({"id": i, "content": words[i], "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true}))
        .collect();
    json!({
        "version": "1.0", "truncation": null, "padding": null, "added_tokens": added, "normalizer": null,
        "pre_tokenizer": {"type": "Whitespace"}, "post_processor": null, "decoder": null,
        "model": {"type": "WordLevel", "vocab": vocab, "unk_token": "<unk>"}
    })
}

/// Writes a tiny folder into a fresh temporary directory.
fn tiny_folder(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("infer-hf-{tag}-{}", std::process::id()));
    std::fs::remove_dir_all(&dir).ok();
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("config.json"), tiny_config().to_string()).unwrap();
    std::fs::write(dir.join("tokenizer.json"), tiny_tokenizer().to_string()).unwrap();
    std::fs::write(dir.join("tokenizer_config.json"), r#"{"bos_token": "<s>", "eos_token": "</s>"}"#).unwrap();
    std::fs::write(dir.join("model.safetensors"), safetensors(&tiny_tensors())).unwrap();
    dir
}

fn tiny_logits(path: &Path) -> Vec<f32> {
    let m = Model::load(path, ModelOptions::default()).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut s = m.session(SessionParams { n_ctx: 16, ..Default::default() }).unwrap();
    s.eval(&[1, 3, 4, 5], Logits::Last).unwrap().to_vec()
}

/// The error `Model::load` gives for `dir`.
fn load_error(dir: &Path) -> String {
    match Model::load(dir, ModelOptions::default()) {
        Ok(_) => panic!("{} loaded", dir.display()),
        Err(e) => e.to_string(),
    }
}

fn assert_mentions(e: &str, parts: &[&str]) {
    for p in parts {
        assert!(e.contains(p), "error {e:?} does not mention {p:?}");
    }
}

#[test]
fn tiny_folder_loads_single_and_sharded() {
    let dir = tiny_folder("shards");
    let single = tiny_logits(&dir);
    assert!(single.len() == 16 && single.iter().all(|v| v.is_finite()));
    let m = Model::load(&dir, ModelOptions::default()).unwrap();
    assert_eq!(m.tokenizer().encode("a b <s> c", true, true).unwrap(), vec![3, 4, 1, 5]);
    assert_eq!((m.tokenizer().bos_id(), m.tokenizer().eos_id()), (Some(1), Some(2)));
    // The same tensors over two shards and an index.
    let t = tiny_tensors();
    let (a, b) = t.split_at(5);
    std::fs::remove_file(dir.join("model.safetensors")).unwrap();
    std::fs::write(dir.join("model-00001-of-00002.safetensors"), safetensors(a)).unwrap();
    std::fs::write(dir.join("model-00002-of-00002.safetensors"), safetensors(b)).unwrap();
    let mut map = serde_json::Map::new();
    for (name, _) in a {
        map.insert(name.clone(), json!("model-00001-of-00002.safetensors"));
    }
    for (name, _) in b {
        map.insert(name.clone(), json!("model-00002-of-00002.safetensors"));
    }
    std::fs::write(dir.join("model.safetensors.index.json"), json!({"weight_map": map}).to_string()).unwrap();
    assert_eq!(tiny_logits(&dir), single, "sharded and single-file folders differ");
    // A shard the index lists but the folder lacks.
    std::fs::remove_file(dir.join("model-00002-of-00002.safetensors")).unwrap();
    assert_mentions(&load_error(&dir), &["model.safetensors.index.json", "model-00002-of-00002.safetensors", "not in the folder"]);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn hostile_safetensors_headers_are_named_errors() {
    let dir = tiny_folder("hostile-st");
    let good = safetensors(&tiny_tensors());
    let n = u64::from_le_bytes(good[..8].try_into().unwrap()) as usize;
    let header = std::str::from_utf8(&good[8..8 + n]).unwrap().to_string();
    let with_header = |h: &str| {
        let mut h = h.as_bytes().to_vec();
        while h.len() % 8 != 0 {
            h.push(b' ');
        }
        let mut out = (h.len() as u64).to_le_bytes().to_vec();
        out.extend_from_slice(&h);
        out.extend_from_slice(&good[8 + n..]);
        out
    };
    let cases: Vec<(&str, Vec<u8>, &[&str])> = vec![
        ("length past the end", [&(1u64 << 40).to_le_bytes()[..], &good[8..]].concat(), &["header length"]),
        ("truncated data", good[..good.len() - 4].to_vec(), &["does not end where the file ends"]),
        ("too short", good[..5].to_vec(), &["8-byte header length"]),
        ("not JSON", with_header(&header.replacen('{', "[", 1)), &["not valid JSON"]),
        ("offsets lie", with_header(&header.replacen("\"data_offsets\":[0,", "\"data_offsets\":[4,", 1)), &["data offsets"]),
        ("dtype lies about size", with_header(&header.replacen("\"F32\"", "\"F16\"", 1)), &["offsets do not match"]),
        ("unsupported dtype", with_header(&header.replace("\"F32\"", "\"I32\"")), &["dtype", "F32, F16 and BF16"]),
    ];
    for (what, bytes, parts) in cases {
        std::fs::write(dir.join("model.safetensors"), bytes).unwrap();
        let e = load_error(&dir);
        assert_mentions(&e, &["model.safetensors"]);
        assert_mentions(&e, parts);
        eprintln!("{what}: {e}");
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn hostile_config_tokenizer_and_tensors_are_named_errors() {
    let dir = tiny_folder("hostile-files");
    let write_config = |c: &Value| std::fs::write(dir.join("config.json"), c.to_string()).unwrap();
    let mut c = tiny_config();
    c.as_object_mut().unwrap().remove("hidden_size");
    write_config(&c);
    assert_mentions(&load_error(&dir), &["config.json", "\"hidden_size\" is missing"]);
    let mut c = tiny_config();
    c["num_hidden_layers"] = json!("two");
    write_config(&c);
    assert_mentions(&load_error(&dir), &["config.json", "num_hidden_layers"]);
    c = tiny_config();
    c["architectures"] = json!(["GPTBigCodeForCausalLM"]);
    write_config(&c);
    assert_mentions(&load_error(&dir), &["config.json", "GPTBigCodeForCausalLM", "not supported"]);
    std::fs::write(dir.join("config.json"), "{ not json").unwrap();
    assert_mentions(&load_error(&dir), &["config.json", "not valid JSON"]);
    write_config(&tiny_config());

    std::fs::write(dir.join("tokenizer.json"), r#"{"model": {"type": "Nonsense"}}"#).unwrap();
    assert_mentions(&load_error(&dir), &["tokenizer.json", "does not parse"]);
    std::fs::write(dir.join("tokenizer.json"), tiny_tokenizer().to_string()).unwrap();

    // A tensor missing, and one of the wrong shape: named by llama.cpp name.
    let mut t = tiny_tensors();
    t.retain(|(n, _)| !n.ends_with("down_proj.weight"));
    std::fs::write(dir.join("model.safetensors"), safetensors(&t)).unwrap();
    assert_mentions(&load_error(&dir), &["missing tensor", "blk.0.ffn_down.weight"]);
    let mut t = tiny_tensors();
    t.iter_mut().find(|(n, _)| n.ends_with("k_proj.weight")).unwrap().1 = vec![32, 32];
    std::fs::write(dir.join("model.safetensors"), safetensors(&t)).unwrap();
    assert_mentions(&load_error(&dir), &["model.layers.0.self_attn.k_proj.weight", "blk.0.attn_k.weight", "shape"]);
    std::fs::remove_dir_all(&dir).ok();
}

/// Hundreds of safetensors files with bytes of the header (and its length)
/// flipped or overwritten: each load returns Ok or Err, never panics.
#[test]
fn mutated_safetensors_headers_never_panic() {
    let dir = tiny_folder("mutation");
    let good = safetensors(&tiny_tensors());
    let header_end = 8 + u64::from_le_bytes(good[..8].try_into().unwrap()) as usize;
    let mut rng = Rng(0x5afe_7e45);
    let (mut ok, mut err) = (0, 0);
    for iter in 0..400 {
        let mut buf = good.clone();
        for _ in 0..1 + rng.below(3) {
            let at = rng.below(header_end);
            match rng.below(4) {
                0 => buf[at] ^= 1 << rng.below(8),
                1 => buf[at] = rng.next() as u8,
                2 => buf[at] = b"0123456789[]{},:\"-"[rng.below(18)],
                _ => buf[at] = b' ',
            }
        }
        std::fs::write(dir.join("model.safetensors"), &buf).unwrap();
        let r = std::panic::catch_unwind(|| Model::load(&dir, ModelOptions::default()).map(|_| ()));
        match r {
            Ok(Ok(())) => ok += 1,
            Ok(Err(_)) => err += 1,
            Err(_) => panic!("iteration {iter}: loading a mutated header panicked"),
        }
    }
    eprintln!("mutated headers: {ok} loaded, {err} refused");
    assert!(err > 200, "most mutations must be refused ({err} of 400)");
    std::fs::remove_dir_all(&dir).ok();
}
