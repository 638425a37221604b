//! Splits model output into plain text and tool calls, per family. Shared by
//! the whole-text parser and the streaming one: with `at_end = false` the
//! scan stops before anything that may still become a call (a partial
//! marker, an unfinished call), so what it returns never changes as more
//! text arrives.

use serde_json::Value;

use super::ToolFamily;

/// A call as written by the model, before it gets an id.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RawCall {
    pub name: String,
    pub arguments_json: String,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Segment {
    Text(String),
    Call(RawCall),
}

const HERMES_OPEN: &str = "<tool_call>";
const HERMES_CLOSE: &str = "</tool_call>";
const PYTHON_TAG: &str = "<|python_tag|>";
const MISTRAL_CALLS: &str = "[TOOL_CALLS]";
const MISTRAL_ARGS: &str = "[ARGS]";

/// The segments of `text`, and how many bytes of it they cover (all of it
/// when `at_end`).
pub(crate) fn scan(text: &str, family: ToolFamily, at_end: bool) -> (Vec<Segment>, usize) {
    let mut out = Vec::new();
    // An answer that starts with JSON (or a fenced block) may be a bare call
    // in any family.
    let start = text.len() - text.trim_start().len();
    let mut pos = 0;
    match leading_json_calls(&text[start..], at_end) {
        Lead::Calls(calls, used) => {
            out.extend(calls.into_iter().map(Segment::Call));
            pos = start + used;
        }
        Lead::Undecided => return (out, 0),
        Lead::NotCalls => {}
    }
    let open = match family {
        ToolFamily::Hermes => HERMES_OPEN,
        ToolFamily::Llama3 => PYTHON_TAG,
        ToolFamily::Mistral => MISTRAL_CALLS,
        ToolFamily::Generic => {
            push_text(&mut out, &text[pos..]);
            return (out, text.len());
        }
    };
    loop {
        let rest = &text[pos..];
        let Some(at) = rest.find(open) else {
            // Hold back a tail that may be the start of the marker.
            let hold = if at_end { 0 } else { partial_suffix(rest, open) };
            push_text(&mut out, &rest[..rest.len() - hold]);
            return (out, text.len() - hold);
        };
        push_text(&mut out, &rest[..at]);
        let body_start = pos + at + open.len();
        let body = &text[body_start..];
        let parsed = match family {
            ToolFamily::Hermes => hermes_body(body, at_end),
            ToolFamily::Llama3 => llama_body(body, at_end),
            _ => mistral_body(body, at_end),
        };
        match parsed {
            Body::Calls(calls, used) => {
                out.extend(calls.into_iter().map(Segment::Call));
                pos = body_start + used;
            }
            Body::Incomplete => return (out, pos + at),
            // Not a call after all: the marker and body stay as text.
            Body::Invalid(used) => {
                push_text(&mut out, &text[pos + at..body_start + used]);
                pos = body_start + used;
            }
        }
    }
}

fn push_text(out: &mut Vec<Segment>, s: &str) {
    if s.is_empty() {
        return;
    }
    if let Some(Segment::Text(t)) = out.last_mut() {
        t.push_str(s);
    } else {
        out.push(Segment::Text(s.to_string()));
    }
}

/// Length of the longest suffix of `s` that is a proper prefix of `marker`.
fn partial_suffix(s: &str, marker: &str) -> usize {
    (1..marker.len().min(s.len() + 1))
        .rev()
        .find(|&n| s.is_char_boundary(s.len() - n) && marker.as_bytes().starts_with(&s.as_bytes()[s.len() - n..]))
        .unwrap_or(0)
}

enum Body {
    /// Calls and the bytes of the body they used.
    Calls(Vec<RawCall>, usize),
    /// May still become calls when more text comes.
    Incomplete,
    /// Not calls; the bytes to keep as text.
    Invalid(usize),
}

/// JSON values one after another (separated by whitespace, `,` or `;`).
enum Values {
    /// The values and the bytes used.
    Done(Vec<Value>, usize),
    /// The last value is cut off (or one may still follow).
    Truncated,
    Invalid,
}

/// `open_ended`: more text may follow `s`, so a value may still start after it.
fn json_values(s: &str, open_ended: bool) -> Values {
    let mut values = Vec::new();
    let mut pos = 0;
    loop {
        let skip = s[pos..].find(|c: char| !(c.is_whitespace() || c == ';' || c == ',')).unwrap_or(s.len() - pos);
        let next = pos + skip;
        if next == s.len() && open_ended && !values.is_empty() {
            return Values::Truncated;
        }
        if !s[next..].starts_with(['{', '[']) {
            return if values.is_empty() { Values::Invalid } else { Values::Done(values, pos) };
        }
        let mut it = serde_json::Deserializer::from_str(&s[next..]).into_iter::<Value>();
        match it.next() {
            Some(Ok(v)) => {
                values.push(v);
                pos = next + it.byte_offset();
            }
            Some(Err(e)) if e.is_eof() => return Values::Truncated,
            _ => return if values.is_empty() { Values::Invalid } else { Values::Done(values, pos) },
        }
    }
}

/// Calls in a JSON value: `{"name", "arguments"|"parameters"}`, OpenAI's
/// `{"function": {…}}`, `{"tool_calls": […]}`, or an array of those.
fn calls_in(v: &Value) -> Option<Vec<RawCall>> {
    match v {
        Value::Array(items) if !items.is_empty() => {
            let mut out = Vec::new();
            for item in items {
                out.extend(calls_in(item)?);
            }
            Some(out)
        }
        Value::Object(map) => {
            if let Some(calls) = map.get("tool_calls") {
                return calls_in(calls);
            }
            if let Some(f @ Value::Object(_)) = map.get("function") {
                return calls_in(f);
            }
            let name = map.get("name")?.as_str()?;
            let known = ["name", "arguments", "parameters", "id", "type"];
            if name.is_empty() || map.keys().any(|k| !known.contains(&k.as_str())) {
                return None;
            }
            let args = map.get("arguments").or_else(|| map.get("parameters"));
            let arguments_json = match args {
                None | Some(Value::Null) => "{}".to_string(),
                // Some models write the arguments as a JSON string, as the API does.
                Some(Value::String(s)) if serde_json::from_str::<Value>(s).is_ok() => s.clone(),
                Some(other) => other.to_string(),
            };
            Some(vec![RawCall { name: name.to_string(), arguments_json }])
        }
        _ => None,
    }
}

fn calls_in_all(values: &[Value]) -> Option<Vec<RawCall>> {
    let mut out = Vec::new();
    for v in values {
        out.extend(calls_in(v)?);
    }
    Some(out)
}

enum Lead {
    Calls(Vec<RawCall>, usize),
    Undecided,
    NotCalls,
}

/// Calls that make up the start of the answer: bare JSON, or JSON in a
/// ``` fence, possibly several in a row.
fn leading_json_calls(s: &str, at_end: bool) -> Lead {
    if !at_end && s.len() < 3 && "```".starts_with(s) {
        return Lead::Undecided;
    }
    let (inner, fence) = match s.strip_prefix("```") {
        Some(after) => {
            let Some(nl) = after.find('\n') else {
                return if at_end { Lead::NotCalls } else { Lead::Undecided };
            };
            let lang = after[..nl].trim();
            if !["", "json", "tool_call", "tool_code"].contains(&lang) {
                return Lead::NotCalls;
            }
            (&after[nl + 1..], 3 + nl + 1)
        }
        None => (s, 0),
    };
    if inner.trim().is_empty() && !at_end {
        return Lead::Undecided;
    }
    let (values, used) = match json_values(inner, !at_end) {
        Values::Done(v, used) => (v, used),
        Values::Truncated if !at_end => return Lead::Undecided,
        _ => return Lead::NotCalls,
    };
    let Some(calls) = calls_in_all(&values) else { return Lead::NotCalls };
    let mut used = fence + used;
    if fence > 0 {
        let after = &s[used..];
        let trimmed = after.trim_start();
        match trimmed.strip_prefix("```") {
            Some(_) => used += after.len() - trimmed.len() + 3,
            None if !at_end && "```".starts_with(trimmed) => return Lead::Undecided,
            None => {}
        }
    }
    Lead::Calls(calls, used)
}

/// After `<tool_call>`: JSON call(s), then `</tool_call>`.
fn hermes_body(body: &str, at_end: bool) -> Body {
    let close = body.find(HERMES_CLOSE);
    let inner = close.map_or(body, |c| &body[..c]);
    let used = close.map_or(body.len(), |c| c + HERMES_CLOSE.len());
    match json_values(inner, close.is_none() && !at_end) {
        Values::Done(values, n) if inner[n..].trim().is_empty() => match calls_in_all(&values) {
            // A missing close tag is forgiven once the output has ended.
            Some(calls) if close.is_some() || at_end => Body::Calls(calls, used),
            Some(_) => Body::Incomplete,
            None => Body::Invalid(used),
        },
        _ if close.is_none() && !at_end => Body::Incomplete,
        _ => Body::Invalid(used),
    }
}

/// After `<|python_tag|>`: JSON call(s), or `name.call(key=value, …)`.
fn llama_body(body: &str, at_end: bool) -> Body {
    match json_values(body, !at_end) {
        Values::Done(values, n) => match calls_in_all(&values) {
            Some(calls) => Body::Calls(calls, n),
            None => Body::Invalid(n),
        },
        Values::Truncated if !at_end => Body::Incomplete,
        Values::Truncated => Body::Invalid(body.len()),
        Values::Invalid => {
            let end = body.find('\n').unwrap_or(body.len());
            if end == body.len() && !at_end {
                return Body::Incomplete;
            }
            match python_call(body[..end].trim()) {
                Some(call) => Body::Calls(vec![call], end),
                None => Body::Invalid(end),
            }
        }
    }
}

/// After `[TOOL_CALLS]`: a JSON array of calls, or `name[ARGS]{…}`.
fn mistral_body(body: &str, at_end: bool) -> Body {
    let trimmed = body.trim_start();
    let lead = body.len() - trimmed.len();
    if let Some(args_at) = trimmed.find(MISTRAL_ARGS).filter(|_| !trimmed.starts_with(['[', '{'])) {
        let name = trimmed[..args_at].trim();
        let args = &trimmed[args_at + MISTRAL_ARGS.len()..];
        let mut it = serde_json::Deserializer::from_str(args).into_iter::<Value>();
        return match it.next() {
            Some(Ok(v)) if !name.is_empty() => {
                let used = lead + args_at + MISTRAL_ARGS.len() + it.byte_offset();
                Body::Calls(vec![RawCall { name: name.to_string(), arguments_json: v.to_string() }], used)
            }
            Some(Err(e)) if e.is_eof() && !at_end => Body::Incomplete,
            None if !at_end => Body::Incomplete,
            _ => Body::Invalid(body.len()),
        };
    }
    match json_values(body, !at_end) {
        Values::Done(values, n) => match calls_in_all(&values) {
            Some(calls) => Body::Calls(calls, n),
            None => Body::Invalid(n),
        },
        Values::Truncated | Values::Invalid if !at_end => Body::Incomplete,
        _ => Body::Invalid(body.len()),
    }
}

/// `name(a="x", b=2)` or `name.call(…)`, Llama's built-in tool syntax.
fn python_call(s: &str) -> Option<RawCall> {
    let open = s.find('(')?;
    let inner = s.strip_suffix(')')?.get(open + 1..)?;
    let name = s[..open].trim().trim_end_matches(".call");
    if name.is_empty() || !name.chars().all(|c| c.is_alphanumeric() || c == '_' || c == '.') {
        return None;
    }
    let mut args = serde_json::Map::new();
    let mut rest = inner.trim();
    while !rest.is_empty() {
        let eq = rest.find('=')?;
        let key = rest[..eq].trim();
        let (value, after) = python_value(rest[eq + 1..].trim_start())?;
        args.insert(key.to_string(), value);
        rest = after.trim_start().strip_prefix(',').unwrap_or(after).trim_start();
    }
    Some(RawCall { name: name.to_string(), arguments_json: Value::Object(args).to_string() })
}

/// One Python literal (string, number, True/False/None) and what follows it.
fn python_value(s: &str) -> Option<(Value, &str)> {
    if let Some(q) = s.chars().next().filter(|&c| c == '"' || c == '\'') {
        let mut out = String::new();
        let mut chars = s[1..].char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => out.push(chars.next()?.1),
                c if c == q => return Some((Value::String(out), &s[1 + i + 1..])),
                c => out.push(c),
            }
        }
        return None;
    }
    let end = s.find(',').unwrap_or(s.len());
    let word = s[..end].trim();
    let v = match word {
        "True" => Value::Bool(true),
        "False" => Value::Bool(false),
        "None" => Value::Null,
        _ => serde_json::from_str::<serde_json::Number>(word).ok().map(Value::Number)?,
    };
    Some((v, &s[end..]))
}
