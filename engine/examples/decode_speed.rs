//! Decode speed through the Rust API, timed as the Python package's check
//! does (tokens after the first, over the time after the first):
//! `cargo run --release -p infer-engine --example decode_speed -- MODEL [TOKENS]`.

use std::time::Instant;

use infer_engine::{GenerateOptions, Model, ModelOptions, SamplerParams, SessionParams};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let path = args.next().unwrap_or_else(|| "models/SmolLM2-135M-Instruct.Q4_1.gguf".into());
    let n: usize = args.next().map_or(Ok(128), |s| s.parse())?;
    let model = Model::load(&path, ModelOptions::default())?;
    let mut session = model.session(SessionParams { n_ctx: 1024, ..Default::default() })?;
    let prompt = model.prompt_tokens("Once upon a time, in a land far away,")?;
    let mut first = None;
    let mut count = 0usize;
    for token in session.generate(&prompt, SamplerParams::greedy(), GenerateOptions { max_tokens: n, stop: Vec::new() })? {
        token?;
        count += 1;
        first.get_or_insert_with(Instant::now);
    }
    let secs = first.map_or(0.0, |t| t.elapsed().as_secs_f64());
    println!("rust: {:.1} tok/s decode ({count} tokens)", (count.saturating_sub(1)) as f64 / secs);
    Ok(())
}
