//! The engine's request scheduler on SmolLM2: concurrent requests match
//! each run alone, cancellation frees a slot without disturbing the others,
//! the queue is bounded, a full context fails only its own request, and a
//! follow-up prompt reuses a slot's cached prefix.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use infer_engine::scheduler::{Engine, EngineHandle, EngineParams, Event, Request, Usage};
use infer_engine::{EngineError, FinishReason, Model, ModelOptions, SamplerParams, SessionParams};

fn model() -> Arc<Model> {
    Model::load(model_path(SMOLLM2), ModelOptions::default()).unwrap()
}

fn engine(model: &Arc<Model>, n_slots: usize, n_ctx: usize, max_queue: usize) -> EngineHandle {
    let params = EngineParams { n_slots, n_ctx_per_slot: n_ctx, max_queue, n_batch: 32, ..Default::default() };
    Engine::start(model.clone(), params).unwrap()
}

fn greedy(model: &Model, prompt: &str, max_tokens: usize) -> Request {
    let mut r = Request::new(model.prompt_tokens(prompt).unwrap());
    r.sampler = SamplerParams::greedy();
    r.max_tokens = Some(max_tokens);
    r
}

/// A greedy request that never ends at an end-of-generation token (they are
/// banned through `logit_bias`), so it runs to `max_tokens` or the context's end.
fn endless(model: &Model, prompt: &str, max_tokens: usize) -> Request {
    let mut r = greedy(model, prompt, max_tokens);
    r.logit_bias = model.tokenizer().eog_ids().into_iter().map(|id| (id, -1000.0)).collect();
    r
}

/// Collects a stream: the ids, the text and how it ended.
fn collect(events: impl Iterator<Item = Event>) -> (Vec<u32>, String, Result<(FinishReason, Usage), EngineError>) {
    let (mut ids, mut text) = (Vec::new(), String::new());
    for e in events {
        match e {
            Event::Token(t) => {
                ids.push(t.id);
                text.push_str(&t.text);
            }
            Event::Done { reason, usage } => return (ids, text, Ok((reason, usage))),
            Event::Error(e) => return (ids, text, Err(e)),
        }
    }
    panic!("stream ended without Done or Error after {ids:?}");
}

/// Waits (bounded) until every slot is idle and the queue empty.
fn wait_idle(engine: &EngineHandle) {
    for _ in 0..200 {
        let s = engine.stats();
        if s.active == 0 && s.queued == 0 {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("engine not idle: {:?}", engine.stats());
}

const PROMPTS: [&str; 4] = ["Once upon a time", "The capital of France is", "def fibonacci(n):", "My favourite colour is"];

#[test]
fn concurrent_greedy_requests_match_each_alone_and_the_session_api() {
    let model = model();
    let engine = engine(&model, 4, 256, 8);
    let alone: Vec<_> = PROMPTS.iter().map(|p| collect(engine.submit(endless(&model, p, 12)).unwrap())).collect();
    // The same text through the plain Session API.
    let mut s = model.session(SessionParams { n_ctx: 256, ..Default::default() }).unwrap();
    let ids = model.prompt_tokens(PROMPTS[0]).unwrap();
    let opts = infer_engine::GenerateOptions { max_tokens: 12, stop: vec![] };
    let session_text: String = s.generate(&ids, SamplerParams::greedy(), opts).unwrap().map(|t| t.unwrap().text).collect();
    let (_, text, _) = collect(engine.submit(greedy(&model, PROMPTS[0], 12)).unwrap());
    assert_eq!(text, session_text);
    // All four at once, interleaved step by step.
    let streams: Vec<_> = PROMPTS.iter().map(|p| engine.submit(endless(&model, p, 12)).unwrap()).collect();
    let together: Vec<_> = streams.into_iter().map(collect).collect();
    for (a, t) in alone.iter().zip(&together) {
        assert_eq!(a.0, t.0);
        assert_eq!(a.1, t.1);
        let (reason, usage) = t.2.as_ref().unwrap();
        assert_eq!(*reason, FinishReason::Length);
        assert_eq!(usage.completion_tokens, 12);
    }
    wait_idle(&engine);
    let st = engine.stats();
    assert_eq!(st.finished, 9);
    assert!(st.generated_tokens >= 8 * 12);
}

#[test]
fn cancelling_one_request_leaves_the_others_unchanged_and_frees_its_slot() {
    let model = model();
    let engine = engine(&model, 2, 256, 8);
    let alone = collect(engine.submit(greedy(&model, PROMPTS[1], 24)).unwrap());
    let victim = engine.submit(endless(&model, PROMPTS[0], 200)).unwrap();
    let other = engine.submit(greedy(&model, PROMPTS[1], 24)).unwrap();
    // Read a few tokens of the victim, then drop it mid-run.
    let mut victim = victim;
    for _ in 0..3 {
        assert!(matches!(victim.next(), Some(Event::Token(_))));
    }
    drop(victim);
    let with_cancel = collect(other);
    assert_eq!(with_cancel.0, alone.0);
    assert_eq!(with_cancel.1, alone.1);
    wait_idle(&engine);
    assert_eq!(engine.stats().cancelled, 1);
    // Both slots serve again: two new requests run to the end.
    let a = engine.submit(greedy(&model, PROMPTS[2], 5)).unwrap();
    let b = engine.submit(greedy(&model, PROMPTS[3], 5)).unwrap();
    assert!(collect(a).2.is_ok());
    assert!(collect(b).2.is_ok());
    // cancel() works as dropping does.
    let c = engine.submit(endless(&model, PROMPTS[0], 200)).unwrap();
    c.cancel();
    let rest: Vec<_> = c.collect();
    assert!(rest.len() < 200, "a cancelled request went on for {} events", rest.len());
    wait_idle(&engine);
}

#[test]
fn a_full_queue_refuses_and_a_full_context_fails_only_its_request() {
    let model = model();
    let engine = engine(&model, 1, 64, 1);
    let long = engine.submit(endless(&model, PROMPTS[0], 40)).unwrap();
    // Wait until the first request holds the slot, then fill the one queue place.
    assert!(matches!(long.recv_timeout(Duration::from_secs(30)), Some(Event::Token(_))));
    let queued = engine.submit(greedy(&model, PROMPTS[1], 4)).unwrap();
    let e = engine.submit(greedy(&model, PROMPTS[2], 4)).err().unwrap();
    assert!(matches!(e, EngineError::QueueFull { max_queue: 1 }), "{e}");
    assert!(collect(long).2.is_ok());
    assert!(collect(queued).2.is_ok());

    // More tokens than the context holds: a clear error for that request only.
    let n_prompt = model.prompt_tokens(PROMPTS[3]).unwrap().len();
    let too_many = engine.submit(endless(&model, PROMPTS[3], 200)).unwrap();
    let (ids, _, end) = collect(too_many);
    assert!(matches!(end, Err(EngineError::ContextFull { n_ctx: 64 })), "{end:?}");
    assert_eq!(ids.len(), 64 - n_prompt + 1);
    // Without max_tokens, generation ends with Length where the context does.
    let mut open = endless(&model, PROMPTS[3], 1);
    open.max_tokens = None;
    let (ids, _, end) = collect(engine.submit(open).unwrap());
    assert_eq!(end.unwrap().0, FinishReason::Length);
    assert_eq!(ids.len(), 64 - n_prompt);
    // A prompt that leaves no room, and an empty one, are refused at once.
    let e = engine.submit(Request::new(vec![1; 64])).err().unwrap();
    assert!(matches!(e, EngineError::PromptTooLong { n_tokens: 64, n_ctx: 64 }), "{e}");
    assert!(matches!(engine.submit(Request::new(vec![])).err().unwrap(), EngineError::EmptyPrompt));
    // The engine still serves.
    assert!(collect(engine.submit(greedy(&model, PROMPTS[1], 4)).unwrap()).2.is_ok());
}

#[test]
fn prefix_reuse_stop_strings_seeds_and_logprobs() {
    let model = model();
    let engine = engine(&model, 2, 256, 8);
    let first = greedy(&model, "The capital of France is", 6);
    let (ids, text, end) = collect(engine.submit(first.clone()).unwrap());
    assert_eq!(end.unwrap().1.cached_tokens, 0);
    // The next turn starts with the first prompt and its reply: only the new tokens are evaluated.
    let mut follow = first.prompt.clone();
    follow.extend_from_slice(&ids[..ids.len() - 1]);
    follow.extend(model.tokenizer().encode(" And of Italy?", false, false).unwrap());
    let mut next = greedy(&model, "", 4);
    next.prompt = follow;
    let (_, _, end) = collect(engine.submit(next).unwrap());
    let usage = end.unwrap().1;
    assert_eq!(usage.cached_tokens, first.prompt.len() + ids.len() - 1, "the cached prefix is reused");

    // A stop string cuts the text before it.
    let word = text.split_whitespace().nth(1).unwrap().to_string();
    let mut stop = greedy(&model, "The capital of France is", 6);
    stop.stop = vec![word.clone()];
    let (_, cut, end) = collect(engine.submit(stop).unwrap());
    assert_eq!(end.unwrap().0, FinishReason::Stop);
    assert!(!cut.contains(&word) && text.starts_with(&cut), "{cut:?} of {text:?}");

    // The same seed gives the same sampled text; logprobs come with the tokens.
    let sampled = |seed: u64| {
        let mut r = endless(&model, "Tell me a story", 10);
        r.sampler = SamplerParams { seed, temperature: 1.0, ..Default::default() };
        r.logprobs = Some(3);
        engine.submit(r).unwrap()
    };
    let lp: Vec<_> = sampled(7)
        .filter_map(|e| match e {
            Event::Token(t) => Some((t.id, t.logprob.unwrap())),
            _ => None,
        })
        .collect();
    assert_eq!(lp.len(), 10);
    for (id, l) in &lp {
        assert_eq!(l.top.len(), 3);
        assert!(l.logprob <= 0.0, "{l:?}");
        assert!(l.top[0].1 >= l.top[1].1 && l.top[1].1 >= l.top[2].1, "{l:?}");
        if let Some(&(_, v)) = l.top.iter().find(|t| t.0 == *id) {
            assert_eq!(v, l.logprob);
        } else {
            assert!(l.logprob <= l.top[2].1, "{l:?}");
        }
    }
    assert_eq!(collect(sampled(7)).0, collect(sampled(7)).0);
    // A logit bias of -100 bans the greedy choice.
    let plain = collect(engine.submit(greedy(&model, "The capital of France is", 1)).unwrap()).0[0];
    let mut banned = greedy(&model, "The capital of France is", 1);
    banned.logit_bias = vec![(plain, -100.0)];
    assert_ne!(collect(engine.submit(banned).unwrap()).0[0], plain);
    wait_idle(&engine);
}

/// A second chat turn after a 1,000-token history evaluates only its new
/// tokens: the engine's prompt-token counter grows by those alone, and the
/// turn's time to first token is far below the first turn's.
#[test]
fn a_second_turn_after_a_long_history_evaluates_only_its_new_tokens() {
    let model = model();
    let engine = Engine::start(
        model.clone(),
        EngineParams { n_slots: 2, n_ctx_per_slot: 1200, max_queue: 4, n_batch: 256, ..Default::default() },
    )
    .unwrap();
    let line = "The quick brown fox jumps over the lazy dog while the farmer counts his sheep. ";
    let mut history = model.prompt_tokens(&line.repeat(80)).unwrap();
    history.truncate(1000);
    let mut first = greedy(&model, "", 3);
    first.prompt = history.clone();
    let (ids, _, end) = collect(engine.submit(first).unwrap());
    let turn1 = end.unwrap().1;
    let before = engine.stats().prompt_tokens;
    let mut next = greedy(&model, "", 3);
    next.prompt = history.clone();
    next.prompt.extend_from_slice(&ids[..ids.len() - 1]);
    let new_tokens = model.tokenizer().encode(" What does the farmer count?", false, false).unwrap();
    next.prompt.extend_from_slice(&new_tokens);
    let (_, _, end) = collect(engine.submit(next.clone()).unwrap());
    let turn2 = end.unwrap().1;
    let evaluated = engine.stats().prompt_tokens - before;
    eprintln!(
        "turn 1: {} prompt tokens, TTFT {:?}; turn 2: {} cached, {evaluated} evaluated, TTFT {:?}",
        turn1.prompt_tokens, turn1.time_to_first_token, turn2.cached_tokens, turn2.time_to_first_token
    );
    assert_eq!(turn2.cached_tokens, 1000 + ids.len() - 1);
    assert_eq!(evaluated as usize, next.prompt.len() - turn2.cached_tokens);
    assert_eq!(evaluated as usize, new_tokens.len());
    assert!(turn2.time_to_first_token < turn1.time_to_first_token);
}
