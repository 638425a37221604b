//! The C API (capi/) from C: tests/capi/capi_test.c is compiled against the
//! checked-in header capi/include/infer.h, linked with the static library
//! (libinfer.a, built by `cargo build --release --workspace`, or here when
//! missing), built with AddressSanitizer, and run on SmolLM2 and MiniLM. The
//! greedy reply it must print is computed here with the Rust API.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::{built_artifact, model_path, profile_dir};
use infer_engine::{ChatMessage, GenerateOptions, Model, ModelOptions, SamplerParams, SessionParams};

/// What the C program must get: the same request through the Rust API.
fn greedy_reply(path: &PathBuf) -> String {
    let model = Model::load(path, ModelOptions::default()).expect("loading SmolLM2");
    let mut session = model.session(SessionParams { n_ctx: 1024, ..Default::default() }).expect("a session");
    let prompt = model.chat_tokens(&[ChatMessage::new("user", "What is the capital of France?")]).expect("the prompt");
    let stop = model.chat_template().end_of_turn_token().map(|t| vec![t.to_string()]).unwrap_or_default();
    let sampler = SamplerParams { temperature: 0.0, ..SamplerParams::default() };
    session
        .generate(&prompt, sampler, GenerateOptions { max_tokens: 24, stop })
        .expect("generating")
        .map(|t| t.map(|t| t.text))
        .collect::<Result<String, _>>()
        .expect("the reply")
}

#[test]
fn the_c_api_from_c_with_address_sanitizer() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let lib = built_artifact("libinfer.a", "infer-capi");
    let exe = profile_dir().join("capi_test");
    let out = Command::new("cc")
        .args(["-std=c11", "-Wall", "-Wextra", "-Werror", "-g", "-fsanitize=address,undefined", "-fno-omit-frame-pointer"])
        .arg("-I")
        .arg(root.join("capi/include"))
        .arg(root.join("tests/capi/capi_test.c"))
        .arg(&lib)
        .args(["-lpthread", "-ldl", "-lm", "-lrt", "-lgcc_s", "-o"])
        .arg(&exe)
        .output()
        .expect("running cc");
    assert!(out.status.success(), "compiling capi_test.c failed:\n{}", String::from_utf8_lossy(&out.stderr));

    let smollm2 = model_path("SmolLM2-135M-Instruct.Q4_1.gguf");
    let expected = greedy_reply(&smollm2);
    assert!(!expected.is_empty());
    let run = Command::new(&exe)
        .arg(&smollm2)
        .arg(model_path("all-MiniLM-L6-v2.f16.gguf"))
        .arg(&expected)
        .env("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0")
        .output()
        .expect("running capi_test");
    let stdout = String::from_utf8_lossy(&run.stdout);
    let stderr = String::from_utf8_lossy(&run.stderr);
    print!("{stdout}");
    assert!(run.status.success() && stdout.contains("capi: all checks passed"), "capi_test failed:\n{stdout}\n{stderr}");
    assert!(!stderr.contains("AddressSanitizer") && !stderr.contains("runtime error"), "sanitizer report:\n{stderr}");
}
