//! Tool calls parsed while the answer streams. Text is released as soon as
//! it cannot be the start of a call; call markup is never released as
//! content. A call is released whole once its closing markup (or the end of
//! its JSON) arrives.

use super::scan::{scan, Segment};
use super::{new_call_id, ToolCall, ToolFamily};

/// What a piece of streamed output turned out to be.
#[derive(Debug, Clone, PartialEq)]
pub enum ToolStreamEvent {
    /// Plain text for the answer's content.
    Content(String),
    /// A complete call; `index` counts calls from 0 in this answer (what
    /// OpenAI's streamed `tool_calls[].index` carries).
    ToolCall { index: usize, call: ToolCall },
}

/// An incremental parser for one answer.
///
/// ```
/// use infer_engine::tools::{ToolCallStream, ToolFamily, ToolStreamEvent};
/// let mut s = ToolCallStream::new(ToolFamily::Hermes);
/// let mut events = Vec::new();
/// for piece in ["Let me check.<tool", "_call>{\"name\": \"weather\", ", "\"arguments\": {\"city\": \"Oslo\"}}</tool_call>"] {
///     events.extend(s.push(piece));
/// }
/// events.extend(s.finish());
/// assert_eq!(events[0], ToolStreamEvent::Content("Let me check.".into()));
/// assert!(matches!(&events[1], ToolStreamEvent::ToolCall { index: 0, call } if call.name == "weather"));
/// ```
#[derive(Debug, Clone)]
pub struct ToolCallStream {
    family: ToolFamily,
    text: String,
    /// Segments released whole.
    done: usize,
    /// Bytes released of the text segment at `done`.
    partial: usize,
    calls: usize,
}

impl ToolCallStream {
    pub fn new(family: ToolFamily) -> Self {
        ToolCallStream { family, text: String::new(), done: 0, partial: 0, calls: 0 }
    }

    /// Adds generated text; returns what can be released now.
    pub fn push(&mut self, delta: &str) -> Vec<ToolStreamEvent> {
        self.text.push_str(delta);
        self.release(false)
    }

    /// The answer ended: releases the rest (an unfinished call as text).
    pub fn finish(&mut self) -> Vec<ToolStreamEvent> {
        self.release(true)
    }

    /// Calls released so far.
    pub fn n_calls(&self) -> usize {
        self.calls
    }

    fn release(&mut self, at_end: bool) -> Vec<ToolStreamEvent> {
        let (segments, _) = scan(&self.text, self.family, at_end);
        let mut events = Vec::new();
        let n = segments.len();
        for (i, seg) in segments.into_iter().enumerate().skip(self.done) {
            match seg {
                Segment::Text(t) => {
                    if t.len() > self.partial {
                        events.push(ToolStreamEvent::Content(t[self.partial..].to_string()));
                    }
                    self.partial = t.len();
                    if i + 1 < n {
                        self.done += 1;
                        self.partial = 0;
                    }
                }
                Segment::Call(c) => {
                    let call = ToolCall { id: new_call_id(), name: c.name, arguments_json: c.arguments_json };
                    events.push(ToolStreamEvent::ToolCall { index: self.calls, call });
                    self.calls += 1;
                    self.done += 1;
                }
            }
        }
        events
    }
}

/// Ends an answer once its calls are made: after the first complete call
/// when one is wanted, or when a call repeats one made before (a small
/// model's loop: the repeat is dropped by [`super::dedupe_calls`]) when
/// several are. Set as [`crate::scheduler::Request::end_on_calls`].
///
/// ```
/// use infer_engine::tools::{CallWatch, ToolFamily};
/// let call = "<tool_call>{\"name\": \"now\", \"arguments\": {}}</tool_call>";
/// let mut one = CallWatch::new(ToolFamily::Hermes, false);
/// assert!(!one.push("Sure. "));
/// assert!(one.push(call));
/// let mut several = CallWatch::new(ToolFamily::Hermes, true);
/// assert!(!several.push(call));
/// assert!(several.push(&format!("\n{call}")));
/// ```
#[derive(Debug, Clone)]
pub struct CallWatch {
    stream: ToolCallStream,
    parallel: bool,
    seen: Vec<(String, serde_json::Value)>,
}

impl CallWatch {
    pub fn new(family: ToolFamily, parallel: bool) -> Self {
        CallWatch { stream: ToolCallStream::new(family), parallel, seen: Vec::new() }
    }

    /// Takes generated text; true when the answer should end here.
    pub fn push(&mut self, delta: &str) -> bool {
        let mut end = false;
        for e in self.stream.push(delta) {
            let ToolStreamEvent::ToolCall { call, .. } = e else { continue };
            let key = super::call_key(&call);
            end |= !self.parallel || self.seen.contains(&key);
            self.seen.push(key);
        }
        end
    }
}
