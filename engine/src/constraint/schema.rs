//! Which keys an object schema lets the model write.
//!
//! JSON Schema itself allows any key a schema does not mention, and a small
//! model given that freedom invents keys until `max_tokens`. Every engine
//! users compare with closes objects instead: llama.cpp's
//! json-schema-to-grammar and xgrammar's default `strict_mode` emit no key
//! outside `properties` unless `additionalProperties` asks for them, and
//! OpenAI's `strict: true` forbids them outright. So, before the schema is
//! compiled:
//!
//! - without `strict`: an object schema that lists `properties` (or
//!   `patternProperties`) and says nothing of `additionalProperties` gets
//!   `additionalProperties: false`; `true` or a schema is kept;
//! - with `strict`: every object schema gets `additionalProperties: false`,
//!   whatever it said (so `{"type": "object"}` alone is `{}`).
//!
//! `allOf` branches stay open (closing each one would reject the keys of
//! the others); the object holding the `allOf` is closed over the union of
//! the branches' keys instead, when every branch lists them.
//!
//! ```
//! use infer_engine::constraint::close_object_schemas;
//! let mut s = serde_json::json!({"type": "object", "properties": {"a": {"type": "object", "properties": {}}}});
//! close_object_schemas(&mut s, false);
//! assert_eq!(s["additionalProperties"], false);
//! assert_eq!(s["properties"]["a"]["additionalProperties"], false);
//! ```

use std::collections::HashSet;

use serde_json::{Map, Value};

/// Subschema keywords whose value is one schema.
const ONE: &[&str] = &["additionalProperties", "items", "not", "if", "then", "else", "contains", "propertyNames", "unevaluatedItems"];
/// Keywords whose value is a list of schemas.
const LIST: &[&str] = &["anyOf", "oneOf", "allOf", "prefixItems"];
/// Keywords whose value maps names to schemas.
const MAP: &[&str] = &["properties", "patternProperties", "$defs", "definitions", "dependentSchemas"];

/// Closes the object schemas in `schema` as the module docs say.
pub fn close_object_schemas(schema: &mut Value, strict: bool) {
    let open_defs = defs_under_all_of(schema);
    let root = schema.clone();
    walk(schema, strict, false, &root, &open_defs);
}

/// Whether `map` describes objects (it lists keys, or says `type: object`).
fn is_object_schema(map: &Map<String, Value>) -> bool {
    let typed = match map.get("type") {
        Some(Value::String(t)) => t == "object",
        Some(Value::Array(ts)) => ts.iter().any(|t| t == "object"),
        _ => false,
    };
    typed || map.contains_key("properties") || map.contains_key("patternProperties")
}

fn walk(v: &mut Value, strict: bool, in_all_of: bool, root: &Value, open_defs: &HashSet<String>) {
    let Value::Object(map) = v else { return };
    if !in_all_of {
        close_one(map, strict, root);
    }
    for key in ONE {
        if let Some(sub) = map.get_mut(*key) {
            walk(sub, strict, false, root, open_defs);
        }
    }
    for key in LIST {
        if let Some(Value::Array(subs)) = map.get_mut(*key) {
            for sub in subs {
                walk(sub, strict, *key == "allOf", root, open_defs);
            }
        }
    }
    for key in MAP {
        let defs = *key == "$defs" || *key == "definitions";
        if let Some(Value::Object(subs)) = map.get_mut(*key) {
            for (name, sub) in subs.iter_mut() {
                // A definition an `allOf` refers to is one of its branches.
                let open = defs && open_defs.contains(&format!("#/{key}/{name}"));
                walk(sub, strict, open, root, open_defs);
            }
        }
    }
}

/// Adds (or, when strict, forces) `additionalProperties: false` on one schema.
fn close_one(map: &mut Map<String, Value>, strict: bool, root: &Value) {
    if map.contains_key("allOf") {
        close_all_of(map, strict, root);
        return;
    }
    if !is_object_schema(map) || map.contains_key("unevaluatedProperties") {
        return;
    }
    if strict {
        map.insert("additionalProperties".into(), Value::Bool(false));
    } else if !map.contains_key("additionalProperties") && (map.contains_key("properties") || map.contains_key("patternProperties")) {
        map.insert("additionalProperties".into(), Value::Bool(false));
    }
}

/// An `allOf` of object branches: the holder lists every branch's keys
/// (with no constraint of its own on their values) and allows no others.
fn close_all_of(map: &mut Map<String, Value>, strict: bool, root: &Value) {
    if map.contains_key("additionalProperties") && !strict {
        return;
    }
    let Some(Value::Array(branches)) = map.get("allOf") else { return };
    let mut keys: Vec<String> = Vec::new();
    for b in branches {
        let Some(b) = resolve(b, root).and_then(Value::as_object) else { return };
        // A branch that leaves keys open (or names them by pattern) keeps the whole open.
        if b.contains_key("patternProperties") || b.get("additionalProperties").is_some_and(|a| a != &Value::Bool(false)) || b.contains_key("allOf") {
            return;
        }
        let Some(Value::Object(props)) = b.get("properties") else { return };
        keys.extend(props.keys().cloned());
    }
    let props = map.entry("properties").or_insert_with(|| Value::Object(Map::new()));
    if let Value::Object(props) = props {
        for k in keys {
            props.entry(k).or_insert(Value::Bool(true));
        }
    }
    map.insert("additionalProperties".into(), Value::Bool(false));
}

/// `v`, or the definition its local `$ref` points to.
fn resolve<'a>(v: &'a Value, root: &'a Value) -> Option<&'a Value> {
    match v.get("$ref").and_then(Value::as_str) {
        Some(r) => root.pointer(r.strip_prefix('#')?),
        None => Some(v),
    }
}

/// The local `$ref` targets that are `allOf` branches anywhere in `v`.
fn defs_under_all_of(v: &Value) -> HashSet<String> {
    let mut out = HashSet::new();
    let mut stack = vec![v];
    while let Some(v) = stack.pop() {
        match v {
            Value::Object(map) => {
                if let Some(Value::Array(branches)) = map.get("allOf") {
                    out.extend(branches.iter().filter_map(|b| b.get("$ref")?.as_str().map(str::to_string)));
                }
                stack.extend(map.values());
            }
            Value::Array(items) => stack.extend(items),
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn closed(mut s: Value, strict: bool) -> Value {
        close_object_schemas(&mut s, strict);
        s
    }

    #[test]
    fn objects_with_properties_close_unless_they_say_otherwise() {
        let s = closed(json!({"type": "object", "properties": {"a": {"type": "string"}}}), false);
        assert_eq!(s["additionalProperties"], false);
        let s = closed(json!({"type": "object", "properties": {}, "additionalProperties": true}), false);
        assert_eq!(s["additionalProperties"], true);
        let s = closed(json!({"type": "object", "properties": {}, "additionalProperties": {"type": "integer"}}), false);
        assert_eq!(s["additionalProperties"], json!({"type": "integer"}));
        // Any object stays any object without strict.
        assert_eq!(closed(json!({"type": "object"}), false), json!({"type": "object"}));
        // Nested places: items, anyOf branches, $defs, prefixItems.
        let s = closed(
            json!({
                "type": "array",
                "items": {"anyOf": [{"properties": {"x": {}}}, {"type": "null"}]},
                "prefixItems": [{"type": "object", "properties": {"y": {}}}],
                "$defs": {"P": {"type": "object", "properties": {"z": {}}}},
            }),
            false,
        );
        assert_eq!(s["items"]["anyOf"][0]["additionalProperties"], false);
        assert!(s["items"]["anyOf"][1].get("additionalProperties").is_none());
        assert_eq!(s["prefixItems"][0]["additionalProperties"], false);
        assert_eq!(s["$defs"]["P"]["additionalProperties"], false);
        assert!(s.get("additionalProperties").is_none(), "an array schema has no keys");
    }

    #[test]
    fn strict_forces_every_object_closed() {
        let s = closed(json!({"type": "object", "properties": {"a": {"type": "object"}}, "additionalProperties": true}), true);
        assert_eq!(s["additionalProperties"], false);
        assert_eq!(s["properties"]["a"]["additionalProperties"], false);
    }

    #[test]
    fn all_of_closes_over_the_union_of_its_branches() {
        let s = closed(
            json!({
                "$defs": {"Base": {"type": "object", "properties": {"id": {"type": "integer"}}, "required": ["id"]}},
                "allOf": [{"$ref": "#/$defs/Base"}, {"type": "object", "properties": {"name": {"type": "string"}}}],
            }),
            false,
        );
        assert_eq!(s["additionalProperties"], false);
        assert_eq!(s["properties"], json!({"id": true, "name": true}));
        assert!(s["allOf"][1].get("additionalProperties").is_none(), "branches stay open");
        assert!(s["$defs"]["Base"].get("additionalProperties").is_none(), "a definition used as a branch stays open");
        // A branch with open keys keeps the holder open.
        let s = closed(json!({"allOf": [{"properties": {"a": {}}, "additionalProperties": true}, {"properties": {"b": {}}}]}), false);
        assert!(s.get("additionalProperties").is_none());
    }
}
