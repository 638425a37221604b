//! `infer serve`: the OpenAI-compatible HTTP server.
//!
//! Binds first (so `/health` answers 503 while the model loads), prints the
//! address, loads the model, prints the model when ready. Ctrl-C or SIGTERM
//! stops accepting, lets running requests finish for `--drain` seconds and
//! exits 0.

use std::io::Write;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use infer_engine::{Engine, EngineParams};
use infer_server::{AppState, ServerConfig};

use crate::gen_args::ModelArgs;

#[derive(clap::Args, Debug)]
pub struct ServeArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Address to listen on (loopback by default; 0.0.0.0 to serve the network)
    #[arg(long = "host", default_value = "127.0.0.1")]
    pub host: String,
    /// Port (0: any free port; the address is printed)
    #[arg(long = "port", default_value_t = 8080)]
    pub port: u16,
    /// Requests served at once (slots, one KV cache each). Also --np
    #[arg(long = "parallel", visible_alias = "np", default_value_t = 4)]
    pub parallel: usize,
    /// Context of each slot in tokens (default: min(4096, the model's))
    #[arg(short = 'c', long = "ctx", visible_alias = "ctx-size", default_value_t = 0)]
    pub ctx: usize,
    /// Most prompt tokens a slot evaluates per step
    #[arg(short = 'b', long = "batch-size", default_value_t = 256)]
    pub batch: usize,
    /// KV cache element type: f16 or f32
    #[arg(long = "cache-type", default_value = "f16")]
    pub cache_type: infer_engine::kv_cache::CacheType,
    /// Requests may wait for a slot; more get 503 with Retry-After
    #[arg(long = "max-queue", default_value_t = 64)]
    pub max_queue: usize,
    /// Require "Authorization: Bearer KEY" on every endpoint but /health and /
    #[arg(long = "api-key", env = "INFER_API_KEY")]
    pub api_key: Option<String>,
    /// Allow browser pages from these origins (CORS); "*" allows any
    #[arg(long = "cors", num_args = 1.., value_name = "ORIGIN")]
    pub cors: Vec<String>,
    /// End a request that runs longer than this many seconds
    #[arg(long = "timeout", value_name = "SECS")]
    pub timeout: Option<f64>,
    /// Largest request body in bytes
    #[arg(long = "body-limit", default_value_t = 4 << 20)]
    pub body_limit: usize,
    /// Seconds running requests get to finish after Ctrl-C / SIGTERM
    #[arg(long = "drain", default_value_t = 10.0)]
    pub drain: f64,
    /// The model's name in the API (default: the file name without .gguf)
    #[arg(long = "alias")]
    pub alias: Option<String>,
}

pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    let secs = |name: &str, v: f64| {
        anyhow::ensure!(v.is_finite() && v >= 0.0, "--{name} {v} must be a number of seconds");
        Ok(Duration::from_secs_f64(v))
    };
    let timeout = args.timeout.map(|t| secs("timeout", t)).transpose()?;
    let drain = secs("drain", args.drain)?;
    anyhow::ensure!(args.parallel >= 1, "--parallel must be at least 1");
    let model_name = args.alias.clone().unwrap_or_else(|| {
        let name = args.model.model.file_name().map_or_else(|| "model".into(), |n| n.to_string_lossy().into_owned());
        name.strip_suffix(".gguf").map_or(name.clone(), str::to_string)
    });
    let config = ServerConfig {
        model_name: model_name.clone(),
        api_key: args.api_key.clone(),
        cors_origins: args.cors.clone(),
        body_limit: args.body_limit,
        request_timeout: timeout,
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("INFER_LOG").unwrap_or_else(|_| "warn".into()))
        .with_writer(std::io::stderr)
        .try_init();
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    runtime.block_on(async move {
        let addr = format!("{}:{}", args.host, args.port);
        let listener = tokio::net::TcpListener::bind(&addr).await.with_context(|| format!("cannot listen on {addr}"))?;
        let local: SocketAddr = listener.local_addr()?;
        println!("infer serve: listening on http://{local} (loading {})", args.model.model.display());
        std::io::stdout().flush()?;
        let state = AppState::new(config);
        let app = infer_server::router(state.clone());
        let server = tokio::spawn(infer_server::serve(listener, app, shutdown_signal(), drain));
        // Load on a blocking thread; the server answers 503 meanwhile.
        let (model_args, n_ctx) = (args.model.clone(), args.ctx);
        let model = tokio::task::spawn_blocking(move || model_args.load_for_ctx(n_ctx)).await??;
        let params = EngineParams {
            n_slots: args.parallel,
            n_ctx_per_slot: args.ctx,
            max_queue: args.max_queue,
            n_batch: args.batch,
            cache_type: args.cache_type,
        };
        let engine = Engine::start(model, params)?;
        let n_ctx = engine.n_ctx_per_slot();
        if state.set_engine(engine).is_err() {
            anyhow::bail!("the engine was installed twice");
        }
        println!("infer serve: ready: model {model_name}, {} slots × {n_ctx} tokens, http://{local}/v1", args.parallel);
        std::io::stdout().flush()?;
        server.await.context("the server task failed")??;
        println!("infer serve: stopped");
        Ok(())
    })
}

/// Completes on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
