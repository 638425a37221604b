//! Synthetic models and `infer bench`: a tiny custom shape of each weight
//! type is written with `engine::synth`, loaded, run for a few tokens, and
//! benchmarked through the CLI (`bench --json`, one repetition).

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use infer_engine::synth::{write_synth, SynthConfig, SynthTokenizer};
use infer_engine::{Logits, Model, ModelOptions, SessionParams};
use infer_gguf::QuantType;

/// A two-layer model small enough to write and run in milliseconds; widths
/// are multiples of 256 so every K-quant fits.
fn tiny(ty: QuantType) -> SynthConfig {
    SynthConfig {
        dim: 256,
        n_layers: 2,
        ffn_dim: 512,
        n_heads: 4,
        n_kv_heads: 2,
        head_dim: 64,
        vocab: 300,
        ty,
        n_ctx_train: 256,
        seed: 7,
    }
}

const TYPES: [QuantType; 6] =
    [QuantType::Q4_0, QuantType::Q4_1, QuantType::Q5_0, QuantType::Q8_0, QuantType::Q4K, QuantType::Q6K];

fn tmp(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("infer-synth-test-{}-{name}.gguf", std::process::id()))
}

/// Same approach as tests/cli_inspect.rs: build the binary into this test's target directory.
fn infer_bin() -> &'static PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let exe = std::env::current_exe().expect("test executable path");
        let profile_dir = exe.parent().and_then(|d| d.parent()).expect("<target>/<profile>/deps");
        let target_dir = profile_dir.parent().expect("<target>");
        let release = profile_dir.file_name().is_some_and(|n| n == "release");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.args(["build", "-q", "-p", "infer-cli"]).env("CARGO_TARGET_DIR", target_dir);
        if release {
            cmd.arg("--release");
        }
        assert!(cmd.status().expect("running cargo build -p infer-cli").success(), "cargo build -p infer-cli failed");
        let bin = profile_dir.join(format!("infer{}", std::env::consts::EXE_SUFFIX));
        assert!(bin.is_file(), "{} missing after build", bin.display());
        bin
    })
}

#[test]
fn synthetic_models_load_run_and_bench() {
    for ty in TYPES {
        let path = tmp(ty.name());
        write_synth(&tiny(ty), &SynthTokenizer::Builtin, &path).unwrap_or_else(|e| panic!("{ty}: {e}"));
        let model = Model::load(&path, ModelOptions::default()).unwrap_or_else(|e| panic!("{ty}: {e}"));
        let c = model.config();
        assert_eq!((c.dim, c.n_layers, c.ffn_dim, c.vocab), (256, 2, 512, 300), "{ty}");
        assert!(model.gguf().tensor("output.weight").is_ok(), "{ty}: the head is untied");

        // A prompt through the built-in byte-level tokenizer, then a few decode steps.
        let prompt = model.prompt_tokens("hello, world").expect("tokenize");
        assert_eq!(model.tokenizer().decode(&prompt), "hello, world", "{ty}");
        let mut s = model.session(SessionParams { n_ctx: 64, ..Default::default() }).expect("session");
        let mut next = prompt.clone();
        for _ in 0..4 {
            let logits = s.eval(&next, Logits::Last).expect("eval");
            assert_eq!(logits.len(), 300);
            assert!(logits.iter().all(|v| v.is_finite()), "{ty}: non-finite logits");
            let best = logits.iter().enumerate().fold(0, |b, (i, &v)| if v > logits[b] { i } else { b });
            next = vec![best as u32];
        }

        let out = Command::new(infer_bin())
            .args(["bench", "--json", "-t", "1", "-p", "16,0", "-n", "4", "-r", "1", "-m"])
            .arg(&path)
            .output()
            .expect("running infer bench");
        assert!(out.status.success(), "{ty}: {}", String::from_utf8_lossy(&out.stderr));
        let rows: serde_json::Value = serde_json::from_slice(&out.stdout).expect("bench --json output");
        let rows = rows.as_array().expect("array of rows");
        let tests: Vec<&str> = rows.iter().map(|r| r["test"].as_str().expect("test")).collect();
        assert_eq!(tests, ["pp16", "tg4"], "{ty}");
        for r in rows {
            assert!(r["tok_s"].as_f64().is_some_and(|t| t > 0.0), "{ty}: {r}");
            assert!(r["stddev"].as_f64().is_some(), "{ty}: {r}");
            assert_eq!(r["n_threads"], 1);
        }
        let _ = std::fs::remove_file(&path);
    }
}

#[test]
fn borrowed_tokenizer_sets_the_vocabulary() {
    let src = tmp("src");
    let dst = tmp("dst");
    let mut cfg = tiny(QuantType::Q8_0);
    cfg.vocab = 400;
    write_synth(&cfg, &SynthTokenizer::Builtin, &src).expect("source model");
    write_synth(&tiny(QuantType::Q4_0), &SynthTokenizer::From(src.clone()), &dst).expect("borrowing");
    let model = Model::load(&dst, ModelOptions::default()).expect("load");
    assert_eq!(model.config().vocab, 400);
    assert_eq!(model.tokenizer().vocab_size(), 400);
    let _ = std::fs::remove_file(&src);
    let _ = std::fs::remove_file(&dst);
}

#[test]
fn bad_shapes_are_rejected() {
    let mut cfg = tiny(QuantType::Q4K);
    cfg.ffn_dim = 320; // not a multiple of 256
    let e = write_synth(&cfg, &SynthTokenizer::Builtin, tmp("bad")).expect_err("ffn 320 with Q4_K");
    assert!(e.to_string().contains("ffn_dim"), "{e}");
}
