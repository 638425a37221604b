//! Parsers on outputs as models write them, well-formed and not; each is also
//! streamed in small pieces and must give the same content and calls.

use super::*;

fn args(call: &ToolCall) -> serde_json::Value {
    serde_json::from_str(&call.arguments_json).unwrap()
}

fn names(out: &ParsedOutput) -> Vec<&str> {
    out.tool_calls.iter().map(|c| c.name.as_str()).collect()
}

/// Streams `text` in `step`-byte pieces (at char boundaries): the released
/// content and calls must equal the whole-text parse, and no released
/// content may hold call markup.
fn streamed(text: &str, family: ToolFamily, step: usize) -> ParsedOutput {
    let mut s = ToolCallStream::new(family);
    let mut events = Vec::new();
    let mut i = 0;
    while i < text.len() {
        let mut j = (i + step).min(text.len());
        while !text.is_char_boundary(j) {
            j += 1;
        }
        events.extend(s.push(&text[i..j]));
        i = j;
    }
    events.extend(s.finish());
    let mut out = ParsedOutput::default();
    for e in events {
        match e {
            ToolStreamEvent::Content(c) => out.content.push_str(&c),
            ToolStreamEvent::ToolCall { index, call } => {
                assert_eq!(index, out.tool_calls.len());
                out.tool_calls.push(call);
            }
        }
    }
    out
}

/// Parses whole and streamed (1, 3 and 7 bytes at a time); returns the whole parse.
fn parse(text: &str, family: ToolFamily) -> ParsedOutput {
    let whole = parse_tool_calls(text, family);
    for step in [1, 3, 7] {
        let s = streamed(text, family, step);
        let strip = |c: &[ToolCall]| c.iter().map(|c| (c.name.clone(), c.arguments_json.clone())).collect::<Vec<_>>();
        assert_eq!(strip(&s.tool_calls), strip(&whole.tool_calls), "step {step}: {text:?}");
        if !whole.tool_calls.is_empty() {
            for marker in ["<tool_call>", "</tool_call>", "[TOOL_CALLS]", "<|python_tag|>"] {
                assert!(!s.content.contains(marker), "step {step}: markup {marker} in streamed content {:?}", s.content);
            }
            assert_eq!(is_only_fences(&s.content) || s.content.trim() == whole.content, true, "step {step}: {:?}", s.content);
        } else {
            assert_eq!(s.content, whole.content, "step {step}");
        }
    }
    whole
}

#[test]
fn hermes_and_qwen_calls() {
    let out = parse(
        "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\", \"unit\": \"celsius\"}}\n</tool_call>",
        ToolFamily::Hermes,
    );
    assert_eq!(names(&out), ["get_weather"]);
    assert_eq!(args(&out.tool_calls[0]), serde_json::json!({"city": "Paris", "unit": "celsius"}));
    assert_eq!(out.content, "");
    assert!(out.tool_calls[0].id.starts_with("call_"));

    // Qwen 3: thinking first, then two calls in a row, distinct ids.
    let out = parse(
        "<think>\nThe user wants both.\n</think>\n\n<tool_call>\n{\"name\": \"a\", \"arguments\": {}}\n</tool_call>\n\
         <tool_call>\n{\"name\": \"b\", \"arguments\": {\"x\": 1}}\n</tool_call>",
        ToolFamily::Hermes,
    );
    assert_eq!(names(&out), ["a", "b"]);
    assert_ne!(out.tool_calls[0].id, out.tool_calls[1].id);
    assert_eq!(out.content, "<think>\nThe user wants both.\n</think>");
}

#[test]
fn hermes_malformed_outputs() {
    // Truncated JSON: not a call; the text stays in the content.
    let text = "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Par";
    let out = parse(text, ToolFamily::Hermes);
    assert!(out.tool_calls.is_empty());
    assert_eq!(out.content, text);
    // A missing close tag after complete JSON is forgiven.
    let out = parse("<tool_call>{\"name\": \"f\", \"arguments\": {\"a\": [1, 2]}}", ToolFamily::Hermes);
    assert_eq!(names(&out), ["f"]);
    // A call inside a code fence.
    let out = parse(
        "```json\n<tool_call>{\"name\": \"f\", \"arguments\": {}}</tool_call>\n```",
        ToolFamily::Hermes,
    );
    assert_eq!(names(&out), ["f"]);
    assert_eq!(out.content, "");
    // Two objects in one tag.
    let out = parse(
        "<tool_call>{\"name\": \"a\", \"arguments\": {}}\n{\"name\": \"b\", \"arguments\": {}}</tool_call>",
        ToolFamily::Hermes,
    );
    assert_eq!(names(&out), ["a", "b"]);
    // A body that is JSON but not a call stays text.
    let text = "<tool_call>{\"weather\": \"sunny\"}</tool_call> ok";
    let out = parse(text, ToolFamily::Hermes);
    assert!(out.tool_calls.is_empty());
    assert_eq!(out.content, text);
    // Plain answers pass through, including `<` and a lone `<tool`.
    let out = parse("x < y and <tool is fine", ToolFamily::Hermes);
    assert_eq!(out.content, "x < y and <tool is fine");
}

#[test]
fn llama3_calls() {
    let out = parse(
        "{\"name\": \"get_current_conditions\", \"parameters\": {\"location\": \"San Francisco, CA\", \"unit\": \"Fahrenheit\"}}",
        ToolFamily::Llama3,
    );
    assert_eq!(names(&out), ["get_current_conditions"]);
    assert_eq!(args(&out.tool_calls[0])["unit"], "Fahrenheit");
    let out = parse("<|python_tag|>{\"name\": \"search\", \"parameters\": {\"q\": \"rust\"}}", ToolFamily::Llama3);
    assert_eq!(names(&out), ["search"]);
    // Two calls separated by `;`.
    let out = parse(
        "<|python_tag|>{\"name\": \"a\", \"parameters\": {}}; {\"name\": \"b\", \"parameters\": {\"n\": 2}}",
        ToolFamily::Llama3,
    );
    assert_eq!(names(&out), ["a", "b"]);
    // Built-in tool syntax.
    let out = parse("<|python_tag|>brave_search.call(query=\"weather in Oslo\", n=3)", ToolFamily::Llama3);
    assert_eq!(names(&out), ["brave_search"]);
    assert_eq!(args(&out.tool_calls[0]), serde_json::json!({"query": "weather in Oslo", "n": 3}));
    // JSON that is not a call is an answer.
    let out = parse("{\"answer\": 42}", ToolFamily::Llama3);
    assert!(out.tool_calls.is_empty());
    assert_eq!(out.content, "{\"answer\": 42}");
    // Truncated.
    let out = parse("{\"name\": \"a\", \"parameters\": {\"x\":", ToolFamily::Llama3);
    assert!(out.tool_calls.is_empty());
}

#[test]
fn mistral_calls() {
    let out = parse(
        "[TOOL_CALLS][{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Oslo\"}}, {\"name\": \"get_time\", \"arguments\": {}}]",
        ToolFamily::Mistral,
    );
    assert_eq!(names(&out), ["get_weather", "get_time"]);
    let out = parse("[TOOL_CALLS]get_weather[ARGS]{\"city\": \"Oslo\"}", ToolFamily::Mistral);
    assert_eq!(names(&out), ["get_weather"]);
    assert_eq!(args(&out.tool_calls[0]), serde_json::json!({"city": "Oslo"}));
    let out = parse("[TOOL_CALLS][{\"name\": \"a\", \"arguments\": {\"q\": \"x", ToolFamily::Mistral);
    assert!(out.tool_calls.is_empty());
    let out = parse("Just text [TOOL", ToolFamily::Mistral);
    assert_eq!(out.content, "Just text [TOOL");
}

#[test]
fn generic_json_fallback() {
    let out = parse("```json\n{\"name\": \"f\", \"arguments\": {\"a\": 1}}\n```", ToolFamily::Generic);
    assert_eq!(names(&out), ["f"]);
    assert_eq!(out.content, "");
    let out = parse("[{\"name\": \"a\", \"arguments\": {}}, {\"name\": \"b\", \"arguments\": \"{\\\"x\\\": 1}\"}]", ToolFamily::Generic);
    assert_eq!(names(&out), ["a", "b"]);
    assert_eq!(args(&out.tool_calls[1]), serde_json::json!({"x": 1}));
    let out = parse("{\"tool_calls\": [{\"function\": {\"name\": \"f\", \"arguments\": {}}}]}", ToolFamily::Generic);
    assert_eq!(names(&out), ["f"]);
    // Other code blocks and prose are content.
    let text = "```python\nprint({\"name\": 1})\n```";
    assert_eq!(parse(text, ToolFamily::Generic).content, text);
    assert_eq!(parse("The answer is 4.", ToolFamily::Generic).content, "The answer is 4.");
}

#[test]
fn family_detection() {
    let tok_free = |src: &str| {
        let t = ChatTemplate::new(src, "", "").unwrap();
        // A template's text alone decides here: no tokenizer tokens involved.
        let has_tools = prompt::template_supports_tools(&t);
        (src.contains("<tool_call>"), has_tools)
    };
    assert_eq!(tok_free("{% if tools %}<tool_call>{% endif %}"), (true, true));
    assert_eq!(tok_free("{{ messages }}"), (false, false));
}
