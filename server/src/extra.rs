//! The endpoints beside the completions: models, health, tokenize and
//! detokenize (llama-server's shapes), metrics and the chat page.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::params;
use crate::{AppState, ServerError};

/// The built-in chat page: one HTML file, no external assets.
const CHAT_PAGE: &str = include_str!("chat.html");

pub async fn page() -> Html<&'static str> {
    Html(CHAT_PAGE)
}

pub async fn health(State(state): State<Arc<AppState>>) -> Response {
    match state.engine() {
        Ok(engine) => {
            let s = engine.stats();
            Json(json!({ "status": "ok", "slots_idle": s.n_slots - s.active, "slots_busy": s.active, "queued": s.queued })).into_response()
        }
        Err(e) => e.into_response(),
    }
}

pub async fn models(State(state): State<Arc<AppState>>) -> Result<Json<Value>, ServerError> {
    let engine = state.engine()?;
    let model = engine.model();
    let c = model.config();
    let meta = json!({
        "n_ctx": engine.n_ctx_per_slot(),
        "n_ctx_train": c.n_ctx_train,
        "n_slots": engine.stats().n_slots,
        "n_vocab": model.tokenizer().vocab_size(),
        "size": model.weight_bytes(),
        "path": model.path().display().to_string(),
    });
    Ok(Json(json!({
        "object": "list",
        "data": [{
            "id": state.config.model_name,
            "object": "model",
            "created": state.created,
            "owned_by": "infer",
            "context_length": engine.n_ctx_per_slot(),
            "meta": meta,
        }],
    })))
}

#[derive(Deserialize)]
struct TokenizeFields {
    content: String,
    #[serde(default)]
    add_special: bool,
    #[serde(default)]
    parse_special: Option<bool>,
    #[serde(default)]
    with_pieces: bool,
}

pub async fn tokenize(State(state): State<Arc<AppState>>, body: Result<Bytes, BytesRejection>) -> Result<Json<Value>, ServerError> {
    let value = params::parse_json(&crate::openai::body_bytes(body, &state)?, &state.config.limits)?;
    let f: TokenizeFields = params::fields(&value)?;
    let engine = state.engine()?;
    let tok = engine.model().tokenizer();
    let ids = tok.encode(&f.content, f.add_special, f.parse_special.unwrap_or(true))?;
    let tokens: Vec<Value> = if f.with_pieces {
        ids.iter()
            .map(|&id| {
                let bytes = tok.token_bytes(id);
                // llama-server: the piece as a string when it is valid UTF-8, else its bytes.
                let piece = String::from_utf8(bytes.clone()).map_or_else(|_| json!(bytes), |s| json!(s));
                json!({ "id": id, "piece": piece })
            })
            .collect()
    } else {
        ids.iter().map(|&id| json!(id)).collect()
    };
    Ok(Json(json!({ "tokens": tokens })))
}

#[derive(Deserialize)]
struct DetokenizeFields {
    tokens: Vec<u32>,
}

pub async fn detokenize(State(state): State<Arc<AppState>>, body: Result<Bytes, BytesRejection>) -> Result<Json<Value>, ServerError> {
    let value = params::parse_json(&crate::openai::body_bytes(body, &state)?, &state.config.limits)?;
    let f: DetokenizeFields = params::fields(&value)?;
    let engine = state.engine()?;
    let tok = engine.model().tokenizer();
    if let Some((i, &id)) = f.tokens.iter().enumerate().find(|(_, &id)| id as usize >= tok.vocab_size()) {
        return Err(ServerError::bad(&format!("tokens[{i}]"), format!("token id {id} is not below the vocabulary size {}", tok.vocab_size())));
    }
    Ok(Json(json!({ "content": tok.decode(&f.tokens) })))
}

pub async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    let stats = state.engine().ok().map(|e| e.stats());
    let text = state.metrics.render(stats.as_ref());
    (StatusCode::OK, [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], text).into_response()
}
