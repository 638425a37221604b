//! The one error type of the server crate, answered in OpenAI's shape:
//! `{"error": {"message", "type", "param", "code"}}` with the right status.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use infer_engine::EngineError;

/// Everything a request can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// A bad request; `param` names the field at fault.
    #[error("{message}")]
    BadRequest { message: String, param: Option<String>, code: Option<&'static str> },
    #[error("the prompt has {n_tokens} tokens but the context of each slot holds {n_ctx}; shorten it or start the server with a larger -c/--ctx")]
    PromptTooLong { n_tokens: usize, n_ctx: usize, param: &'static str },
    #[error("invalid or missing API key; send it as \"Authorization: Bearer KEY\"")]
    Unauthorized,
    #[error("unknown endpoint: {method} {path}")]
    NotFound { method: String, path: String },
    #[error("{method} is not allowed on {path}")]
    MethodNotAllowed { method: String, path: String },
    #[error("the request body is larger than the limit of {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error("all {n_slots} slots are busy and the queue of {max_queue} is full; retry later")]
    QueueFull { n_slots: usize, max_queue: usize },
    #[error("the model is still loading")]
    Loading,
    #[error("{0}")]
    Engine(EngineError),
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: String, source: std::io::Error },
}

impl ServerError {
    /// A 400 naming the field at fault.
    pub fn bad(param: &str, message: impl Into<String>) -> Self {
        ServerError::BadRequest { message: message.into(), param: Some(param.to_string()), code: None }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ServerError::BadRequest { .. } | ServerError::PromptTooLong { .. } => StatusCode::BAD_REQUEST,
            ServerError::Unauthorized => StatusCode::UNAUTHORIZED,
            ServerError::NotFound { .. } => StatusCode::NOT_FOUND,
            ServerError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            ServerError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ServerError::QueueFull { .. } | ServerError::Loading => StatusCode::SERVICE_UNAVAILABLE,
            ServerError::Engine(e) => match e {
                EngineError::InvalidParam(_)
                | EngineError::EmptyPrompt
                | EngineError::PromptTooLong { .. }
                | EngineError::ContextFull { .. }
                | EngineError::Template(_)
                | EngineError::Tokenizer(_) => StatusCode::BAD_REQUEST,
                EngineError::Timeout { .. } => StatusCode::GATEWAY_TIMEOUT,
                EngineError::EngineStopped => StatusCode::SERVICE_UNAVAILABLE,
                _ => StatusCode::INTERNAL_SERVER_ERROR,
            },
            ServerError::Bind { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The `error` object of OpenAI's error body.
    pub fn body(&self) -> serde_json::Value {
        let status = self.status();
        let kind = match status {
            StatusCode::UNAUTHORIZED => "authentication_error",
            StatusCode::NOT_FOUND => "not_found_error",
            StatusCode::SERVICE_UNAVAILABLE => "unavailable_error",
            s if s.is_client_error() => "invalid_request_error",
            _ => "server_error",
        };
        let (param, code): (Option<&str>, Option<&str>) = match self {
            ServerError::BadRequest { param, code, .. } => (param.as_deref(), *code),
            ServerError::PromptTooLong { param, .. } => (Some(param), Some("context_length_exceeded")),
            ServerError::Unauthorized => (None, Some("invalid_api_key")),
            ServerError::NotFound { .. } => (None, Some("unknown_url")),
            ServerError::PayloadTooLarge { .. } => (None, Some("request_too_large")),
            ServerError::QueueFull { .. } => (None, Some("queue_full")),
            ServerError::Loading => (None, Some("model_loading")),
            ServerError::Engine(EngineError::Timeout { .. }) => (None, Some("timeout")),
            ServerError::Engine(EngineError::Template(_)) => (Some("messages"), Some("chat_template")),
            _ => (None, None),
        };
        serde_json::json!({ "error": { "message": self.to_string(), "type": kind, "param": param, "code": code } })
    }
}

impl From<EngineError> for ServerError {
    fn from(e: EngineError) -> Self {
        match e {
            EngineError::PromptTooLong { n_tokens, n_ctx } => ServerError::PromptTooLong { n_tokens, n_ctx, param: "messages" },
            e => ServerError::Engine(e),
        }
    }
}

impl IntoResponse for ServerError {
    fn into_response(self) -> Response {
        let mut res = (self.status(), axum::Json(self.body())).into_response();
        if matches!(self, ServerError::QueueFull { .. } | ServerError::Loading) {
            res.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        res
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fault in one sequence is the server's, not the client's: a 500
    /// whose message names it (a stream sends the same body as an event).
    #[test]
    fn sequence_faults_are_500s_that_name_the_fault() {
        for (e, says) in [
            (EngineError::BadLogits { at: 3 }, "NaN logits"),
            (EngineError::KvCache { slot: 2, detail: "position 7 refused".into() }, "KV cache of slot 2 cannot grow"),
            (EngineError::Gpu("a failed dispatch".into()), "a failed dispatch"),
        ] {
            let e = ServerError::from(e);
            assert_eq!(e.status(), StatusCode::INTERNAL_SERVER_ERROR, "{e}");
            let body = e.body();
            assert_eq!(body["error"]["type"], "server_error");
            assert!(body["error"]["message"].as_str().is_some_and(|m| m.contains(says)), "{body}");
        }
    }
}
