//! `infer perplexity`: llama.cpp's perplexity over a text file.

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::Context;

use crate::gen_args::ModelArgs;

#[derive(clap::Args, Debug)]
pub struct PerplexityArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Text file to score
    #[arg(short = 'f', long = "file")]
    pub file: PathBuf,
    /// Tokens per chunk
    #[arg(short = 'c', long = "ctx", visible_alias = "ctx-size", default_value_t = 256)]
    pub ctx: usize,
    /// Use at most this many chunks (default: all)
    #[arg(long = "chunks", default_value_t = 0)]
    pub chunks: usize,
    /// Print {"ppl": …, "chunks": …}
    #[arg(long = "json")]
    pub json: bool,
}

pub fn run(args: PerplexityArgs) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(&args.file).with_context(|| format!("reading {}", args.file.display()))?;
    let model = args.model.load_for_ctx(args.ctx)?;
    let tokens = model.tokenizer().encode(&text, true, true)?;
    let bar = std::io::stderr().is_terminal().then(|| {
        let b = indicatif::ProgressBar::new(0);
        b.set_style(
            indicatif::ProgressStyle::with_template("perplexity [{bar:30}] {pos}/{len} chunks {eta}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        b
    });
    let quiet = args.json;
    let r = infer_engine::perplexity::perplexity(&model, &tokens, args.ctx, args.chunks, |done, total| {
        match &bar {
            Some(b) => {
                b.set_length(total as u64);
                b.set_position(done as u64);
            }
            None if !quiet => eprintln!("chunk {done}/{total}"),
            None => {}
        }
    })?;
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    if args.json {
        let v = serde_json::json!({"ppl": r.ppl, "stderr": r.stderr, "chunks": r.chunks, "n_ctx": r.n_ctx, "tokens": tokens.len()});
        println!("{v}");
    } else {
        println!("PPL = {:.4} +/- {:.4} ({} chunks of {} tokens)", r.ppl, r.stderr, r.chunks, r.n_ctx);
    }
    Ok(())
}
