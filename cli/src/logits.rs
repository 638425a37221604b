//! `infer logits`: evaluate a sequence once and print each position's top
//! logits and log-sum-exp (teacher-forced scoring, for comparing engines
//! or checking a conversion).

use std::io::Write;

use infer_engine::SessionParams;

use crate::gen_args::ModelArgs;

#[derive(clap::Args, Debug)]
pub struct LogitsArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Text to score (tokenized with special tokens and BOS as the model says)
    #[arg(value_name = "TEXT", required_unless_present = "ids")]
    pub text: Option<String>,
    /// Token ids to score instead of a text, comma-separated
    #[arg(long = "ids", value_delimiter = ',', conflicts_with = "text")]
    pub ids: Option<Vec<u32>>,
    /// Logits printed per position
    #[arg(long = "top", default_value_t = 10)]
    pub top: usize,
    /// One JSON object per line and position: {"pos", "token", "top": [[id, logit], …], "logsumexp"}
    #[arg(long = "json")]
    pub json: bool,
}

pub fn run(args: LogitsArgs) -> anyhow::Result<()> {
    let model = args.model.load()?;
    let ids = match (&args.ids, &args.text) {
        (Some(ids), _) => ids.clone(),
        (None, Some(t)) => model.prompt_tokens(t)?,
        (None, None) => anyhow::bail!("give TEXT or --ids 1,2,3"),
    };
    let n_ctx = ids.len().max(2);
    let mut session = model.session(SessionParams { n_ctx, ..Default::default() })?;
    let scores = infer_engine::scoring::score(&mut session, &ids, args.top)?;
    let tok = model.tokenizer();
    let mut out = std::io::stdout().lock();
    for p in scores {
        if args.json {
            let line = serde_json::json!({
                "pos": p.pos,
                "token": p.token,
                "top": p.top.iter().map(|&(id, l)| serde_json::json!([id, l])).collect::<Vec<_>>(),
                "logsumexp": p.logsumexp,
            });
            writeln!(out, "{line}")?;
        } else {
            let piece = String::from_utf8_lossy(&tok.token_bytes(p.token)).into_owned();
            let top: Vec<String> = p.top.iter().map(|(id, l)| format!("{id}:{l:.4}")).collect();
            writeln!(out, "{:>5} {:>7} {:<14} lse {:.4}  {}", p.pos, p.token, format!("{piece:?}"), p.logsumexp, top.join(" "))?;
        }
    }
    Ok(())
}
