//! `infer serve` end to end on 127.0.0.1 with SmolLM2: the official `openai`
//! Python client (from `.venv/`, made by scripts/test.sh), curl for the raw
//! SSE framing, a bounded load and fault test, the chat page in headless
//! Chromium, and a clean exit on SIGTERM.

mod common;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Mutex};
use std::time::{Duration, Instant};

use common::*;

/// The tests share the two cores: one server at a time.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

struct Server {
    child: Child,
    base: String,
}

impl Server {
    /// Starts `infer serve` on a free loopback port and waits (bounded) until it is ready.
    fn start(extra: &[&str]) -> Server {
        Self::start_model(SMOLLM2, extra)
    }

    /// Starts `infer serve -m models/FILE`.
    fn start_model(file: &str, extra: &[&str]) -> Server {
        let model = model_path(file);
        let ready = format!("infer serve: ready: model {}", file.trim_end_matches(".gguf"));
        let mut child = Command::new(infer_bin())
            .args(["serve", "-m", model.to_str().unwrap(), "--host", "127.0.0.1", "--port", "0"])
            .args(extra)
            .env_remove("INFER_MODEL")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("running infer serve");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut base = None;
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let line = rx.recv_timeout(deadline.saturating_duration_since(Instant::now())).expect("infer serve did not become ready");
            if let Some(rest) = line.strip_prefix("infer serve: listening on ") {
                base = rest.split_whitespace().next().map(str::to_string);
            }
            if line.starts_with(&ready) {
                break;
            }
        }
        let base = base.expect("the address line comes first");
        assert!(base.starts_with("http://127.0.0.1:"), "{base}");
        // Keep draining stdout so the server never blocks on it.
        std::thread::spawn(move || while rx.recv().is_ok() {});
        Server { child, base }
    }

    /// Sends SIGTERM and returns the exit status (bounded wait).
    fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "infer serve did not stop within 30 s of SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn python() -> PathBuf {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    assert!(p.is_file(), "{} missing: run scripts/test.sh (it creates .venv with the openai client)", p.display());
    p
}

fn run_script(script: &str, args: &[&str]) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/server").join(script);
    let out = Command::new(python()).arg(path).args(args).stdin(Stdio::null()).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    print!("{stdout}");
    assert!(out.status.success(), "{script} failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    stdout
}

#[test]
fn openai_client_curl_and_sigterm() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let server = Server::start(&["--parallel", "2", "-c", "1024", "--api-key", "test-key"]);
    let out = run_script("openai_client.py", &[&server.base, "test-key"]);
    assert!(out.contains("all checks passed"));

    // Raw SSE framing as curl sees it.
    let body = r#"{"messages":[{"role":"user","content":"Hi"}],"max_tokens":5,"temperature":0,"stream":true}"#;
    let url = format!("{}/v1/chat/completions", server.base);
    let out = Command::new("curl")
        .args(["-sN", "--max-time", "60", "-H", "Authorization: Bearer test-key", "-H", "Content-Type: application/json", "-d", body, &url])
        .output()
        .expect("running curl");
    let sse = String::from_utf8(out.stdout).unwrap();
    assert!(sse.starts_with("data: {") && sse.ends_with("\n\ndata: [DONE]\n\n"), "{sse:?}");
    for event in sse.split("\n\n").filter(|e| !e.is_empty()) {
        let data = event.strip_prefix("data: ").unwrap_or_else(|| panic!("{event:?}"));
        assert!(data == "[DONE]" || serde_json::from_str::<serde_json::Value>(data).is_ok(), "{data:?}");
    }
    // Without the key: 401 in OpenAI's shape.
    let out = Command::new("curl").args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "30", &url]).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "401");

    let status = server.terminate();
    assert!(status.success(), "infer serve exited with {status} on SIGTERM");
}

/// The built-in chat page in headless Chromium through the DevTools protocol
/// (tests/server/chat_page.py): a two-turn streamed conversation with the
/// sidebar's settings, tokens/s shown, Stop cancelling, and a screenshot.
#[test]
fn chat_page_in_headless_chromium() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let server = Server::start(&["--parallel", "2", "-c", "1024"]);
    let shot = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("chat_page.png");
    let out = run_script("chat_page.py", &[&server.base, shot.to_str().unwrap()]);
    assert!(out.contains("chat page OK"));
    let png = std::fs::read(&shot).unwrap();
    assert!(png.starts_with(b"\x89PNG"), "{} is not a PNG", shot.display());
    assert!(server.terminate().success());
}

/// `/v1/embeddings` with all-MiniLM-L6-v2 through the `openai` client
/// (tests/server/embeddings_client.py): sentence-transformers' vectors for
/// the reference sentences, token counts, base64, the 400s.
#[test]
fn embeddings_through_the_openai_client() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let server = Server::start_model("all-MiniLM-L6-v2.f16.gguf", &["--parallel", "1"]);
    let reference = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/embed/minilm.json");
    let out = run_script("embeddings_client.py", &[&server.base, reference.to_str().unwrap()]);
    assert!(out.contains("embeddings OK"));
    assert!(server.terminate().success());
}

#[test]
fn load_and_faults_leave_the_server_serving() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let server = Server::start(&["--parallel", "4", "-c", "512", "--api-key", "k"]);
    let secs = std::env::var("INFER_LOAD_SECS").unwrap_or_else(|_| "6".into());
    let out = run_script("load.py", &[&server.base, "k", &secs, "1,4,16"]);
    assert!(out.contains("\"faults\": \"ok\""));
    assert!(server.terminate().success());
}

#[test]
fn tool_calls_and_structured_output_through_the_openai_client() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let server = Server::start(&["--parallel", "2", "-c", "1024"]);
    let out = run_script("tools_client.py", &[&server.base]);
    assert!(out.contains("all checks passed"));
    assert!(server.terminate().success());
}

/// The structured-output suite (tests/server/structured_suite.py: 38 JSON
/// schemas at temperature 0 and 0.8, 10 tool requests plain and streamed)
/// on SmolLM2 and Gemma 3: every case must pass (the script exits 1 when
/// one fails). Its own self-test checks the tables first.
#[test]
fn structured_output_and_tool_calls_end() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    run_script("structured_suite.py", &["--self-test"]);
    for (file, label) in [("SmolLM2-135M-Instruct.Q4_1.gguf", "smollm2"), ("gemma-3-270m-q4_k_m.gguf", "gemma3")] {
        let server = Server::start_model(file, &["--parallel", "4", "-c", "4096"]);
        let out = run_script("structured_suite.py", &[&server.base, label]);
        assert!(out.contains(&format!("{label} schemas: 76/76 passed")) && out.contains(&format!("{label} tools: 20/20 passed")), "{out}");
        assert!(server.terminate().success());
    }
}
