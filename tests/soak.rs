//! `infer serve --parallel 4` under a mixed load for a set time
//! (tests/server/soak.py: 60 s here, `INFER_SOAK_SECS` for longer), then
//! SIGTERM while streams are in flight. Pass: no panic, no 5xx but 503 with
//! Retry-After, every completed greedy reply equal to the same request run
//! alone, the slots idle at the end, RSS and open fds flat after warm-up,
//! and a clean exit 0 within a bound after SIGTERM.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::*;

/// `infer serve` on a free loopback port, its stderr kept in a file (read for panics).
struct Server {
    child: Child,
    base: String,
    log: PathBuf,
}

impl Server {
    fn start(extra: &[&str], log: PathBuf) -> Server {
        let model = model_path(SMOLLM2);
        let mut child = Command::new(infer_bin())
            .args(["serve", "-m", model.to_str().unwrap(), "--host", "127.0.0.1", "--port", "0"])
            .args(extra)
            .env_remove("INFER_MODEL")
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("running infer serve");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let (mut base, deadline) = (None, Instant::now() + Duration::from_secs(120));
        loop {
            let line = rx.recv_timeout(deadline.saturating_duration_since(Instant::now())).expect("infer serve did not become ready");
            if let Some(rest) = line.strip_prefix("infer serve: listening on ") {
                base = rest.split_whitespace().next().map(str::to_string);
            }
            if line.starts_with("infer serve: ready") {
                break;
            }
        }
        std::thread::spawn(move || while rx.recv().is_ok() {});
        Server { child, base: base.expect("the address line comes first"), log }
    }

    fn port(&self) -> u16 {
        self.base.rsplit(':').next().and_then(|p| p.parse().ok()).expect("a port in the address")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Opens a streamed greedy chat request and reads until its first token arrives.
fn open_stream(port: u16) -> TcpStream {
    let body = r#"{"messages":[{"role":"user","content":"Tell me a long story."}],"max_tokens":600,"temperature":0,"stream":true}"#;
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    write!(s, "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}", body.len()).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&got).contains("\"content\":\"") || got.windows(6).filter(|w| w == b"data: ").count() < 3 {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "the stream closed before its first token: {}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
    assert!(got.starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&got));
    s
}

#[test]
fn soak_then_sigterm_under_load() {
    let tmp = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let (parallel, max_queue, n_ctx) = ("4", "4", "1024");
    let mut server = Server::start(&["--parallel", parallel, "-c", n_ctx, "--max-queue", max_queue, "--drain", "5"], tmp.join("soak_server.log"));
    let secs = std::env::var("INFER_SOAK_SECS").unwrap_or_else(|_| "60".into());
    let json = tmp.join("soak.json");
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/server/soak.py");
    let python = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    assert!(python.is_file(), "{} missing: run scripts/test.sh (it creates .venv with the openai client)", python.display());
    let pid = server.child.id().to_string();
    let out = Command::new(&python)
        .arg(&script)
        .args([&server.base, "--pid", &pid, "--secs", &secs, "--json", json.to_str().unwrap()])
        .args(["--parallel", parallel, "--max-queue", max_queue, "--n-ctx", n_ctx])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    print!("{stdout}");
    assert!(out.status.success(), "soak.py failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let summary = &report["summary"];
    assert_eq!(summary["problems"].as_array().map(Vec::len), Some(0), "{summary}");
    assert_eq!(summary["replies_differing_from_alone"], 0, "{summary}");
    for kind in ["stream", "plain", "tools", "schema", "burst"] {
        assert!(summary["served"][kind].as_u64().unwrap_or(0) > 0, "no {kind} request was served: {summary}");
    }
    for kind in ["queue_full_503", "context_length_400", "client_dropped"] {
        assert!(summary["errors"][kind].as_u64().unwrap_or(0) > 0, "the soak never hit {kind}: {summary}");
    }

    // SIGTERM with four streams in flight: each ends (finished, or cut at
    // the end of the 5 s drain) and the server exits 0, all within a bound.
    let streams: Vec<TcpStream> = (0..4).map(|_| open_stream(server.port())).collect();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let start = Instant::now();
    let readers: Vec<_> = streams
        .into_iter()
        .map(|mut s| {
            std::thread::spawn(move || {
                let mut rest = Vec::new();
                // Ends at EOF (the server closed it) or an error such as a reset.
                let _ = s.read_to_end(&mut rest);
                String::from_utf8_lossy(&rest).into_owned()
            })
        })
        .collect();
    let status = loop {
        if let Some(status) = server.child.try_wait().unwrap() {
            break status;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "infer serve did not exit within 30 s of SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "infer serve exited with {status} on SIGTERM under load");
    for r in readers {
        r.join().expect("a stream reader");
    }
    assert!(start.elapsed() < Duration::from_secs(30), "the streams did not end within 30 s of SIGTERM");
    let log = std::fs::read_to_string(&server.log).unwrap();
    assert!(!log.contains("panicked"), "the server panicked:\n{log}");
}
