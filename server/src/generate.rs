//! Running a request's choices on the engine: submission, collecting the
//! whole reply, or streaming it as server-sent events in OpenAI's framing.

use std::convert::Infallible;
use std::sync::Arc;

use axum::response::sse::{Event as SseEvent, Sse};
use futures_util::stream::{self, Stream, StreamExt};
use infer_engine::scheduler::{Event, Request, RequestTicket, TokenEvent, Usage};
use infer_engine::{EngineError, EngineHandle, FinishReason};
use tokio::sync::mpsc;

use crate::{AppState, ServerError};

/// The choices of one HTTP request, running on the engine. Dropping it
/// (the client went away) cancels every choice.
pub struct Job {
    rx: mpsc::UnboundedReceiver<(usize, Event)>,
    _tickets: Vec<RequestTicket>,
    n_choices: usize,
    /// Prompt tokens of the request (each prompt counted once).
    prompt_tokens: usize,
    state: Arc<AppState>,
}

/// Submits `requests` (choice `i` is `requests[i]`); a full queue cancels
/// those already submitted and answers 503.
pub fn submit(state: &Arc<AppState>, engine: &EngineHandle, requests: Vec<Request>, prompt_tokens: usize) -> Result<Job, ServerError> {
    let (tx, rx) = mpsc::unbounded_channel();
    let n_choices = requests.len();
    let mut tickets = Vec::with_capacity(n_choices);
    for (i, mut req) in requests.into_iter().enumerate() {
        req.timeout = state.config.request_timeout;
        let tx = tx.clone();
        let ticket = engine.submit_with(req, move |e| tx.send((i, e)).is_ok()).map_err(|e| match e {
            EngineError::QueueFull { max_queue } => {
                state.metrics.rejected();
                ServerError::QueueFull { n_slots: engine.stats().n_slots, max_queue }
            }
            e => ServerError::from(e),
        })?;
        tickets.push(ticket);
    }
    Ok(Job { rx, _tickets: tickets, n_choices, prompt_tokens, state: state.clone() })
}

/// `n` choices of one prompt: the same request with seeds `seed`, `seed + 1`, ….
pub fn choices(req: Request, n: usize) -> Vec<Request> {
    (0..n)
        .map(|i| {
            let mut r = req.clone();
            r.sampler.seed = r.sampler.seed.wrapping_add(i as u64);
            r
        })
        .collect()
}

/// One finished choice.
#[derive(Debug, Default)]
pub struct Choice {
    pub text: String,
    pub tokens: Vec<TokenEvent>,
    pub reason: Option<FinishReason>,
    pub usage: Usage,
}

/// Totals over a request's choices, in OpenAI's `usage` shape.
pub fn usage_json(prompt_tokens: usize, choices: &[&Usage]) -> serde_json::Value {
    let completion: usize = choices.iter().map(|u| u.completion_tokens).sum();
    let cached = choices.iter().map(|u| u.cached_tokens).max().unwrap_or(0);
    serde_json::json!({
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion,
        "total_tokens": prompt_tokens + completion,
        "prompt_tokens_details": { "cached_tokens": cached },
    })
}

/// OpenAI's `finish_reason`.
pub fn finish_reason(r: Option<FinishReason>) -> &'static str {
    match r {
        Some(FinishReason::Length) => "length",
        _ => "stop",
    }
}

impl Job {
    pub fn prompt_tokens(&self) -> usize {
        self.prompt_tokens
    }

    /// Waits for every choice to finish.
    pub async fn collect(mut self) -> Result<Vec<Choice>, ServerError> {
        let mut choices: Vec<Choice> = (0..self.n_choices).map(|_| Choice::default()).collect();
        let mut done = 0;
        while done < self.n_choices {
            let Some((i, event)) = self.rx.recv().await else { return Err(EngineError::EngineStopped.into()) };
            let c = &mut choices[i];
            match event {
                Event::Token(t) => {
                    c.text.push_str(&t.text);
                    c.tokens.push(t);
                }
                Event::Done { reason, usage } => {
                    self.state.metrics.finished(&usage);
                    c.reason = Some(reason);
                    c.usage = usage;
                    done += 1;
                }
                Event::Error(e) => return Err(e.into()),
            }
        }
        Ok(choices)
    }

    /// The reply as server-sent events: `format`'s opening chunks, a chunk
    /// per token that has text or logprobs, a finishing chunk per choice,
    /// the usage chunk when asked, then `data: [DONE]`. An error after the
    /// headers is sent as a `data: {"error": …}` event, then `[DONE]`.
    pub fn sse<F: ChunkFormat>(self, format: F, include_usage: bool) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>> {
        let st = SseState { job: self, format, include_usage, opened: false, closed: false, done: Vec::new() };
        let events = stream::unfold(st, |mut st| async move {
            if st.closed {
                return None;
            }
            let batch = st.next_events().await;
            Some((batch, st))
        })
        .flat_map(|batch| stream::iter(batch.into_iter().map(Ok)));
        Sse::new(events)
    }
}

/// How one endpoint shapes its stream chunks.
pub trait ChunkFormat: Send + 'static {
    /// Chunks sent before any token (chat: the role delta of each choice).
    fn open(&self, n_choices: usize) -> Vec<serde_json::Value>;
    /// A token's chunks (none when it carries nothing to show).
    fn token(&mut self, index: usize, token: &TokenEvent) -> Vec<serde_json::Value>;
    /// The chunks that end choice `index`, the one with its finish reason last.
    fn finish(&mut self, index: usize, reason: FinishReason) -> Vec<serde_json::Value>;
    /// The last chunk with `usage` (OpenAI's `stream_options.include_usage`).
    fn usage(&self, usage: serde_json::Value) -> serde_json::Value;
}

struct SseState<F> {
    job: Job,
    format: F,
    include_usage: bool,
    opened: bool,
    closed: bool,
    done: Vec<Usage>,
}

fn data(v: &serde_json::Value) -> SseEvent {
    SseEvent::default().data(v.to_string())
}

impl<F: ChunkFormat> SseState<F> {
    async fn next_events(&mut self) -> Vec<SseEvent> {
        if !self.opened {
            self.opened = true;
            return self.format.open(self.job.n_choices).iter().map(data).collect();
        }
        let event = self.job.rx.recv().await;
        match event {
            Some((i, Event::Token(t))) => self.format.token(i, &t).iter().map(data).collect(),
            Some((i, Event::Done { reason, usage })) => {
                self.job.state.metrics.finished(&usage);
                self.done.push(usage);
                let mut out: Vec<SseEvent> = self.format.finish(i, reason).iter().map(data).collect();
                if self.done.len() == self.job.n_choices {
                    if self.include_usage {
                        let all: Vec<&Usage> = self.done.iter().collect();
                        out.push(data(&self.format.usage(usage_json(self.job.prompt_tokens, &all))));
                    }
                    out.push(self.close());
                }
                out
            }
            Some((_, Event::Error(e))) => {
                self.job.state.metrics.stream_error();
                vec![data(&ServerError::from(e).body()), self.close()]
            }
            None => vec![data(&ServerError::from(EngineError::EngineStopped).body()), self.close()],
        }
    }

    fn close(&mut self) -> SseEvent {
        self.closed = true;
        SseEvent::default().data("[DONE]")
    }
}
