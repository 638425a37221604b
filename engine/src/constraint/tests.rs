//! The constraint on a small synthetic vocabulary: at every reachable
//! position, the allowed set must be exactly the tokens that keep the text a
//! prefix of some string of the (finite) language.

use std::sync::Arc;

use super::*;

/// Text tokens, then one special token and one end-of-generation token.
const TEXT_TOKENS: &[&str] = &[
    "{", "}", "\"", "a", "b", ":", " ", ",", "t", "r", "u", "e", "f", "l", "s", "x", "y", "z", "[", "]", "0", "1", "2",
    "{\"", "\": ", "true", "false", "\"x\"", ", \"", "ab", "c", "\"}", "1}", "é",
];

fn vocab() -> Arc<ConstraintVocab> {
    let mut tokens: Vec<Vec<u8>> = TEXT_TOKENS.iter().map(|t| t.as_bytes().to_vec()).collect();
    tokens.push(b"<|special|>".to_vec());
    tokens.push(b"<eos>".to_vec());
    let n = tokens.len() as u32;
    Arc::new(ConstraintVocab::new(tokens, &[n - 2], &[n - 1]).unwrap())
}

const EOS: u32 = TEXT_TOKENS.len() as u32 + 1;

/// Walks every token path (deduplicated by text) and checks each mask
/// against the language. Returns how many positions were checked.
fn check_exhaustively(constraint: &Constraint, language: &[&str]) -> usize {
    let mut stack = vec![(String::new(), constraint.start())];
    let mut seen = std::collections::HashSet::new();
    while let Some((text, mut state)) = stack.pop() {
        if !seen.insert(text.clone()) {
            continue;
        }
        let allowed = state.allowed_tokens().unwrap();
        for (id, tok) in TEXT_TOKENS.iter().enumerate() {
            let next = format!("{text}{tok}");
            let expect = language.iter().any(|s| s.starts_with(&next));
            assert_eq!(allowed.contains(&(id as u32)), expect, "after {text:?}, token {tok:?}");
            if expect {
                let mut s = state.clone();
                s.accept(id as u32).unwrap();
                stack.push((next, s));
            } else {
                let mut s = state.clone();
                assert!(s.accept(id as u32).is_err(), "accepting forbidden {tok:?} after {text:?}");
            }
        }
        assert!(!allowed.contains(&(EOS - 1)), "the special token is never text");
        let complete = language.contains(&text.as_str());
        assert_eq!(allowed.contains(&EOS), complete, "EOS after {text:?}");
        assert_eq!(state.is_accepting(), complete, "accepting after {text:?}");
        // Finished once nothing but EOS may follow.
        let finished = complete && !language.iter().any(|s| s.len() > text.len() && s.starts_with(&text));
        assert_eq!(state.is_complete(), finished, "complete after {text:?}");
        let mut logits = vec![1.0f32; EOS as usize + 3];
        state.mask(&mut logits).unwrap();
        for (id, l) in logits.iter().enumerate() {
            assert_eq!(l.is_finite(), allowed.contains(&(id as u32)), "logit {id} after {text:?}");
        }
        if complete {
            let mut s = state.clone();
            s.accept(EOS).unwrap();
            assert!(s.is_complete());
        }
    }
    seen.len()
}

#[test]
fn json_schema_masks_every_token_exactly() {
    let schema = serde_json::json!({
        "type": "object",
        "properties": {"a": {"type": "boolean"}, "b": {"enum": ["x", "y"]}},
        "required": ["a"],
        "additionalProperties": false,
    });
    let c = Constraint::json_schema_with_vocab(&schema, vocab()).unwrap();
    let language = [
        r#"{"a": true}"#,
        r#"{"a": false}"#,
        r#"{"a": true, "b": "x"}"#,
        r#"{"a": true, "b": "y"}"#,
        r#"{"a": false, "b": "x"}"#,
        r#"{"a": false, "b": "y"}"#,
    ];
    let n = check_exhaustively(&c, &language);
    assert!(n > 40, "only {n} positions checked");
}

#[test]
fn const_array_and_integer_range() {
    let schema = serde_json::json!({
        "type": "array",
        "items": {"anyOf": [{"const": "x"}, {"type": "integer", "minimum": 0, "maximum": 2}]},
        "minItems": 1,
        "maxItems": 2,
    });
    let c = Constraint::json_schema_with_vocab(&schema, vocab()).unwrap();
    let items = ["\"x\"", "0", "1", "2"];
    let mut language: Vec<String> = items.iter().map(|a| format!("[{a}]")).collect();
    for a in items {
        for b in items {
            language.push(format!("[{a}, {b}]"));
        }
    }
    let refs: Vec<&str> = language.iter().map(String::as_str).collect();
    check_exhaustively(&c, &refs);
}

#[test]
fn gbnf_masks_every_token_exactly() {
    let c = Constraint::gbnf_with_vocab("root ::= (\"ab\" | \"c\") [0-1]{1,2} \"é\"?", vocab()).unwrap();
    let mut language = Vec::new();
    for head in ["ab", "c"] {
        for digits in ["0", "1", "00", "01", "10", "11"] {
            language.push(format!("{head}{digits}"));
            language.push(format!("{head}{digits}é"));
        }
    }
    let refs: Vec<&str> = language.iter().map(String::as_str).collect();
    check_exhaustively(&c, &refs);
}

#[test]
fn bad_schemas_and_grammars_are_errors_naming_the_problem() {
    let v = vocab();
    let schema_err = |s: serde_json::Value| Constraint::json_schema_with_vocab(&s, v.clone()).unwrap_err().to_string();
    let e = schema_err(serde_json::json!({"type": "strng"}));
    assert!(e.starts_with("JSON schema:") && e.contains("strng"), "{e}");
    let e = schema_err(serde_json::json!({"type": "integer", "minimum": 5, "maximum": 1}));
    assert!(e.starts_with("JSON schema:"), "{e}");
    let e = schema_err(serde_json::json!([1, 2]));
    assert!(e.contains("not an array"), "{e}");
    let e = schema_err(serde_json::json!(false));
    assert!(e.contains("accepts no value"), "{e}");
    let e = Constraint::gbnf_with_vocab("root ::= nothing", v.clone()).unwrap_err().to_string();
    assert!(e.starts_with("grammar:") && e.contains("nothing"), "{e}");
}

/// Found by fuzzing (tests/fuzz.rs, `grammar` and `http_body`): a grammar
/// whose rules never reach text compiled, then its first mask failed with
/// llguidance's state dump, which the server answered as a 500.
#[test]
fn a_grammar_that_matches_nothing_is_refused_at_compile_time() {
    let v = vocab();
    for g in ["root ::= root", "root ::= x\nx ::= x \"a\""] {
        let e = Constraint::gbnf_with_vocab(g, v.clone()).unwrap_err().to_string();
        assert!(e.starts_with("grammar:") && e.contains("matches no output"), "{g}: {e}");
        assert!(!e.contains("<state>"), "{g}: {e}");
    }
    let e = Constraint::lark_with_vocab("start: start", v.clone()).unwrap_err().to_string();
    assert!(e.contains("matches no output"), "{e}");
    // A grammar that does match something still compiles.
    assert!(Constraint::gbnf_with_vocab("root ::= x\nx ::= x \"a\" | \"b\"", v).is_ok());
}

#[test]
fn unsupported_schema_keywords_are_errors() {
    let v = vocab();
    for schema in [
        serde_json::json!({"type": "string", "format": "no-such-format"}),
        serde_json::json!({"type": "array", "uniqueItems": true}),
        serde_json::json!({"not": {"type": "string"}}),
        serde_json::json!({"$ref": "#/$defs/missing"}),
    ] {
        let r = Constraint::json_schema_with_vocab(&schema, v.clone());
        assert!(r.is_err(), "{schema} was accepted");
    }
}

#[test]
fn state_is_send_and_constraint_is_shareable() {
    fn check<T: Send>() {}
    check::<ConstraintState>();
    check::<Constraint>();
}

#[test]
fn a_vocabulary_without_eog_is_refused() {
    let e = ConstraintVocab::new(vec![b"a".to_vec()], &[], &[]).unwrap_err().to_string();
    assert!(e.contains("no end-of-generation token"), "{e}");
}

/// Every byte a token of its own (plus one end token).
fn byte_vocab() -> Arc<ConstraintVocab> {
    let mut tokens: Vec<Vec<u8>> = (0..=255u8).map(|b| vec![b]).collect();
    tokens.push(b"<eos>".to_vec());
    Arc::new(ConstraintVocab::new(tokens, &[], &[256]).unwrap())
}

/// Whether the constraint takes `text` whole and then allows the end.
fn takes_whole(constraint: &Constraint, text: &str) -> bool {
    let mut state = constraint.start();
    text.bytes().all(|b| state.accept(u32::from(b)).is_ok()) && state.is_allowed(256).unwrap_or(false)
}

#[test]
fn string_formats_are_bounded_as_their_standards_say() {
    let date = Constraint::json_schema_with_vocab(&serde_json::json!({"type": "string", "format": "date"}), byte_vocab()).unwrap();
    for ok in ["\"2024-02-29\"", "\"2000-02-29\"", "\"0001-01-31\"", "\"2023-12-31\""] {
        assert!(takes_whole(&date, ok), "{ok}");
    }
    for bad in ["\"0000-01-01\"", "\"2023-02-29\"", "\"1900-02-29\"", "\"2023-04-31\""] {
        assert!(!takes_whole(&date, bad), "{bad}");
    }
    let at = Constraint::json_schema_with_vocab(&serde_json::json!({"type": "string", "format": "date-time"}), byte_vocab()).unwrap();
    assert!(takes_whole(&at, "\"2024-02-29T12:00:00Z\""));
    assert!(!takes_whole(&at, "\"2023-02-29T12:00:00Z\""));
    let email = Constraint::json_schema_with_vocab(&serde_json::json!({"type": "string", "format": "email"}), byte_vocab()).unwrap();
    assert!(takes_whole(&email, "\"ada@example.com\""));
    // After 64 bytes of local part only the `@` may come (letters that do
    // not repeat, which the loop guard would end sooner).
    let mut state = email.start();
    let mut x = 7u32;
    let local = (0..64).map(|_| {
        x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        b'a' + ((x >> 16) % 26) as u8
    });
    for b in std::iter::once(b'"').chain(local) {
        state.accept(u32::from(b)).unwrap();
    }
    assert_eq!(state.allowed_tokens().unwrap(), vec![u32::from(b'@')]);
}
