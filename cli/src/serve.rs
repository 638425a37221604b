//! `infer serve`: the OpenAI-compatible HTTP server.
//!
//! Binds first (so `/health` answers 503 while the model loads), prints the
//! address, loads the model, prints the model when ready. Ctrl-C or SIGTERM
//! stops accepting, lets running requests finish for `--drain` seconds and
//! exits 0, also while the model is still loading.

use std::future::Future;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use infer_engine::{Engine, EngineParams};
use infer_server::{AppState, Limits, ServerConfig};

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
    #[arg(long = "api-key", env = "INFER_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// Read the API key from FILE (trimmed), so it stays out of `ps`
    #[arg(long = "api-key-file", value_name = "FILE")]
    pub api_key_file: Option<PathBuf>,
    /// Allow browser pages from these origins (CORS); "*" allows any
    #[arg(long = "cors", num_args = 1.., value_name = "ORIGIN")]
    pub cors: Vec<String>,
    /// End a request that runs longer than this many seconds
    #[arg(long = "timeout", value_name = "SECS")]
    pub timeout: Option<f64>,
    /// Largest request body in bytes
    #[arg(long = "body-limit", default_value_t = 4 << 20)]
    pub body_limit: usize,
    /// Most chat messages in one request
    #[arg(long = "max-messages", default_value_t = Limits::default().max_messages)]
    pub max_messages: usize,
    /// Largest response_format schema, grammar or tools list in bytes (each)
    #[arg(long = "max-grammar-bytes", default_value_t = Limits::default().max_grammar_bytes)]
    pub max_grammar_bytes: usize,
    /// Most functions in a tools list
    #[arg(long = "max-tools", default_value_t = Limits::default().max_tools)]
    pub max_tools: usize,
    /// Seconds a schema or grammar may take to compile (400 past it)
    #[arg(long = "compile-timeout", value_name = "SECS", default_value_t = Limits::default().compile_timeout.as_secs_f64())]
    pub compile_timeout: f64,
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
    let compile_timeout = secs("compile-timeout", args.compile_timeout)?;
    anyhow::ensure!(args.parallel >= 1, "--parallel must be at least 1");
    let api_key = match (&args.api_key, &args.api_key_file) {
        (Some(_), Some(_)) => anyhow::bail!("--api-key-file and --api-key (or INFER_API_KEY) both give a key; give one"),
        (Some(k), None) if k.trim().is_empty() => anyhow::bail!("--api-key (or INFER_API_KEY) is empty"),
        (Some(k), None) => Some(k.trim().to_string()),
        (None, Some(file)) => Some(read_key_file(file)?),
        (None, None) => None,
    };
    let model_name = args.alias.clone().unwrap_or_else(|| {
        let name = args.model.model.file_name().map_or_else(|| "model".into(), |n| n.to_string_lossy().into_owned());
        name.strip_suffix(".gguf").map_or(name.clone(), str::to_string)
    });
    let limits = Limits {
        max_messages: args.max_messages,
        max_grammar_bytes: args.max_grammar_bytes,
        max_tools: args.max_tools,
        compile_timeout,
        ..Limits::default()
    };
    let has_key = api_key.is_some();
    let config = ServerConfig {
        model_name: model_name.clone(),
        api_key,
        cors_origins: args.cors.clone(),
        body_limit: args.body_limit,
        request_timeout: timeout,
        limits,
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("INFER_LOG").unwrap_or_else(|_| "warn".into()))
        .with_writer(std::io::stderr)
        .try_init();
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    runtime.block_on(async move {
        // Signals are caught from here on: a SIGTERM right after the
        // address is printed must stop the server cleanly, not kill it.
        let signal = shutdown_signal()?;
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            signal.await;
            let _ = stop_tx.send(true);
        });
        let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|&s| s).await;
        };
        let addr = format!("{}:{}", args.host, args.port);
        let listener = tokio::net::TcpListener::bind(&addr).await.map_err(|e| bind_error(&addr, &e))?;
        let local: SocketAddr = listener.local_addr()?;
        if let Some(warning) = exposure_warning(local, has_key) {
            eprintln!("{warning}");
        }
        println!("infer serve: listening on http://{local} (loading {})", args.model.model.display());
        std::io::stdout().flush()?;
        let state = AppState::new(config);
        let app = infer_server::router(state.clone());
        let server = tokio::spawn(infer_server::serve(listener, app, stopped(stop_rx.clone()), drain));
        // Load on a thread of its own (the server answers 503 meanwhile),
        // which a stop during loading leaves behind: the process exits
        // without waiting for it.
        let (model_args, n_ctx) = (args.model.clone(), args.ctx);
        let (loaded_tx, loaded_rx) = tokio::sync::oneshot::channel();
        std::thread::Builder::new().name("infer-load".into()).spawn(move || {
            let _ = loaded_tx.send(model_args.load_for_ctx(n_ctx));
        })?;
        let model = tokio::select! {
            loaded = loaded_rx => loaded.context("the loading thread ended without a model")??,
            _ = stopped(stop_rx.clone()) => {
                server.await.context("the server task failed")??;
                println!("infer serve: stopped while loading the model");
                return Ok(());
            }
        };
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

/// The key in `file`, trimmed; a missing, unreadable or empty file is an error.
fn read_key_file(file: &Path) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(file).with_context(|| format!("--api-key-file {}: cannot read it", file.display()))?;
    let key = text.trim();
    anyhow::ensure!(!key.is_empty(), "--api-key-file {}: the file is empty", file.display());
    Ok(key.to_string())
}

/// Why the listening socket could not be made, naming the address.
fn bind_error(addr: &str, e: &std::io::Error) -> anyhow::Error {
    let why = match e.kind() {
        std::io::ErrorKind::AddrInUse => "address already in use (another server holds this port; pick another with --port)".to_string(),
        std::io::ErrorKind::PermissionDenied => "permission denied (ports below 1024 need privileges)".to_string(),
        std::io::ErrorKind::AddrNotAvailable => "address not available (it is not an address of this machine)".to_string(),
        _ => e.to_string(),
    };
    anyhow::anyhow!("infer serve: cannot listen on {addr}: {why}")
}

/// A warning when the server is reachable from other machines with no key.
fn exposure_warning(addr: SocketAddr, has_key: bool) -> Option<String> {
    (!addr.ip().is_loopback() && !has_key).then(|| {
        format!(
            "infer serve: warning: listening on {addr} without an API key: anyone who can reach this address can use the model; \
             set one with --api-key-file FILE (or --api-key / INFER_API_KEY)"
        )
    })
}

/// A future that completes on Ctrl-C or SIGTERM; the handlers are
/// installed when it is made, not when it is first polled.
fn shutdown_signal() -> std::io::Result<impl Future<Output = ()>> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let (mut int, mut term) = (signal(SignalKind::interrupt())?, signal(SignalKind::terminate())?);
        Ok(async move {
            tokio::select! {
                _ = int.recv() => {},
                _ = term.recv() => {},
            }
        })
    }
    #[cfg(not(unix))]
    {
        Ok(async {
            let _ = tokio::signal::ctrl_c().await;
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_keyless_non_loopback_address_warns() {
        let any: SocketAddr = "0.0.0.0:8080".parse().unwrap();
        let lan: SocketAddr = "192.168.1.5:8080".parse().unwrap();
        let local: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        let local6: SocketAddr = "[::1]:8080".parse().unwrap();
        assert!(exposure_warning(any, false).is_some_and(|w| w.contains("0.0.0.0:8080") && w.contains("without an API key")));
        assert!(exposure_warning(lan, false).is_some());
        assert!(exposure_warning(any, true).is_none());
        assert!(exposure_warning(local, false).is_none());
        assert!(exposure_warning(local6, false).is_none());
    }

    #[test]
    fn key_files_are_trimmed_and_must_hold_a_key() {
        let dir = std::env::temp_dir().join(format!("infer-key-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("key");
        std::fs::write(&file, "  sk-from-file\n").unwrap();
        assert_eq!(read_key_file(&file).unwrap(), "sk-from-file");
        std::fs::write(&file, " \n").unwrap();
        assert!(read_key_file(&file).unwrap_err().to_string().contains("empty"));
        let missing = dir.join("missing");
        assert!(read_key_file(&missing).unwrap_err().to_string().contains("cannot read"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
