//! Chat's `tools`, `tool_choice`, `parallel_tool_calls` and
//! `response_format` (plus llama-server's `grammar`): read and checked here,
//! turned into a constraint on the engine request and a family to parse
//! the answer's calls with, and the calls shaped as OpenAI sends them.
//!
//! `tool_choice: "required"` or a named function samples under a grammar of
//! the family's call markup ([`tool_call_grammar`]), so the calls always
//! parse; `"auto"` lets the model write freely and parses what it wrote;
//! `"none"` shows the model no tools.

use std::sync::Arc;

use infer_engine::tools::grammar::{calls_or_json, tool_call_grammar, tool_name};
use infer_engine::tools::{ToolCall, ToolFamily};
use infer_engine::constraint::ConstraintVocab;
use infer_engine::{Constraint, EngineError, Model};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::limits::{self, Limits};
use crate::{AppState, ServerError};

#[derive(Debug, Deserialize)]
struct FunctionDef {
    name: String,
    #[serde(default)]
    parameters: Option<Value>,
}

#[derive(Debug, Deserialize)]
struct ToolDef {
    #[serde(rename = "type")]
    kind: String,
    function: FunctionDef,
}

/// `json_schema.name` is not read. Objects allow no keys outside their
/// `properties` unless `additionalProperties` says so; with `strict`, never.
#[derive(Debug, Deserialize)]
struct JsonSchemaFormat {
    schema: Option<Value>,
    #[serde(default)]
    strict: Option<bool>,
}

#[derive(Debug, Deserialize)]
struct ResponseFormatField {
    #[serde(rename = "type")]
    kind: String,
    json_schema: Option<JsonSchemaFormat>,
}

/// The tool and format fields of a chat request.
#[derive(Debug, Deserialize)]
pub struct ToolFields {
    #[serde(default)]
    tools: Option<Vec<Value>>,
    #[serde(default)]
    tool_choice: Option<Value>,
    #[serde(default)]
    parallel_tool_calls: Option<bool>,
    #[serde(default)]
    response_format: Option<Value>,
    /// llama-server's GBNF `grammar`.
    #[serde(default)]
    grammar: Option<String>,
}

/// Which calls the model may or must make.
#[derive(Debug, Clone, PartialEq)]
enum ToolChoice {
    None,
    Auto,
    Required,
    Named(String),
}

/// What the answer must look like, apart from calls.
#[derive(Debug, Clone)]
enum Format {
    Free,
    JsonObject,
    /// The schema, and whether it is `strict`.
    JsonSchema(Value, bool),
    Gbnf(String),
}

/// A chat request's tools and output form, checked.
#[derive(Debug, Clone)]
pub struct ToolPlan {
    /// The tools shown to the model (empty with `tool_choice: "none"`).
    pub tools: Vec<Value>,
    choice: ToolChoice,
    parallel: bool,
    format: Format,
}

impl ToolFields {
    /// Checks every field against the others and the sizes against
    /// `limits`; errors name the field.
    pub fn plan(self, limits: &Limits) -> Result<ToolPlan, ServerError> {
        let size = |param: &str, n_bytes: usize| {
            if n_bytes > limits.max_grammar_bytes {
                return Err(limits::over(param, format!("{n_bytes} bytes"), format!("{} bytes", limits.max_grammar_bytes)));
            }
            Ok(())
        };
        let json_len = |v: &Value| serde_json::to_vec(v).map_or(usize::MAX, |b| b.len());
        let tools = self.tools.unwrap_or_default();
        limits::count("tools", tools.len(), "tools", limits.max_tools)?;
        size("tools", tools.iter().map(json_len).sum::<usize>())?;
        if let Some(g) = &self.grammar {
            size("grammar", g.len())?;
        }
        if let Some(rf) = &self.response_format {
            size("response_format", json_len(rf))?;
        }
        for (i, t) in tools.iter().enumerate() {
            let def: ToolDef = crate::params::fields(t).map_err(|e| prefix_param(e, &format!("tools[{i}]")))?;
            if def.kind != "function" {
                return Err(ServerError::bad(&format!("tools[{i}].type"), format!("tool type \"{}\" is not supported (only \"function\")", def.kind)));
            }
            if def.function.name.is_empty() {
                return Err(ServerError::bad(&format!("tools[{i}].function.name"), "a function needs a name"));
            }
            if def.function.parameters.as_ref().is_some_and(|p| !p.is_object() && !p.is_null()) {
                return Err(ServerError::bad(&format!("tools[{i}].function.parameters"), "parameters must be a JSON schema object"));
            }
            if tools[..i].iter().any(|u| tool_name(u) == Some(&def.function.name)) {
                return Err(ServerError::bad(&format!("tools[{i}].function.name"), format!("two tools are named \"{}\"", def.function.name)));
            }
        }
        let choice = match &self.tool_choice {
            None | Some(Value::Null) => {
                if tools.is_empty() {
                    ToolChoice::None
                } else {
                    ToolChoice::Auto
                }
            }
            Some(Value::String(s)) => match s.as_str() {
                "none" => ToolChoice::None,
                "auto" => ToolChoice::Auto,
                "required" => ToolChoice::Required,
                other => {
                    return Err(ServerError::bad("tool_choice", format!("tool_choice \"{other}\" is not one of \"none\", \"auto\", \"required\" or a function")))
                }
            },
            Some(v) => {
                let name = v
                    .get("function")
                    .and_then(|f| f.get("name"))
                    .and_then(Value::as_str)
                    .filter(|_| v.get("type").and_then(Value::as_str) == Some("function"))
                    .ok_or_else(|| ServerError::bad("tool_choice", "tool_choice must be a string or {\"type\": \"function\", \"function\": {\"name\": …}}"))?;
                ToolChoice::Named(name.to_string())
            }
        };
        match &choice {
            ToolChoice::Required | ToolChoice::Auto if tools.is_empty() => {
                return Err(ServerError::bad("tool_choice", "tool_choice needs a non-empty \"tools\" list"));
            }
            ToolChoice::Named(n) if !tools.iter().any(|t| tool_name(t) == Some(n)) => {
                return Err(ServerError::bad("tool_choice", format!("tool_choice names \"{n}\", which is not in \"tools\"")));
            }
            _ => {}
        }
        let format = match (self.response_format, self.grammar) {
            (Some(_), Some(_)) => return Err(ServerError::bad("grammar", "give either response_format or grammar, not both")),
            (None, Some(g)) => Format::Gbnf(g),
            (None, None) | (Some(Value::Null), None) => Format::Free,
            (Some(rf), None) => response_format(&rf)?,
        };
        let tools = if choice == ToolChoice::None { Vec::new() } else { tools };
        // One call unless asked for more, as llama-server does: a small model
        // given the choice repeats its call until max_tokens.
        Ok(ToolPlan { tools, choice, parallel: self.parallel_tool_calls.unwrap_or(false), format })
    }
}

fn prefix_param(e: ServerError, prefix: &str) -> ServerError {
    match e {
        ServerError::BadRequest { message, param, code } => {
            let param = Some(match param.as_deref() {
                None | Some("") | Some(".") => prefix.to_string(),
                Some(p) => format!("{prefix}.{p}"),
            });
            ServerError::BadRequest { message, param, code }
        }
        e => e,
    }
}

fn response_format(rf: &Value) -> Result<Format, ServerError> {
    let f: ResponseFormatField = crate::params::fields(rf).map_err(|e| prefix_param(e, "response_format"))?;
    match f.kind.as_str() {
        "text" => Ok(Format::Free),
        "json_object" => Ok(Format::JsonObject),
        "json_schema" => {
            let missing = || ServerError::bad("response_format", "response_format json_schema needs \"json_schema\": {\"schema\": …}");
            let format = f.json_schema.ok_or_else(missing)?;
            let schema = format.schema.ok_or_else(missing)?;
            Ok(Format::JsonSchema(schema, format.strict.unwrap_or(false)))
        }
        other => Err(ServerError::bad("response_format", format!("response_format type \"{other}\" is not one of \"text\", \"json_object\", \"json_schema\""))),
    }
}

impl ToolPlan {
    /// Whether the prompt goes through the tool-aware template path.
    pub fn has_tools(&self) -> bool {
        !self.tools.is_empty()
    }

    /// The family the answer's calls are parsed in; None when calls are
    /// not looked for.
    pub fn family(&self, model: &Model) -> Option<ToolFamily> {
        (self.choice != ToolChoice::None).then(|| ToolFamily::detect(model.chat_template(), model.tokenizer()))
    }

    /// The answer is sampled as calls only (`required` or a named function).
    pub fn calls_forced(&self) -> bool {
        matches!(self.choice, ToolChoice::Required | ToolChoice::Named(_))
    }

    /// Several calls may be returned.
    pub fn parallel(&self) -> bool {
        self.parallel
    }

    /// Whether sampling needs a grammar.
    fn needs_constraint(&self) -> bool {
        matches!(self.choice, ToolChoice::Required | ToolChoice::Named(_)) || !matches!(self.format, Format::Free)
    }

    /// The field a compile error or timeout is blamed on.
    fn compile_param(&self) -> &'static str {
        match self.format {
            Format::Gbnf(_) => "grammar",
            Format::JsonObject | Format::JsonSchema(..) => "response_format",
            Format::Free => "tools",
        }
    }

    /// The constraint the request samples under, if any, compiled on a
    /// blocking thread within `limits.compile_timeout` (a 400 past it).
    pub async fn constraint(&self, state: &Arc<AppState>) -> Result<Option<Constraint>, ServerError> {
        if !self.needs_constraint() {
            return Ok(None);
        }
        let joined = |e: tokio::task::JoinError| ServerError::Engine(EngineError::Constraint(format!("compiling the grammar: {e}")));
        // The model's constraint vocabulary is built once, on first use
        // (seconds on a large vocabulary): not the request's compile time.
        let s = state.clone();
        let vocab = tokio::task::spawn_blocking(move || s.engine()?.constraint_vocab().map_err(ServerError::from)).await.map_err(joined)??;
        let permit = state.compiles.clone().acquire_owned().await.map_err(|e| ServerError::Engine(EngineError::Constraint(e.to_string())))?;
        let (s, plan) = (state.clone(), self.clone());
        let task = tokio::task::spawn_blocking(move || {
            // Held until the compile ends, even when the request gave up on it.
            let _permit = permit;
            plan.compile(s.engine()?.model(), vocab)
        });
        let limit = state.config.limits.compile_timeout;
        match tokio::time::timeout(limit, task).await {
            Ok(compiled) => compiled.map_err(joined)?.map(Some),
            Err(_) => {
                let secs = limit.as_secs_f64();
                Err(limits::over(self.compile_param(), format!("not compiled after {secs} s"), format!("{secs} s of compile time")))
            }
        }
    }

    fn compile(&self, model: &Model, vocab: Arc<ConstraintVocab>) -> Result<Constraint, ServerError> {
        let tok = model.tokenizer();
        let family = ToolFamily::detect(model.chat_template(), tok);
        let special = |m: &str| tok.token_id(m).filter(|&id| tok.is_special(id));
        let calls = |only: Option<&str>| {
            tool_call_grammar(family, &self.tools, only, self.parallel, special).map_err(|e| bad_engine("tools", e))
        };
        let format_param = if matches!(self.format, Format::Gbnf(_)) { "grammar" } else { "response_format" };
        let lark = match (&self.choice, &self.format) {
            (ToolChoice::Required, _) => calls(None)?,
            (ToolChoice::Named(n), _) => calls(Some(n))?,
            (ToolChoice::Auto, Format::JsonObject) => calls_or_json(&calls(None)?, &json!({"type": "object"}), false),
            (ToolChoice::Auto, Format::JsonSchema(s, strict)) => {
                // The schema alone first, so its errors name response_format.
                Constraint::json_schema_strict_with_vocab(s, vocab.clone(), *strict).map_err(|e| bad_engine(format_param, e))?;
                calls_or_json(&calls(None)?, s, *strict)
            }
            (_, Format::JsonObject) => return Constraint::json_object_with_vocab(vocab).map_err(|e| bad_engine(format_param, e)),
            (_, Format::JsonSchema(s, strict)) => {
                return Constraint::json_schema_strict_with_vocab(s, vocab, *strict).map_err(|e| bad_engine(format_param, e))
            }
            (_, Format::Gbnf(g)) => return Constraint::gbnf_with_vocab(g, vocab).map_err(|e| bad_engine(format_param, e)),
            (_, Format::Free) => return Err(ServerError::bad("tool_choice", "nothing to constrain")),
        };
        // Calls are JSON in markup: the same guard against loops and the budget.
        Constraint::lark_with_vocab(&lark, vocab).map(Constraint::with_json_ending).map_err(|e| bad_engine("tools", e))
    }
}

/// A schema or grammar the engine refused, as a 400 naming `param`.
fn bad_engine(param: &str, e: EngineError) -> ServerError {
    match e {
        EngineError::Schema(_) | EngineError::Grammar(_) => {
            ServerError::BadRequest { message: format!("{param}: {e}"), param: Some(param.to_string()), code: Some("invalid_schema") }
        }
        e => ServerError::from(e),
    }
}

/// A call in OpenAI's `message.tool_calls[]` shape.
pub fn call_json(call: &ToolCall) -> Value {
    json!({ "id": call.id, "type": "function", "function": { "name": call.name, "arguments": call.arguments_json } })
}

/// Longest piece of a call's arguments in one streamed delta.
const ARGUMENT_PIECE: usize = 24;

/// The streamed deltas of call number `index`: the first carries its id,
/// type and name (and empty arguments), the rest the arguments in pieces,
/// as OpenAI streams them.
pub fn call_deltas(index: usize, call: &ToolCall) -> Vec<Value> {
    let mut out = vec![json!([{ "index": index, "id": call.id, "type": "function", "function": { "name": call.name, "arguments": "" } }])];
    let args = call.arguments_json.as_str();
    let mut start = 0;
    while start < args.len() {
        let mut end = (start + ARGUMENT_PIECE).min(args.len());
        while !args.is_char_boundary(end) {
            end += 1;
        }
        out.push(json!([{ "index": index, "function": { "arguments": &args[start..end] } }]));
        start = end;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(body: Value) -> Result<ToolPlan, ServerError> {
        crate::params::fields::<ToolFields>(&body)?.plan(&Limits::default())
    }

    fn param(e: ServerError) -> String {
        e.body()["error"]["param"].as_str().unwrap_or_default().to_string()
    }

    #[test]
    fn tool_choice_is_checked_against_tools() {
        let tools = json!([{ "type": "function", "function": { "name": "now" } }]);
        assert_eq!(plan(json!({ "tools": tools })).unwrap().choice, ToolChoice::Auto);
        assert_eq!(plan(json!({})).unwrap().choice, ToolChoice::None);
        let named = json!({ "tools": tools, "tool_choice": { "type": "function", "function": { "name": "now" } } });
        assert_eq!(plan(named).unwrap().choice, ToolChoice::Named("now".into()));
        let unknown = json!({ "tools": tools, "tool_choice": { "type": "function", "function": { "name": "rain" } } });
        assert_eq!(param(plan(unknown).unwrap_err()), "tool_choice");
        assert_eq!(param(plan(json!({ "tool_choice": "required" })).unwrap_err()), "tool_choice");
        assert_eq!(param(plan(json!({ "tools": tools, "tool_choice": "always" })).unwrap_err()), "tool_choice");
        let nameless = json!({ "tools": [{ "type": "function", "function": { "description": "x" } }] });
        assert_eq!(param(plan(nameless).unwrap_err()), "tools[0].function.name");
        let none = plan(json!({ "tools": tools, "tool_choice": "none" })).unwrap();
        assert!(!none.has_tools());
    }

    #[test]
    fn response_format_is_checked() {
        assert!(matches!(plan(json!({ "response_format": { "type": "json_object" } })).unwrap().format, Format::JsonObject));
        let missing = json!({ "response_format": { "type": "json_schema", "json_schema": { "name": "x" } } });
        assert_eq!(param(plan(missing).unwrap_err()), "response_format");
        assert_eq!(param(plan(json!({ "response_format": { "type": "yaml" } })).unwrap_err()), "response_format");
    }

    #[test]
    fn arguments_stream_in_pieces_that_join() {
        let call = ToolCall { id: "call_1".into(), name: "weather".into(), arguments_json: "{\"city\": \"Zürich, Schweiz — a long name\"}".into() };
        let deltas = call_deltas(2, &call);
        assert_eq!(deltas[0][0]["function"]["name"], "weather");
        assert_eq!(deltas[0][0]["id"], "call_1");
        assert!(deltas.len() > 2);
        let joined: String = deltas.iter().map(|d| d[0]["function"]["arguments"].as_str().unwrap()).collect();
        assert_eq!(joined, call.arguments_json);
        assert!(deltas[1..].iter().all(|d| d[0]["index"] == 2 && d[0].get("id").is_none()));
    }
}
