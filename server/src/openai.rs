//! `POST /v1/chat/completions` and `POST /v1/completions`, field for field
//! as OpenAI's.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use infer_engine::scheduler::TokenEvent;
use infer_engine::tools::{call_key, dedupe_calls, parse_tool_calls, CallWatch, ParsedOutput, ToolCallStream, ToolFamily, ToolStreamEvent};
use infer_engine::{ChatMessage, FinishReason, Model};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::generate::{self, finish_reason, usage_json, ChunkFormat};
use crate::params::{self, Common, OneOrMany};
use crate::tools::{self, ToolFields};
use crate::{AppState, ServerError};

/// A message's content: a string or a list of parts (only text parts).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Content {
    Text(String),
    Parts(Vec<Part>),
}

#[derive(Debug, Deserialize)]
struct Part {
    #[serde(rename = "type")]
    kind: String,
    text: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Message {
    role: String,
    content: Option<Content>,
    /// An assistant turn's calls (`[{"id", "type", "function": {"name", "arguments"}}]`).
    tool_calls: Option<Vec<Value>>,
    /// A tool result's call.
    tool_call_id: Option<String>,
    name: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ChatFields {
    messages: Vec<Message>,
    logprobs: Option<bool>,
    top_logprobs: Option<u32>,
}

/// A checked message with its text content.
struct Turn {
    role: String,
    content: String,
    tool_calls: Option<Vec<Value>>,
    tool_call_id: Option<String>,
    name: Option<String>,
}

impl Turn {
    fn chat_message(&self) -> ChatMessage {
        ChatMessage { role: self.role.clone(), content: self.content.clone() }
    }
    /// The message as the tool-aware template path takes it.
    fn json(&self) -> Value {
        let mut m = json!({ "role": self.role, "content": self.content });
        if let Some(calls) = &self.tool_calls {
            m["tool_calls"] = Value::Array(calls.clone());
        }
        if let Some(id) = &self.tool_call_id {
            m["tool_call_id"] = json!(id);
        }
        if let Some(name) = &self.name {
            m["name"] = json!(name);
        }
        m
    }
    fn is_tool_turn(&self) -> bool {
        self.role == "tool" || self.tool_calls.is_some()
    }
}

/// An assistant message's call must name its function.
fn check_call(i: usize, j: usize, call: &Value) -> Result<(), ServerError> {
    let param = format!("messages[{i}].tool_calls[{j}]");
    let f = call.get("function").ok_or_else(|| ServerError::bad(&param, "a tool call needs a \"function\" object"))?;
    if f.get("name").and_then(Value::as_str).is_none_or(str::is_empty) {
        return Err(ServerError::bad(&format!("{param}.function.name"), "a tool call needs a function name"));
    }
    match f.get("arguments") {
        None | Some(Value::String(_)) | Some(Value::Object(_)) => Ok(()),
        Some(_) => Err(ServerError::bad(&format!("{param}.function.arguments"), "arguments must be a JSON string")),
    }
}

impl ChatFields {
    fn messages(self) -> Result<Vec<Turn>, ServerError> {
        if self.messages.is_empty() {
            return Err(ServerError::bad("messages", "messages must hold at least one message"));
        }
        self.messages
            .into_iter()
            .enumerate()
            .map(|(i, m)| {
                let content = match m.content {
                    None => String::new(),
                    Some(Content::Text(t)) => t,
                    Some(Content::Parts(parts)) => {
                        let mut text = String::new();
                        for (j, p) in parts.into_iter().enumerate() {
                            match (p.kind.as_str(), p.text) {
                                ("text", Some(t)) => text.push_str(&t),
                                (kind, _) => {
                                    return Err(ServerError::bad(
                                        &format!("messages[{i}].content[{j}]"),
                                        format!("content part type \"{kind}\" is not supported (only \"text\" parts with a \"text\" field)"),
                                    ))
                                }
                            }
                        }
                        text
                    }
                };
                // OpenAI's newer name for the system role.
                let role = if m.role == "developer" { "system".to_string() } else { m.role };
                if role == "tool" && m.tool_call_id.is_none() {
                    return Err(ServerError::bad(&format!("messages[{i}].tool_call_id"), "a \"tool\" message needs the tool_call_id it answers"));
                }
                for (j, call) in m.tool_calls.iter().flatten().enumerate() {
                    check_call(i, j, call)?;
                }
                Ok(Turn { role, content, tool_calls: m.tool_calls, tool_call_id: m.tool_call_id, name: m.name })
            })
            .collect()
    }
}

#[derive(Debug, Deserialize)]
struct CompletionFields {
    prompt: OneOrMany,
    #[serde(default)]
    echo: bool,
    logprobs: Option<u32>,
}

/// The body, or 413 when it is over the limit.
pub(crate) fn body_bytes(body: Result<Bytes, BytesRejection>, state: &AppState) -> Result<Bytes, ServerError> {
    body.map_err(|e| match e.status() {
        axum::http::StatusCode::PAYLOAD_TOO_LARGE => ServerError::PayloadTooLarge { limit: state.config.body_limit },
        _ => ServerError::BadRequest { message: format!("cannot read the body: {e}"), param: None, code: None },
    })
}

/// What every response and chunk of one request repeats.
#[derive(Clone)]
struct Meta {
    id: String,
    created: u64,
    model: String,
    fingerprint: String,
}

impl Meta {
    fn new(prefix: &str, state: &AppState) -> Self {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        let id = format!("{prefix}-{:x}{:04x}", now.as_nanos() & 0xffff_ffff_ffff, state.metrics.next_id() & 0xffff);
        let fingerprint = format!("fp_infer_{}", env!("CARGO_PKG_VERSION"));
        Meta { id, created: now.as_secs(), model: state.config.model_name.clone(), fingerprint }
    }
    fn object(&self, object: &str, choices: Value) -> Value {
        json!({
            "id": self.id, "object": object, "created": self.created, "model": self.model,
            "system_fingerprint": self.fingerprint, "choices": choices,
        })
    }
}

/// A token's text and bytes for logprobs.
fn token_text(model: &Model, id: u32) -> (String, Vec<u8>) {
    let bytes = model.tokenizer().token_bytes(id);
    (String::from_utf8_lossy(&bytes).into_owned(), bytes)
}

/// Chat's logprobs entry of one token.
fn chat_logprob(model: &Model, t: &TokenEvent) -> Option<Value> {
    let lp = t.logprob.as_ref()?;
    let entry = |id: u32, logprob: f32| {
        let (token, bytes) = token_text(model, id);
        json!({ "token": token, "logprob": logprob, "bytes": bytes })
    };
    let mut e = entry(t.id, lp.logprob);
    e["top_logprobs"] = lp.top.iter().map(|&(id, l)| entry(id, l)).collect();
    Some(e)
}

pub async fn chat_completions(State(state): State<Arc<AppState>>, body: Result<Bytes, BytesRejection>) -> Result<Response, ServerError> {
    let body = body_bytes(body, &state)?;
    let limits = &state.config.limits;
    let value = params::parse_json(&body, limits)?;
    // Counted before the messages are read into structs.
    let n_messages = value.get("messages").and_then(Value::as_array).map_or(0, Vec::len);
    crate::limits::count("messages", n_messages, "messages", limits.max_messages)?;
    let common: Common = params::fields(&value)?;
    let chat: ChatFields = params::fields(&value)?;
    let plan = params::fields::<ToolFields>(&value)?.plan(limits)?;
    let engine = state.engine()?;
    let model = engine.model().clone();
    let logprobs = params::chat_logprobs(chat.logprobs, chat.top_logprobs)?;
    let turns = chat.messages()?;
    let prompt = if plan.has_tools() || turns.iter().any(Turn::is_tool_turn) {
        let messages: Vec<Value> = turns.iter().map(Turn::json).collect();
        model.prompt_tokens(&model.chat_template().render_with_tools(&messages, &plan.tools, true)?)?
    } else {
        model.chat_tokens(&turns.iter().map(Turn::chat_message).collect::<Vec<_>>())?
    };
    let n_prompt = prompt.len();
    let mut req = common.request(&model, prompt, engine.n_ctx_per_slot(), logprobs, limits)?;
    // Text past the end of the assistant's turn is never part of the reply.
    if let Some(eot) = model.chat_template().end_of_turn_token() {
        req.stop.push(eot.to_string());
    }
    req.constraint = plan.constraint(&state).await?;
    let calls = plan.family(&model).map(|family| CallParsing { family, parallel: plan.parallel(), forced: plan.calls_forced() });
    // The turn ends with its call (or with a repeated one when several may come).
    req.end_on_calls = calls.map(|c| CallWatch::new(c.family, c.parallel));
    let job = generate::submit(&state, engine, generate::choices(req, common.n()?), n_prompt)?;
    let meta = Meta::new("chatcmpl", &state);
    let include_usage = common.include_usage();
    let stream = common.stream().then(|| ChatChunks {
        meta: meta.clone(),
        model: model.clone(),
        with_logprobs: logprobs.is_some(),
        include_usage,
        calls: calls.map(|c| (c, Vec::new())),
    });
    respond(job, &meta, "chat.completion", stream, include_usage, |i, c| {
        let lp = logprobs.map(|_| json!({ "content": c.tokens.iter().filter_map(|t| chat_logprob(&model, t)).collect::<Vec<_>>() }));
        let parsed = calls.map(|p| (p, p.parse(&c.text))).filter(|(p, out)| p.forced || !out.tool_calls.is_empty());
        let (message, reason) = match parsed {
            Some((parsing, out)) => {
                // Forced calls have no text: what is left is a call cut short.
                let content = if out.content.is_empty() || parsing.forced { Value::Null } else { json!(out.content) };
                let calls: Vec<Value> = out.tool_calls.iter().map(tools::call_json).collect();
                let reason = if c.reason == Some(FinishReason::Length) { "length" } else { "tool_calls" };
                (json!({ "role": "assistant", "content": content, "tool_calls": calls, "refusal": null }), reason)
            }
            None => (json!({ "role": "assistant", "content": c.text, "refusal": null }), finish_reason(c.reason)),
        };
        json!({ "index": i, "message": message, "logprobs": lp, "finish_reason": reason })
    })
    .await
}

/// How an answer's tool calls are read.
#[derive(Debug, Clone, Copy)]
struct CallParsing {
    family: ToolFamily,
    /// Keep every call (else only the first).
    parallel: bool,
    /// Sampled as calls only: no text is ever content.
    forced: bool,
}

impl CallParsing {
    fn parse(&self, text: &str) -> ParsedOutput {
        tracing::debug!(family = ?self.family, "answer read for tool calls: {text:?}");
        let mut out = parse_tool_calls(text, self.family);
        dedupe_calls(&mut out.tool_calls);
        if !self.parallel {
            out.tool_calls.truncate(1);
        }
        out
    }
}

/// A streamed choice's call parser and the calls it has sent.
struct StreamedCalls {
    parser: ToolCallStream,
    sent: usize,
    /// What the sent calls asked for ([`call_key`]), so a repeat is not sent.
    keys: Vec<(String, Value)>,
}

/// The reply: streamed with `stream`'s chunks when given, else one JSON
/// object holding every choice (`choice` shapes each) and the usage.
async fn respond<F: ChunkFormat>(
    job: generate::Job,
    meta: &Meta,
    object: &str,
    stream: Option<F>,
    include_usage: bool,
    choice: impl Fn(usize, &generate::Choice) -> Value,
) -> Result<Response, ServerError> {
    if let Some(format) = stream {
        return Ok(job.sse(format, include_usage).into_response());
    }
    let prompt_tokens = job.prompt_tokens();
    let choices = job.collect().await?;
    let usage = usage_json(prompt_tokens, &choices.iter().map(|c| &c.usage).collect::<Vec<_>>());
    let mut out = meta.object(object, choices.iter().enumerate().map(|(i, c)| choice(i, c)).collect());
    out["usage"] = usage;
    Ok(Json(out).into_response())
}

struct ChatChunks {
    meta: Meta,
    model: Arc<Model>,
    with_logprobs: bool,
    include_usage: bool,
    /// With tools: how calls are read, and each choice's parser (made on its first token).
    calls: Option<(CallParsing, Vec<StreamedCalls>)>,
}

impl ChatChunks {
    fn chunk(&self, choices: Value) -> Value {
        let mut c = self.meta.object("chat.completion.chunk", choices);
        if self.include_usage {
            c["usage"] = Value::Null;
        }
        c
    }

    fn delta(&self, index: usize, delta: Value, logprobs: Value) -> Value {
        self.chunk(json!([{ "index": index, "delta": delta, "logprobs": logprobs, "finish_reason": null }]))
    }

    /// Chunks for `events` of choice `index`: content deltas, and each call
    /// as OpenAI streams it; calls past the first are dropped unless parallel.
    fn tool_events(&mut self, index: usize, events: Vec<ToolStreamEvent>) -> Vec<Value> {
        let mut out = Vec::new();
        for e in events {
            match e {
                ToolStreamEvent::Content(text) => {
                    let forced = self.calls.as_ref().is_some_and(|(p, _)| p.forced);
                    if !text.is_empty() && !forced {
                        out.push(self.delta(index, json!({ "content": text }), Value::Null));
                    }
                }
                ToolStreamEvent::ToolCall { call, .. } => {
                    let Some((parsing, streams)) = self.calls.as_mut() else { continue };
                    let s = &mut streams[index];
                    let key = call_key(&call);
                    if (s.sent > 0 && !parsing.parallel) || s.keys.contains(&key) {
                        continue;
                    }
                    s.keys.push(key);
                    let n = s.sent;
                    s.sent += 1;
                    for d in tools::call_deltas(n, &call) {
                        out.push(self.delta(index, json!({ "tool_calls": d }), Value::Null));
                    }
                }
            }
        }
        out
    }

    /// Choice `index`'s call parser, made on first use.
    fn calls_of(&mut self, index: usize) -> Option<&mut StreamedCalls> {
        let (parsing, streams) = self.calls.as_mut()?;
        while streams.len() <= index {
            streams.push(StreamedCalls { parser: ToolCallStream::new(parsing.family), sent: 0, keys: Vec::new() });
        }
        streams.get_mut(index)
    }
}

impl ChunkFormat for ChatChunks {
    fn open(&self, n: usize) -> Vec<Value> {
        // With tools the answer may hold only calls: its content is null until text comes.
        let content = if self.calls.is_some() { Value::Null } else { json!("") };
        (0..n)
            .map(|i| {
                let delta = json!({ "role": "assistant", "content": content, "refusal": null });
                self.chunk(json!([{ "index": i, "delta": delta, "logprobs": null, "finish_reason": null }]))
            })
            .collect()
    }
    fn token(&mut self, index: usize, t: &TokenEvent) -> Vec<Value> {
        let lp = if self.with_logprobs { chat_logprob(&self.model, t) } else { None };
        let logprobs = lp.map(|l| json!({ "content": [l] }));
        if let Some(s) = self.calls_of(index) {
            let events = s.parser.push(&t.text);
            let mut out = self.tool_events(index, events);
            // Log-probabilities ride on the token's first chunk, or a chunk of their own.
            if let Some(lp) = logprobs {
                match out.first_mut() {
                    Some(first) => first["choices"][0]["logprobs"] = lp,
                    None => out.push(self.delta(index, json!({}), lp)),
                }
            }
            return out;
        }
        if t.text.is_empty() && logprobs.is_none() {
            return Vec::new();
        }
        vec![self.delta(index, json!({ "content": t.text }), logprobs.unwrap_or(Value::Null))]
    }
    fn finish(&mut self, index: usize, reason: FinishReason) -> Vec<Value> {
        let mut out = Vec::new();
        let cut = reason == FinishReason::Length;
        let mut reason = finish_reason(Some(reason));
        if let Some(s) = self.calls_of(index) {
            let events = s.parser.finish();
            out = self.tool_events(index, events);
            if !cut && self.calls_of(index).is_some_and(|s| s.sent > 0) {
                reason = "tool_calls";
            }
        }
        out.push(self.chunk(json!([{ "index": index, "delta": {}, "logprobs": null, "finish_reason": reason }])));
        out
    }
    fn usage(&self, usage: Value) -> Value {
        let mut c = self.meta.object("chat.completion.chunk", json!([]));
        c["usage"] = usage;
        c
    }
}

/// Completions' logprobs object over `tokens`, offsets counted from `offset`.
fn completion_logprobs(model: &Model, tokens: &[TokenEvent], mut offset: usize) -> Value {
    let (mut texts, mut lps, mut tops, mut offsets) = (vec![], vec![], vec![], vec![]);
    for t in tokens {
        let Some(lp) = &t.logprob else { continue };
        let text = token_text(model, t.id).0;
        offsets.push(offset);
        offset += t.text.len();
        texts.push(text);
        lps.push(lp.logprob);
        let top: serde_json::Map<String, Value> = lp.top.iter().map(|&(id, l)| (token_text(model, id).0, json!(l))).collect();
        tops.push(Value::Object(top));
    }
    json!({ "tokens": texts, "token_logprobs": lps, "top_logprobs": tops, "text_offset": offsets })
}

pub async fn completions(State(state): State<Arc<AppState>>, body: Result<Bytes, BytesRejection>) -> Result<Response, ServerError> {
    let body = body_bytes(body, &state)?;
    let limits = &state.config.limits;
    let value = params::parse_json(&body, limits)?;
    let common: Common = params::fields(&value)?;
    let fields: CompletionFields = params::fields(&value)?;
    let engine = state.engine()?;
    let model = engine.model().clone();
    let logprobs = params::completion_logprobs(fields.logprobs)?;
    let prompts = fields.prompt.into_vec();
    if prompts.is_empty() {
        return Err(ServerError::bad("prompt", "prompt must hold at least one string"));
    }
    crate::limits::count("prompt", prompts.len(), "prompts", limits.max_prompts)?;
    let n = common.n()?;
    let mut requests = Vec::new();
    let mut n_prompt = 0;
    for p in &prompts {
        let ids = model.prompt_tokens(p)?;
        if ids.is_empty() {
            return Err(ServerError::bad("prompt", "the prompt is empty"));
        }
        n_prompt += ids.len();
        let req = common.request(&model, ids, engine.n_ctx_per_slot(), logprobs, limits).map_err(|e| match e {
            ServerError::PromptTooLong { n_tokens, n_ctx, .. } => ServerError::PromptTooLong { n_tokens, n_ctx, param: "prompt" },
            e => e,
        })?;
        requests.extend(generate::choices(req, n));
    }
    // Choice i answers prompt i / n; echo puts that prompt first.
    let echo: Vec<String> = (0..requests.len()).map(|i| if fields.echo { prompts[i / n].clone() } else { String::new() }).collect();
    let job = generate::submit(&state, engine, requests, n_prompt)?;
    let meta = Meta::new("cmpl", &state);
    let include_usage = common.include_usage();
    let stream = common.stream().then(|| CompletionChunks {
        meta: meta.clone(),
        model: model.clone(),
        echo: echo.clone(),
        with_logprobs: logprobs.is_some(),
        include_usage,
    });
    respond(job, &meta, "text_completion", stream, include_usage, |i, c| {
        let lp = logprobs.map(|_| completion_logprobs(&model, &c.tokens, echo[i].len()));
        json!({ "text": format!("{}{}", echo[i], c.text), "index": i, "logprobs": lp, "finish_reason": finish_reason(c.reason) })
    })
    .await
}

struct CompletionChunks {
    meta: Meta,
    model: Arc<Model>,
    echo: Vec<String>,
    with_logprobs: bool,
    include_usage: bool,
}

impl CompletionChunks {
    fn chunk(&self, index: usize, text: &str, logprobs: Value, finish: Value) -> Value {
        let mut c = self.meta.object("text_completion", json!([{ "text": text, "index": index, "logprobs": logprobs, "finish_reason": finish }]));
        if self.include_usage {
            c["usage"] = Value::Null;
        }
        c
    }
}

impl ChunkFormat for CompletionChunks {
    fn open(&self, _n: usize) -> Vec<Value> {
        self.echo.iter().enumerate().filter(|(_, e)| !e.is_empty()).map(|(i, e)| self.chunk(i, e, Value::Null, Value::Null)).collect()
    }
    fn token(&mut self, index: usize, t: &TokenEvent) -> Vec<Value> {
        if t.text.is_empty() && !self.with_logprobs {
            return Vec::new();
        }
        let lp = if self.with_logprobs { completion_logprobs(&self.model, std::slice::from_ref(t), 0) } else { Value::Null };
        vec![self.chunk(index, &t.text, lp, Value::Null)]
    }
    fn finish(&mut self, index: usize, reason: FinishReason) -> Vec<Value> {
        vec![self.chunk(index, "", Value::Null, json!(finish_reason(Some(reason))))]
    }
    fn usage(&self, usage: Value) -> Value {
        let mut c = self.meta.object("text_completion", json!([]));
        c["usage"] = usage;
        c
    }
}
