//! `infer chat`: an interactive conversation that keeps its history.
//!
//! Commands: `/reset` forgets the conversation, `/system TEXT` sets the
//! system prompt, `/exit` quits. Ctrl-C stops the current reply, not the
//! program. Works with stdin piped in (one user message per line).
//!
//! With `--tools FILE` (a JSON list of OpenAI-style tools) the model may
//! answer with calls; they are shown, not run. `/result TEXT` answers the
//! oldest unanswered call with TEXT and lets the model go on.

use std::io::{BufRead, IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::Context;
use infer_engine::tools::{ToolCallStream, ToolFamily, ToolStreamEvent};
use infer_engine::{ChatMessage, GenerateOptions};
use serde_json::{json, Value};

use crate::gen_args::{GenArgs, ModelArgs};

#[derive(clap::Args, Debug)]
pub struct ChatArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub gen: GenArgs,
    /// System prompt
    #[arg(long = "system")]
    pub system: Option<String>,
    /// A JSON file with the tools the model may call (OpenAI's `tools` list)
    #[arg(long = "tools")]
    pub tools: Option<std::path::PathBuf>,
}

/// The `tools` list of a file: a JSON array, or an object with a `tools` array.
fn read_tools(path: &std::path::Path) -> anyhow::Result<Vec<Value>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let v: Value = serde_json::from_str(&text).with_context(|| format!("{}: not JSON", path.display()))?;
    match v.get("tools").cloned().unwrap_or(v) {
        Value::Array(tools) => Ok(tools),
        _ => anyhow::bail!("{}: expected a JSON array of tools", path.display()),
    }
}

pub fn run(args: ChatArgs) -> anyhow::Result<()> {
    let model = args.model.load_for_ctx(args.gen.ctx)?;
    let interrupted = Arc::new(AtomicBool::new(false));
    {
        let flag = interrupted.clone();
        ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst))?;
    }
    let interactive = std::io::stdin().is_terminal();
    let mut session = model.session(args.gen.session())?;
    let mut system = args.system.clone();
    let mut history: Vec<ChatMessage> = Vec::new();
    let tools = args.tools.as_deref().map(read_tools).transpose()?;
    let family = ToolFamily::detect(model.chat_template(), model.tokenizer());
    // With tools, the conversation is kept as OpenAI-style messages.
    let mut turns: Vec<Value> = Vec::new();
    let mut unanswered: std::collections::VecDeque<String> = Default::default();
    let mut stop = args.gen.stop.clone();
    if let Some(eot) = model.chat_template().end_of_turn_token() {
        stop.push(eot.to_string());
    }
    if interactive {
        eprintln!("chatting with {} — /reset, /system TEXT, /exit; Ctrl-C stops a reply", model.path().display());
    }
    let stdin = std::io::stdin();
    let mut lines = stdin.lock().lines();
    let mut out = std::io::stdout();
    loop {
        if interactive {
            write!(out, "> ")?;
            out.flush()?;
        }
        interrupted.store(false, Ordering::SeqCst);
        let Some(line) = lines.next() else { break };
        let line = line?;
        let line = line.trim_end_matches(['\r', '\n']);
        if interrupted.load(Ordering::SeqCst) && line.is_empty() {
            break;
        }
        match line.trim() {
            "" => continue,
            "/exit" | "/quit" => break,
            "/reset" => {
                history.clear();
                turns.clear();
                unanswered.clear();
                session.clear();
                eprintln!("(conversation reset)");
                continue;
            }
            l if l.starts_with("/system") => {
                let s = l["/system".len()..].trim();
                system = (!s.is_empty()).then(|| s.to_string());
                history.clear();
                turns.clear();
                unanswered.clear();
                session.clear();
                eprintln!("(system prompt {}; conversation reset)", if system.is_some() { "set" } else { "cleared" });
                continue;
            }
            _ => {}
        }
        if let Some(tools) = &tools {
            match line.strip_prefix("/result") {
                Some(result) => {
                    let Some(id) = unanswered.pop_front() else {
                        eprintln!("(no call is waiting for a result)");
                        continue;
                    };
                    turns.push(json!({"role": "tool", "tool_call_id": id, "content": result.trim()}));
                    if !unanswered.is_empty() {
                        continue;
                    }
                }
                None => turns.push(json!({"role": "user", "content": line})),
            }
            let mut messages: Vec<Value> = system.iter().map(|s| json!({"role": "system", "content": s})).collect();
            messages.extend(turns.iter().cloned());
            let text = model.chat_template().render_with_tools(&messages, tools, true)?;
            let prompt = model.prompt_tokens(&text)?;
            let opts = GenerateOptions { max_tokens: args.gen.n_predict, stop: stop.clone() };
            let mut parser = ToolCallStream::new(family);
            let (mut content, mut calls) = (String::new(), Vec::new());
            let mut show = |events: Vec<ToolStreamEvent>, out: &mut std::io::Stdout| -> anyhow::Result<()> {
                for e in events {
                    match e {
                        ToolStreamEvent::Content(c) => {
                            write!(out, "{c}")?;
                            content.push_str(&c);
                        }
                        ToolStreamEvent::ToolCall { call, .. } => {
                            write!(out, "\n[tool call {}] {} {}", call.id, call.name, call.arguments_json)?;
                            calls.push(call);
                        }
                    }
                    out.flush()?;
                }
                Ok(())
            };
            let result = (|| -> anyhow::Result<()> {
                for tok in session.generate(&prompt, args.gen.sampler(), opts)? {
                    show(parser.push(&tok?.text), &mut out)?;
                    if interrupted.load(Ordering::SeqCst) {
                        break;
                    }
                }
                show(parser.finish(), &mut out)
            })();
            writeln!(out)?;
            if let Err(e) = result {
                eprintln!("error: {e:#}");
                turns.pop();
                continue;
            }
            let tool_calls: Vec<Value> = calls
                .iter()
                .map(|c| json!({"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments_json}}))
                .collect();
            unanswered.extend(calls.iter().map(|c| c.id.clone()));
            let mut reply = json!({"role": "assistant", "content": content.trim()});
            if !tool_calls.is_empty() {
                reply["tool_calls"] = Value::Array(tool_calls);
            }
            turns.push(reply);
            continue;
        }
        history.push(ChatMessage { role: "user".into(), content: line.to_string() });
        let mut messages = Vec::with_capacity(history.len() + 1);
        if let Some(s) = &system {
            messages.push(ChatMessage { role: "system".into(), content: s.clone() });
            // Keep the system prompt through context shifts.
            let sys = model.chat_template().render(&messages, false)?;
            session.set_keep(model.prompt_tokens(&sys)?.len());
        }
        messages.extend(history.iter().cloned());
        let prompt = match model.chat_tokens(&messages) {
            Ok(p) => p,
            Err(e) => {
                history.pop();
                eprintln!("error: {e}");
                continue;
            }
        };
        let opts = GenerateOptions { max_tokens: args.gen.n_predict, stop: stop.clone() };
        let mut reply = String::new();
        let result = (|| -> anyhow::Result<()> {
            let gen = session.generate(&prompt, args.gen.sampler(), opts)?;
            for tok in gen {
                let tok = tok?;
                write!(out, "{}", tok.text)?;
                out.flush()?;
                reply.push_str(&tok.text);
                if interrupted.load(Ordering::SeqCst) {
                    write!(out, " [stopped]")?;
                    break;
                }
            }
            Ok(())
        })();
        writeln!(out)?;
        if let Err(e) = result {
            // The turn failed (e.g. the context is full): report it and keep the program alive.
            eprintln!("error: {e:#}");
            history.pop();
            continue;
        }
        history.push(ChatMessage { role: "assistant".into(), content: reply.trim().to_string() });
    }
    Ok(())
}
