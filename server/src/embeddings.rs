//! `POST /v1/embeddings` in OpenAI's shape: `input` a string or a list of
//! strings, `encoding_format` `float` (default) or `base64` (little-endian
//! f32 bytes, as OpenAI sends them), `usage` with the tokens embedded.
//! The vectors come from [`infer_engine::Model::embed_with`] (pooled as the
//! model's file says, L2-normalised); a model whose file names no pooling
//! cannot embed and answers 400 saying so.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::Json;
use base64::Engine as _;
use infer_engine::embed::{model_pooling, EmbedOptions};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::error::ServerError;
use crate::{params, AppState};

#[derive(Deserialize)]
#[serde(untagged)]
enum Input {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize)]
struct EmbeddingFields {
    input: Input,
    #[serde(default)]
    encoding_format: Option<String>,
    #[serde(default)]
    dimensions: Option<usize>,
    #[allow(dead_code)] // accepted: one model is served
    #[serde(default)]
    model: Option<String>,
    #[allow(dead_code)] // accepted and ignored, as by OpenAI's API
    #[serde(default)]
    user: Option<String>,
}

pub async fn embeddings(State(state): State<Arc<AppState>>, body: Result<Bytes, BytesRejection>) -> Result<Json<Value>, ServerError> {
    let value = params::parse_json(&crate::openai::body_bytes(body, &state)?, &state.config.limits)?;
    if value.get("input").is_some_and(|v| v.is_array() && v.as_array().is_some_and(|a| a.iter().any(|x| !x.is_string()))) {
        return Err(ServerError::bad("input", "input must be a string or a list of strings (token-id arrays are not accepted)"));
    }
    let f: EmbeddingFields = params::fields(&value)?;
    let texts = match f.input {
        Input::One(s) => vec![s],
        Input::Many(v) => v,
    };
    if texts.is_empty() {
        return Err(ServerError::bad("input", "input is an empty list"));
    }
    crate::limits::count("input", texts.len(), "strings", state.config.limits.max_embedding_inputs)?;
    let base64 = match f.encoding_format.as_deref() {
        None | Some("float") => false,
        Some("base64") => true,
        Some(other) => return Err(ServerError::bad("encoding_format", format!("unknown encoding_format \"{other}\" (float or base64)"))),
    };
    let engine = state.engine()?;
    let model = engine.model().clone();
    if model_pooling(&model)?.is_none() {
        return Err(ServerError::BadRequest {
            message: format!(
                "this model cannot embed: {} is a text-generation model (its file names no pooling); serve an embedding model such as all-MiniLM-L6-v2",
                state.config.model_name
            ),
            param: Some("model".into()),
            code: Some("model_not_supported"),
        });
    }
    let dim = model.config().dim;
    if let Some(d) = f.dimensions {
        if d != dim {
            return Err(ServerError::bad("dimensions", format!("this model's vectors have {dim} dimensions; {d} were asked for")));
        }
    }
    // Embedding is CPU-bound work of its own: off the async threads.
    let out = tokio::task::spawn_blocking(move || model.embed_with(&texts, &EmbedOptions::default()))
        .await
        .map_err(|e| ServerError::Engine(infer_engine::EngineError::InvalidParam(format!("the embedding task failed: {e}"))))?
        .map_err(|e| match e {
            infer_engine::EngineError::PromptTooLong { n_tokens, n_ctx } => ServerError::PromptTooLong { n_tokens, n_ctx, param: "input" },
            e => ServerError::from(e),
        })?;
    let data: Vec<Value> = out
        .vectors
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let embedding = if base64 {
                let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
                json!(base64::engine::general_purpose::STANDARD.encode(bytes))
            } else {
                json!(v)
            };
            json!({ "object": "embedding", "index": i, "embedding": embedding })
        })
        .collect();
    Ok(Json(json!({
        "object": "list",
        "data": data,
        "model": state.config.model_name,
        "usage": { "prompt_tokens": out.n_tokens, "total_tokens": out.n_tokens },
    })))
}
