//! Shared helpers of the end-to-end tests: model paths and reference data.
#![allow(dead_code)]

use std::path::PathBuf;

pub const SMOLLM2: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";
pub const GEMMA3: &str = "gemma-3-270m-q4_k_m.gguf";

/// Path of a model fetched by `scripts/fetch-models.sh`.
pub fn model_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models").join(name)
}

/// Path of a file in tests/data.
pub fn data_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data").join(name)
}

/// A reference JSON file from tests/data.
pub fn reference(name: &str) -> serde_json::Value {
    let p = data_path(name);
    let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// The ids in a JSON array.
pub fn ids(v: &serde_json::Value) -> Vec<u32> {
    v.as_array().expect("array of ids").iter().map(|x| x.as_u64().expect("id") as u32).collect()
}

/// The reference file stem of a model.
pub fn stem(model: &str) -> &'static str {
    if model == SMOLLM2 {
        "smollm2"
    } else {
        "gemma3"
    }
}

/// The `infer` binary of this build.
///
/// The root package cannot use `CARGO_BIN_EXE_infer` (the binary belongs to
/// infer-cli), so the target directory is derived from the test's own path
/// (`<target>/<profile>/deps/<test>-*`) and `cargo build -p infer-cli` runs
/// into it once, a no-op when `cargo build --workspace` already ran.
pub fn infer_bin() -> &'static PathBuf {
    use std::process::Command;
    static BIN: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
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
        let status = cmd.status().expect("running cargo build -p infer-cli");
        assert!(status.success(), "cargo build -p infer-cli failed");
        let bin = profile_dir.join(format!("infer{}", std::env::consts::EXE_SUFFIX));
        assert!(bin.is_file(), "{} missing after build", bin.display());
        bin
    })
}

/// Runs `infer ARGS` (without INFER_MODEL) and returns its output.
pub fn infer(args: &[&str], stdin: Option<&str>) -> std::process::Output {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut child = Command::new(infer_bin())
        .args(args)
        .env_remove("INFER_MODEL")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running infer");
    if let Some(text) = stdin {
        child.stdin.take().expect("stdin").write_all(text.as_bytes()).expect("writing stdin");
    }
    drop(child.stdin.take());
    child.wait_with_output().expect("waiting for infer")
}

/// The last line of stdout as JSON, asserting success.
pub fn infer_json(args: &[&str]) -> serde_json::Value {
    let out = infer(args, None);
    assert!(out.status.success(), "infer {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    let last = text.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("");
    serde_json::from_str(last).or_else(|_| serde_json::from_str(&text)).unwrap_or_else(|e| panic!("{e}: {text}"))
}
