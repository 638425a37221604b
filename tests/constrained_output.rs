//! JSON-schema-constrained generation on the real models: 20 schemas drawn
//! from a fixed seed, each generated greedily and with temperature sampling
//! on SmolLM2 and Gemma 3. Every output must end by itself (the grammar
//! completes, never the token limit), parse, and validate against its schema.

mod common;

use std::sync::Arc;

use common::*;
use infer_engine::{ChatMessage, Constraint, FinishReason, GenerateOptions, Model, ModelOptions, SamplerParams, SessionParams};
use serde_json::{json, Value};

/// SplitMix64, so the schemas are the same on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len() as u64) as usize]
    }
}

const NAMES: &[&str] = &["name", "age", "city", "color", "size", "count", "tags", "ok", "score", "kind", "id"];
const WORDS: &[&str] = &["red", "green", "blue", "cat", "dog", "small", "large", "yes", "no"];

/// A leaf or a small container; `depth` bounds nesting. Every string,
/// number and array is bounded so an answer fits a short token budget.
fn random_schema(rng: &mut Rng, depth: u32) -> Value {
    let kinds = if depth == 0 { 9 } else { 12 };
    match rng.below(kinds) {
        0 => json!({"type": "boolean"}),
        1 => {
            let lo = rng.below(50) as i64 - 10;
            json!({"type": "integer", "minimum": lo, "maximum": lo + 1 + rng.below(500) as i64})
        }
        2 => json!({"type": "string", "minLength": 1, "maxLength": 4 + rng.below(8)}),
        3 => {
            let n = 2 + rng.below(3) as usize;
            let mut words: Vec<&str> = (0..n).map(|_| rng.pick(WORDS)).collect();
            words.dedup();
            json!({"enum": words})
        }
        4 => json!({"const": rng.pick(WORDS)}),
        5 => json!({"type": "null"}),
        6 => json!({"type": "string", "pattern": "^[a-z]{2,6}$"}),
        7 => json!({"anyOf": [{"type": "integer", "minimum": 0, "maximum": 99}, {"enum": [rng.pick(WORDS)]}]}),
        8 => json!({"type": "number", "minimum": 0, "maximum": 10}),
        9 | 10 => {
            let n = 1 + rng.below(3) as usize;
            let mut props = serde_json::Map::new();
            let mut required = Vec::new();
            for _ in 0..n {
                let name = rng.pick(NAMES);
                if props.contains_key(name) {
                    continue;
                }
                props.insert(name.into(), random_schema(rng, depth - 1));
                if rng.below(3) != 0 {
                    required.push(name);
                }
            }
            json!({"type": "object", "properties": props, "required": required, "additionalProperties": false})
        }
        _ => {
            let lo = rng.below(2);
            json!({"type": "array", "items": random_schema(rng, 0), "minItems": lo, "maxItems": lo + 1 + rng.below(2)})
        }
    }
}

/// 20 schemas: objects at the top (what applications ask for), one of them
/// through `$defs`/`$ref`.
fn schemas() -> Vec<Value> {
    let mut rng = Rng(0x5C4E_3A11);
    let mut out: Vec<Value> = (0..19)
        .map(|i| {
            let mut s = random_schema(&mut rng, 2);
            // Most top levels are objects; keep a few bare values too.
            if i % 4 != 3 && s.get("type") != Some(&json!("object")) {
                s = json!({"type": "object", "properties": {"value": s}, "required": ["value"], "additionalProperties": false});
            }
            s
        })
        .collect();
    out.push(json!({
        "$defs": {"point": {"type": "object", "properties": {"x": {"type": "integer", "minimum": 0, "maximum": 9},
                                                             "y": {"type": "integer", "minimum": 0, "maximum": 9}},
                            "required": ["x", "y"], "additionalProperties": false}},
        "type": "object",
        "properties": {"from": {"$ref": "#/$defs/point"}, "to": {"$ref": "#/$defs/point"}},
        "required": ["from", "to"],
        "additionalProperties": false,
    }));
    out
}

/// Most tokens any answer may take; one cut by this limit fails the test.
const MAX_TOKENS: usize = 120;

fn check_model(file: &str) {
    let model: Arc<Model> = Model::load(model_path(file), ModelOptions::default()).unwrap();
    let mut session = model.session(SessionParams { n_ctx: 1024, ..Default::default() }).unwrap();
    let samplers = [
        ("greedy", SamplerParams::greedy()),
        ("temperature", SamplerParams { temperature: 0.9, seed: 7, ..Default::default() }),
    ];
    let mut failures = Vec::new();
    for (i, schema) in schemas().iter().enumerate() {
        let validator = jsonschema::validator_for(schema).unwrap_or_else(|e| panic!("schema {i} {schema}: {e}"));
        let constraint = Constraint::json_schema(schema, model.tokenizer()).unwrap_or_else(|e| panic!("schema {i}: {e}"));
        let ask = format!("Answer with JSON matching this schema: {schema}");
        let prompt = model.chat_tokens(&[ChatMessage::new("user", ask)]).unwrap();
        for (label, params) in &samplers {
            let opts = GenerateOptions { max_tokens: MAX_TOKENS, stop: vec![] };
            let mut gen = session.generate(&prompt, params.clone(), opts).unwrap().with_constraint(constraint.start());
            let mut text = String::new();
            for t in gen.by_ref() {
                text.push_str(&t.unwrap().text);
            }
            let finish = gen.finish_reason();
            let n = gen.ids().len();
            drop(gen);
            // The end-of-generation token's text (e.g. `<|im_end|>`) is not JSON.
            let json_text = model
                .tokenizer()
                .eog_ids()
                .iter()
                .filter_map(|&id| model.tokenizer().piece(id))
                .fold(text.clone(), |t, eog| t.replace(eog, ""));
            let problem = if finish != Some(FinishReason::Eog) {
                Some(format!("ended by {finish:?} after {n} tokens"))
            } else {
                match serde_json::from_str::<Value>(&json_text) {
                    Err(e) => Some(format!("does not parse: {e}")),
                    Ok(v) => validator.validate(&v).err().map(|e| format!("does not validate: {e}")),
                }
            };
            if let Some(p) = problem {
                failures.push(format!("{file} schema {i} {label}: {p}\n  schema {schema}\n  output {text:?}"));
            }
        }
    }
    assert!(failures.is_empty(), "{} failures:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn smollm2_outputs_validate_against_20_random_schemas() {
    check_model(SMOLLM2);
}

#[test]
fn gemma3_outputs_validate_against_20_random_schemas() {
    check_model(GEMMA3);
}
