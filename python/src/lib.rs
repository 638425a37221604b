//! `infer._infer`: the native half of the Python package (PyO3, abi3).
//!
//! It is kept small: a model handle, tokenizing, the chat template, a
//! generation that yields text pieces, and embeddings. `python/infer/__init__.py`
//! shapes these into llama-cpp-python's OpenAI-style dicts. Every call that
//! computes releases the GIL; a generation runs on its own thread and its
//! iterator waits in short slices, checking for signals in between, so
//! Ctrl-C stops it (the worker sees the cancel flag at its next token).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use infer_engine::constraint::ConstraintVocab;
use infer_engine::{ChatMessage, Constraint, FinishReason, GenerateOptions, GpuLayers, ModelOptions, SamplerParams, SessionParams};
use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;

fn engine_error(e: infer_engine::EngineError) -> PyErr {
    PyRuntimeError::new_err(e.to_string())
}

/// A loaded model (GGUF file or Hugging Face folder).
#[pyclass(frozen, module = "infer._infer")]
struct Model {
    model: Arc<infer_engine::Model>,
    n_ctx: usize,
}

#[pymethods]
impl Model {
    #[new]
    #[pyo3(signature = (path, n_ctx = 0, n_threads = 0, n_gpu_layers = 0))]
    fn new(py: Python<'_>, path: String, n_ctx: usize, n_threads: usize, n_gpu_layers: i64) -> PyResult<Self> {
        let gpu_layers = match n_gpu_layers {
            0 => GpuLayers::None,
            n if n < 0 => GpuLayers::All,
            n => GpuLayers::Count(n as usize),
        };
        if n_threads > 0 {
            infer_engine::threads::set_threads(n_threads);
        }
        let model = py
            .detach(|| infer_engine::Model::load(&path, ModelOptions { gpu_layers, n_ctx, ..Default::default() }))
            .map_err(engine_error)?;
        // The context each generation gets: what the caller asked, else min(4096, the model's).
        let n_ctx = if n_ctx > 0 { n_ctx } else { model.config().n_ctx_train.clamp(1, 4096) };
        Ok(Model { model, n_ctx })
    }

    /// The context of each generation, in tokens.
    #[getter]
    fn n_ctx(&self) -> usize {
        self.n_ctx
    }

    /// The model's name (its file name without the extension).
    #[getter]
    fn name(&self) -> String {
        let p = self.model.path();
        p.file_stem().map_or_else(|| p.display().to_string(), |s| s.to_string_lossy().into_owned())
    }

    /// The chat template's end-of-turn marker, if it has one.
    #[getter]
    fn end_of_turn(&self) -> Option<String> {
        self.model.chat_template().end_of_turn_token().map(str::to_string)
    }

    /// Whether the model embeds (an encoder with a pooling) rather than generates.
    #[getter]
    fn is_embedding(&self) -> bool {
        infer_engine::embed::model_pooling(&self.model).ok().flatten().is_some()
    }

    #[pyo3(signature = (text, add_special = true, parse_special = false))]
    fn tokenize(&self, py: Python<'_>, text: &str, add_special: bool, parse_special: bool) -> PyResult<Vec<u32>> {
        py.detach(|| self.model.tokenizer().encode(text, add_special, parse_special)).map_err(engine_error)
    }

    fn detokenize<'py>(&self, py: Python<'py>, ids: Vec<u32>) -> PyResult<Bound<'py, pyo3::types::PyBytes>> {
        let vocab = self.model.tokenizer().vocab_size();
        if let Some((i, id)) = ids.iter().enumerate().find(|(_, &id)| id as usize >= vocab) {
            return Err(PyValueError::new_err(format!("tokens[{i}] = {id} is outside the vocabulary of {vocab}")));
        }
        let text = py.detach(|| self.model.tokenizer().decode(&ids));
        Ok(pyo3::types::PyBytes::new(py, text.as_bytes()))
    }

    /// The prompt ids of a conversation (a JSON list of {"role", "content"})
    /// through the model's chat template, ready for the assistant's turn.
    fn chat_tokens(&self, py: Python<'_>, messages_json: &str) -> PyResult<Vec<u32>> {
        let messages: Vec<ChatMessage> =
            serde_json::from_str(messages_json).map_err(|e| PyValueError::new_err(format!("messages: {e}")))?;
        py.detach(|| self.model.chat_tokens(&messages)).map_err(engine_error)
    }

    /// Starts generating after `prompt`. `options_json` holds max_tokens,
    /// stop, temperature, top_k, top_p, min_p, repeat_penalty, seed, and
    /// optionally schema (a JSON schema) or json_object (true).
    fn generate(&self, py: Python<'_>, prompt: Vec<u32>, options_json: &str) -> PyResult<Generation> {
        let o: serde_json::Value = serde_json::from_str(options_json).map_err(|e| PyValueError::new_err(format!("options: {e}")))?;
        let num = |k: &str, d: f64| o.get(k).and_then(serde_json::Value::as_f64).unwrap_or(d);
        let defaults = SamplerParams::default();
        let sampler = SamplerParams {
            temperature: num("temperature", f64::from(defaults.temperature)) as f32,
            top_k: num("top_k", defaults.top_k as f64) as usize,
            top_p: num("top_p", f64::from(defaults.top_p)) as f32,
            min_p: num("min_p", f64::from(defaults.min_p)) as f32,
            repeat_penalty: num("repeat_penalty", f64::from(defaults.repeat_penalty)) as f32,
            seed: o.get("seed").and_then(serde_json::Value::as_u64).unwrap_or(defaults.seed),
            ..defaults
        };
        let max_tokens = o.get("max_tokens").and_then(serde_json::Value::as_u64).map_or(256, |n| n as usize);
        let stop: Vec<String> = o
            .get("stop")
            .and_then(serde_json::Value::as_array)
            .map(|a| a.iter().filter_map(|s| s.as_str().map(str::to_string)).collect())
            .unwrap_or_default();
        let strict = o.get("strict").and_then(serde_json::Value::as_bool).unwrap_or(false);
        let constraint = match (o.get("schema"), o.get("json_object")) {
            (Some(schema), _) => Some(py.detach(|| {
                let vocab = ConstraintVocab::for_tokenizer(self.model.tokenizer())?;
                Constraint::json_schema_strict_with_vocab(schema, vocab, strict)
            })),
            (None, Some(serde_json::Value::Bool(true))) => Some(py.detach(|| Constraint::json_object(self.model.tokenizer()))),
            _ => None,
        }
        .transpose()
        .map_err(|e| PyValueError::new_err(format!("response_format: {e}")))?;
        if prompt.len() >= self.n_ctx {
            return Err(PyValueError::new_err(format!(
                "the prompt has {} tokens, the context {} (raise n_ctx)",
                prompt.len(),
                self.n_ctx
            )));
        }

        let (tx, rx) = mpsc::sync_channel::<Piece>(64);
        let cancel = Arc::new(AtomicBool::new(false));
        let (model, n_ctx, stop_flag) = (self.model.clone(), self.n_ctx, cancel.clone());
        let prompt_tokens = prompt.len();
        std::thread::Builder::new()
            .name("infer-py-generate".into())
            .spawn(move || {
                let run = || -> infer_engine::Result<(Option<FinishReason>, usize)> {
                    let mut session = model.session(SessionParams { n_ctx, ..Default::default() })?;
                    let mut generation = session.generate(&prompt, sampler, GenerateOptions { max_tokens, stop })?;
                    if let Some(c) = &constraint {
                        generation = generation.with_constraint(c.start());
                    }
                    for token in generation.by_ref() {
                        if stop_flag.load(Ordering::Relaxed) || tx.send(Piece::Text(token?.text)).is_err() {
                            return Ok((None, generation.ids().len()));
                        }
                    }
                    Ok((generation.finish_reason(), generation.ids().len()))
                };
                let last = match run() {
                    Ok((finish, n)) => Piece::Done(finish, n),
                    Err(e) => Piece::Failed(e.to_string()),
                };
                let _ = tx.send(last);
            })
            .map_err(|e| PyRuntimeError::new_err(format!("starting the generation thread: {e}")))?;
        Ok(Generation { rx: Mutex::new(rx), cancel, state: Mutex::new(State { finish: None, completion_tokens: 0 }), prompt_tokens })
    }

    /// Pooled, L2-normalised vectors of `texts` (an embedding model), and
    /// the tokens they took.
    fn embed(&self, py: Python<'_>, texts: Vec<String>) -> PyResult<(Vec<Vec<f32>>, usize)> {
        let e = py.detach(|| self.model.embed_with(&texts, &infer_engine::EmbedOptions::default())).map_err(engine_error)?;
        Ok((e.vectors, e.n_tokens))
    }
}

enum Piece {
    Text(String),
    Done(Option<FinishReason>, usize),
    Failed(String),
}

struct State {
    finish: Option<String>,
    completion_tokens: usize,
}

/// A running generation: iterate for text pieces; afterwards
/// `finish_reason` ("stop", "length", or None when cancelled) and the counts.
#[pyclass(frozen, module = "infer._infer")]
struct Generation {
    rx: Mutex<Receiver<Piece>>,
    cancel: Arc<AtomicBool>,
    state: Mutex<State>,
    #[pyo3(get)]
    prompt_tokens: usize,
}

#[pymethods]
impl Generation {
    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__(&self, py: Python<'_>) -> PyResult<Option<String>> {
        loop {
            let next = py.detach(|| match self.rx.lock() {
                Ok(rx) => rx.recv_timeout(Duration::from_millis(50)),
                Err(_) => Err(RecvTimeoutError::Disconnected),
            });
            match next {
                Ok(Piece::Text(t)) => return Ok(Some(t)),
                Ok(Piece::Done(finish, n)) => {
                    if let Ok(mut s) = self.state.lock() {
                        s.finish = finish.map(|f| if f == FinishReason::Length { "length" } else { "stop" }.to_string());
                        s.completion_tokens = n;
                    }
                    return Ok(None);
                }
                Ok(Piece::Failed(e)) => return Err(PyRuntimeError::new_err(e)),
                Err(RecvTimeoutError::Disconnected) => return Ok(None),
                Err(RecvTimeoutError::Timeout) => {
                    // Ctrl-C (or any signal handler raising) stops the worker too.
                    if let Err(e) = py.check_signals() {
                        self.cancel.store(true, Ordering::Relaxed);
                        return Err(e);
                    }
                }
            }
        }
    }

    /// Stops the generation at its next token.
    fn cancel(&self) {
        self.cancel.store(true, Ordering::Relaxed);
    }

    #[getter]
    fn finish_reason(&self) -> Option<String> {
        self.state.lock().ok().and_then(|s| s.finish.clone())
    }

    #[getter]
    fn completion_tokens(&self) -> usize {
        self.state.lock().map_or(0, |s| s.completion_tokens)
    }
}

impl Drop for Generation {
    fn drop(&mut self) {
        // An abandoned iterator must not keep a thread generating.
        self.cancel.store(true, Ordering::Relaxed);
    }
}

#[pymodule]
fn _infer(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Model>()?;
    m.add_class::<Generation>()?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
