//! Chat templates: the Jinja template in `tokenizer.chat_template`, rendered
//! with minijinja, or ChatML when the model has none (as llama.cpp falls back).
//!
//! The environment mirrors what Hugging Face's `apply_chat_template` gives a
//! template: `trim_blocks` and `lstrip_blocks` on, `messages`,
//! `add_generation_prompt`, `bos_token`, `eos_token`, `raise_exception`, and
//! Python string methods (`.strip()`, `.startswith()`, `.split()`, …) through
//! minijinja-contrib's pycompat.

use infer_gguf::Gguf;
use minijinja::syntax::SyntaxConfig;
use minijinja::{Environment, Error as JinjaError, ErrorKind, Value};

use crate::tokenizer::Tokenizer;
use crate::{EngineError, Result};

/// One turn of a conversation.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct ChatMessage {
    /// `system`, `user` or `assistant`.
    pub role: String,
    pub content: String,
}

impl ChatMessage {
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        ChatMessage { role: role.into(), content: content.into() }
    }
}

/// ChatML, the template llama.cpp uses when a model ships none.
const CHATML: &str = "{%- for message in messages -%}\
{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' -}}\
{%- endfor -%}\
{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}{%- endif -%}";

/// The name the template is stored under in its environment.
const NAME: &str = "chat";

/// Turn markers we recognise in a template's source, in the order checked.
const END_OF_TURN_MARKERS: &[&str] = &["<|im_end|>", "<end_of_turn>", "<|eot_id|>", "<|end|>", "<|endoftext|>"];

/// A compiled chat template.
pub struct ChatTemplate {
    env: Environment<'static>,
    source: String,
    bos_token: String,
    eos_token: String,
    fallback: bool,
}

impl std::fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatTemplate")
            .field("fallback", &self.fallback)
            .field("bos_token", &self.bos_token)
            .field("eos_token", &self.eos_token)
            .field("source_len", &self.source.len())
            .finish()
    }
}

fn template_err(e: JinjaError) -> EngineError {
    // Include the cause chain: minijinja puts the template's own
    // raise_exception message and line info there.
    let mut msg = e.to_string();
    let mut src = std::error::Error::source(&e);
    while let Some(s) = src {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        src = s.source();
    }
    EngineError::Template(msg)
}

/// A JSON value as a template value (maps keep their keys' order).
fn json_to_jinja(v: &serde_json::Value) -> Value {
    use serde_json::Value as J;
    match v {
        J::Null => Value::from(()),
        J::Bool(b) => Value::from(*b),
        J::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => Value::from(i),
            (None, Some(u)) => Value::from(u),
            _ => Value::from(n.as_f64().unwrap_or(f64::NAN)),
        },
        J::String(s) => Value::from(s.as_str()),
        J::Array(items) => items.iter().map(json_to_jinja).collect(),
        J::Object(map) => Value::from_pairs(map.iter().map(|(k, v)| (k.as_str(), json_to_jinja(v)))),
    }
}

fn raise_exception(msg: String) -> std::result::Result<Value, JinjaError> {
    Err(JinjaError::new(ErrorKind::InvalidOperation, msg))
}

impl ChatTemplate {
    /// Compiles `source` with the given BOS/EOS strings.
    pub fn new(source: &str, bos_token: &str, eos_token: &str) -> Result<Self> {
        Self::build(source.to_string(), bos_token.to_string(), eos_token.to_string(), false)
    }

    fn build(source: String, bos_token: String, eos_token: String, fallback: bool) -> Result<Self> {
        let mut env = Environment::new();
        let syntax = SyntaxConfig::builder().trim_blocks(true).lstrip_blocks(true).build().map_err(template_err)?;
        env.set_syntax(syntax);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function("raise_exception", raise_exception);
        env.add_template_owned(NAME, source.clone()).map_err(template_err)?;
        Ok(ChatTemplate { env, source, bos_token, eos_token, fallback })
    }

    /// `tokenizer.chat_template` from the model, or ChatML when it has none.
    pub fn from_gguf(g: &Gguf, tok: &Tokenizer) -> Result<Self> {
        let piece = |id: Option<u32>| id.and_then(|i| tok.piece(i)).unwrap_or("").to_string();
        let (bos, eos) = (piece(tok.bos_id()), piece(tok.eos_id()));
        let key = "tokenizer.chat_template";
        let source = if g.get(key).is_some() { Some(g.str(key)?) } else { None };
        match source {
            Some(src) if !src.trim().is_empty() => Self::build(src.to_string(), bos, eos, false),
            _ => Self::build(CHATML.to_string(), bos, eos, true),
        }
    }

    /// Plain ChatML with empty BOS/EOS strings.
    pub fn chatml() -> Self {
        // The built-in template is known to compile; fall back to an empty
        // environment rather than panic if minijinja ever disagrees.
        Self::build(CHATML.to_string(), String::new(), String::new(), true).unwrap_or_else(|_| ChatTemplate {
            env: Environment::new(),
            source: CHATML.to_string(),
            bos_token: String::new(),
            eos_token: String::new(),
            fallback: true,
        })
    }

    /// True when the model had no template and ChatML is used instead.
    pub fn is_fallback(&self) -> bool {
        self.fallback
    }

    /// The template's Jinja source.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The prompt for `messages`; with `add_generation_prompt` it ends where
    /// the assistant's reply begins.
    pub fn render(&self, messages: &[ChatMessage], add_generation_prompt: bool) -> Result<String> {
        let tmpl = self.env.get_template(NAME).map_err(template_err)?;
        let messages: Vec<Value> = messages
            .iter()
            .map(|m| Value::from_pairs([("role", m.role.as_str()), ("content", m.content.as_str())]))
            .collect();
        let ctx = minijinja::context! {
            messages => messages,
            add_generation_prompt => add_generation_prompt,
            bos_token => self.bos_token.as_str(),
            eos_token => self.eos_token.as_str(),
        };
        tmpl.render(ctx).map_err(template_err)
    }

    /// The prompt for OpenAI-style `messages` (JSON objects with `role`,
    /// `content`, assistant `tool_calls`, `tool` results with
    /// `tool_call_id`) and `tools` (`{"type": "function", "function": …}`).
    /// A template that renders `tools` gets them as they are (call
    /// arguments as objects, as Hugging Face templates expect); any other
    /// gets the default tool prompt of [`crate::tools::prompt`].
    pub fn render_with_tools(
        &self,
        messages: &[serde_json::Value],
        tools: &[serde_json::Value],
        add_generation_prompt: bool,
    ) -> Result<String> {
        use crate::tools::prompt;
        let tmpl = self.env.get_template(NAME).map_err(template_err)?;
        let native = prompt::template_supports_tools(self);
        let messages = if native {
            prompt::messages_for_template(messages)
        } else {
            prompt::messages_with_default_tool_prompt(messages, tools)
        };
        let tools = (native && !tools.is_empty()).then(|| json_to_jinja(&serde_json::Value::Array(tools.to_vec())));
        let ctx = minijinja::context! {
            messages => json_to_jinja(&serde_json::Value::Array(messages)),
            tools => tools,
            add_generation_prompt => add_generation_prompt,
            bos_token => self.bos_token.as_str(),
            eos_token => self.eos_token.as_str(),
        };
        tmpl.render(ctx).map_err(template_err)
    }

    /// The text that closes a turn in this template, e.g. `<|im_end|>` for
    /// ChatML-style templates or `<end_of_turn>` for Gemma's.
    pub fn end_of_turn_token(&self) -> Option<&str> {
        END_OF_TURN_MARKERS.iter().copied().find(|m| self.source.contains(m))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msgs() -> Vec<ChatMessage> {
        vec![ChatMessage::new("system", "Be brief."), ChatMessage::new("user", "Hi")]
    }

    #[test]
    fn template_is_send_sync() {
        fn check<T: Send + Sync>() {}
        check::<ChatTemplate>();
    }

    #[test]
    fn chatml_renders() {
        let t = ChatTemplate::chatml();
        assert!(t.is_fallback());
        assert_eq!(t.end_of_turn_token(), Some("<|im_end|>"));
        let out = t.render(&msgs(), true).unwrap();
        assert_eq!(out, "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
        let out = t.render(&msgs(), false).unwrap();
        assert!(out.ends_with("Hi<|im_end|>\n"));
    }

    #[test]
    fn python_string_methods_and_bos() {
        let src = "{{ bos_token }}{% for m in messages %}{{ m.role.title() }}: {{ m.content.strip().upper() }}|\
                   {{ m.content.startswith(' ') }}|{{ m.content.split(',') | length }}\n{% endfor %}";
        let t = ChatTemplate::new(src, "<bos>", "<eos>").unwrap();
        let out = t.render(&[ChatMessage::new("user", " a,b ")], false).unwrap();
        assert_eq!(out, "<bos>User: A,B|True|2\n");
    }

    #[test]
    fn gemma_style_template() {
        let src = "{{ bos_token }}{% for message in messages %}{% if message['role'] == 'assistant' %}{% set role = 'model' %}\
                   {% else %}{% set role = message['role'] %}{% endif %}<start_of_turn>{{ role }}\n{{ message['content'] | trim }}<end_of_turn>\n\
                   {% endfor %}{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}";
        let t = ChatTemplate::new(src, "<bos>", "<eos>").unwrap();
        assert_eq!(t.end_of_turn_token(), Some("<end_of_turn>"));
        let out = t.render(&[ChatMessage::new("user", "Hi ")], true).unwrap();
        assert_eq!(out, "<bos><start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\n");
    }

    #[test]
    fn raise_exception_becomes_template_error() {
        let src = "{% if messages[0]['role'] != 'user' %}{{ raise_exception('Conversation must start with user') }}{% endif %}";
        let t = ChatTemplate::new(src, "", "").unwrap();
        let err = t.render(&msgs(), true).unwrap_err();
        assert!(matches!(err, EngineError::Template(_)));
        assert!(err.to_string().contains("Conversation must start with user"), "{err}");
    }

    #[test]
    fn tools_reach_a_template_that_renders_them() {
        let src = "{% if tools %}TOOLS:{% for t in tools %}{{ t.function.name }};{% endfor %}\n{% endif %}\
                   {% for m in messages %}{{ m.role }}:{{ m.content }}{% if m.tool_calls %}\
                   {% for c in m.tool_calls %}[{{ c.function.name }} {{ c.function.arguments.city }}]{% endfor %}{% endif %}\
                   {% if m.tool_call_id %}#{{ m.tool_call_id }}{% endif %}\n{% endfor %}";
        let t = ChatTemplate::new(src, "", "").unwrap();
        let tools = [serde_json::json!({"type": "function", "function": {"name": "weather", "parameters": {}}})];
        let msgs = [
            serde_json::json!({"role": "user", "content": "Oslo?"}),
            serde_json::json!({"role": "assistant", "content": null, "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "weather", "arguments": "{\"city\": \"Oslo\"}"}}]}),
            serde_json::json!({"role": "tool", "tool_call_id": "c1", "content": "5 C"}),
        ];
        let out = t.render_with_tools(&msgs, &tools, false).unwrap();
        // trim_blocks eats the newline after each block tag.
        assert_eq!(out, "TOOLS:weather;user:Oslo?assistant:[weather Oslo]tool:5 C#c1");
    }

    #[test]
    fn templates_without_tools_get_the_default_prompt() {
        let t = ChatTemplate::chatml();
        let tools = [serde_json::json!({"type": "function", "function": {"name": "weather", "parameters": {}}})];
        let msgs = [
            serde_json::json!({"role": "user", "content": "Oslo?"}),
            serde_json::json!({"role": "assistant", "tool_calls": [
                {"id": "c1", "function": {"name": "weather", "arguments": "{\"city\": \"Oslo\"}"}}]}),
            serde_json::json!({"role": "tool", "tool_call_id": "c1", "content": "5 C"}),
        ];
        let out = t.render_with_tools(&msgs, &tools, true).unwrap();
        assert!(out.starts_with("<|im_start|>system\nYou may call functions"), "{out}");
        assert!(out.contains("{\"name\":\"weather\",\"parameters\":{}}"), "{out}");
        assert!(out.contains("<|im_start|>assistant\n<tool_call>{\"name\": \"weather\", \"arguments\": {\"city\":\"Oslo\"}}</tool_call><|im_end|>"), "{out}");
        assert!(out.contains("<|im_start|>user\n<tool_response>\n5 C\n</tool_response><|im_end|>"), "{out}");
        assert!(out.ends_with("<|im_start|>assistant\n"), "{out}");
    }

    #[test]
    fn syntax_error_is_reported() {
        let err = ChatTemplate::new("{% for x in %}", "", "").unwrap_err();
        assert!(matches!(err, EngineError::Template(_)), "{err}");
    }
}
