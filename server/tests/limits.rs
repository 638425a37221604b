//! The request limits ([`infer_server::Limits`]) and the security defaults,
//! in process (tower `oneshot`) on SmolLM2: every limit is a 400 in
//! OpenAI's shape whose message names the field, the value and the limit;
//! a schema that does not compile in time is a 400, and the server serves
//! on; CORS headers only for the origins allowed.

mod common;

use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use infer_engine::{Engine, EngineParams};
use infer_server::{router, AppState, Limits, ServerConfig};
use serde_json::{json, Value};
use tower::ServiceExt;

use common::model;

fn app_with(config: ServerConfig) -> Router {
    let state = AppState::new(config);
    let params = EngineParams { n_slots: 2, n_ctx_per_slot: 512, max_queue: 8, n_batch: 64, ..Default::default() };
    assert!(state.set_engine(Engine::start(model(), params).unwrap()).is_ok());
    router(state)
}

async fn send(app: &Router, req: Request<Body>) -> (StatusCode, axum::http::HeaderMap, String) {
    let res = app.clone().oneshot(req).await.unwrap();
    let (parts, body) = res.into_parts();
    let bytes = body.collect().await.unwrap().to_bytes();
    (parts.status, parts.headers, String::from_utf8_lossy(&bytes).into_owned())
}

async fn post_raw(app: &Router, path: &str, body: String) -> (StatusCode, Value) {
    let req = Request::post(path).header(header::CONTENT_TYPE, "application/json").body(Body::from(body)).unwrap();
    let (status, _, text) = send(app, req).await;
    (status, serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}")))
}

fn chat(extra: Value) -> Value {
    let mut b = json!({ "messages": [{ "role": "user", "content": "Hi" }], "temperature": 0, "max_tokens": 4 });
    for (k, v) in extra.as_object().unwrap() {
        b[k] = v.clone();
    }
    b
}

/// A 400 whose `param` is `param` and whose message is `message`.
fn assert_limit(status: StatusCode, body: &Value, param: &str, message: &str) {
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["type"], "invalid_request_error", "{body}");
    assert_eq!(body["error"]["param"], param, "{body}");
    assert_eq!(body["error"]["message"], message, "{body}");
}

#[tokio::test]
async fn every_limit_is_a_400_naming_the_field_the_value_and_the_limit() {
    let app = app_with(ServerConfig::default());
    let hi = json!({ "role": "user", "content": "Hi" });
    let weather = |i: usize| json!({ "type": "function", "function": { "name": format!("f{i}"), "parameters": { "type": "object" } } });
    let many_bias: serde_json::Map<String, Value> = (0..1025).map(|i| (i.to_string(), json!(1))).collect();
    let cases = [
        (chat(json!({ "messages": vec![hi.clone(); 1200] })), "messages", "messages: 1200 messages, the limit is 1024".to_string()),
        (chat(json!({ "stop": ["a", "b", "c", "d", "e"] })), "stop", "stop: 5 strings, the limit is 4".into()),
        (chat(json!({ "stop": ["a", "x".repeat(300)] })), "stop[1]", "stop[1]: 300 bytes, the limit is 256 bytes".into()),
        (chat(json!({ "logit_bias": many_bias })), "logit_bias", "logit_bias: 1025 entries, the limit is 1024".into()),
        (chat(json!({ "tools": (0..129).map(weather).collect::<Vec<_>>() })), "tools", "tools: 129 tools, the limit is 128".into()),
        (chat(json!({ "grammar": format!("root ::= \"{}\"", "a".repeat(300 << 10)) })), "grammar", format!("grammar: {} bytes, the limit is 262144 bytes", (300 << 10) + 11)),
    ];
    for (body, param, message) in cases {
        let (status, e) = post_raw(&app, "/v1/chat/completions", body.to_string()).await;
        assert_limit(status, &e, param, &message);
    }
    // A schema and a tools list over the byte limit.
    let big = json!({ "type": "object", "description": "d".repeat(300 << 10) });
    let rf = json!({ "type": "json_schema", "json_schema": { "name": "x", "schema": big } });
    let (status, e) = post_raw(&app, "/v1/chat/completions", chat(json!({ "response_format": rf })).to_string()).await;
    let n = serde_json::to_vec(&rf).unwrap().len();
    assert_limit(status, &e, "response_format", &format!("response_format: {n} bytes, the limit is 262144 bytes"));
    let tools = json!([{ "type": "function", "function": { "name": "f", "parameters": big } }]);
    let (status, e) = post_raw(&app, "/v1/chat/completions", chat(json!({ "tools": tools })).to_string()).await;
    let n = serde_json::to_vec(&tools[0]).unwrap().len();
    assert_limit(status, &e, "tools", &format!("tools: {n} bytes, the limit is 262144 bytes"));

    // A prompt list and an embeddings input list over their limits.
    let (status, e) = post_raw(&app, "/v1/completions", json!({ "prompt": vec!["Hi"; 65], "max_tokens": 1 }).to_string()).await;
    assert_limit(status, &e, "prompt", "prompt: 65 prompts, the limit is 64");
    let (status, e) = post_raw(&app, "/v1/embeddings", json!({ "input": vec!["Hi"; 2049] }).to_string()).await;
    assert_limit(status, &e, "input", "input: 2049 strings, the limit is 2048");

    // At the limits, the same requests are served.
    let (status, e) = post_raw(&app, "/v1/chat/completions", chat(json!({ "messages": vec![hi.clone(); 3], "stop": ["a", "b", "c", "x".repeat(256)] })).to_string()).await;
    assert_eq!(status, StatusCode::OK, "{e}");
}

#[tokio::test]
async fn deep_nesting_is_a_400_naming_the_depth_before_parsing() {
    let app = app_with(ServerConfig::default());
    // 100 levels: serde_json alone would parse it; 200: past serde_json's own
    // recursion limit of 128, whose error names no field; a million: no parse at all.
    for levels in [100, 200, 1 << 20] {
        let schema = format!("{}{}", "[".repeat(levels), "]".repeat(levels));
        let body = format!(r#"{{"messages": [{{"role": "user", "content": "Hi"}}], "response_format": {schema}}}"#);
        // response_format's first bracket is level 2, so level 65 is its 64th.
        let at = body.find("\"response_format\": ").unwrap() + "\"response_format\": ".len() + 63;
        let (status, e) = post_raw(&app, "/v1/chat/completions", body).await;
        assert_eq!(e["error"]["code"], "too_deep", "{e}");
        let message = format!("response_format: arrays and objects nested 65 levels deep (at byte {at}), the limit is 64 levels");
        assert_limit(status, &e, "response_format", &message);
    }
    // 64 levels are parsed.
    let nested = format!("{}1{}", "[".repeat(63), "]".repeat(63));
    let (status, e) = post_raw(&app, "/tokenize", format!(r#"{{"content": "Hi", "x": {nested}}}"#)).await;
    assert_eq!(status, StatusCode::OK, "{e}");
}

#[tokio::test]
async fn a_slow_compile_is_a_400_and_the_server_serves_on() {
    // A 1 ms bound: any real schema takes longer to compile than that.
    let limits = Limits { compile_timeout: Duration::from_millis(1), ..Limits::default() };
    let app = app_with(ServerConfig { limits, ..Default::default() });
    let words: Vec<String> = (0..3000).map(|i| format!("word{i}")).collect();
    let rf = json!({ "type": "json_schema", "json_schema": { "name": "x", "schema": { "type": "string", "enum": words } } });
    let (status, e) = post_raw(&app, "/v1/chat/completions", chat(json!({ "response_format": rf })).to_string()).await;
    assert_limit(status, &e, "response_format", "response_format: not compiled after 0.001 s, the limit is 0.001 s of compile time");
    let (status, e) = post_raw(&app, "/v1/chat/completions", chat(json!({})).to_string()).await;
    assert_eq!(status, StatusCode::OK, "{e}");
}

/// Patterns and enums that are costly for a regex engine: each is answered
/// (a 400 or a constrained reply) well within the default bound, never hangs.
#[tokio::test]
async fn regex_bombs_and_huge_enums_are_answered_in_bounded_time() {
    let app = app_with(ServerConfig::default());
    let words: Vec<String> = (0..20_000).map(|i| format!("w{i:05}")).collect();
    let schemas = [
        json!({ "type": "string", "pattern": "^(a|aa)*(a|aa)*(a|aa)*b$" }),
        json!({ "type": "string", "pattern": "^[ab]*a[ab]{40}$" }),
        json!({ "type": "string", "pattern": "^((a{1,100}){1,100}){1,100}$" }),
        json!({ "type": "string", "enum": words }),
    ];
    for schema in schemas {
        let rf = json!({ "type": "json_schema", "json_schema": { "name": "x", "schema": schema } });
        let t = Instant::now();
        let (status, e) = post_raw(&app, "/v1/chat/completions", chat(json!({ "response_format": rf, "max_tokens": 8 })).to_string()).await;
        let took = t.elapsed();
        assert!(status == StatusCode::OK || (status == StatusCode::BAD_REQUEST && e["error"]["param"] == "response_format"), "{status} {e}");
        // The default compile bound is 5 s; a step of the matcher is bounded by llguidance's fuel.
        assert!(took < Duration::from_secs(60), "{schema} took {took:?}");
        eprintln!("{} …: {status} in {took:?}", &schema.to_string()[..40.min(schema.to_string().len())]);
    }
}

#[tokio::test]
async fn cors_headers_only_with_cors_and_only_for_allowed_origins() {
    let get_from = |origin: &str| Request::get("/v1/models").header(header::ORIGIN, origin).body(Body::empty()).unwrap();
    let preflight = |origin: &str| {
        Request::options("/v1/chat/completions")
            .header(header::ORIGIN, origin)
            .header(header::ACCESS_CONTROL_REQUEST_METHOD, "POST")
            .body(Body::empty())
            .unwrap()
    };
    let closed = app_with(ServerConfig::default());
    for req in [get_from("https://evil.example"), preflight("https://evil.example")] {
        let (_, headers, _) = send(&closed, req).await;
        assert!(!headers.contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN), "{headers:?}");
    }
    let (status, _, _) = send(&closed, get_from("https://evil.example")).await;
    assert_eq!(status, StatusCode::OK, "the request itself is served; the browser keeps the answer from the page");

    let open = app_with(ServerConfig { cors_origins: vec!["https://app.example".into()], ..Default::default() });
    for req in [get_from("https://app.example"), preflight("https://app.example")] {
        let (_, headers, _) = send(&open, req).await;
        assert_eq!(headers.get(header::ACCESS_CONTROL_ALLOW_ORIGIN).map(|v| v.as_bytes()), Some(&b"https://app.example"[..]), "{headers:?}");
    }
    let (_, headers, _) = send(&open, get_from("https://evil.example")).await;
    assert!(!headers.contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN), "{headers:?}");
}
