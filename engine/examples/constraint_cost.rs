//! What a JSON-schema constraint adds to a decode step: the median time per
//! generated token with and without the constraint (same model, prompt and
//! sampler, rounds interleaved so machine load hits both alike), and the
//! constraint's own work per token (mask + accept, replayed without the model).
//!
//! ```text
//! cargo run --release -p infer-engine --example constraint_cost -- models/SmolLM2-135M-Instruct.Q4_1.gguf
//! ```

use std::time::{Duration, Instant};

use infer_engine::{ChatMessage, Constraint, GenerateOptions, Model, ModelOptions, SamplerParams, SessionParams};

const ROUNDS: usize = 3;
const MAX_TOKENS: usize = 96;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args().nth(1).unwrap_or_else(|| "models/SmolLM2-135M-Instruct.Q4_1.gguf".into());
    let model = Model::load(&path, ModelOptions::default())?;
    let schema = serde_json::json!({
        "type": "object",
        "properties": {
            "people": {"type": "array", "maxItems": 8, "items": {
                "type": "object",
                "properties": {
                    "name": {"type": "string", "maxLength": 24},
                    "age": {"type": "integer", "minimum": 0, "maximum": 120},
                    "role": {"enum": ["pilot", "doctor", "farmer", "teacher"]},
                    "active": {"type": "boolean"}
                },
                "required": ["name", "age", "role", "active"],
                "additionalProperties": false
            }}
        },
        "required": ["people"],
        "additionalProperties": false
    });
    let t = Instant::now();
    let constraint = Constraint::json_schema(&schema, model.tokenizer())?;
    eprintln!("vocabulary trie + schema compile: {:?} (first use; the trie is cached)", t.elapsed());
    let t = Instant::now();
    Constraint::json_schema(&schema, model.tokenizer())?;
    eprintln!("schema compile with the cached trie: {:?}", t.elapsed());

    let ask = format!("List some people as JSON matching {schema}");
    let prompt = model.chat_tokens(&[ChatMessage::new("user", ask)])?;
    let mut session = model.session(SessionParams { n_ctx: 1024, ..Default::default() })?;
    let params = SamplerParams { temperature: 0.7, seed: 3, ..Default::default() };
    let (mut free, mut constrained) = (Vec::new(), Vec::new());
    let mut constrained_ids = Vec::new();
    for _ in 0..ROUNDS {
        for with_constraint in [false, true] {
            let opts = GenerateOptions { max_tokens: MAX_TOKENS, stop: vec![] };
            let mut gen = session.generate(&prompt, params.clone(), opts)?;
            if with_constraint {
                gen = gen.with_constraint(constraint.start());
            }
            let times = if with_constraint { &mut constrained } else { &mut free };
            // The first token comes from the prompt's logits: not a decode step.
            let mut first = true;
            loop {
                let t = Instant::now();
                let Some(tok) = gen.next() else { break };
                tok?;
                if !first {
                    times.push(t.elapsed());
                }
                first = false;
            }
            if with_constraint {
                constrained_ids = gen.ids().to_vec();
            }
        }
    }
    let (f, c) = (median(free.clone()), median(constrained.clone()));
    println!("unconstrained: median {f:?} per token over {} steps", free.len());
    println!("constrained:   median {c:?} per token over {} steps", constrained.len());
    println!("ratio: {:.3}", c.as_secs_f64() / f.as_secs_f64());

    // The constraint alone: mask and accept along the last constrained output.
    let mut state = constraint.start();
    let mut logits = vec![0.0f32; model.config().vocab];
    let mut alone = Vec::new();
    for &id in &constrained_ids {
        let t = Instant::now();
        state.mask(&mut logits)?;
        state.accept(id)?;
        alone.push(t.elapsed());
    }
    println!("mask + accept alone: median {:?} per token over {} tokens", median(alone), constrained_ids.len());
    Ok(())
}
