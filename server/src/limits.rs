//! What one request may ask for. Every bound here is checked before the
//! work it bounds starts (the nesting depth before the body is parsed), and
//! a request over one is a 400 whose message names the field, the value and
//! the limit: `messages: 1200 messages, the limit is 1024`.

use std::time::Duration;

use crate::ServerError;

/// Bounds on a request's fields. The defaults follow OpenAI's API where it
/// states one (`n`, `stop`, `tools`, embeddings `input`) and are generous
/// elsewhere; `infer serve` exposes the ones users raise as flags.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Chat `messages` per request.
    pub max_messages: usize,
    /// How deep arrays and objects may nest in a body (the top object is
    /// level 1). serde_json itself stops at 128 with an opaque error.
    pub max_json_depth: usize,
    /// Bytes of a `response_format` (as JSON), a `grammar`, or the `tools`
    /// list (as JSON), each.
    pub max_grammar_bytes: usize,
    /// Functions in `tools`.
    pub max_tools: usize,
    /// Strings in `stop`.
    pub max_stop: usize,
    /// Bytes of each `stop` string (text that could still become one is
    /// held back while streaming, so a long one delays every reply).
    pub max_stop_bytes: usize,
    /// Entries in `logit_bias`.
    pub max_logit_bias: usize,
    /// Strings in a `prompt` list (`/v1/completions`); each is a request.
    pub max_prompts: usize,
    /// Strings in an embeddings `input` list.
    pub max_embedding_inputs: usize,
    /// How long a schema or grammar may take to compile; the request then
    /// gets a 400 and the compile, bounded by llguidance's own limits, ends
    /// on its blocking thread without it.
    pub compile_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_messages: 1024,
            max_json_depth: 64,
            max_grammar_bytes: 256 << 10,
            max_tools: 128,
            max_stop: 4,
            max_stop_bytes: 256,
            max_logit_bias: 1024,
            max_prompts: 64,
            max_embedding_inputs: 2048,
            compile_timeout: Duration::from_secs(5),
        }
    }
}

/// A 400 for `param` over a limit: `"{param}: {value}, the limit is {limit}"`.
pub fn over(param: &str, value: impl std::fmt::Display, limit: impl std::fmt::Display) -> ServerError {
    ServerError::bad(param, format!("{param}: {value}, the limit is {limit}"))
}

/// Checks a count against its limit: `what` names the things counted.
pub fn count(param: &str, n: usize, what: &str, limit: usize) -> Result<(), ServerError> {
    if n > limit {
        return Err(over(param, format!("{n} {what}"), limit));
    }
    Ok(())
}

/// Checks the nesting depth of a JSON body without parsing it, so a body of
/// a million `[` never reaches the parser. Strings (and escapes in them)
/// are skipped; anything malformed is left for the parser to report. The
/// error names the top-level field the deep value sits in.
pub fn check_depth(body: &[u8], limit: usize) -> Result<(), ServerError> {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    // The last string closed at level 1 and where it began: the key, once a `:` follows.
    let mut last_string: Option<(usize, usize)> = None;
    let mut key: Option<(usize, usize)> = None;
    let mut string_start = 0;
    for (i, &b) in body.iter().enumerate() {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => {
                    in_string = false;
                    if depth == 1 {
                        last_string = Some((string_start, i));
                    }
                }
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => {
                in_string = true;
                string_start = i + 1;
            }
            b':' if depth == 1 => key = last_string,
            b'[' | b'{' => {
                depth += 1;
                if depth > limit {
                    let field = key.map(|(s, e)| String::from_utf8_lossy(&body[s..e]).into_owned());
                    let what = format!("arrays and objects nested {depth} levels deep (at byte {i}), the limit is {limit} levels");
                    let message = match &field {
                        Some(f) => format!("{f}: {what}"),
                        None => format!("the body has {what}"),
                    };
                    return Err(ServerError::BadRequest { message, param: field, code: Some("too_deep") });
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn param(e: ServerError) -> (Option<String>, String) {
        let body = e.body();
        (body["error"]["param"].as_str().map(str::to_string), body["error"]["message"].as_str().unwrap_or_default().to_string())
    }

    #[test]
    fn depth_counts_levels_outside_strings() {
        assert!(check_depth(br#"{"a": [[1]]}"#, 3).is_ok());
        let (p, m) = param(check_depth(br#"{"a": [[1]]}"#, 2).unwrap_err());
        assert_eq!(p.as_deref(), Some("a"));
        assert!(m.contains("the limit is 2"), "{m}");
        // Brackets and escaped quotes inside strings do not count.
        assert!(check_depth(br#"{"a": "[[[[\"[[[[", "b": {"c": "{{{{"}}"#, 2).is_ok());
        // The field is the key the deep value sits under, not a string value before it.
        let body = format!(r#"{{"model": "x", "response_format": {}{}}}"#, "[".repeat(100), "]".repeat(100));
        let (p, m) = param(check_depth(body.as_bytes(), 64).unwrap_err());
        assert_eq!(p.as_deref(), Some("response_format"));
        let at = body.find('[').unwrap() + 63;
        assert_eq!(m, format!("response_format: arrays and objects nested 65 levels deep (at byte {at}), the limit is 64 levels"));
    }

    #[test]
    fn a_million_brackets_stop_at_the_limit() {
        let body = "[".repeat(1 << 20);
        let (p, m) = param(check_depth(body.as_bytes(), 64).unwrap_err());
        assert_eq!(p, None);
        assert_eq!(m, "the body has arrays and objects nested 65 levels deep (at byte 64), the limit is 64 levels");
    }

    #[test]
    fn counts_name_the_field_the_value_and_the_limit() {
        assert!(count("messages", 1024, "messages", 1024).is_ok());
        let (p, m) = param(count("messages", 1200, "messages", 1024).unwrap_err());
        assert_eq!(p.as_deref(), Some("messages"));
        assert_eq!(m, "messages: 1200 messages, the limit is 1024");
    }
}
