//! The `infer` commands end to end on the default model: run, chat,
//! tokenize, perplexity, bench and the offload sweep.

mod common;

use common::*;

#[test]
fn run_json_reports_ids_text_and_timings() {
    let j = infer_json(&["run", "--temp", "0", "-n", "8", "--json", "The capital of France is"]);
    let r = reference("smollm2.llamacpp.json");
    assert_eq!(ids(&j["prompt_ids"]), ids(&r["greedy"][0]["prompt_ids"]));
    assert_eq!(ids(&j["ids"]), ids(&r["greedy"][0]["tokens"])[..8].to_vec());
    assert!(j["text"].as_str().unwrap().starts_with(" Paris"));
    assert!(j["timings"]["gen_tok_s"].as_f64().unwrap() > 0.0);
    assert!(j["timings"]["prompt_tok_s"].as_f64().unwrap() > 0.0);
}

#[test]
fn run_errors_are_clear() {
    let out = infer(&["run", ""], None);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("prompt is empty"));
    let out = infer(&["run", "-c", "8", &"word ".repeat(30)], None);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("context holds only 8"), "{err}");
    let out = infer(&["run", "--top-p", "3", "hi"], None);
    assert!(String::from_utf8_lossy(&out.stderr).contains("--top-p"));
}

#[test]
fn tokenize_json_matches_llama_cpp() {
    let r = reference("smollm2.llamacpp.json");
    let case = &r["tokenize"][0];
    let text = case["text"].as_str().unwrap();
    let j = infer_json(&["tokenize", "--json", text]);
    assert_eq!(ids(&j), ids(&case["ids_with_special"]));
    let j = infer_json(&["tokenize", "--json", "--no-special", "<|im_start|>"]);
    assert!(ids(&j).len() > 1, "special text stays plain with --no-special");
}

#[test]
fn chat_keeps_history_and_takes_commands_from_a_pipe() {
    let out = infer(
        &["chat", "--temp", "0", "-n", "12"],
        Some("Hello!\n/system You are a pirate.\nWhere is the treasure?\n/reset\n/exit\nnot read\n"),
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("system prompt set") && stderr.contains("conversation reset"), "{stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(stdout.lines().filter(|l| !l.trim().is_empty()).count(), 2, "two replies: {stdout:?}");
}

#[test]
fn perplexity_json() {
    let j = infer_json(&["perplexity", "-f", "tests/data/eval_text.txt", "-c", "128", "--chunks", "2", "--json"]);
    assert_eq!(j["chunks"], 2);
    let ppl = j["ppl"].as_f64().unwrap();
    assert!(ppl > 5.0 && ppl < 60.0, "{ppl}");
}

#[test]
fn bench_json_rows() {
    let j = infer_json(&["bench", "-p", "16,32", "-n", "4", "-r", "1", "--json"]);
    let rows = j.as_array().unwrap();
    let tests: Vec<&str> = rows.iter().map(|r| r["test"].as_str().unwrap()).collect();
    assert_eq!(tests, ["pp16", "pp32", "tg4"]);
    for r in rows {
        assert!(r["tok_s"].as_f64().unwrap() > 0.0 && r["stddev"].as_f64().is_some(), "{r}");
        assert!(r.get("gpu").is_none(), "a CPU run reports no GPU part: {r}");
    }
}

/// With layers on the GPU, bench reports the host's side per token and, with
/// --gpu-profile, each kernel's GPU time from timestamps.
#[test]
fn bench_reports_the_gpu_side_and_a_kernel_profile() {
    let j = infer_json(&["bench", "-ngl", "all", "-p", "0", "-n", "3", "-r", "1", "--gpu-profile", "--json"]);
    let g = &j[0]["gpu"];
    let dispatches = g["dispatches_per_token"].as_f64().expect("dispatches");
    // 30 blocks of SmolLM2 at 8 dispatches each (q|k|v and gate|up fused,
    // epilogues, RoPE with the KV write) and the head, in one submit per token.
    assert!((240.0..=8.0 * 30.0 + 4.0).contains(&dispatches) && g["submits_per_token"].as_f64() == Some(1.0), "{g}");
    assert!(g["encode_ms_per_token"].as_f64().unwrap() > 0.0 && g["wait_ms_per_token"].as_f64().unwrap() > 0.0);
    let profile = g["profile"].as_array().expect("profile");
    let calls: f64 = profile.iter().map(|k| k["calls_per_token"].as_f64().unwrap()).sum();
    assert!((calls - dispatches).abs() < 1.0, "profiled {calls} calls per token, ran {dispatches}");
    let q4_1 = profile.iter().find(|k| k["kernel"].as_str().unwrap().contains("(Q4_1")).expect("a Q4_1 matrix kernel");
    assert!(q4_1["weight_gb_s"].as_f64().unwrap() > 0.0 && q4_1["us_per_token"].as_f64().unwrap() > 0.0, "{q4_1}");
}

/// Issue acceptance: the sweep prints a row for every ratio, and every ratio
/// gives the same greedy text.
#[test]
fn offload_sweep_has_a_row_per_ratio_and_the_same_greedy_text() {
    let svg = std::env::temp_dir().join(format!("infer-sweep-{}.svg", std::process::id()));
    let svg_s = svg.to_string_lossy().into_owned();
    let j = infer_json(&["bench", "-p", "8", "-n", "2", "-r", "1", "--offload-sweep", "0,0.5,1", "--json", "--plot", &svg_s]);
    let rows = j.as_array().unwrap();
    assert_eq!(rows.len(), 3);
    let gpu: Vec<u64> = rows.iter().map(|r| r["gpu_layers"].as_u64().unwrap()).collect();
    assert_eq!(gpu, [0, 16, 31], "layers on the GPU per ratio");
    assert!(rows.iter().all(|r| r["tg_tok_s"].as_f64().unwrap() > 0.0));
    assert!(std::fs::read_to_string(&svg).unwrap().contains("<svg"));
    std::fs::remove_file(&svg).ok();

    let texts: Vec<String> = ["0", "0.5", "1"]
        .iter()
        .map(|r| {
            let j = infer_json(&["run", "--offload", r, "--temp", "0", "-n", "6", "-c", "64", "--json", "Once upon a time"]);
            j["text"].as_str().unwrap().to_string()
        })
        .collect();
    assert_eq!(texts[0], texts[1]);
    assert_eq!(texts[0], texts[2]);
}

#[test]
fn devices_lists_the_chosen_adapter_and_its_bandwidth() {
    let j = infer_json(&["devices", "--json", "--bandwidth"]);
    let list = j["adapters"].as_array().expect("adapters");
    assert_eq!(list.iter().filter(|a| a["chosen"] == true).count(), 1, "{j}");
    assert!(list.iter().all(|a| a["max_storage_binding_bytes"].as_u64().unwrap() > 0), "{j}");
    let bw = j["copy_bandwidth_gb_s"].as_f64().expect("bandwidth");
    assert!(bw > 0.1 && bw.is_finite(), "copy bandwidth {bw} GB/s");
    // An adapter filter that matches nothing: listed, nothing chosen, the offload would use the CPU.
    let out = std::process::Command::new(infer_bin())
        .args(["devices"])
        .env("INFER_GPU_ADAPTER", "no-such-adapter")
        .output()
        .expect("running infer");
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("no adapter matches INFER_GPU_ADAPTER") && !text.contains("* "), "{text}");
}

/// `INFER_GPU_SUBMIT_EVERY=N` submits each forward step in parts without
/// waiting (the GPU starts on the first layers while the host records the
/// rest): same greedy text, several submits per token; a bad value is an error.
#[test]
fn gpu_steps_submitted_in_parts_give_the_same_text() {
    let run = |every: Option<&str>, args: &[&str]| {
        let mut cmd = std::process::Command::new(infer_bin());
        cmd.args(args).current_dir(env!("CARGO_MANIFEST_DIR")).env_remove("INFER_MODEL");
        match every {
            Some(n) => cmd.env("INFER_GPU_SUBMIT_EVERY", n),
            None => cmd.env_remove("INFER_GPU_SUBMIT_EVERY"),
        };
        cmd.output().expect("running infer")
    };
    let text = |every| {
        let out = run(every, &["run", "-ngl", "all", "--temp", "0", "-n", "12", "-c", "64", "--json", "Once upon a time"]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let j: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
        j["text"].as_str().unwrap().to_string()
    };
    assert_eq!(text(Some("64")), text(None));
    let out = run(Some("64"), &["bench", "-ngl", "all", "-p", "0", "-n", "2", "-r", "1", "--json"]);
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let submits = j[0]["gpu"]["submits_per_token"].as_f64().unwrap();
    let dispatches = j[0]["gpu"]["dispatches_per_token"].as_f64().unwrap();
    assert!(submits >= (dispatches / 64.0).ceil() && submits > 1.0, "{dispatches} dispatches in parts of 64 took {submits} submits per token");
    let out = run(Some("many"), &["run", "-ngl", "all", "-n", "2", "hi"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("INFER_GPU_SUBMIT_EVERY"), "{err}");
}

/// Output piped into a reader that has gone (`| grep -q`, `| head`) ends
/// the process quietly, without a panic message.
#[test]
fn a_closed_pipe_is_not_a_panic() {
    use std::process::{Command, Stdio};
    let mut child = Command::new(infer_bin())
        .args(["devices"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running infer");
    // Close the read end before `infer devices` has listed the adapters.
    drop(child.stdout.take());
    let out = child.wait_with_output().expect("waiting for infer");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
}

/// `infer logits --json`: one object per position, HF's top token first on
/// the reference qwen2 model, logits and log-sum-exp consistent.
#[test]
fn logits_json_per_position() {
    let r = reference("archs/qwen2.json");
    let p = &r["prompts"][0];
    let id_list: Vec<String> = ids(&p["ids"]).iter().map(|i| i.to_string()).collect();
    let out = infer(&["logits", "-m", "models/archs/qwen2.gguf", "--ids", &id_list.join(","), "--top", "3", "--json"], None);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let lines: Vec<serde_json::Value> =
        String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), id_list.len());
    for (pos, (l, hf)) in lines.iter().zip(p["hf"]["positions"].as_array().unwrap()).enumerate() {
        assert_eq!(l["pos"], pos);
        let top = l["top"].as_array().unwrap();
        assert_eq!(top.len(), 3);
        assert_eq!(top[0][0], hf["top10"][0][0], "position {pos}");
        let (logit, lse) = (top[0][1].as_f64().unwrap(), l["logsumexp"].as_f64().unwrap());
        assert!(logit < lse && (logit - hf["top10"][0][1].as_f64().unwrap()).abs() < 0.05, "{l}");
    }
}

/// `infer bench --parallel --json`: a row per N with aggregate rates.
#[test]
fn bench_parallel_json_rows() {
    let j = infer_json(&["bench", "--parallel", "1,2", "-p", "8", "-n", "4", "-r", "1", "--json"]);
    let rows = j.as_array().unwrap();
    let n: Vec<u64> = rows.iter().map(|r| r["n_parallel"].as_u64().unwrap()).collect();
    assert_eq!(n, [1, 2]);
    for r in rows {
        assert_eq!((r["n_prompt"].as_u64(), r["n_gen"].as_u64()), (Some(8), Some(4)), "{r}");
        assert!(r["pp_tok_s"].as_f64().unwrap() > 0.0 && r["tg_tok_s"].as_f64().unwrap() > 0.0, "{r}");
    }
}
