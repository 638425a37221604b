//! The default tool prompt, for chat templates that do not render `tools`
//! themselves: the tool list and how to call goes into the system message,
//! earlier calls are written back as `<tool_call>` lines, and tool results
//! become user turns in `<tool_response>` tags (what Hermes-style models
//! are trained on, and what [`super::ToolFamily::Hermes`] parses).

use serde_json::{json, Value};

use crate::chat::ChatTemplate;

/// Whether the template renders `tools` itself.
pub fn template_supports_tools(template: &ChatTemplate) -> bool {
    template.source().contains("tools")
}

/// The system-prompt text that lists `tools` (OpenAI's
/// `{"type": "function", "function": {name, description, parameters}}`
/// entries) and asks for `<tool_call>` lines.
pub fn default_tool_prompt(tools: &[Value]) -> String {
    let mut s = String::from(
        "You may call functions to answer. The functions are described by these JSON schemas:\n<tools>\n",
    );
    for t in tools {
        s.push_str(&t.get("function").unwrap_or(t).to_string());
        s.push('\n');
    }
    s.push_str(
        "</tools>\nTo call functions, reply only with one line per call:\n\
         <tool_call>{\"name\": \"<function name>\", \"arguments\": {<arguments as JSON>}}</tool_call>\n\
         Each result comes back in <tool_response></tool_response>; then answer the user.",
    );
    s
}

/// A call of an assistant message as one `<tool_call>` line.
fn call_line(call: &Value) -> String {
    let f = call.get("function").unwrap_or(call);
    let name = f.get("name").cloned().unwrap_or(Value::Null);
    let args = match f.get("arguments") {
        Some(Value::String(s)) => serde_json::from_str(s).unwrap_or_else(|_| Value::String(s.clone())),
        Some(v) => v.clone(),
        None => json!({}),
    };
    format!("<tool_call>{{\"name\": {name}, \"arguments\": {args}}}</tool_call>")
}

fn text_of(m: &Value) -> String {
    match m.get("content") {
        Some(Value::String(s)) => s.clone(),
        // OpenAI content parts: keep the text ones.
        Some(Value::Array(parts)) => parts.iter().filter_map(|p| p.get("text").and_then(Value::as_str)).collect(),
        _ => String::new(),
    }
}

/// `messages` rewritten with only `system`/`user`/`assistant` roles and
/// string contents, the tools described in the system message.
pub fn messages_with_default_tool_prompt(messages: &[Value], tools: &[Value]) -> Vec<Value> {
    let mut out: Vec<Value> = Vec::new();
    let prompt = (!tools.is_empty()).then(|| default_tool_prompt(tools));
    let mut rest = messages;
    match (messages.first(), &prompt) {
        (Some(m), Some(p)) if m.get("role").and_then(Value::as_str) == Some("system") => {
            out.push(json!({"role": "system", "content": format!("{}\n\n{p}", text_of(m))}));
            rest = &messages[1..];
        }
        (_, Some(p)) => out.push(json!({"role": "system", "content": p})),
        _ => {}
    }
    for m in rest {
        let role = m.get("role").and_then(Value::as_str).unwrap_or("user");
        let (role, content) = match role {
            "tool" => ("user", format!("<tool_response>\n{}\n</tool_response>", text_of(m))),
            "assistant" => {
                let mut c = text_of(m);
                for call in m.get("tool_calls").and_then(Value::as_array).into_iter().flatten() {
                    if !c.is_empty() {
                        c.push('\n');
                    }
                    c.push_str(&call_line(call));
                }
                ("assistant", c)
            }
            other => (other, text_of(m)),
        };
        // Results of parallel calls go into one user turn.
        if let Some(last) = out.last_mut() {
            if role == "user" && last["role"] == "user" && m.get("role").and_then(Value::as_str) == Some("tool") {
                let joined = format!("{}\n{content}", last["content"].as_str().unwrap_or_default());
                last["content"] = Value::String(joined);
                continue;
            }
        }
        out.push(json!({"role": role, "content": content}));
    }
    out
}

/// Messages as Hugging Face templates expect them: a call's `arguments`
/// as an object (the OpenAI API carries them as a JSON string).
pub fn messages_for_template(messages: &[Value]) -> Vec<Value> {
    messages
        .iter()
        .map(|m| {
            let mut m = m.clone();
            if let Some(calls) = m.get_mut("tool_calls").and_then(Value::as_array_mut) {
                for call in calls {
                    let f = match call.get_mut("function") {
                        Some(f) => f,
                        None => call,
                    };
                    if let Some(Value::String(s)) = f.get("arguments") {
                        if let Ok(v) = serde_json::from_str::<Value>(s) {
                            f["arguments"] = v;
                        }
                    }
                }
            }
            if m.get("content").is_none_or(Value::is_null) {
                m["content"] = Value::String(String::new());
            }
            m
        })
        .collect()
}
