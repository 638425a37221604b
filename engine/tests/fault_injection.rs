//! Faults injected into one request's sequence on SmolLM2 (feature
//! `fault-injection`; `cargo test -p infer-engine --features fault-injection`):
//! NaN logits, a KV cache that cannot grow and a failed step each fail only
//! their own request with an error that names the fault, while the requests
//! beside them in the same batches generate exactly what they generate
//! alone, and the engine goes on serving.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use infer_engine::fault::Fault;
use infer_engine::scheduler::{Engine, EngineHandle, EngineParams, Event, Request};
use infer_engine::{EngineError, Model, ModelOptions, SamplerParams};

fn model() -> Arc<Model> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models/SmolLM2-135M-Instruct.Q4_1.gguf");
    Model::load(&path, ModelOptions::default()).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn engine(model: &Arc<Model>, n_slots: usize) -> EngineHandle {
    let params = EngineParams { n_slots, n_ctx_per_slot: 512, max_queue: 8, n_batch: 32, ..Default::default() };
    Engine::start(model.clone(), params).unwrap()
}

/// A greedy request that never ends at an end-of-generation token, so it
/// runs to `max_tokens` (or fails).
fn endless(model: &Model, prompt: &str, max_tokens: usize) -> Request {
    let mut r = Request::new(model.prompt_tokens(prompt).unwrap());
    r.sampler = SamplerParams::greedy();
    r.max_tokens = Some(max_tokens);
    r.logit_bias = model.tokenizer().eog_ids().into_iter().map(|id| (id, -1000.0)).collect();
    r
}

fn collect(events: impl Iterator<Item = Event>) -> (Vec<u32>, Result<(), EngineError>) {
    let mut ids = Vec::new();
    for e in events {
        match e {
            Event::Token(t) => ids.push(t.id),
            Event::Done { .. } => return (ids, Ok(())),
            Event::Error(e) => return (ids, Err(e)),
        }
    }
    panic!("stream ended without Done or Error after {ids:?}");
}

fn wait_idle(engine: &EngineHandle) {
    for _ in 0..200 {
        let s = engine.stats();
        if s.active == 0 && s.queued == 0 {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("the engine did not go idle: {:?}", engine.stats());
}

/// `INFER_FAULT` is read at `Engine::start`: no engine starts while one test sets it.
static ENV: Mutex<()> = Mutex::new(());

const PROMPTS: [&str; 4] = ["Name a fruit.", "Count to ten.", "Say hello.", "Name a planet."];
const N: usize = 12;

#[test]
fn a_faulty_sequence_fails_alone_and_the_others_generate_as_alone() {
    let model = model();
    let engine = {
        let _env = ENV.lock().unwrap_or_else(|e| e.into_inner());
        engine(&model, 4)
    };
    let alone: Vec<Vec<u32>> = PROMPTS
        .iter()
        .map(|p| {
            let (ids, end) = collect(engine.submit(endless(&model, p, N)).unwrap());
            end.unwrap();
            ids
        })
        .collect();
    for (fault, at) in [
        (Fault::NanLogits { after: 3 }, "NaN logits"),
        (Fault::KvFull { after: 5 }, "KV cache of slot"),
        (Fault::StepFails { after: 2 }, "failed to dispatch"),
    ] {
        // The faulty request and three clean ones share every step.
        let mut faulty = endless(&model, PROMPTS[0], N);
        faulty.fault = Some(fault);
        let streams: Vec<_> = std::iter::once(faulty)
            .chain(PROMPTS[1..].iter().map(|p| endless(&model, p, N)))
            .map(|r| engine.submit(r).unwrap())
            .collect();
        let results: Vec<_> = streams.into_iter().map(collect).collect();
        let (ids, end) = &results[0];
        let e = end.as_ref().expect_err("the faulty request must fail").to_string();
        assert!(e.contains(at), "{fault:?}: {e}");
        assert_eq!(ids[..], alone[0][..fault.after()], "{fault:?}: the tokens before the fault are the clean ones");
        for (k, (ids, end)) in results.iter().enumerate().skip(1) {
            assert!(end.is_ok(), "{fault:?}: clean request {k} failed: {end:?}");
            assert_eq!(ids, &alone[k], "{fault:?}: clean request {k} differs from its run alone");
        }
        wait_idle(&engine);
    }
    // Still serving, and the slot the faults used gives clean results.
    let (ids, end) = collect(engine.submit(endless(&model, PROMPTS[0], N)).unwrap());
    end.unwrap();
    assert_eq!(ids, alone[0]);
    let s = engine.stats();
    assert_eq!((s.failed, s.active), (3, 0), "{s:?}");
}

#[test]
fn infer_fault_assigns_faults_to_request_ids() {
    let model = model();
    let _env = ENV.lock().unwrap_or_else(|e| e.into_inner());
    std::env::set_var("INFER_FAULT", "nan_logits:1@2");
    let engine = engine(&model, 2);
    std::env::remove_var("INFER_FAULT");
    let ends: Vec<_> = (0..3).map(|_| collect(engine.submit(endless(&model, "Say hello.", 4)).unwrap()).1).collect();
    assert!(ends[0].is_ok() && ends[2].is_ok(), "{ends:?}");
    assert!(matches!(ends[1], Err(EngineError::BadLogits { at: 1 })), "{ends:?}");
    std::env::set_var("INFER_FAULT", "melt:1@2");
    let params = EngineParams { n_slots: 1, n_ctx_per_slot: 128, ..Default::default() };
    let refused = Engine::start(model.clone(), params);
    std::env::remove_var("INFER_FAULT");
    let e = refused.err().expect("a bad INFER_FAULT is refused").to_string();
    assert!(e.contains("melt:1@2"), "{e}");
}
