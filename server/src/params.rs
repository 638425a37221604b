//! Request bodies: parsing with errors that name the field, and the fields
//! that chat and text completions share turned into engine requests.

use std::collections::HashMap;

use infer_engine::scheduler::Request;
use infer_engine::{Model, SamplerParams};
use serde::de::DeserializeOwned;
use serde::Deserialize;

use crate::limits::{self, Limits};
use crate::ServerError;

/// Most choices (`n`) one request may ask for.
pub const MAX_N: usize = 16;
/// OpenAI's limit on `top_logprobs`.
const MAX_TOP_LOGPROBS: usize = 20;

/// Parses a body as JSON: nesting deeper than the limit is a 400 before
/// parsing, malformed JSON a 400 with its line and column.
pub fn parse_json(body: &[u8], limits: &Limits) -> Result<serde_json::Value, ServerError> {
    limits::check_depth(body, limits.max_json_depth)?;
    let value: serde_json::Value = serde_json::from_slice(body).map_err(|e| ServerError::BadRequest {
        message: format!("the body is not valid JSON: {e}"),
        param: None,
        code: Some("invalid_json"),
    })?;
    if !value.is_object() {
        return Err(ServerError::BadRequest { message: "the body must be a JSON object".into(), param: None, code: None });
    }
    Ok(value)
}

/// Reads `T` out of a parsed body; a wrong or missing field is a 400 naming it.
pub fn fields<T: DeserializeOwned>(value: &serde_json::Value) -> Result<T, ServerError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner().to_string();
        // serde names a missing field itself; the path is then the parent.
        let param = match inner.strip_prefix("missing field `").and_then(|r| r.split('`').next()) {
            Some(f) if path == "." => f.to_string(),
            Some(f) => format!("{path}.{f}"),
            None => path,
        };
        ServerError::bad(&param, format!("invalid value for \"{param}\": {inner}"))
    })
}

/// A string or a list of strings (`stop`, `prompt`).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    pub fn into_vec(self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s],
            OneOrMany::Many(v) => v,
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct StreamOptions {
    #[serde(default)]
    pub include_usage: bool,
}

/// The fields chat and text completions share (unknown fields are ignored,
/// as OpenAI clients send more than a local server needs).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Common {
    pub max_tokens: Option<u32>,
    pub max_completion_tokens: Option<u32>,
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    pub top_k: Option<u32>,
    pub min_p: Option<f32>,
    pub repeat_penalty: Option<f32>,
    pub repeat_last_n: Option<u32>,
    pub presence_penalty: Option<f32>,
    pub frequency_penalty: Option<f32>,
    pub seed: Option<i64>,
    pub stop: Option<OneOrMany>,
    pub logit_bias: Option<HashMap<String, f32>>,
    pub n: Option<u32>,
    #[serde(default)]
    pub stream: Option<bool>,
    pub stream_options: Option<StreamOptions>,
}

impl Common {
    pub fn stream(&self) -> bool {
        self.stream.unwrap_or(false)
    }
    pub fn include_usage(&self) -> bool {
        self.stream_options.as_ref().is_some_and(|o| o.include_usage)
    }
    /// Choices asked for (1 by default).
    pub fn n(&self) -> Result<usize, ServerError> {
        match self.n.unwrap_or(1) as usize {
            n @ 1..=MAX_N => Ok(n),
            n => Err(ServerError::bad("n", format!("n is {n}; it must be between 1 and {MAX_N}"))),
        }
    }

    /// The engine request for `prompt` (choice 0; further choices get the
    /// next seeds). `max_tokens` beyond what the context leaves is cut to it
    /// (the reply then ends with `length`), as llama-server does.
    pub fn request(&self, model: &Model, prompt: Vec<u32>, n_ctx: usize, logprobs: Option<usize>, limits: &Limits) -> Result<Request, ServerError> {
        let range = |name: &str, v: Option<f32>, lo: f32, hi: f32| -> Result<(), ServerError> {
            match v {
                Some(x) if !(lo..=hi).contains(&x) => Err(ServerError::bad(name, format!("{name} is {x}; it must be between {lo} and {hi}"))),
                _ => Ok(()),
            }
        };
        range("temperature", self.temperature, 0.0, 2.0)?;
        range("top_p", self.top_p, 0.0, 1.0)?;
        range("min_p", self.min_p, 0.0, 1.0)?;
        range("presence_penalty", self.presence_penalty, -2.0, 2.0)?;
        range("frequency_penalty", self.frequency_penalty, -2.0, 2.0)?;
        range("repeat_penalty", self.repeat_penalty, 0.01, 10.0)?;
        let (field, max_tokens) = match (self.max_completion_tokens, self.max_tokens) {
            (Some(m), _) => ("max_completion_tokens", Some(m)),
            (None, m) => ("max_tokens", m),
        };
        if max_tokens == Some(0) {
            return Err(ServerError::bad(field, format!("{field} must be at least 1")));
        }
        if prompt.len() >= n_ctx {
            return Err(ServerError::PromptTooLong { n_tokens: prompt.len(), n_ctx, param: "messages" });
        }
        let room = n_ctx - prompt.len();
        let stop = self.stop.clone().map(OneOrMany::into_vec).unwrap_or_default();
        limits::count("stop", stop.len(), "strings", limits.max_stop)?;
        if let Some((i, s)) = stop.iter().enumerate().find(|(_, s)| s.len() > limits.max_stop_bytes) {
            return Err(limits::over(&format!("stop[{i}]"), format!("{} bytes", s.len()), format!("{} bytes", limits.max_stop_bytes)));
        }
        let n_bias = self.logit_bias.as_ref().map_or(0, HashMap::len);
        limits::count("logit_bias", n_bias, "entries", limits.max_logit_bias)?;
        let vocab = model.tokenizer().vocab_size();
        let mut logit_bias = Vec::new();
        for (key, &bias) in self.logit_bias.iter().flatten() {
            let id = key.parse::<u32>().ok().filter(|&id| (id as usize) < vocab).ok_or_else(|| {
                ServerError::bad("logit_bias", format!("logit_bias key \"{key}\" is not a token id below {vocab}"))
            })?;
            if !(-100.0..=100.0).contains(&bias) {
                return Err(ServerError::bad("logit_bias", format!("logit_bias of token {id} is {bias}; it must be between -100 and 100")));
            }
            logit_bias.push((id, bias));
        }
        logit_bias.sort_by_key(|b| b.0);
        let d = SamplerParams::default();
        let sampler = SamplerParams {
            temperature: self.temperature.unwrap_or(d.temperature),
            top_k: self.top_k.map_or(d.top_k, |k| k as usize),
            top_p: self.top_p.unwrap_or(d.top_p),
            min_p: self.min_p.unwrap_or(d.min_p),
            repeat_penalty: self.repeat_penalty.unwrap_or(d.repeat_penalty),
            repeat_last_n: self.repeat_last_n.map_or(d.repeat_last_n, |n| n as usize),
            seed: self.seed.map_or_else(clock_seed, |s| s as u64),
        };
        Ok(Request {
            prompt,
            sampler,
            presence_penalty: self.presence_penalty.unwrap_or(0.0),
            frequency_penalty: self.frequency_penalty.unwrap_or(0.0),
            logit_bias,
            max_tokens: Some(max_tokens.map_or(room, |m| (m as usize).min(room))),
            stop,
            logprobs,
            timeout: None,
            constraint: None,
            end_on_calls: None,
        })
    }
}

/// Chat's `top_logprobs` (0..=20, only with `logprobs: true`).
pub fn chat_logprobs(logprobs: Option<bool>, top: Option<u32>) -> Result<Option<usize>, ServerError> {
    let top = top.map(|t| t as usize);
    if top.is_some_and(|t| t > MAX_TOP_LOGPROBS) {
        return Err(ServerError::bad("top_logprobs", format!("top_logprobs must be between 0 and {MAX_TOP_LOGPROBS}")));
    }
    match (logprobs.unwrap_or(false), top) {
        (true, t) => Ok(Some(t.unwrap_or(0))),
        (false, Some(t)) if t > 0 => Err(ServerError::bad("top_logprobs", "top_logprobs needs \"logprobs\": true")),
        (false, _) => Ok(None),
    }
}

/// Completions' `logprobs` (an integer 0..=5, as OpenAI's).
pub fn completion_logprobs(logprobs: Option<u32>) -> Result<Option<usize>, ServerError> {
    match logprobs {
        Some(k) if k > 5 => Err(ServerError::bad("logprobs", format!("logprobs is {k}; it must be between 0 and 5"))),
        k => Ok(k.map(|k| k as usize)),
    }
}

fn clock_seed() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
}
