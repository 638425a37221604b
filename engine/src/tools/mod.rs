//! Tool (function) calls: the model's output parsed back into calls, whole or
//! while it streams, for the families people run:
//!
//! - [`ToolFamily::Hermes`]: Hermes, Qwen 2.5, Qwen 3 and the default tool
//!   prompt of [`prompt`]: `<tool_call>{"name": …, "arguments": …}</tool_call>`;
//! - [`ToolFamily::Llama3`]: Llama 3.1+: `{"name": …, "parameters": …}`, after
//!   `<|python_tag|>` or as the whole answer, and `<|python_tag|>tool.call(q="…")`;
//! - [`ToolFamily::Mistral`]: `[TOOL_CALLS][{"name": …, "arguments": …}]`
//!   and the newer `[TOOL_CALLS]name[ARGS]{…}`;
//! - [`ToolFamily::Generic`]: an answer that is only JSON call(s), bare or
//!   in a ``` fence (every family also accepts this).
//!
//! Several calls become several entries with distinct ids. Text that only
//! looks like a call (truncated JSON, a body that is not a call) stays in
//! the content.
//!
//! ```
//! use infer_engine::tools::{parse_tool_calls, ToolFamily};
//! let out = parse_tool_calls("<tool_call>{\"name\": \"now\", \"arguments\": {}}</tool_call>", ToolFamily::Hermes);
//! assert_eq!(out.tool_calls[0].name, "now");
//! assert_eq!(out.content, "");
//! ```

pub mod grammar;
pub mod prompt;
mod scan;
mod stream;

use std::sync::atomic::{AtomicU64, Ordering};

use crate::chat::ChatTemplate;
use crate::tokenizer::Tokenizer;

pub use stream::{CallWatch, ToolCallStream, ToolStreamEvent};

/// The markup a model family writes tool calls in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ToolFamily {
    Hermes,
    Llama3,
    Mistral,
    Generic,
}

impl ToolFamily {
    /// The family a model's chat template (and special tokens) write calls
    /// in. A template without tool support gets the default tool prompt,
    /// which asks for the Hermes form.
    pub fn detect(template: &ChatTemplate, tok: &Tokenizer) -> Self {
        let src = template.source();
        let has = |s: &str| src.contains(s) || tok.token_id(s).is_some();
        if src.contains("<tool_call>") {
            ToolFamily::Hermes
        } else if has("[TOOL_CALLS]") {
            ToolFamily::Mistral
        } else if has("<|python_tag|>") || src.contains("ipython") {
            ToolFamily::Llama3
        } else if prompt::template_supports_tools(template) {
            ToolFamily::Generic
        } else {
            ToolFamily::Hermes
        }
    }
}

/// One call the model asked for.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ToolCall {
    /// Unique per call (`call_…`), to match the tool's result to it.
    pub id: String,
    pub name: String,
    /// The arguments as a JSON text (an object, as the model wrote it).
    pub arguments_json: String,
}

/// A whole answer: its text without the call markup, and the calls.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ParsedOutput {
    pub content: String,
    pub tool_calls: Vec<ToolCall>,
}

/// A new call id, distinct within the process (`call_` and 24 hex digits).
pub fn new_call_id() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
    // The counter keeps ids distinct; the mixed clock keeps them from
    // repeating across runs.
    format!("call_{:016x}{:08x}", mix(seed ^ mix(n)), n as u32)
}

fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Parses a finished answer into content and tool calls.
pub fn parse_tool_calls(text: &str, family: ToolFamily) -> ParsedOutput {
    let (segments, _) = scan::scan(text, family, true);
    let has_calls = segments.iter().any(|s| matches!(s, scan::Segment::Call(_)));
    let mut out = ParsedOutput::default();
    for seg in segments {
        match seg {
            scan::Segment::Text(t) => {
                // Code fences that only wrapped the calls go with them.
                if !(has_calls && is_only_fences(&t)) {
                    out.content.push_str(&t);
                }
            }
            scan::Segment::Call(c) => {
                out.tool_calls.push(ToolCall { id: new_call_id(), name: c.name, arguments_json: c.arguments_json })
            }
        }
    }
    if has_calls {
        out.content = out.content.trim().to_string();
    }
    out
}

/// Drops calls identical to an earlier one (same name and arguments, as
/// JSON values): one answer asking for the same thing twice is a small
/// model repeating itself, never two requests.
///
/// ```
/// use infer_engine::tools::{dedupe_calls, ToolCall};
/// let call = |args: &str| ToolCall { id: "call_1".into(), name: "f".into(), arguments_json: args.into() };
/// let mut calls = vec![call("{\"a\": 1}"), call("{\"a\":1}"), call("{\"a\": 2}")];
/// dedupe_calls(&mut calls);
/// assert_eq!(calls.len(), 2);
/// ```
pub fn dedupe_calls(calls: &mut Vec<ToolCall>) {
    let mut seen = Vec::new();
    calls.retain(|c| {
        let key = call_key(c);
        let new = !seen.contains(&key);
        seen.push(key);
        new
    });
}

/// What makes two calls the same: the name and the arguments' value.
pub fn call_key(call: &ToolCall) -> (String, serde_json::Value) {
    let args = serde_json::from_str(&call.arguments_json).unwrap_or_else(|_| serde_json::Value::String(call.arguments_json.clone()));
    (call.name.clone(), args)
}

fn is_only_fences(t: &str) -> bool {
    t.lines().all(|l| {
        let l = l.trim();
        l.is_empty() || (l.starts_with("```") && l[3..].chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
    })
}

#[cfg(test)]
mod tests;
