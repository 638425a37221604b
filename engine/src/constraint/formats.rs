//! String formats bounded as their standards bound them.
//!
//! llguidance compiles `format` to a regular expression, and some of those
//! allow what no reader accepts or leave a part unbounded: `email` lets the
//! local part run forever (a small model that never writes its `@` then
//! fills `max_tokens`), and `date` / `date-time` accept year 0000 and
//! 29 February of any year, both of which Python's `date.fromisoformat`
//! and JSON Schema validators reject. So, before the schema is compiled, a
//! string schema with one of these formats and no `pattern` of its own
//! also gets a `pattern` (llguidance matches both):
//!
//! - `email`: a local part of at most 64 bytes and a domain of at most 255
//!   (RFC 5321 §4.5.3.1), so the `@` and the end always come;
//! - `date`, and the date of a `date-time`: years 0001–9999, and 29
//!   February only in leap years.
//!
//! The pattern only narrows the format, so every output still validates
//! against the schema as the user wrote it.
//!
//! ```
//! use infer_engine::constraint::bound_string_formats;
//! let mut s = serde_json::json!({"type": "object", "properties": {"mail": {"type": "string", "format": "email"}}});
//! bound_string_formats(&mut s);
//! assert!(s["properties"]["mail"]["pattern"].as_str().unwrap().contains("{1,64}"));
//! ```

use serde_json::Value;

/// A year from 0001 to 9999.
const YEAR: &str = "(?:[0-9]{3}[1-9]|[0-9]{2}[1-9][0-9]|[0-9][1-9][0-9]{2}|[1-9][0-9]{3})";
/// A leap year: a multiple of 4 that is not a century, or of 400.
const LEAP_YEAR: &str = "(?:[0-9]{2}(?:0[48]|[2468][048]|[13579][26])|(?:0[48]|[2468][048]|[13579][26])00)";

fn date() -> String {
    // The format's own regex bounds each month's days; only February 29 needs the year.
    format!("(?:{YEAR}-(?:0[13-9]|1[0-2])-[0-9]{{2}}|{YEAR}-02-(?:0[1-9]|1[0-9]|2[0-8])|{LEAP_YEAR}-02-29)")
}

/// The pattern that bounds `format`, if infer bounds it.
fn bounding_pattern(format: &str) -> Option<String> {
    match format {
        "email" => Some("^[^@]{1,64}@[^@]{1,255}$".to_string()),
        "date" => Some(format!("^{}$", date())),
        "date-time" => Some(format!("^{}[Tt]", date())),
        _ => None,
    }
}

/// Keywords whose values are data, not schemas: never rewritten.
const DATA: &[&str] = &["const", "enum", "default", "examples"];

/// Adds the bounding patterns of the module docs throughout `schema`.
pub fn bound_string_formats(schema: &mut Value) {
    match schema {
        Value::Object(map) => {
            let pattern = match map.get("format") {
                Some(Value::String(f)) if !map.contains_key("pattern") => bounding_pattern(f),
                _ => None,
            };
            if let Some(p) = pattern {
                map.insert("pattern".into(), Value::String(p));
            }
            for (key, sub) in map.iter_mut() {
                if !DATA.contains(&key.as_str()) {
                    bound_string_formats(sub);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(bound_string_formats),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn formats_get_patterns_and_data_is_left_alone() {
        let mut s = json!({
            "type": "object",
            "properties": {
                "when": {"type": "string", "format": "date"},
                "at": {"type": "string", "format": "date-time"},
                "own": {"type": "string", "format": "email", "pattern": "@example\\.com$"},
                "format": {"type": "string"},
                "tag": {"const": {"format": "email"}},
            },
            "$defs": {"m": {"anyOf": [{"type": "string", "format": "email"}]}}
        });
        bound_string_formats(&mut s);
        let p = &s["properties"];
        assert!(p["when"]["pattern"].as_str().is_some_and(|x| x.starts_with('^') && x.ends_with('$')));
        assert!(p["at"]["pattern"].as_str().is_some_and(|x| x.ends_with("[Tt]")));
        assert_eq!(p["own"]["pattern"], "@example\\.com$", "a user's pattern stays");
        assert!(p["format"].get("pattern").is_none());
        assert_eq!(p["tag"], json!({"const": {"format": "email"}}));
        assert!(s["$defs"]["m"]["anyOf"][0]["pattern"].is_string());
    }
}
