//! The GGUF reader on the two real models (fetched by scripts/fetch-models.sh).
use std::collections::HashSet;

use infer_gguf::{Gguf, GgufError, QuantType};

const SMOL: &str = "models/SmolLM2-135M-Instruct.Q4_1.gguf";
const GEMMA: &str = "models/gemma-3-270m-q4_k_m.gguf";

fn open(path: &str) -> Gguf {
    Gguf::open(path).unwrap_or_else(|e| panic!("{e} (run scripts/fetch-models.sh)"))
}

/// Facts every well-formed file satisfies: bytes match the table, data lies
/// inside the file and aligned.
fn check_layout(g: &Gguf) {
    assert!(g.version() == 2 || g.version() == 3);
    assert_eq!(g.data_offset() % g.alignment(), 0);
    for t in g.tensors() {
        let v = g.tensor(&t.name).unwrap();
        assert_eq!(v.data.len() as u64, t.n_bytes, "{}", t.name);
        assert_eq!(t.offset % g.alignment(), 0, "{}", t.name);
        assert_eq!(Some(t.n_bytes), t.ty.bytes_for(t.n_elements()), "{}", t.name);
        assert!(g.data_offset() + t.offset + t.n_bytes <= g.file_size());
    }
}

#[test]
fn smollm2_parses() {
    let g = open(SMOL);
    assert_eq!(g.tensors().len(), 272);
    assert_eq!(g.architecture().unwrap(), "llama");
    assert_eq!(g.arch_u32("block_count").unwrap(), 30);
    assert_eq!(g.arch_u32("embedding_length").unwrap(), 576);
    assert_eq!(g.str("tokenizer.ggml.model").unwrap(), "gpt2");
    assert_eq!(g.str_array("tokenizer.ggml.tokens").unwrap().len(), 49152);
    let t = g.tensor("token_embd.weight").unwrap();
    assert_eq!(t.ty(), QuantType::Q8_0);
    assert_eq!(t.dims(), &[576, 49152]);
    assert_eq!(t.data.len(), 576 / 32 * 34 * 49152);
    assert_eq!(g.tensor("blk.0.attn_q.weight").unwrap().ty(), QuantType::Q4_1);
    check_layout(&g);
}

#[test]
fn gemma3_parses() {
    let g = open(GEMMA);
    assert_eq!(g.tensors().len(), 236);
    assert_eq!(g.architecture().unwrap(), "gemma3");
    assert_eq!(g.arch_u32("attention.sliding_window").unwrap(), 512);
    assert_eq!(g.u32("gemma3.attention.sliding_window").unwrap(), 512);
    assert_eq!(g.arch_u32("block_count").unwrap(), 18);
    let types: HashSet<QuantType> = g.tensors().iter().map(|t| t.ty).collect();
    for ty in [QuantType::Q4K, QuantType::Q5_0, QuantType::Q6K, QuantType::Q8_0] {
        assert!(types.contains(&ty), "no {ty} tensor; types {types:?}");
    }
    check_layout(&g);
}

#[test]
fn accessor_errors_name_key_and_types() {
    let g = open(SMOL);
    let e = g.u32("llama.no_such_key").unwrap_err();
    assert!(matches!(&e, GgufError::MissingKey { key, .. } if key == "llama.no_such_key"), "{e}");
    assert!(e.to_string().contains("llama.no_such_key"), "{e}");

    let e = g.u32("general.architecture").unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, GgufError::WrongType { .. }), "{msg}");
    for part in ["general.architecture", "u32", "string"] {
        assert!(msg.contains(part), "{msg:?} lacks {part:?}");
    }

    let e = g.str("llama.block_count").unwrap_err();
    let msg = e.to_string();
    for part in ["llama.block_count", "string", "u32"] {
        assert!(msg.contains(part), "{msg:?} lacks {part:?}");
    }

    let e = g.str_array("tokenizer.ggml.token_type").unwrap_err();
    assert!(e.to_string().contains("array<i32>"), "{e}");
    assert!(e.to_string().contains("array<string>"), "{e}");

    let e = g.tensor("blk.99.attn_q.weight").unwrap_err();
    assert!(matches!(e, GgufError::MissingTensor { .. }), "{e}");
}
