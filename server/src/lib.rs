//! # infer-server
//!
//! An OpenAI-compatible HTTP API over infer's engine, as a library: build
//! an [`AppState`], hand it an engine when the model is loaded, and serve
//! [`router`] with [`serve`] (or drive the router in-process, as the tests do).
//!
//! Endpoints: `POST /v1/chat/completions`, `POST /v1/completions`,
//! `GET /v1/models`, `POST /v1/embeddings` (400: the model cannot embed),
//! `GET /health`, `POST /tokenize`, `POST /detokenize`, `GET /metrics`, and
//! `GET /` (a chat page). Errors come in OpenAI's shape.
//!
//! ```no_run
//! use infer_engine::{Engine, EngineParams, Model, ModelOptions};
//! use infer_server::{router, serve, AppState, ServerConfig};
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let state = AppState::new(ServerConfig { model_name: "smollm2".into(), ..Default::default() });
//! let model = Model::load("models/SmolLM2-135M-Instruct.Q4_1.gguf", ModelOptions::default())?;
//! let _ = state.set_engine(Engine::start(model, EngineParams::default())?);
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! serve(listener, router(state), async { let _ = tokio::signal::ctrl_c().await; }, std::time::Duration::from_secs(10)).await?;
//! # Ok(()) }
//! ```

mod embeddings;
mod error;
mod extra;
mod generate;
pub mod limits;
mod metrics;
mod openai;
pub mod params;
mod tools;

use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, Method};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use infer_engine::EngineHandle;
use tower_http::cors::{AllowOrigin, Any, CorsLayer};
use tower_http::trace::TraceLayer;

pub use error::ServerError;
pub use limits::Limits;
pub use metrics::Metrics;

/// How the server behaves. Its `Debug` never shows the API key.
#[derive(Clone)]
pub struct ServerConfig {
    /// The model's id in `/v1/models` and every response.
    pub model_name: String,
    /// Requests must send `Authorization: Bearer KEY` (all but `/health` and `/`).
    pub api_key: Option<String>,
    /// Origins allowed by CORS; `*` allows any; empty: no CORS headers.
    pub cors_origins: Vec<String>,
    /// Largest request body in bytes (413 above it).
    pub body_limit: usize,
    /// Ends a request that runs longer (its stream gets an error).
    pub request_timeout: Option<Duration>,
    /// What one request may ask for.
    pub limits: Limits,
}

impl std::fmt::Debug for ServerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerConfig")
            .field("model_name", &self.model_name)
            .field("api_key", &self.api_key.as_ref().map(|_| "<set>"))
            .field("cors_origins", &self.cors_origins)
            .field("body_limit", &self.body_limit)
            .field("request_timeout", &self.request_timeout)
            .field("limits", &self.limits)
            .finish()
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            model_name: "model".into(),
            api_key: None,
            cors_origins: Vec::new(),
            body_limit: 4 << 20,
            request_timeout: None,
            limits: Limits::default(),
        }
    }
}

/// What the handlers share: the config, the engine once loaded, the metrics.
pub struct AppState {
    pub config: ServerConfig,
    engine: OnceLock<EngineHandle>,
    pub metrics: Metrics,
    /// Unix time the state was made (the model's `created`).
    created: u64,
    /// Schemas and grammars compiling at once: a compile past its timeout
    /// keeps its permit until it really ends, so hostile grammars cannot
    /// take every core.
    compiles: Arc<tokio::sync::Semaphore>,
}

impl AppState {
    pub fn new(config: ServerConfig) -> Arc<Self> {
        let created = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let compiles = Arc::new(tokio::sync::Semaphore::new(cores.clamp(1, 4)));
        Arc::new(AppState { config, engine: OnceLock::new(), metrics: Metrics::default(), created, compiles })
    }

    /// Installs the engine: `/health` turns 200 and requests are served.
    /// A second engine is refused and handed back.
    pub fn set_engine(&self, engine: EngineHandle) -> Result<(), EngineHandle> {
        self.engine.set(engine)
    }

    /// The engine, or 503 while the model loads.
    pub fn engine(&self) -> Result<&EngineHandle, ServerError> {
        self.engine.get().ok_or(ServerError::Loading)
    }
}

/// The API's router over `state`.
pub fn router(state: Arc<AppState>) -> Router {
    let mut app = Router::new()
        .route("/", get(extra::page))
        .route("/health", get(extra::health))
        .route("/v1/health", get(extra::health))
        .route("/v1/models", get(extra::models))
        .route("/v1/chat/completions", post(openai::chat_completions))
        .route("/v1/completions", post(openai::completions))
        .route("/v1/embeddings", post(embeddings::embeddings))
        .route("/tokenize", post(extra::tokenize))
        .route("/detokenize", post(extra::detokenize))
        .route("/metrics", get(extra::metrics))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(state.clone(), check_api_key))
        .layer(middleware::from_fn_with_state(state.clone(), count_responses))
        .layer(axum::extract::DefaultBodyLimit::max(state.config.body_limit))
        .layer(TraceLayer::new_for_http());
    if let Some(cors) = cors_layer(&state.config.cors_origins) {
        app = app.layer(cors);
    }
    app.with_state(state)
}

fn cors_layer(origins: &[String]) -> Option<CorsLayer> {
    if origins.is_empty() {
        return None;
    }
    let layer = CorsLayer::new().allow_methods([Method::GET, Method::POST, Method::OPTIONS]).allow_headers(Any);
    if origins.iter().any(|o| o == "*") {
        return Some(layer.allow_origin(Any));
    }
    let list: Vec<HeaderValue> = origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()).collect();
    Some(layer.allow_origin(AllowOrigin::list(list)))
}

async fn not_found(method: Method, uri: axum::http::Uri) -> ServerError {
    ServerError::NotFound { method: method.to_string(), path: uri.path().to_string() }
}

async fn method_not_allowed(method: Method, uri: axum::http::Uri) -> ServerError {
    ServerError::MethodNotAllowed { method: method.to_string(), path: uri.path().to_string() }
}

/// 401 unless the request carries the API key (when one is set). The page,
/// `/health` and CORS preflights need none.
async fn check_api_key(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    if let Some(key) = &state.config.api_key {
        let open = matches!(req.uri().path(), "/" | "/health" | "/v1/health") || req.method() == Method::OPTIONS;
        let given = req.headers().get(axum::http::header::AUTHORIZATION).and_then(|v| v.to_str().ok());
        let ok = given.and_then(|v| v.strip_prefix("Bearer ")).is_some_and(|k| same_key(k.trim().as_bytes(), key.as_bytes()));
        if !open && !ok {
            return ServerError::Unauthorized.into_response();
        }
    }
    next.run(req).await
}

/// `given == key` in a time that depends only on the key's length, so
/// response times tell an attacker nothing about how much of a guess was right.
fn same_key(given: &[u8], key: &[u8]) -> bool {
    let mut diff = given.len() ^ key.len();
    for (i, &k) in key.iter().enumerate() {
        let g = given.get(i).copied().unwrap_or(!k);
        diff |= usize::from(g ^ k);
    }
    std::hint::black_box(diff) == 0
}

async fn count_responses(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let route = req.extensions().get::<MatchedPath>().map_or("unmatched", |p| p.as_str()).to_string();
    let res = next.run(req).await;
    state.metrics.response(&route, res.status().as_u16());
    res
}

/// Serves `app` on `listener` until `shutdown` completes, then stops
/// accepting and lets running requests finish for at most `drain`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
    drain: Duration,
) -> std::io::Result<()> {
    let (stopping_tx, stopping_rx) = tokio::sync::oneshot::channel::<()>();
    let server = axum::serve(listener, app).with_graceful_shutdown(async move {
        shutdown.await;
        let _ = stopping_tx.send(());
    });
    let deadline = async move {
        if stopping_rx.await.is_ok() {
            tokio::time::sleep(drain).await;
        } else {
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        r = server => r,
        _ = deadline => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_compare_whole() {
        assert!(same_key(b"sk-local", b"sk-local"));
        assert!(!same_key(b"sk-locak", b"sk-local"));
        assert!(!same_key(b"sk-loca", b"sk-local"));
        assert!(!same_key(b"sk-local-and-more", b"sk-local"));
        assert!(!same_key(b"", b"sk-local"));
        // A guess whose bytes past the key's length differ is still wrong.
        assert!(!same_key(b"sk-local\0", b"sk-local"));
    }

    #[test]
    fn debug_hides_the_key() {
        let config = ServerConfig { api_key: Some("sk-very-secret".into()), ..Default::default() };
        let shown = format!("{config:?}");
        assert!(!shown.contains("sk-very-secret") && shown.contains("<set>"), "{shown}");
    }
}
