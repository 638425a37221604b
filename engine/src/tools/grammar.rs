//! Grammars of tool calls in each family's markup, for `tool_choice:
//! "required"` or a named function: sampling under one of them always gives
//! calls that [`super::parse_tool_calls`] reads back.
//!
//! Each call is JSON matching `{"name": <const>, "arguments": <the tool's
//! parameters>}` (`"parameters"` for Llama 3); parameters that list
//! `properties` allow no others unless they say `additionalProperties`. The grammars are Lark text
//! (llguidance's dialect) for [`crate::Constraint::lark_with_vocab`], so a
//! JSON answer can be offered beside the calls.
//!
//! ```
//! use infer_engine::tools::{grammar::tool_call_grammar, ToolFamily};
//! let tools = [serde_json::json!({"type": "function", "function": {"name": "now", "parameters": {"type": "object"}}})];
//! let lark = tool_call_grammar(ToolFamily::Hermes, &tools, None, false, |_| None).unwrap();
//! assert!(lark.contains("\"<tool_call>\""));
//! ```

use serde_json::{json, Value};

use super::ToolFamily;
use crate::constraint::{close_object_schemas, compact_schema_json};
use crate::{EngineError, Result};

/// The name of an OpenAI tool entry (`{"type": "function", "function": {"name", …}}`).
pub fn tool_name(tool: &Value) -> Option<&str> {
    tool.get("function").unwrap_or(tool).get("name").and_then(Value::as_str)
}

/// The JSON schema of one call of `tool` in `family`'s key names.
fn call_schema(tool: &Value, family: ToolFamily) -> Result<Value> {
    let f = tool.get("function").unwrap_or(tool);
    let name = tool_name(tool).ok_or_else(|| EngineError::Schema("a tool has no function.name".into()))?;
    let mut params = match f.get("parameters") {
        None | Some(Value::Null) => json!({"type": "object"}),
        Some(p @ Value::Object(_)) => p.clone(),
        Some(_) => return Err(EngineError::Schema(format!("the parameters of tool `{name}` are not a JSON schema object"))),
    };
    // Only the declared arguments: small models otherwise pad a call with
    // keys copied from the schema.
    let strict = f.get("strict").and_then(Value::as_bool).unwrap_or(false);
    close_object_schemas(&mut params, strict);
    let key = if family == ToolFamily::Llama3 { "parameters" } else { "arguments" };
    Ok(json!({
        "type": "object",
        "properties": {"name": {"const": name}, key: params},
        "required": ["name", key],
        "additionalProperties": false,
    }))
}

/// A Lark grammar whose sentences are tool calls in `family`'s markup: of
/// `only` (a tool name) or of any of `tools`; several calls when `parallel`.
/// `special(marker)` gives the id of a marker that is a special token (such
/// markers are matched as that token, not as text). Its start rule is
/// `start`, the calls alone are the rule `tool_calls` (so a caller can
/// append `start: tool_calls | …` alternatives by editing the first line).
pub fn tool_call_grammar(
    family: ToolFamily,
    tools: &[Value],
    only: Option<&str>,
    parallel: bool,
    special: impl Fn(&str) -> Option<u32>,
) -> Result<String> {
    let chosen: Vec<&Value> = tools.iter().filter(|t| only.is_none_or(|n| tool_name(t) == Some(n))).collect();
    if chosen.is_empty() {
        return Err(EngineError::Schema(match only {
            Some(n) => format!("no tool is named `{n}`"),
            None => "there are no tools to call".into(),
        }));
    }
    let schemas = chosen.iter().map(|t| call_schema(t, family)).collect::<Result<Vec<_>>>()?;
    let one = if schemas.len() == 1 { schemas[0].clone() } else { json!({"anyOf": schemas}) };
    let literal = |m: &str| special(m).map_or_else(|| format!("{m:?}"), |id| format!("<[{id}]>"));
    let (body, calls) = match family {
        ToolFamily::Hermes => {
            let call = format!("{} call_json {}", literal("<tool_call>"), literal("</tool_call>"));
            let calls = if parallel { "call (\"\\n\" call)*" } else { "call" };
            (format!("call: {call}\ncall_json: %json {}\n", compact_schema_json(&one, false)), calls.to_string())
        }
        ToolFamily::Mistral => {
            let list = json!({"type": "array", "items": one, "minItems": 1, "maxItems": if parallel { Value::Null } else { json!(1) }});
            let list = strip_nulls(list);
            (format!("call_list: %json {}\n", compact_schema_json(&list, false)), format!("{} call_list", literal("[TOOL_CALLS]")))
        }
        ToolFamily::Llama3 | ToolFamily::Generic => {
            // One object, or an array of them for several.
            let form = if parallel { json!({"type": "array", "items": one, "minItems": 1}) } else { one };
            (format!("call_json: %json {}\n", compact_schema_json(&form, false)), "call_json".to_string())
        }
    };
    Ok(format!("start: tool_calls\ntool_calls: {calls}\n{body}"))
}

fn strip_nulls(mut v: Value) -> Value {
    if let Value::Object(m) = &mut v {
        m.retain(|_, x| !x.is_null());
    }
    v
}

/// `grammar` (from [`tool_call_grammar`]) with a second way to answer: JSON
/// matching `schema` (`response_format` beside `tool_choice: "auto"`;
/// `strict` as in [`crate::Constraint::json_schema_strict_with_vocab`]).
pub fn calls_or_json(grammar: &str, schema: &Value, strict: bool) -> String {
    let rest = grammar.strip_prefix("start: tool_calls\n").unwrap_or(grammar);
    format!("start: tool_calls | answer_json\nanswer_json: %json {}\n{rest}", compact_schema_json(schema, strict))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::constraint::{Constraint, ConstraintVocab};
    use crate::tools::parse_tool_calls;

    /// Every byte as a token, then an end token.
    fn byte_vocab() -> Arc<ConstraintVocab> {
        let mut tokens: Vec<Vec<u8>> = (0..=255u8).map(|b| vec![b]).collect();
        tokens.push(b"<eos>".to_vec());
        Arc::new(ConstraintVocab::new(tokens, &[], &[256]).unwrap())
    }

    /// Whether the grammar takes `text` whole.
    fn accepts(c: &Constraint, text: &str) -> bool {
        let mut s = c.start();
        text.bytes().all(|b| s.accept(u32::from(b)).is_ok()) && s.is_accepting()
    }

    fn tools() -> Vec<Value> {
        let weather = json!({"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]});
        vec![
            json!({"type": "function", "function": {"name": "weather", "parameters": weather}}),
            json!({"type": "function", "function": {"name": "now"}}),
        ]
    }

    #[test]
    fn hermes_calls_match_and_parse_back() {
        let lark = tool_call_grammar(ToolFamily::Hermes, &tools(), None, true, |_| None).unwrap();
        let c = Constraint::lark_with_vocab(&lark, byte_vocab()).unwrap();
        let two = "<tool_call>{\"name\": \"weather\", \"arguments\": {\"city\": \"Oslo\"}}</tool_call>\n<tool_call>{\"name\": \"now\", \"arguments\": {}}</tool_call>";
        assert!(accepts(&c, two));
        let parsed = parse_tool_calls(two, ToolFamily::Hermes);
        assert_eq!(parsed.tool_calls.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(), ["weather", "now"]);
        // Unknown tool, missing required argument, undeclared argument, text around the call.
        assert!(!accepts(&c, "<tool_call>{\"name\": \"rain\", \"arguments\": {}}</tool_call>"));
        assert!(!accepts(&c, "<tool_call>{\"name\": \"weather\", \"arguments\": {}}</tool_call>"));
        assert!(!accepts(&c, "<tool_call>{\"name\": \"weather\", \"arguments\": {\"city\": \"Oslo\", \"when\": 1}}</tool_call>"));
        assert!(!accepts(&c, "Sure: <tool_call>{\"name\": \"now\", \"arguments\": {}}</tool_call>"));
    }

    #[test]
    fn one_call_unless_parallel_and_only_the_named_tool() {
        let lark = tool_call_grammar(ToolFamily::Hermes, &tools(), Some("now"), false, |_| None).unwrap();
        let c = Constraint::lark_with_vocab(&lark, byte_vocab()).unwrap();
        let now = "<tool_call>{\"name\": \"now\", \"arguments\": {}}</tool_call>";
        assert!(accepts(&c, now));
        assert!(!accepts(&c, &format!("{now}\n{now}")));
        assert!(!accepts(&c, "<tool_call>{\"name\": \"weather\", \"arguments\": {\"city\": \"Oslo\"}}</tool_call>"));
        let err = tool_call_grammar(ToolFamily::Hermes, &tools(), Some("rain"), false, |_| None).unwrap_err();
        assert!(err.to_string().contains("no tool is named `rain`"), "{err}");
    }

    #[test]
    fn json_families_and_special_markers() {
        let lark = tool_call_grammar(ToolFamily::Llama3, &tools(), None, false, |_| None).unwrap();
        let c = Constraint::lark_with_vocab(&lark, byte_vocab()).unwrap();
        let call = "{\"name\": \"weather\", \"parameters\": {\"city\": \"Oslo\"}}";
        assert!(accepts(&c, call));
        assert_eq!(parse_tool_calls(call, ToolFamily::Llama3).tool_calls[0].name, "weather");
        let lark = tool_call_grammar(ToolFamily::Generic, &tools(), None, true, |_| None).unwrap();
        let c = Constraint::lark_with_vocab(&lark, byte_vocab()).unwrap();
        let calls = "[{\"name\": \"now\", \"arguments\": {}}, {\"name\": \"now\", \"arguments\": {}}]";
        assert!(accepts(&c, calls));
        assert_eq!(parse_tool_calls(calls, ToolFamily::Generic).tool_calls.len(), 2);
        let lark = tool_call_grammar(ToolFamily::Mistral, &tools(), None, true, |m| (m == "[TOOL_CALLS]").then_some(9)).unwrap();
        assert!(lark.contains("<[9]> call_list"), "{lark}");
    }

    #[test]
    fn calls_or_a_json_answer() {
        let lark = tool_call_grammar(ToolFamily::Hermes, &tools(), None, false, |_| None).unwrap();
        let schema = json!({"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]});
        let c = Constraint::lark_with_vocab(&calls_or_json(&lark, &schema, false), byte_vocab()).unwrap();
        assert!(accepts(&c, "{\"ok\": true}"));
        assert!(accepts(&c, "<tool_call>{\"name\": \"now\", \"arguments\": {}}</tool_call>"));
        assert!(!accepts(&c, "{\"ok\": 1}"));
    }
}
