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
pub use metrics::Metrics;

/// How the server behaves.
#[derive(Debug, Clone)]
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
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            model_name: "model".into(),
            api_key: None,
            cors_origins: Vec::new(),
            body_limit: 4 << 20,
            request_timeout: None,
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
}

impl AppState {
    pub fn new(config: ServerConfig) -> Arc<Self> {
        let created = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        Arc::new(AppState { config, engine: OnceLock::new(), metrics: Metrics::default(), created })
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
        let ok = given.and_then(|v| v.strip_prefix("Bearer ")).is_some_and(|k| k.trim() == key);
        if !open && !ok {
            return ServerError::Unauthorized.into_response();
        }
    }
    next.run(req).await
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
