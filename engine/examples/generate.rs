//! A small program that links infer-engine: loads a model, chats once, and
//! streams the reply.
//!
//! ```text
//! cargo run --release -p infer-engine --example generate -- models/SmolLM2-135M-Instruct.Q4_1.gguf "What is a GGUF file?"
//! ```

use infer_engine::{ChatMessage, GenerateOptions, Model, ModelOptions, SamplerParams, SessionParams};
use std::io::Write;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let path = args.next().unwrap_or_else(|| "models/SmolLM2-135M-Instruct.Q4_1.gguf".into());
    let question = args.next().unwrap_or_else(|| "Name three primary colors.".into());

    let model = Model::load(&path, ModelOptions::default())?;
    let mut session = model.session(SessionParams { n_ctx: 1024, ..Default::default() })?;
    let prompt = model.chat_tokens(&[ChatMessage::new("user", &question)])?;
    let mut stop = Vec::new();
    if let Some(eot) = model.chat_template().end_of_turn_token() {
        stop.push(eot.to_string());
    }
    let opts = GenerateOptions { max_tokens: 128, stop };
    let mut out = std::io::stdout();
    for token in session.generate(&prompt, SamplerParams::greedy(), opts)? {
        write!(out, "{}", token?.text)?;
        out.flush()?;
    }
    let t = session.timings();
    eprintln!("\n[{:.1} tok/s prompt, {:.1} tok/s generation]", t.prompt_tok_s(), t.gen_tok_s());
    Ok(())
}
