//! `infer run`: generate text from a prompt, streaming it as it comes.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use infer_engine::{ChatMessage, Constraint, GenerateOptions};

use crate::gen_args::{read_messages, GenArgs, ModelArgs};

#[derive(clap::Args, Debug)]
pub struct RunArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub gen: GenArgs,
    /// The prompt
    #[arg(value_name = "PROMPT")]
    pub prompt_pos: Option<String>,
    /// The prompt (same as the positional argument)
    #[arg(short = 'p', long = "prompt", conflicts_with = "prompt_pos")]
    pub prompt: Option<String>,
    /// Wrap the prompt as a user message in the model's chat template
    #[arg(long = "chat")]
    pub chat: bool,
    /// System prompt (implies --chat)
    #[arg(long = "system")]
    pub system: Option<String>,
    /// A JSON list of {role, content} messages (implies --chat)
    #[arg(long = "messages")]
    pub messages: Option<PathBuf>,
    /// Print one JSON object (prompt_ids, ids, text, timings) instead of streaming
    #[arg(long = "json")]
    pub json: bool,
    /// Constrain the output to a JSON schema: a file, or the schema itself
    #[arg(long = "json-schema", value_name = "FILE|JSON", conflicts_with = "grammar")]
    pub json_schema: Option<String>,
    /// Constrain the output to a grammar file: GBNF (llama.cpp's syntax), or Lark when it ends in .lark
    #[arg(long = "grammar", value_name = "FILE")]
    pub grammar: Option<PathBuf>,
}

/// The constraint `--json-schema` or `--grammar` asks for.
fn constraint(args: &RunArgs, tok: &infer_engine::Tokenizer) -> anyhow::Result<Option<Constraint>> {
    if let Some(s) = &args.json_schema {
        let text = if s.trim_start().starts_with(['{', '[']) || s.trim() == "true" {
            s.clone()
        } else {
            std::fs::read_to_string(s).with_context(|| format!("reading --json-schema {s}"))?
        };
        let schema: serde_json::Value = serde_json::from_str(&text).with_context(|| format!("--json-schema {s}: not JSON"))?;
        return Ok(Some(Constraint::json_schema(&schema, tok).with_context(|| format!("--json-schema {s}"))?));
    }
    if let Some(p) = &args.grammar {
        let text = std::fs::read_to_string(p).with_context(|| format!("reading --grammar {}", p.display()))?;
        let c = if p.extension().is_some_and(|e| e == "lark") {
            Constraint::lark(&text, tok)
        } else {
            Constraint::gbnf(&text, tok)
        };
        return Ok(Some(c.with_context(|| format!("--grammar {}", p.display()))?));
    }
    Ok(None)
}

pub fn run(args: RunArgs) -> anyhow::Result<()> {
    let prompt = args.prompt.clone().or(args.prompt_pos.clone());
    let chat = args.chat || args.system.is_some() || args.messages.is_some();
    if !chat && prompt.as_deref().is_none_or(str::is_empty) {
        anyhow::bail!("the prompt is empty: give PROMPT or -p TEXT");
    }
    let model = args.model.load_for_ctx(args.gen.ctx)?;
    let constraint = constraint(&args, model.tokenizer())?;
    let prompt_ids = if chat {
        let mut messages = match &args.messages {
            Some(p) => read_messages(p)?,
            None => Vec::new(),
        };
        if let Some(s) = &args.system {
            messages.retain(|m| m.role != "system");
            messages.insert(0, ChatMessage { role: "system".into(), content: s.clone() });
        }
        if let Some(p) = prompt.filter(|p| !p.is_empty()) {
            messages.push(ChatMessage { role: "user".into(), content: p });
        }
        if messages.is_empty() {
            anyhow::bail!("no messages: give a PROMPT, --system or --messages");
        }
        model.chat_tokens(&messages)?
    } else {
        model.prompt_tokens(prompt.as_deref().unwrap_or_default())?
    };
    let mut session = model.session(args.gen.session())?;
    let mut stop = args.gen.stop.clone();
    if chat {
        if let Some(eot) = model.chat_template().end_of_turn_token() {
            stop.push(eot.to_string());
        }
    }
    let opts = GenerateOptions { max_tokens: args.gen.n_predict, stop };
    let mut gen = session.generate(&prompt_ids, args.gen.sampler(), opts)?;
    if let Some(c) = &constraint {
        gen = gen.with_constraint(c.start());
    }
    let mut text = String::new();
    let mut out = std::io::stdout().lock();
    for tok in gen.by_ref() {
        let tok = tok?;
        if !args.json {
            write!(out, "{}", tok.text)?;
            out.flush()?;
        }
        text.push_str(&tok.text);
    }
    let ids = gen.ids().to_vec();
    let finish = gen.finish_reason();
    drop(gen);
    let t = session.timings();
    if args.json {
        let v = serde_json::json!({
            "prompt_ids": prompt_ids,
            "ids": ids,
            "text": text,
            "finish_reason": format!("{finish:?}").to_lowercase(),
            "timings": {
                "prompt_tokens": t.prompt_tokens,
                "prompt_tok_s": t.prompt_tok_s(),
                "gen_tokens": t.gen_tokens,
                "gen_tok_s": t.gen_tok_s(),
            },
        });
        writeln!(out, "{}", serde_json::to_string(&v).context("encoding JSON")?)?;
    } else {
        writeln!(out)?;
        eprintln!(
            "[prompt: {} tokens, {:.1} tok/s | generation: {} tokens, {:.1} tok/s]",
            t.prompt_tokens,
            t.prompt_tok_s(),
            t.gen_tokens,
            t.gen_tok_s()
        );
    }
    Ok(())
}
