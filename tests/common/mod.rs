//! Shared helpers of the end-to-end tests: model paths and reference data.
#![allow(dead_code)]

use std::path::PathBuf;

pub const SMOLLM2: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";
pub const GEMMA3: &str = "gemma-3-270m-q4_k_m.gguf";

/// Path of a model fetched by `scripts/fetch-models.sh`.
pub fn model_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models").join(name)
}

/// Half the layers of model `name` (blocks + head) on the GPU, as the offload tests use.
pub fn half_layers(name: &str) -> infer_engine::GpuLayers {
    let m = infer_engine::Model::load(model_path(name), infer_engine::ModelOptions::default()).expect("loading the model");
    infer_engine::GpuLayers::Count((m.config().n_layers + 1) / 2)
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

/// Teacher-forced parity: llama.cpp's recorded greedy tokens are fed one by
/// one, and at every step our log-probability of its token is compared with
/// its figure. Checks a whole trajectory without depending on who wins a
/// near-tie. Bounds: the median difference (llama.cpp's own settings differ
/// from its reference by medians of 0.004–0.053 nats and maxima of
/// 0.09–0.39 nats, docs/PARITY.md), the largest one, and how far below our
/// top logit llama.cpp's token may sit (a near-tie, not a different opinion).
pub const TF_MEDIAN_TOL: f64 = 0.05;
pub const TF_MAX_TOL: f64 = 0.4;
pub const TF_MAX_GAP: f32 = 0.6;

/// Runs the teacher-forced comparison over every reference prompt whose
/// steps line up with its tokens, each in a fresh session from
/// `new_session`, and asserts the bounds above. `what` names the run.
pub fn check_teacher_forced(what: &str, model_name: &str, mut new_session: impl FnMut() -> infer_engine::Session) {
    use infer_engine::{perplexity::log_softmax_at, Logits};
    let r = reference(&format!("{}.llamacpp.json", stem(model_name)));
    let mut diffs = Vec::new();
    let mut worst_gap = 0f32;
    for case in r["greedy"].as_array().expect("greedy cases") {
        let steps = case["steps"].as_array().expect("steps");
        // Steps merged over an incomplete UTF-8 piece do not line up with tokens.
        if steps.len() != case["tokens"].as_array().expect("tokens").len() {
            continue;
        }
        let prompt = ids(&case["prompt_ids"]);
        let mut s = new_session();
        let mut logits = s.load_prompt(&prompt).expect("prompt").to_vec();
        for (i, st) in steps.iter().enumerate() {
            let id = st["id"].as_u64().expect("id") as u32;
            let theirs = st["logprob"].as_f64().expect("logprob");
            let ours = log_softmax_at(&logits, id as usize);
            let top = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let gap = top - logits[id as usize];
            assert!(
                gap <= TF_MAX_GAP,
                "{what}: {:?} step {i}: llama.cpp's token {id} is {gap} below our top logit",
                case["prompt"]
            );
            worst_gap = worst_gap.max(gap);
            diffs.push((ours - theirs).abs());
            logits = s.eval(&[id], Logits::Last).expect("step").to_vec();
        }
    }
    diffs.sort_by(|a, b| a.total_cmp(b));
    assert!(diffs.len() >= 4 * 32, "{what}: only {} comparable steps", diffs.len());
    let (median, max) = (diffs[diffs.len() / 2], diffs[diffs.len() - 1]);
    eprintln!(
        "{what}: teacher-forced over {} steps: |logprob diff| median {median:.4}, max {max:.4}; worst gap {worst_gap:.3}",
        diffs.len()
    );
    assert!(median <= TF_MEDIAN_TOL, "{what}: median teacher-forced logprob difference {median}");
    assert!(max <= TF_MAX_TOL, "{what}: largest teacher-forced logprob difference {max}");
}

/// A copy of a model with every tensor dequantized to F32, removed on drop.
/// The CPU path multiplies F32 weights by F32 activations without rounding
/// either, so this copy computes the quantized model "exactly" (to f32
/// rounding): the yardstick for paths that round activations differently.
pub struct F32Copy(pub PathBuf);

impl F32Copy {
    pub fn of(name: &str) -> Self {
        use infer_gguf::{Gguf, GgufWriter, QuantType};
        let g = Gguf::open(model_path(name)).expect("model");
        let mut w = GgufWriter::new();
        for (k, v) in g.metadata() {
            if k != "general.alignment" {
                w.add_metadata(k, v.clone());
            }
        }
        for t in g.tensors() {
            let mut f = vec![0f32; t.n_elements() as usize];
            let data = g.tensor(&t.name).expect("tensor").data;
            infer_kernels::dequant::dequantize(t.ty, data, &mut f).expect("dequantize");
            w.add_tensor(&t.name, QuantType::F32, &t.dims, bytemuck::cast_slice(&f).to_vec()).expect("add tensor");
        }
        let path = std::env::temp_dir().join(format!("infer-f32-{}-{name}", std::process::id()));
        w.write_to_path(&path).expect("writing the F32 copy");
        F32Copy(path)
    }
}

impl Drop for F32Copy {
    fn drop(&mut self) {
        std::fs::remove_file(&self.0).ok();
    }
}

/// xorshift64*: small, fast, good enough to pick offsets and bytes.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// The profile folder the tests run from (their binaries live in its `deps/`).
pub fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    exe.parent().and_then(|deps| deps.parent()).expect("the profile folder").to_path_buf()
}

/// `file` of the profile folder, a library another package builds
/// (`cargo build --release --workspace` makes it; built here when missing).
pub fn built_artifact(file: &str, package: &str) -> PathBuf {
    let path = profile_dir().join(file);
    if !path.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = std::process::Command::new(cargo).args(["build", "--release", "-p", package]).status().expect("running cargo build");
        assert!(status.success(), "cargo build -p {package} failed");
    }
    assert!(path.exists(), "{} missing after building {package}", path.display());
    path
}
