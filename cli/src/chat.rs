//! `infer chat`: an interactive conversation that keeps its history.
//!
//! Commands: `/reset` forgets the conversation, `/system TEXT` sets the
//! system prompt, `/exit` quits. Ctrl-C stops the current reply, not the
//! program. Works with stdin piped in (one user message per line).

use std::io::{BufRead, IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use infer_engine::{ChatMessage, GenerateOptions};

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
                session.clear();
                eprintln!("(conversation reset)");
                continue;
            }
            l if l.starts_with("/system") => {
                let s = l["/system".len()..].trim();
                system = (!s.is_empty()).then(|| s.to_string());
                history.clear();
                session.clear();
                eprintln!("(system prompt {}; conversation reset)", if system.is_some() { "set" } else { "cleared" });
                continue;
            }
            _ => {}
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
