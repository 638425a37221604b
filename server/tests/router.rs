//! The router in-process (tower `oneshot`) on SmolLM2: every endpoint,
//! every error, the SSE framing, the stop-string hold-back and cancellation
//! when a client goes away.

mod common;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, HeaderMap, Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use infer_engine::{Engine, EngineParams};
use infer_server::{router, AppState, ServerConfig};
use serde_json::{json, Value};
use tower::ServiceExt;

use common::model;

fn app_with(config: ServerConfig, n_slots: usize, n_ctx: usize, max_queue: usize) -> (Router, Arc<AppState>) {
    let state = AppState::new(config);
    let params = EngineParams { n_slots, n_ctx_per_slot: n_ctx, max_queue, n_batch: 64, ..Default::default() };
    assert!(state.set_engine(Engine::start(model(), params).unwrap()).is_ok());
    (router(state.clone()), state)
}

/// The app most tests share: 4 slots of 512 tokens.
fn app() -> Router {
    static APP: OnceLock<Router> = OnceLock::new();
    APP.get_or_init(|| app_with(ServerConfig { model_name: "smollm2".into(), ..Default::default() }, 4, 512, 16).0).clone()
}

async fn send(app: &Router, req: Request<Body>) -> (StatusCode, HeaderMap, String) {
    let res = app.clone().oneshot(req).await.unwrap();
    let (parts, body) = res.into_parts();
    let bytes = body.collect().await.unwrap().to_bytes();
    (parts.status, parts.headers, String::from_utf8(bytes.to_vec()).unwrap())
}

fn post(path: &str, body: impl Into<Body>) -> Request<Body> {
    Request::post(path).header(header::CONTENT_TYPE, "application/json").body(body.into()).unwrap()
}

async fn post_json(app: &Router, path: &str, body: Value) -> (StatusCode, Value) {
    let (status, _, text) = send(app, post(path, body.to_string())).await;
    (status, serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}")))
}

async fn get(app: &Router, path: &str) -> (StatusCode, HeaderMap, String) {
    send(app, Request::get(path).body(Body::empty()).unwrap()).await
}

/// Parses an SSE body: every event is `data: …` and a blank line; returns
/// the JSON chunks and checks the stream ends with `data: [DONE]`.
fn sse_chunks(text: &str) -> Vec<Value> {
    assert!(text.ends_with("data: [DONE]\n\n"), "stream does not end with [DONE]: {text:?}");
    let events: Vec<&str> = text.split("\n\n").filter(|e| !e.is_empty()).collect();
    let (last, chunks) = events.split_last().unwrap();
    assert_eq!(*last, "data: [DONE]");
    chunks
        .iter()
        .map(|e| {
            let data = e.strip_prefix("data: ").unwrap_or_else(|| panic!("not a data event: {e:?}"));
            assert!(!data.contains('\n'), "one line per event: {e:?}");
            serde_json::from_str(data).unwrap()
        })
        .collect()
}

fn chat_body(extra: Value) -> Value {
    let mut b = json!({ "model": "anything", "messages": [{ "role": "user", "content": "What is the capital of France?" }], "temperature": 0, "max_tokens": 16 });
    for (k, v) in extra.as_object().unwrap() {
        b[k] = v.clone();
    }
    b
}

fn assert_error(status: StatusCode, body: &Value, want: StatusCode, param: Option<&str>) {
    assert_eq!(status, want, "{body}");
    let e = &body["error"];
    assert!(e["message"].as_str().is_some_and(|m| !m.is_empty()), "{body}");
    assert!(e["type"].is_string(), "{body}");
    if let Some(p) = param {
        assert_eq!(e["param"], p, "{body}");
    }
}

#[tokio::test]
async fn chat_completion_has_openai_shape_and_stream_matches_it() {
    let app = app();
    let (status, full) = post_json(&app, "/v1/chat/completions", chat_body(json!({}))).await;
    assert_eq!(status, StatusCode::OK, "{full}");
    assert_eq!(full["object"], "chat.completion");
    assert!(full["id"].as_str().unwrap().starts_with("chatcmpl-"));
    assert_eq!(full["model"], "smollm2");
    assert!(full["system_fingerprint"].is_string() && full["created"].is_u64());
    let choice = &full["choices"][0];
    assert_eq!(choice["message"]["role"], "assistant");
    let text = choice["message"]["content"].as_str().unwrap().to_string();
    assert!(!text.is_empty());
    assert!(["stop", "length"].contains(&choice["finish_reason"].as_str().unwrap()));
    let u = &full["usage"];
    assert!(u["prompt_tokens"].as_u64().unwrap() > 5);
    assert_eq!(u["total_tokens"].as_u64(), Some(u["prompt_tokens"].as_u64().unwrap() + u["completion_tokens"].as_u64().unwrap()));

    // Streamed: role first, content deltas, finish_reason, usage chunk, [DONE].
    let body = chat_body(json!({ "stream": true, "stream_options": { "include_usage": true } }));
    let (status, headers, sse) = send(&app, post("/v1/chat/completions", body.to_string())).await;
    assert_eq!(status, StatusCode::OK);
    assert!(headers[header::CONTENT_TYPE].to_str().unwrap().starts_with("text/event-stream"));
    let chunks = sse_chunks(&sse);
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    assert_eq!(chunks[0]["choices"][0]["delta"]["content"], "");
    let (usage_chunk, rest) = chunks.split_last().unwrap();
    assert_eq!(usage_chunk["choices"], json!([]));
    for k in ["prompt_tokens", "completion_tokens", "total_tokens"] {
        assert_eq!(usage_chunk["usage"][k], u[k]);
    }
    // Prefix reuse (exact counts are tested in the scheduler's tests; here
    // other tests share the slots): at most all but the last prompt token.
    let cached = usage_chunk["usage"]["prompt_tokens_details"]["cached_tokens"].as_u64().unwrap();
    assert!(cached < u["prompt_tokens"].as_u64().unwrap());
    let (finish, deltas) = rest.split_last().unwrap();
    assert_eq!(finish["choices"][0]["finish_reason"], choice["finish_reason"]);
    assert_eq!(finish["choices"][0]["delta"], json!({}));
    let mut streamed = String::new();
    for c in rest {
        assert_eq!(c["object"], "chat.completion.chunk");
        assert!(c["usage"].is_null(), "usage only in the last chunk: {c}");
        assert_eq!(c["id"], chunks[0]["id"]);
    }
    for c in &deltas[1..] {
        assert!(c["choices"][0]["finish_reason"].is_null());
        streamed.push_str(c["choices"][0]["delta"]["content"].as_str().unwrap());
    }
    assert_eq!(streamed, text);
}

#[tokio::test]
async fn stop_strings_are_held_back_while_streaming() {
    let app = app();
    let body = chat_body(json!({ "max_tokens": 24, "logit_bias": { "0": -100, "2": -100 } }));
    let (_, full) = post_json(&app, "/v1/chat/completions", body.clone()).await;
    let text = full["choices"][0]["message"]["content"].as_str().unwrap().to_string();
    // A stop string that starts inside one token and ends in a later one.
    let words: Vec<&str> = text.split(' ').collect();
    assert!(words.len() > 4, "{text:?}");
    let stop = format!("{} {}", &words[2][1.min(words[2].len())..], words[3]);
    let cut = text.find(&stop).unwrap();
    let mut with_stop = body.clone();
    with_stop["stop"] = json!([stop, "never appears"]);
    with_stop["stream"] = json!(true);
    let (_, _, sse) = send(&app, post("/v1/chat/completions", with_stop.to_string())).await;
    let chunks = sse_chunks(&sse);
    let streamed: String = chunks.iter().filter_map(|c| c["choices"][0]["delta"]["content"].as_str()).collect();
    assert_eq!(streamed, text[..cut], "stop {stop:?} in {text:?}");
    assert_eq!(chunks.last().unwrap()["choices"][0]["finish_reason"], "stop");
    // The same without streaming, with stop as a plain string.
    with_stop["stream"] = json!(false);
    with_stop["stop"] = json!(stop);
    let (_, r) = post_json(&app, "/v1/chat/completions", with_stop).await;
    assert_eq!(r["choices"][0]["message"]["content"], text[..cut]);
    assert_eq!(r["choices"][0]["finish_reason"], "stop");
}

#[tokio::test]
async fn sampling_options_n_seed_logprobs_and_penalties() {
    let app = app();
    let body = json!({
        "messages": [{ "role": "system", "content": "Be creative." }, { "role": "user", "content": [{ "type": "text", "text": "Write a story." }] }],
        "temperature": 1.0, "seed": 11, "n": 2, "max_completion_tokens": 8, "logprobs": true, "top_logprobs": 2,
        "presence_penalty": 0.5, "frequency_penalty": 0.5, "top_k": 20, "min_p": 0.0, "user": "ignored",
    });
    let (status, a) = post_json(&app, "/v1/chat/completions", body.clone()).await;
    assert_eq!(status, StatusCode::OK, "{a}");
    let (_, b) = post_json(&app, "/v1/chat/completions", body).await;
    assert_eq!(a["choices"], b["choices"], "same seed, same choices");
    let choices = a["choices"].as_array().unwrap();
    assert_eq!(choices.len(), 2);
    assert_eq!(choices[1]["index"], 1);
    assert_eq!(a["usage"]["completion_tokens"].as_u64().unwrap(), choices.iter().map(|c| c["logprobs"]["content"].as_array().unwrap().len() as u64).sum::<u64>());
    let lp = &choices[0]["logprobs"]["content"][0];
    assert!(lp["logprob"].as_f64().unwrap() <= 0.0 && lp["token"].is_string() && lp["bytes"].is_array());
    assert_eq!(lp["top_logprobs"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn text_completions_with_echo_logprobs_and_prompt_lists() {
    let app = app();
    let (status, r) = post_json(&app, "/v1/completions", json!({ "prompt": "The capital of France is", "max_tokens": 4, "temperature": 0, "echo": true, "logprobs": 2 })).await;
    assert_eq!(status, StatusCode::OK, "{r}");
    assert_eq!(r["object"], "text_completion");
    let c = &r["choices"][0];
    assert!(c["text"].as_str().unwrap().starts_with("The capital of France is Paris"), "{c}");
    assert_eq!(c["logprobs"]["tokens"].as_array().unwrap().len(), 4);
    assert_eq!(c["logprobs"]["top_logprobs"][0].as_object().unwrap().len(), 2);
    assert_eq!(c["logprobs"]["text_offset"][0], "The capital of France is".len());
    let (_, r) = post_json(&app, "/v1/completions", json!({ "prompt": ["One", "Two"], "n": 2, "max_tokens": 2, "seed": 1 })).await;
    let idx: Vec<u64> = r["choices"].as_array().unwrap().iter().map(|c| c["index"].as_u64().unwrap()).collect();
    assert_eq!(idx, vec![0, 1, 2, 3]);
    // Streamed text completions end with finish_reason and [DONE].
    let (_, _, sse) = send(&app, post("/v1/completions", json!({ "prompt": "Hello", "max_tokens": 3, "stream": true }).to_string())).await;
    let chunks = sse_chunks(&sse);
    assert_eq!(chunks.last().unwrap()["choices"][0]["finish_reason"], "length");
    assert!(chunks.iter().all(|c| c["object"] == "text_completion"));
}

#[tokio::test]
async fn models_health_tokenize_detokenize_metrics_page_embeddings() {
    let app = app();
    let (status, _, body) = get(&app, "/v1/models").await;
    assert_eq!(status, StatusCode::OK);
    let m: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(m["object"], "list");
    assert_eq!(m["data"][0]["id"], "smollm2");
    assert_eq!(m["data"][0]["meta"]["n_ctx"], 512);
    assert_eq!(m["data"][0]["meta"]["n_slots"], 4);
    let (status, _, body) = get(&app, "/health").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["status"], "ok");

    let (status, t) = post_json(&app, "/tokenize", json!({ "content": "Hello world", "with_pieces": true })).await;
    assert_eq!(status, StatusCode::OK);
    let pieces = t["tokens"].as_array().unwrap();
    assert_eq!(pieces.iter().map(|p| p["piece"].as_str().unwrap()).collect::<String>(), "Hello world");
    let (_, t) = post_json(&app, "/tokenize", json!({ "content": "Hello world" })).await;
    let (status, d) = post_json(&app, "/detokenize", json!({ "tokens": t["tokens"] })).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(d["content"], "Hello world");
    let (status, d) = post_json(&app, "/detokenize", json!({ "tokens": [1, 99999999] })).await;
    assert_error(status, &d, StatusCode::BAD_REQUEST, Some("tokens[1]"));

    let (status, e) = post_json(&app, "/v1/embeddings", json!({ "input": "hi", "model": "smollm2" })).await;
    assert_error(status, &e, StatusCode::BAD_REQUEST, Some("model"));
    assert!(e["error"]["message"].as_str().unwrap().contains("cannot embed"));

    let (status, _, page) = get(&app, "/").await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("<html") && page.contains("/v1/chat/completions"));
    assert!(!page.contains("http://") && !page.contains("https://"), "the page loads nothing from elsewhere");

    post_json(&app, "/v1/completions", json!({ "prompt": "Hi", "max_tokens": 2 })).await;
    let (status, headers, text) = get(&app, "/metrics").await;
    assert_eq!(status, StatusCode::OK);
    assert!(headers[header::CONTENT_TYPE].to_str().unwrap().starts_with("text/plain"));
    for name in ["infer_http_responses_total{route=\"/v1/completions\",status=\"200\"}", "infer_generated_tokens_total", "infer_queue_depth", "infer_time_to_first_token_seconds_bucket", "infer_generation_tokens_per_second", "infer_slots_busy"] {
        assert!(text.contains(name), "{name} missing from\n{text}");
    }
}

#[tokio::test]
async fn bad_requests_are_openai_errors_naming_the_field() {
    let app = app();
    let (status, _, text) = send(&app, post("/v1/chat/completions", "{\"messages\": [")).await;
    let e: Value = serde_json::from_str(&text).unwrap();
    assert_error(status, &e, StatusCode::BAD_REQUEST, None);
    assert_eq!(e["error"]["code"], "invalid_json");
    let cases = [
        (json!({ "messages": "hi" }), "messages"),
        (json!({ "temperature": 0.5 }), "messages"),
        (json!({ "messages": [{ "role": "user", "content": "hi" }], "temperature": "hot" }), "temperature"),
        (json!({ "messages": [{ "role": "user", "content": "hi" }], "temperature": 7 }), "temperature"),
        (json!({ "messages": [{ "role": "user", "content": "hi" }], "top_p": 2 }), "top_p"),
        (json!({ "messages": [{ "role": "user", "content": "hi" }], "n": 0 }), "n"),
        (json!({ "messages": [{ "role": "user", "content": "hi" }], "max_tokens": 0 }), "max_tokens"),
        (json!({ "messages": [{ "role": "user", "content": "hi" }], "max_tokens": -3 }), "max_tokens"),
        (json!({ "messages": [{ "role": "user", "content": "hi" }], "stop": 5 }), "stop"),
        (json!({ "messages": [{ "role": "user", "content": "hi" }], "stop": ["a", "b", "c", "d", "e"] }), "stop"),
        (json!({ "messages": [{ "role": "user", "content": "hi" }], "logit_bias": { "x": 1 } }), "logit_bias"),
        (json!({ "messages": [{ "role": "user", "content": "hi" }], "logit_bias": { "5": 500 } }), "logit_bias"),
        (json!({ "messages": [{ "role": "user", "content": "hi" }], "top_logprobs": 50, "logprobs": true }), "top_logprobs"),
        (json!({ "messages": [{ "role": "user", "content": [{ "type": "image_url" }] }] }), "messages[0].content[0]"),
        (json!({ "messages": [{ "content": "no role" }] }), "messages[0].role"),
        (json!({ "messages": [] }), "messages"),
    ];
    for (body, param) in cases {
        let (status, e) = post_json(&app, "/v1/chat/completions", body.clone()).await;
        assert_error(status, &e, StatusCode::BAD_REQUEST, Some(param));
    }
    let (status, e) = post_json(&app, "/v1/completions", json!({ "prompt": 3 })).await;
    assert_error(status, &e, StatusCode::BAD_REQUEST, Some("prompt"));
    let (status, e) = post_json(&app, "/v1/completions", json!({ "prompt": "x", "logprobs": 9 })).await;
    assert_error(status, &e, StatusCode::BAD_REQUEST, Some("logprobs"));

    // A prompt longer than a slot's context: 400 with both counts.
    let long = "word ".repeat(600);
    let (status, e) = post_json(&app, "/v1/chat/completions", json!({ "messages": [{ "role": "user", "content": long }] })).await;
    assert_error(status, &e, StatusCode::BAD_REQUEST, Some("messages"));
    assert_eq!(e["error"]["code"], "context_length_exceeded");
    let msg = e["error"]["message"].as_str().unwrap();
    assert!(msg.contains("512") && msg.contains("tokens"), "{msg}");
    let (status, e) = post_json(&app, "/v1/completions", json!({ "prompt": long })).await;
    assert_error(status, &e, StatusCode::BAD_REQUEST, Some("prompt"));

    let (status, _, text) = get(&app, "/v1/nothing").await;
    assert_error(status, &serde_json::from_str(&text).unwrap(), StatusCode::NOT_FOUND, None);
    let (status, _, text) = get(&app, "/v1/chat/completions").await;
    assert_error(status, &serde_json::from_str(&text).unwrap(), StatusCode::METHOD_NOT_ALLOWED, None);
}

#[tokio::test]
async fn api_key_body_limit_and_loading() {
    let config = ServerConfig { api_key: Some("sekret".into()), body_limit: 2048, cors_origins: vec!["*".into()], ..Default::default() };
    let (app, _) = app_with(config, 1, 256, 4);
    let body = json!({ "prompt": "Hi", "max_tokens": 1 }).to_string();
    let (status, _, text) = send(&app, post("/v1/completions", body.clone())).await;
    assert_error(status, &serde_json::from_str(&text).unwrap(), StatusCode::UNAUTHORIZED, None);
    let wrong = Request::post("/v1/completions").header(header::AUTHORIZATION, "Bearer nope").body(Body::from(body.clone())).unwrap();
    assert_eq!(send(&app, wrong).await.0, StatusCode::UNAUTHORIZED);
    let right = || Request::post("/v1/completions").header(header::AUTHORIZATION, "Bearer sekret");
    let (status, _, text) = send(&app, right().body(Body::from(body)).unwrap()).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    assert_eq!(get(&app, "/health").await.0, StatusCode::OK, "health needs no key");
    assert_eq!(get(&app, "/v1/models").await.0, StatusCode::UNAUTHORIZED);
    // CORS preflight.
    let pre = Request::options("/v1/chat/completions")
        .header(header::ORIGIN, "http://localhost:3000")
        .header(header::ACCESS_CONTROL_REQUEST_METHOD, "POST")
        .body(Body::empty())
        .unwrap();
    let (_, headers, _) = send(&app, pre).await;
    assert_eq!(headers[header::ACCESS_CONTROL_ALLOW_ORIGIN], "*");
    // A body over the limit.
    let big = json!({ "prompt": "x".repeat(4096) }).to_string();
    let (status, _, text) = send(&app, right().body(Body::from(big)).unwrap()).await;
    assert_error(status, &serde_json::from_str(&text).unwrap(), StatusCode::PAYLOAD_TOO_LARGE, None);

    // Before the engine is installed: 503 with Retry-After.
    let loading = router(AppState::new(ServerConfig::default()));
    let (status, headers, text) = get(&loading, "/health").await;
    assert_error(status, &serde_json::from_str(&text).unwrap(), StatusCode::SERVICE_UNAVAILABLE, None);
    assert!(headers.contains_key(header::RETRY_AFTER));
    let (status, _) = post_json(&loading, "/v1/chat/completions", chat_body(json!({}))).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
}

/// Waits (bounded) until no slot is busy.
async fn wait_idle(state: &AppState) {
    for _ in 0..300 {
        let s = state.engine().unwrap().stats();
        if s.active == 0 && s.queued == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("slots still busy: {:?}", state.engine().unwrap().stats());
}

#[tokio::test]
async fn full_queue_is_503_dropped_stream_cancels_and_timeouts_end_streams() {
    let (app, state) = app_with(ServerConfig::default(), 1, 256, 0);
    // Hold the only slot with a stream that is read slowly.
    let body = json!({ "prompt": "Once upon a time", "max_tokens": 200, "logit_bias": { "0": -100, "2": -100 }, "stream": true }).to_string();
    let res = app.clone().oneshot(post("/v1/completions", body)).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let mut stream = res.into_body();
    for _ in 0..3 {
        stream.frame().await.unwrap().unwrap();
    }
    let (status, headers, text) = send(&app, post("/v1/completions", json!({ "prompt": "x" }).to_string())).await;
    assert_error(status, &serde_json::from_str(&text).unwrap(), StatusCode::SERVICE_UNAVAILABLE, None);
    assert_eq!(headers[header::RETRY_AFTER], "1");
    // The client goes away: the slot frees within a step or two.
    drop(stream);
    wait_idle(&state).await;
    let stats = state.engine().unwrap().stats();
    assert_eq!(stats.cancelled, 1);
    assert!(stats.generated_tokens < 100, "generation went on after the client left: {stats:?}");
    let (status, _) = post_json(&app, "/v1/completions", json!({ "prompt": "x", "max_tokens": 2 })).await;
    assert_eq!(status, StatusCode::OK);

    // An error after the 200 headers: an SSE error event, then [DONE].
    let config = ServerConfig { request_timeout: Some(Duration::from_millis(300)), ..Default::default() };
    let (app, state) = app_with(config, 1, 256, 0);
    let body = json!({ "prompt": "Once upon a time", "max_tokens": 200, "logit_bias": { "0": -100, "2": -100 }, "stream": true });
    let (status, _, sse) = send(&app, post("/v1/completions", body.to_string())).await;
    assert_eq!(status, StatusCode::OK);
    let chunks = sse_chunks(&sse);
    let err = &chunks.last().unwrap()["error"];
    assert_eq!(err["code"], "timeout", "{sse}");
    let (status, e) = post_json(&app, "/v1/completions", json!({ "prompt": "Once upon a time", "max_tokens": 200, "logit_bias": { "0": -100, "2": -100 } })).await;
    assert_error(status, &e, StatusCode::GATEWAY_TIMEOUT, None);
    wait_idle(&state).await;
}

fn weather_tool() -> Value {
    json!({ "type": "function", "function": { "name": "get_weather", "description": "The weather in a city",
        "parameters": { "type": "object", "properties": { "city": { "type": "string", "maxLength": 20 } }, "required": ["city"] } } })
}

#[tokio::test]
async fn required_tool_choice_gives_calls_that_parse_streamed_and_not() {
    let app = app();
    let body = chat_body(json!({ "tools": [weather_tool()], "tool_choice": "required", "max_tokens": 40, "parallel_tool_calls": false,
        "messages": [{ "role": "user", "content": "What is the weather in Paris?" }] }));
    let (status, r) = post_json(&app, "/v1/chat/completions", body.clone()).await;
    assert_eq!(status, StatusCode::OK, "{r}");
    let choice = &r["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls", "{r}");
    assert!(choice["message"]["content"].is_null(), "{r}");
    let calls = choice["message"]["tool_calls"].as_array().unwrap();
    assert_eq!(calls.len(), 1, "{r}");
    assert!(calls[0]["id"].as_str().unwrap().starts_with("call_"));
    assert_eq!(calls[0]["type"], "function");
    assert_eq!(calls[0]["function"]["name"], "get_weather");
    let args: Value = serde_json::from_str(calls[0]["function"]["arguments"].as_str().unwrap()).unwrap();
    assert!(args["city"].is_string(), "{args}");

    let mut streamed = body;
    streamed["stream"] = json!(true);
    let (_, _, sse) = send(&app, post("/v1/chat/completions", streamed.to_string())).await;
    let chunks = sse_chunks(&sse);
    let deltas: Vec<&Value> = chunks.iter().map(|c| &c["choices"][0]["delta"]).collect();
    assert!(deltas.iter().all(|d| d["content"].is_null()), "no content: {sse}");
    let parts: Vec<&Value> = deltas.iter().filter_map(|d| d["tool_calls"].as_array()).map(|a| &a[0]).collect();
    assert_eq!(parts[0]["function"]["name"], "get_weather");
    assert!(parts[0]["id"].as_str().unwrap().starts_with("call_") && parts[0]["type"] == "function");
    assert!(parts.len() >= 2 && parts.iter().all(|p| p["index"] == 0));
    assert!(parts[1..].iter().all(|p| p.get("id").is_none() && p["function"].get("name").is_none()));
    let joined: String = parts.iter().map(|p| p["function"]["arguments"].as_str().unwrap()).collect();
    assert_eq!(serde_json::from_str::<Value>(&joined).unwrap(), args, "greedy: the same call streamed");
    assert_eq!(chunks.last().unwrap()["choices"][0]["finish_reason"], "tool_calls");
}

#[tokio::test]
async fn tool_turns_are_accepted_and_a_named_function_is_called() {
    let app = app();
    let messages = json!([
        { "role": "user", "content": "What is the weather in Paris?" },
        { "role": "assistant", "content": null, "tool_calls": [{ "id": "call_1", "type": "function", "function": { "name": "get_weather", "arguments": "{\"city\": \"Paris\"}" } }] },
        { "role": "tool", "tool_call_id": "call_1", "content": "{\"sky\": \"sunny\"}" },
    ]);
    let (status, r) = post_json(&app, "/v1/chat/completions", chat_body(json!({ "messages": messages, "tools": [weather_tool()] }))).await;
    assert_eq!(status, StatusCode::OK, "{r}");
    let time = json!({ "type": "function", "function": { "name": "get_time", "parameters": { "type": "object", "properties": { "zone": { "enum": ["UTC", "CET"] } }, "required": ["zone"] } } });
    let named = json!({ "tools": [weather_tool(), time], "tool_choice": { "type": "function", "function": { "name": "get_time" } }, "max_tokens": 40 });
    let (status, r) = post_json(&app, "/v1/chat/completions", chat_body(named)).await;
    assert_eq!(status, StatusCode::OK, "{r}");
    let calls = r["choices"][0]["message"]["tool_calls"].as_array().unwrap();
    assert!(!calls.is_empty() && calls.iter().all(|c| c["function"]["name"] == "get_time"), "{r}");
    let args: Value = serde_json::from_str(calls[0]["function"]["arguments"].as_str().unwrap()).unwrap();
    assert!(args["zone"] == "UTC" || args["zone"] == "CET", "{args}");
}

/// `{"name": string ≤ 12, "n": integer 1..=9, "tags": 1–2 of a/b}`, checked by hand.
fn person_is_valid(v: &Value) -> bool {
    let o = v.as_object().unwrap();
    o.keys().all(|k| ["name", "n", "tags"].contains(&k.as_str()))
        && o["name"].as_str().is_some_and(|s| s.chars().count() <= 12)
        && o["n"].as_i64().is_some_and(|n| (1..=9).contains(&n))
        && o["tags"].as_array().is_some_and(|t| (1..=2).contains(&t.len()) && t.iter().all(|x| x == "a" || x == "b"))
}

#[tokio::test]
async fn json_schema_output_validates_beside_unconstrained_requests() {
    let app = app();
    let schema = json!({ "type": "object", "additionalProperties": false, "required": ["name", "n", "tags"], "properties": {
        "name": { "type": "string", "maxLength": 12 }, "n": { "type": "integer", "minimum": 1, "maximum": 9 },
        "tags": { "type": "array", "items": { "enum": ["a", "b"] }, "minItems": 1, "maxItems": 2 } } });
    let format = json!({ "type": "json_schema", "json_schema": { "name": "person", "schema": schema, "strict": true } });
    let ask = json!([{ "role": "user", "content": "Describe a person as JSON." }]);
    let greedy = chat_body(json!({ "messages": ask, "response_format": format, "max_tokens": 48 }));
    let sampled = chat_body(json!({ "messages": ask, "response_format": format, "max_tokens": 48, "temperature": 1.0, "seed": 3, "logprobs": true, "n": 2 }));
    let free = chat_body(json!({ "max_tokens": 12 }));
    // In one batch: constrained rows take full logits while the free one may not.
    let ((s1, a), (s2, b), (s3, c)) = tokio::join!(
        post_json(&app, "/v1/chat/completions", greedy),
        post_json(&app, "/v1/chat/completions", sampled),
        post_json(&app, "/v1/chat/completions", free),
    );
    assert_eq!((s1, s2, s3), (StatusCode::OK, StatusCode::OK, StatusCode::OK), "{a} {b} {c}");
    for choice in a["choices"].as_array().unwrap().iter().chain(b["choices"].as_array().unwrap()) {
        let text = choice["message"]["content"].as_str().unwrap();
        let v: Value = serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"));
        assert!(person_is_valid(&v), "{text}");
        assert_eq!(choice["finish_reason"], "stop", "ends when the schema is complete: {choice}");
    }
    assert!(!c["choices"][0]["message"]["content"].as_str().unwrap().is_empty());
    let (_, obj) = post_json(&app, "/v1/chat/completions", chat_body(json!({ "response_format": { "type": "json_object" }, "max_tokens": 48 }))).await;
    let text = obj["choices"][0]["message"]["content"].as_str().unwrap();
    assert!(serde_json::from_str::<Value>(text).is_ok_and(|v| v.is_object()), "{text}");
}

#[tokio::test]
async fn bad_tools_schemas_and_grammars_are_400s_naming_the_field() {
    let app = app();
    let schema = |s: Value| json!({ "response_format": { "type": "json_schema", "json_schema": { "name": "x", "schema": s } } });
    let cases = [
        (schema(json!({ "type": "strng" })), "response_format", "strng"),
        (schema(json!({ "type": "array", "uniqueItems": true })), "response_format", "uniqueItems"),
        (json!({ "response_format": { "type": "json_schema", "json_schema": { "name": "x" } } }), "response_format", "schema"),
        (json!({ "response_format": { "type": "xml" } }), "response_format", "xml"),
        (json!({ "grammar": "root ::= foo" }), "grammar", "foo"),
        (json!({ "tools": [weather_tool()], "tool_choice": { "type": "function", "function": { "name": "rain" } } }), "tool_choice", "rain"),
        (json!({ "tool_choice": "required" }), "tool_choice", "tools"),
        (json!({ "tools": [{ "type": "retrieval", "function": { "name": "x" } }] }), "tools[0].type", "retrieval"),
        (json!({ "tools": [{ "type": "function", "function": { "name": "x", "parameters": { "type": "object", "properties": { "a": { "type": "nope" } } } } }], "tool_choice": "required" }), "tools", "nope"),
        (json!({ "messages": [{ "role": "user", "content": "Hi" }, { "role": "tool", "content": "42" }] }), "messages[1].tool_call_id", "tool_call_id"),
    ];
    for (extra, param, needle) in cases {
        let (status, body) = post_json(&app, "/v1/chat/completions", chat_body(extra.clone())).await;
        assert_error(status, &body, StatusCode::BAD_REQUEST, Some(param));
        assert!(body["error"]["message"].as_str().unwrap().contains(needle), "{extra} → {body}");
    }
}
