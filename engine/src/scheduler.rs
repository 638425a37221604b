//! The request scheduler: one engine thread owns the model's slots and serves
//! many requests at once, with no HTTP in it (the server crate and any other
//! program drive it through [`EngineHandle::submit`]).
//!
//! Each slot is one sequence of a [`MultiSession`], with its own KV cache
//! region. Every engine step is one batched forward pass over the weights
//! for all active requests (continuous batching): each generating request
//! contributes one token, and what is left of the step's `n_batch` budget
//! goes to prompt chunks of requests still loading their prompt (round-robin,
//! so a long prompt never stalls the others). Requests beyond the slots wait
//! in a bounded queue; a new request takes the free slot whose cache shares
//! the longest prefix with its prompt, so the next turn of a conversation
//! evaluates only its new tokens.
//!
//! Each request streams [`Event`]s to its own receiver; dropping the
//! receiver, or [`RequestStream::cancel`], ends the request before the next
//! step and frees its slot. Each request keeps its own sampler state (seed,
//! penalty history) and stop strings, and may carry a [`Constraint`]: its
//! sequence then gets its own grammar state, samples only among the tokens
//! the grammar allows (from the full logits, never the backend's argmax) and
//! ends as soon as the grammar is complete.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::batch::{BatchToken, MultiParams, MultiSession};
use crate::constraint::{Constraint, ConstraintState, ConstraintVocab};
use crate::tools::CallWatch;
use crate::error::{EngineError, Result};
use crate::fault::Fault;
use crate::kv_cache::CacheType;
use crate::model::Model;
use crate::sampler::{self, Sampler, SamplerParams};
use crate::session::{FinishReason, StopText};

/// Engine settings.
#[derive(Debug, Clone)]
pub struct EngineParams {
    /// Requests served at once (one KV cache each).
    pub n_slots: usize,
    /// Context of each slot in tokens; 0 = min(4096, the model's training context).
    pub n_ctx_per_slot: usize,
    /// Requests that may wait for a slot; more are refused with [`EngineError::QueueFull`].
    pub max_queue: usize,
    /// Most tokens in one step (decode tokens first, then prompt chunks).
    pub n_batch: usize,
    /// Element type of the KV caches.
    pub cache_type: CacheType,
}

impl Default for EngineParams {
    fn default() -> Self {
        EngineParams { n_slots: 4, n_ctx_per_slot: 0, max_queue: 64, n_batch: 256, cache_type: CacheType::F16 }
    }
}

/// One generation request.
#[derive(Debug, Clone)]
pub struct Request {
    /// The whole prompt (chat template already applied).
    pub prompt: Vec<u32>,
    /// Sampling, with its seed (each request has its own sampler state).
    pub sampler: SamplerParams,
    /// OpenAI's presence penalty over the tokens generated so far.
    pub presence_penalty: f32,
    /// OpenAI's frequency penalty over the tokens generated so far.
    pub frequency_penalty: f32,
    /// Added to these tokens' logits before sampling.
    pub logit_bias: Vec<(u32, f32)>,
    /// Most tokens to generate; None = what remains of the slot's context.
    /// Running out of context before `max_tokens` is an error
    /// ([`EngineError::ContextFull`]).
    pub max_tokens: Option<usize>,
    /// Stop where one of these appears (the text ends before it).
    pub stop: Vec<String>,
    /// Some(k): each token's log-probability and the `k` most likely alternatives.
    pub logprobs: Option<usize>,
    /// Ends the request with [`EngineError::Timeout`] when it runs this long
    /// (time in the queue included).
    pub timeout: Option<Duration>,
    /// Output must match this grammar (JSON schema, GBNF, …); build it on
    /// [`EngineHandle::constraint_vocab`] so the vocabulary is prepared once.
    pub constraint: Option<Constraint>,
    /// Ends the answer once its tool calls are made (after the first call,
    /// or when a call repeats an earlier one), as [`FinishReason::Stop`].
    pub end_on_calls: Option<CallWatch>,
    /// A fault to inject into this request's sequence (tests only).
    #[cfg(feature = "fault-injection")]
    pub fault: Option<crate::fault::Fault>,
}

impl Request {
    /// A request with default sampling and no limits but the context.
    pub fn new(prompt: Vec<u32>) -> Self {
        Request {
            prompt,
            sampler: SamplerParams::default(),
            presence_penalty: 0.0,
            frequency_penalty: 0.0,
            logit_bias: Vec::new(),
            max_tokens: None,
            stop: Vec::new(),
            logprobs: None,
            timeout: None,
            constraint: None,
            end_on_calls: None,
            #[cfg(feature = "fault-injection")]
            fault: None,
        }
    }
}

/// A generated token's log-probability and the most likely alternatives.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenLogprob {
    /// Natural log of the chosen token's probability (after `logit_bias`).
    pub logprob: f32,
    /// The most likely tokens with their log-probabilities, most likely first.
    pub top: Vec<(u32, f32)>,
}

/// One generated token.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenEvent {
    pub id: u32,
    /// The text this token releases: may be empty while a character or a
    /// possible stop string is incomplete; cut before a stop string.
    pub text: String,
    pub logprob: Option<TokenLogprob>,
}

/// Tokens and time of one request.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Usage {
    /// Tokens in the prompt.
    pub prompt_tokens: usize,
    /// Prompt tokens found in the slot's cache and not evaluated again.
    pub cached_tokens: usize,
    /// Tokens generated (an end-of-generation token included).
    pub completion_tokens: usize,
    /// From submission to the first generated token.
    pub time_to_first_token: Duration,
    /// From the first generated token to the last.
    pub generation_time: Duration,
}

/// What a request's stream yields: tokens, then `Done` or `Error`.
#[derive(Debug)]
pub enum Event {
    Token(TokenEvent),
    Done { reason: FinishReason, usage: Usage },
    Error(EngineError),
}

/// Counters of an engine since it started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EngineStats {
    pub n_slots: usize,
    /// Slots serving a request now.
    pub active: usize,
    /// Requests waiting for a slot now.
    pub queued: usize,
    /// Requests that ended with a finish reason.
    pub finished: u64,
    /// Requests that ended with an error.
    pub failed: u64,
    /// Requests cancelled (stream dropped or cancelled) before they ended.
    pub cancelled: u64,
    /// Prompt tokens evaluated.
    pub prompt_tokens: u64,
    /// Prompt tokens reused from a slot's cache.
    pub cached_tokens: u64,
    /// Tokens generated.
    pub generated_tokens: u64,
}

/// Where a request's events go; returns false once nobody listens.
type Sink = Box<dyn FnMut(Event) -> bool + Send>;

/// The engine: start it with [`Engine::start`].
pub struct Engine;

impl Engine {
    /// Creates the slots (errors, e.g. a context too small, come back here)
    /// and starts the engine thread.
    ///
    /// ```no_run
    /// use infer_engine::scheduler::{Engine, EngineParams, Event, Request};
    /// use infer_engine::{Model, ModelOptions, SamplerParams};
    /// let model = Model::load("models/SmolLM2-135M-Instruct.Q4_1.gguf", ModelOptions::default())?;
    /// let engine = Engine::start(model.clone(), EngineParams { n_slots: 2, n_ctx_per_slot: 512, ..Default::default() })?;
    /// let mut req = Request::new(model.prompt_tokens("The capital of France is")?);
    /// req.sampler = SamplerParams::greedy();
    /// req.max_tokens = Some(8);
    /// for event in engine.submit(req)? {
    ///     match event {
    ///         Event::Token(t) => print!("{}", t.text),
    ///         Event::Done { reason, usage } => println!("\n{reason:?}, {} tokens", usage.completion_tokens),
    ///         Event::Error(e) => eprintln!("{e}"),
    ///     }
    /// }
    /// # Ok::<(), infer_engine::EngineError>(())
    /// ```
    pub fn start(model: Arc<Model>, params: EngineParams) -> Result<EngineHandle> {
        if params.n_slots == 0 {
            return Err(EngineError::InvalidParam("the engine needs at least one slot".into()));
        }
        // Every generating slot needs a row in each step.
        let n_batch = params.n_batch.max(params.n_slots);
        let ms = model.multi_session(MultiParams {
            n_seq: params.n_slots,
            n_ctx: params.n_ctx_per_slot,
            n_batch,
            cache_type: params.cache_type,
        })?;
        let n_ctx = ms.n_ctx();
        let slots = (0..params.n_slots).map(|_| Slot { tokens: Vec::new(), job: None }).collect();
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue { waiting: VecDeque::new(), stopping: false }),
            wake: Condvar::new(),
            max_queue: params.max_queue,
            n_slots: params.n_slots,
            active: AtomicUsize::new(0),
            in_flight: AtomicUsize::new(0),
            counters: Counters::default(),
            next_id: AtomicU64::new(1),
            #[cfg(feature = "fault-injection")]
            fault_plan: match std::env::var("INFER_FAULT") {
                Ok(spec) => crate::fault::parse_plan(&spec)?,
                Err(_) => Vec::new(),
            },
        });
        let worker = EngineThread { model: model.clone(), shared: shared.clone(), ms, slots, n_batch, next_slot: 0 };
        let thread = std::thread::Builder::new()
            .name("infer-engine".into())
            .spawn(move || worker.run())
            .map_err(|e| EngineError::InvalidParam(format!("cannot start the engine thread: {e}")))?;
        Ok(EngineHandle { model, shared, thread: Some(thread), n_ctx, constraint_vocab: Mutex::new(None) })
    }
}

/// The running engine. Dropping it cancels what is running and stops the thread.
pub struct EngineHandle {
    model: Arc<Model>,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
    n_ctx: usize,
    /// The vocabulary prepared for constraints, built on first use.
    constraint_vocab: Mutex<Option<Arc<ConstraintVocab>>>,
}

impl EngineHandle {
    pub fn model(&self) -> &Arc<Model> {
        &self.model
    }
    /// Context of each slot in tokens.
    pub fn n_ctx_per_slot(&self) -> usize {
        self.n_ctx
    }

    /// The model's vocabulary prepared for [`Constraint`]s: built on the
    /// first call (seconds for a large vocabulary; concurrent callers wait
    /// for that one build), then shared.
    pub fn constraint_vocab(&self) -> Result<Arc<ConstraintVocab>> {
        let mut slot = self.constraint_vocab.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(v) = slot.as_ref() {
            return Ok(v.clone());
        }
        let v = ConstraintVocab::for_tokenizer(self.model.tokenizer())?;
        *slot = Some(v.clone());
        Ok(v)
    }

    /// Queues a request; its events arrive on the returned stream.
    /// Errors: [`EngineError::QueueFull`], [`EngineError::EmptyPrompt`],
    /// [`EngineError::PromptTooLong`] (the prompt must leave room for one
    /// token), a bad sampler parameter, [`EngineError::EngineStopped`].
    pub fn submit(&self, request: Request) -> Result<RequestStream> {
        let (tx, rx) = mpsc::channel();
        let ticket = self.submit_with(request, move |e| tx.send(e).is_ok())?;
        Ok(RequestStream { rx, ticket })
    }

    /// As [`EngineHandle::submit`], handing each event to `sink` on the
    /// engine thread (it must not block; return false to cancel). Lets an
    /// async caller feed its own channel. Dropping the ticket cancels.
    pub fn submit_with(&self, request: Request, sink: impl FnMut(Event) -> bool + Send + 'static) -> Result<RequestTicket> {
        if request.prompt.is_empty() {
            return Err(EngineError::EmptyPrompt);
        }
        if request.prompt.len() >= self.n_ctx {
            return Err(EngineError::PromptTooLong { n_tokens: request.prompt.len(), n_ctx: self.n_ctx });
        }
        if request.max_tokens == Some(0) {
            return Err(EngineError::InvalidParam("max_tokens must be at least 1".into()));
        }
        let sampler = Sampler::new(request.sampler.clone())?;
        if let Some(c) = &request.constraint {
            let (n_grammar, n_model) = (c.vocab().n_vocab(), self.model.tokenizer().vocab_size());
            if n_grammar != n_model {
                return Err(EngineError::InvalidParam(format!(
                    "the constraint was built for a vocabulary of {n_grammar} tokens, the model has {n_model}"
                )));
            }
        }
        for (name, v) in [("presence_penalty", request.presence_penalty), ("frequency_penalty", request.frequency_penalty)] {
            if !v.is_finite() {
                return Err(EngineError::InvalidParam(format!("{name} {v} is not a number")));
            }
        }
        let id = self.shared.next_id.fetch_add(1, Ordering::Relaxed);
        #[cfg(feature = "fault-injection")]
        let request = {
            let mut request = request;
            if request.fault.is_none() {
                request.fault = self.shared.fault_plan.iter().find(|(n, _)| *n == id).map(|(_, f)| *f);
            }
            request
        };
        let cancel = Arc::new(AtomicBool::new(false));
        let pending = Pending { request, sampler, cancel: cancel.clone(), sink: Box::new(sink), submitted: Instant::now() };
        let mut q = self.shared.lock();
        if q.stopping {
            return Err(EngineError::EngineStopped);
        }
        // Requests running or waiting; the queue is what the slots cannot take.
        if self.shared.in_flight.load(Ordering::Relaxed) >= self.shared.n_slots + self.shared.max_queue {
            return Err(EngineError::QueueFull { max_queue: self.shared.max_queue });
        }
        self.shared.in_flight.fetch_add(1, Ordering::Relaxed);
        q.waiting.push_back(pending);
        drop(q);
        self.shared.wake.notify_all();
        Ok(RequestTicket { id, cancel, shared: self.shared.clone() })
    }

    /// Counters and the current load.
    pub fn stats(&self) -> EngineStats {
        let c = &self.shared.counters;
        EngineStats {
            n_slots: self.shared.n_slots,
            active: self.shared.active.load(Ordering::Relaxed),
            queued: self.shared.lock().waiting.len(),
            finished: c.finished.load(Ordering::Relaxed),
            failed: c.failed.load(Ordering::Relaxed),
            cancelled: c.cancelled.load(Ordering::Relaxed),
            prompt_tokens: c.prompt_tokens.load(Ordering::Relaxed),
            cached_tokens: c.cached_tokens.load(Ordering::Relaxed),
            generated_tokens: c.generated_tokens.load(Ordering::Relaxed),
        }
    }

    /// Stops taking requests, cancels the running and queued ones (their
    /// streams end with [`EngineError::EngineStopped`]) and joins the thread.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        self.shared.lock().stopping = true;
        self.shared.wake.notify_all();
        if let Some(t) = self.thread.take() {
            // A panic in the engine thread has already ended every stream.
            let _ = t.join();
        }
    }
}

impl Drop for EngineHandle {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A submitted request; dropping it cancels the request.
pub struct RequestTicket {
    id: u64,
    cancel: Arc<AtomicBool>,
    shared: Arc<Shared>,
}

impl RequestTicket {
    /// The request's id (unique in its engine).
    pub fn id(&self) -> u64 {
        self.id
    }
    /// Ends the request before the next step and frees its slot.
    pub fn cancel(&self) {
        self.cancel.store(true, Ordering::Relaxed);
        self.shared.wake.notify_all();
    }
}

impl Drop for RequestTicket {
    fn drop(&mut self) {
        self.cancel();
    }
}

/// A request's events, in order; iterating blocks until the next one. The
/// stream ends after `Done` or `Error`. Dropping it cancels the request.
pub struct RequestStream {
    rx: mpsc::Receiver<Event>,
    ticket: RequestTicket,
}

impl RequestStream {
    pub fn id(&self) -> u64 {
        self.ticket.id()
    }
    /// Ends the request before the next step and frees its slot.
    pub fn cancel(&self) {
        self.ticket.cancel();
    }
    /// The next event, waiting at most `timeout`; None on timeout or at the end.
    pub fn recv_timeout(&self, timeout: Duration) -> Option<Event> {
        self.rx.recv_timeout(timeout).ok()
    }
}

impl Iterator for RequestStream {
    type Item = Event;
    fn next(&mut self) -> Option<Event> {
        self.rx.recv().ok()
    }
}

struct Pending {
    request: Request,
    sampler: Sampler,
    cancel: Arc<AtomicBool>,
    sink: Sink,
    submitted: Instant,
}

struct Queue {
    waiting: VecDeque<Pending>,
    stopping: bool,
}

#[derive(Default)]
struct Counters {
    finished: AtomicU64,
    failed: AtomicU64,
    cancelled: AtomicU64,
    prompt_tokens: AtomicU64,
    cached_tokens: AtomicU64,
    generated_tokens: AtomicU64,
}

struct Shared {
    queue: Mutex<Queue>,
    wake: Condvar,
    max_queue: usize,
    n_slots: usize,
    active: AtomicUsize,
    /// Requests submitted and not yet ended (changed under the queue lock
    /// on submission, so the bound holds).
    in_flight: AtomicUsize,
    counters: Counters,
    next_id: AtomicU64,
    /// Faults `INFER_FAULT` assigns to request ids.
    #[cfg(feature = "fault-injection")]
    fault_plan: Vec<(u64, crate::fault::Fault)>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        // A panic while holding the lock leaves the queue consistent (every
        // change is one push or pop), so carry on with it.
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A request in a slot.
struct Job {
    pending: Pending,
    /// Prompt tokens in the cache so far (the reused prefix included).
    loaded: usize,
    cached: usize,
    max_tokens: usize,
    text: StopText,
    generated: Vec<u32>,
    first_token: Option<Instant>,
    /// Logits after bias and penalties (reused from step to step).
    scratch: Vec<f32>,
    /// The sequence's place in its request's grammar.
    constraint: Option<ConstraintState>,
    calls: Option<CallWatch>,
}

impl Job {
    /// Greedy without anything that reads the logits: the head's backend can pick the token.
    fn greedy(&self) -> bool {
        let (req, p) = (&self.pending.request, &self.pending.request.sampler);
        p.temperature <= 0.0
            && (p.repeat_penalty == 1.0 || p.repeat_last_n == 0)
            && req.presence_penalty == 0.0
            && req.frequency_penalty == 0.0
            && req.logit_bias.is_empty()
            && req.logprobs.is_none()
            && self.constraint.is_none()
            && !self.fault_strikes(|f| matches!(f, Fault::NanLogits { .. }))
    }

    /// Whether the request's injected fault of this kind is due.
    #[cfg(feature = "fault-injection")]
    fn fault_strikes(&self, kind: impl Fn(&Fault) -> bool) -> bool {
        self.pending.request.fault.is_some_and(|f| kind(&f) && self.generated.len() >= f.after())
    }

    #[cfg(not(feature = "fault-injection"))]
    fn fault_strikes(&self, _kind: impl Fn(&Fault) -> bool) -> bool {
        false
    }
}


struct Slot {
    /// The tokens in this slot's cache region, in order.
    tokens: Vec<u32>,
    job: Option<Job>,
}

/// How one step of a job ended.
enum Outcome {
    Continue,
    Done(FinishReason),
    Failed(EngineError),
    Cancelled,
}

struct EngineThread {
    model: Arc<Model>,
    shared: Arc<Shared>,
    ms: MultiSession,
    slots: Vec<Slot>,
    /// Tokens per step.
    n_batch: usize,
    /// Where the next round of prompt chunks starts, so no slot is always served first.
    next_slot: usize,
}

impl EngineThread {
    fn run(mut self) {
        loop {
            if !self.admit() {
                break;
            }
            self.step();
            self.next_slot = (self.next_slot + 1) % self.slots.len();
        }
        // Stopping: end every stream still open.
        for slot in &mut self.slots {
            if let Some(mut job) = slot.job.take() {
                (job.pending.sink)(Event::Error(EngineError::EngineStopped));
            }
        }
        let waiting: Vec<Pending> = self.shared.lock().waiting.drain(..).collect();
        for mut p in waiting {
            (p.sink)(Event::Error(EngineError::EngineStopped));
        }
        self.shared.active.store(0, Ordering::Relaxed);
    }

    /// Drops cancelled requests from the queue, moves queued ones into free
    /// slots and waits while there is nothing to do. False when stopping.
    fn admit(&mut self) -> bool {
        let shared = self.shared.clone();
        let mut q = shared.lock();
        loop {
            if q.stopping {
                return false;
            }
            let before = q.waiting.len();
            q.waiting.retain(|p| !p.cancel.load(Ordering::Relaxed));
            let dropped = before - q.waiting.len();
            self.shared.counters.cancelled.fetch_add(dropped as u64, Ordering::Relaxed);
            self.shared.in_flight.fetch_sub(dropped, Ordering::Relaxed);
            while self.slots.iter().any(|s| s.job.is_none()) {
                let Some(p) = q.waiting.pop_front() else { break };
                self.place(p);
            }
            let active = self.slots.iter().filter(|s| s.job.is_some()).count();
            self.shared.active.store(active, Ordering::Relaxed);
            if active > 0 {
                return true;
            }
            q = shared.wake.wait(q).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Puts a request in the free slot whose cache shares the longest prefix
    /// with its prompt (the lowest-numbered on ties).
    fn place(&mut self, p: Pending) {
        let common = |s: &Slot| s.tokens.iter().zip(&p.request.prompt).take_while(|(a, b)| a == b).count();
        let best = self
            .slots
            .iter()
            .enumerate()
            .filter(|(_, s)| s.job.is_none())
            .max_by_key(|(i, s)| (common(s), std::cmp::Reverse(*i)))
            .map(|(i, _)| i);
        let Some(i) = best else { return };
        let prompt_len = p.request.prompt.len();
        // At least the last prompt token is evaluated, to get its logits.
        let cached = common(&self.slots[i]).min(prompt_len - 1);
        let slot = &mut self.slots[i];
        slot.tokens.truncate(cached);
        if self.ms.truncate(i, cached).is_err() {
            slot.tokens.clear();
        }
        let room = self.ms.n_ctx() - prompt_len;
        let max_tokens = p.request.max_tokens.unwrap_or(room);
        let text = StopText::new(p.request.stop.clone());
        let constraint = p.request.constraint.as_ref().map(|c| {
            let mut state = c.start();
            state.set_max_tokens(max_tokens);
            state
        });
        let calls = p.request.end_on_calls.clone();
        slot.job = Some(Job {
            pending: p,
            loaded: cached,
            cached,
            max_tokens,
            text,
            generated: Vec::new(),
            first_token: None,
            scratch: Vec::new(),
            constraint,
            calls,
        });
    }

    /// One batched step: a token of every generating request, then prompt
    /// chunks within the budget; then each request's next token from its rows.
    fn step(&mut self) {
        let n = self.slots.len();
        let c = &self.shared.counters;
        let mut outcomes: Vec<(usize, Outcome)> = Vec::new();
        let mut batch: Vec<BatchToken> = Vec::new();
        // Slots whose row (index into the step's logits) gives their next token.
        let mut wanted: Vec<usize> = Vec::new();
        for (i, slot) in self.slots.iter_mut().enumerate() {
            let Some(job) = slot.job.as_ref() else { continue };
            if job.pending.cancel.load(Ordering::Relaxed) {
                outcomes.push((i, Outcome::Cancelled));
                continue;
            }
            if let Some(limit) = job.pending.request.timeout {
                if job.pending.submitted.elapsed() > limit {
                    outcomes.push((i, Outcome::Failed(EngineError::Timeout { secs: limit.as_secs_f64() })));
                    continue;
                }
            }
            if job.loaded < job.pending.request.prompt.len() {
                continue;
            }
            let Some(&last) = job.generated.last() else {
                let e = EngineError::InvalidParam("a loaded request has no token to continue from".into());
                outcomes.push((i, Outcome::Failed(e)));
                continue;
            };
            if slot.tokens.len() + 1 > self.ms.n_ctx() {
                outcomes.push((i, Outcome::Failed(EngineError::ContextFull { n_ctx: self.ms.n_ctx() })));
                continue;
            }
            if job.fault_strikes(|f| matches!(f, Fault::KvFull { .. })) {
                let detail = format!("injected fault: position {} refused", slot.tokens.len());
                outcomes.push((i, Outcome::Failed(EngineError::KvCache { slot: i, detail })));
                continue;
            }
            batch.push(BatchToken { seq: i, pos: slot.tokens.len(), token: last, logits: true });
            wanted.push(i);
        }
        // Prompt chunks fill the rest of the budget, round-robin from `next_slot`.
        let done: Vec<usize> = outcomes.iter().map(|(i, _)| *i).collect();
        for k in 0..n {
            let i = (self.next_slot + k) % n;
            let budget = self.n_batch.saturating_sub(batch.len());
            let slot = &mut self.slots[i];
            let Some(job) = slot.job.as_mut() else { continue };
            let len = job.pending.request.prompt.len();
            if budget == 0 || job.loaded >= len || done.contains(&i) {
                continue;
            }
            let end = (job.loaded + budget).min(len);
            for pos in job.loaded..end {
                batch.push(BatchToken { seq: i, pos, token: job.pending.request.prompt[pos], logits: pos + 1 == len });
            }
            c.prompt_tokens.fetch_add((end - job.loaded) as u64, Ordering::Relaxed);
            if job.loaded == job.cached {
                c.cached_tokens.fetch_add(job.cached as u64, Ordering::Relaxed);
            }
            job.loaded = end;
            if end == len {
                wanted.push(i);
            }
        }
        if !batch.is_empty() {
            self.forward(&batch, &wanted, &mut outcomes);
        }
        for (i, outcome) in outcomes {
            self.finish(i, outcome);
        }
    }

    /// Runs `batch` and each wanted slot's next token. When the step fails
    /// and holds several sequences, each runs again alone, so a fault in
    /// one (a failed dispatch, a cache that cannot grow) fails only its own
    /// request. A refused or failed step leaves every sequence's length as
    /// it was, so the retries start from the same place.
    fn forward(&mut self, batch: &[BatchToken], wanted: &[usize], outcomes: &mut Vec<(usize, Outcome)>) {
        let Err(e) = self.forward_once(batch, wanted, outcomes) else { return };
        let mut seqs: Vec<usize> = batch.iter().map(|t| t.seq).collect();
        seqs.sort_unstable();
        seqs.dedup();
        if let [only] = seqs[..] {
            outcomes.push((only, Outcome::Failed(e)));
            return;
        }
        for s in seqs {
            let alone: Vec<BatchToken> = batch.iter().filter(|t| t.seq == s).copied().collect();
            let wanted: Vec<usize> = wanted.iter().copied().filter(|&i| i == s).collect();
            if let Err(e) = self.forward_once(&alone, &wanted, outcomes) {
                outcomes.push((s, Outcome::Failed(e)));
            }
        }
    }

    /// One forward pass over `batch`, then the next token of each slot in
    /// `wanted` (in row order); the ones that end go to `outcomes`.
    fn forward_once(&mut self, batch: &[BatchToken], wanted: &[usize], outcomes: &mut Vec<(usize, Outcome)>) -> Result<()> {
        let c = &self.shared.counters;
        let greedy = wanted.iter().all(|&i| self.slots[i].job.as_ref().is_some_and(Job::greedy));
        let vocab = self.model.config().vocab;
        let failing = batch.iter().find(|t| self.slots[t.seq].job.as_ref().is_some_and(|j| j.fault_strikes(|f| matches!(f, Fault::StepFails { .. }))));
        if let Some(t) = failing {
            return Err(EngineError::Gpu(format!("injected fault: the step holding slot {} failed to dispatch", t.seq)));
        }
        let (ids, logits) = if greedy {
            (self.ms.decode_greedy(batch)?, Vec::new())
        } else {
            (Vec::new(), self.ms.decode(batch)?.to_vec())
        };
        for t in batch {
            self.slots[t.seq].tokens.push(t.token);
        }
        for (row, &i) in wanted.iter().enumerate() {
            let slot = &mut self.slots[i];
            let Some(job) = slot.job.as_mut() else { continue };
            let picked = if greedy {
                Ok((ids.get(row).copied().unwrap_or(0), None))
            } else {
                sample(&logits[row * vocab..(row + 1) * vocab], &slot.tokens, job)
            };
            let outcome = match picked {
                Ok((id, logprob)) => emit(&self.model, job, id, logprob, c),
                Err(e) => Outcome::Failed(e),
            };
            if !matches!(outcome, Outcome::Continue) {
                outcomes.push((i, outcome));
            }
        }
        Ok(())
    }

    /// Ends slot `i`'s request with `outcome`.
    fn finish(&mut self, i: usize, outcome: Outcome) {
        let slot = &mut self.slots[i];
        let Some(mut job) = slot.job.take() else { return };
        self.shared.in_flight.fetch_sub(1, Ordering::Relaxed);
        let c = &self.shared.counters;
        match outcome {
            Outcome::Continue => {}
            Outcome::Done(reason) => {
                c.finished.fetch_add(1, Ordering::Relaxed);
                let usage = usage(&job);
                (job.pending.sink)(Event::Done { reason, usage });
            }
            Outcome::Failed(e) => {
                c.failed.fetch_add(1, Ordering::Relaxed);
                slot.tokens.clear();
                let _ = self.ms.clear(i);
                (job.pending.sink)(Event::Error(e));
            }
            Outcome::Cancelled => {
                c.cancelled.fetch_add(1, Ordering::Relaxed);
            }
        }
        // A prompt cut short by a cancel left positions past `tokens`: keep the two in step.
        let _ = self.ms.truncate(i, slot.tokens.len());
        let active = self.slots.iter().filter(|s| s.job.is_some()).count();
        self.shared.active.store(active, Ordering::Relaxed);
    }
}

fn usage(job: &Job) -> Usage {
    let now = Instant::now();
    let first = job.first_token.unwrap_or(now);
    Usage {
        prompt_tokens: job.pending.request.prompt.len(),
        cached_tokens: job.cached,
        completion_tokens: job.generated.len(),
        time_to_first_token: first.duration_since(job.pending.submitted),
        generation_time: now.duration_since(first),
    }
}

/// Streams a job's new token `id`; says whether the job goes on.
fn emit(model: &Model, job: &mut Job, id: u32, logprob: Option<TokenLogprob>, counters: &Counters) -> Outcome {
    job.first_token.get_or_insert_with(Instant::now);
    job.generated.push(id);
    counters.generated_tokens.fetch_add(1, Ordering::Relaxed);
    let tok = model.tokenizer();
    // A complete grammar allows only an end token next: end now instead of
    // spending a step on it.
    let grammar_done = job.constraint.as_ref().is_some_and(ConstraintState::is_complete);
    // A grammar closed early for want of tokens ends as if they ran out.
    let grammar_end = if job.constraint.as_ref().is_some_and(ConstraintState::cut_short) { FinishReason::Length } else { FinishReason::Stop };
    let (text, reason) = if tok.is_eog(id) {
        (job.text.finish(), Some(if grammar_end == FinishReason::Length { grammar_end } else { FinishReason::Eog }))
    } else {
        let (t, stopped) = job.text.push(tok, id);
        let calls_done = match job.calls.as_mut() {
            Some(w) if !stopped => w.push(&t),
            _ => false,
        };
        match (t, stopped) {
            (t, true) => (t, Some(FinishReason::Stop)),
            (t, false) if grammar_done => (t + &job.text.finish(), Some(grammar_end)),
            (t, false) if calls_done => (t + &job.text.finish(), Some(FinishReason::Stop)),
            (t, false) if job.generated.len() >= job.max_tokens => (t + &job.text.finish(), Some(FinishReason::Length)),
            (t, false) => (t, None),
        }
    };
    if !(job.pending.sink)(Event::Token(TokenEvent { id, text, logprob })) {
        return Outcome::Cancelled;
    }
    reason.map_or(Outcome::Continue, Outcome::Done)
}

/// Samples from a row of logits with the request's bias and penalties
/// (`history`: the slot's tokens), among the tokens its grammar allows when
/// it has one; the log-probabilities are those the bias (and grammar) leave.
fn sample(logits: &[f32], history: &[u32], job: &mut Job) -> Result<(u32, Option<TokenLogprob>)> {
    let req = &job.pending.request;
    job.scratch.clear();
    job.scratch.extend_from_slice(logits);
    if job.fault_strikes(|f| matches!(f, Fault::NanLogits { .. })) {
        job.scratch.fill(f32::NAN);
    }
    // A NaN row would make every pick garbage (greedy takes the first
    // token, a draw the last): fail this request alone instead.
    if job.scratch.iter().any(|v| v.is_nan()) {
        return Err(EngineError::BadLogits { at: job.generated.len() });
    }
    sampler::apply_logit_bias(&mut job.scratch, &req.logit_bias);
    sampler::apply_presence_frequency(&mut job.scratch, &job.generated, req.presence_penalty, req.frequency_penalty);
    let id = match job.constraint.as_mut() {
        Some(state) => {
            if req.logprobs.is_some() {
                state.mask(&mut job.scratch)?;
            }
            job.pending.sampler.sample_constrained(&job.scratch, history, state)?
        }
        None => job.pending.sampler.sample(&job.scratch, history),
    };
    let logprob = req.logprobs.map(|k| {
        let lp = sampler::log_softmax(&job.scratch);
        TokenLogprob { logprob: lp.get(id as usize).copied().unwrap_or(f32::NEG_INFINITY), top: sampler::top_logprobs(&lp, k) }
    });
    Ok((id, logprob))
}
