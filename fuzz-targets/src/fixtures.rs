//! What the targets run against, loaded once per process: the test models'
//! tokenizers and templates, the embedding model, and a tiny synthetic model.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use infer_engine::synth::{write_synth, SynthConfig, SynthTokenizer};
use infer_engine::{ChatTemplate, Model, ModelOptions, Tokenizer};
use infer_gguf::{Gguf, QuantType};

/// `INFER_MODELS`, or the workspace's `models/`.
pub fn models_dir() -> PathBuf {
    std::env::var_os("INFER_MODELS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models"))
}

/// A file in the models directory; a missing one stops the run with a hint.
pub fn model_file(name: &str) -> PathBuf {
    let p = models_dir().join(name);
    assert!(p.exists(), "{} is missing: run scripts/fetch-models.sh (or set INFER_MODELS)", p.display());
    p
}

/// The test models whose tokenizers and templates the text targets use:
/// byte-level BPE with a ChatML template, SentencePiece with Gemma's,
/// WordPiece without one.
pub const TOKENIZER_MODELS: [&str; 3] =
    ["SmolLM2-135M-Instruct.Q4_1.gguf", "gemma-3-270m-q4_k_m.gguf", "all-MiniLM-L6-v2.f16.gguf"];

/// The tokenizer and chat template of each of [`TOKENIZER_MODELS`].
pub fn tokenizers() -> &'static [(Tokenizer, ChatTemplate)] {
    static TOKS: OnceLock<Vec<(Tokenizer, ChatTemplate)>> = OnceLock::new();
    TOKS.get_or_init(|| {
        TOKENIZER_MODELS
            .iter()
            .map(|name| {
                let g = Gguf::open(model_file(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
                let tok = Tokenizer::from_gguf(&g).unwrap_or_else(|e| panic!("{name}: {e}"));
                let tmpl = ChatTemplate::from_gguf(&g, &tok).unwrap_or_else(|e| panic!("{name}: {e}"));
                (tok, tmpl)
            })
            .collect()
    })
}

/// A one-layer llama of width 64 with the built-in byte tokenizer (512
/// tokens), written once per process: a request costs microseconds, so the
/// HTTP target spends its time parsing and validating.
pub fn synth_model() -> Arc<Model> {
    static MODEL: OnceLock<Arc<Model>> = OnceLock::new();
    MODEL
        .get_or_init(|| {
            let cfg = SynthConfig {
                dim: 64,
                n_layers: 1,
                ffn_dim: 128,
                n_heads: 2,
                n_kv_heads: 1,
                head_dim: 32,
                vocab: 512,
                ty: QuantType::F32,
                n_ctx_train: 1024,
                seed: 0xf022_5eed,
            };
            let path = std::env::temp_dir().join(format!("infer-fuzz-synth-{}.gguf", std::process::id()));
            write_synth(&cfg, &SynthTokenizer::Builtin, &path).expect("writing the synthetic model");
            let model = Model::load(&path, ModelOptions::default()).expect("loading the synthetic model");
            // The map stays valid after the unlink; the file is not left behind.
            let _ = std::fs::remove_file(&path);
            model
        })
        .clone()
}

/// all-MiniLM-L6-v2, the embedding model of the tests.
pub fn embedding_model() -> Arc<Model> {
    static MODEL: OnceLock<Arc<Model>> = OnceLock::new();
    MODEL
        .get_or_init(|| {
            let p = model_file("all-MiniLM-L6-v2.f16.gguf");
            Model::load(&p, ModelOptions::default()).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        })
        .clone()
}
