//! `infer tokenize`: print the token ids of a text.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use infer_engine::Tokenizer;

use crate::gen_args::ModelArgs;

#[derive(clap::Args, Debug)]
pub struct TokenizeArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Text to tokenize
    #[arg(value_name = "TEXT", required_unless_present = "file")]
    pub text: Option<String>,
    /// Read the text from a file
    #[arg(long = "file", short = 'f', conflicts_with = "text")]
    pub file: Option<PathBuf>,
    /// Neither add BOS/EOS nor parse special-token text
    #[arg(long = "no-special")]
    pub no_special: bool,
    /// Print a JSON array of ids
    #[arg(long = "json")]
    pub json: bool,
}

pub fn run(args: TokenizeArgs) -> anyhow::Result<()> {
    let text = match (&args.text, &args.file) {
        (Some(t), _) => t.clone(),
        (None, Some(p)) => std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?,
        (None, None) => anyhow::bail!("give TEXT or --file PATH"),
    };
    // The tokenizer alone is enough: no need to map the weights.
    let path = crate::common::resolve_model(&args.model.model)?;
    let tok = if path.is_dir() {
        infer_engine::hf::Folder::open(&path)?.tokenizer()?
    } else {
        Tokenizer::from_gguf(&infer_gguf::Gguf::open(&path)?)?
    };
    let special = !args.no_special;
    let ids = tok.encode(&text, special, special)?;
    let mut out = std::io::stdout().lock();
    if args.json {
        writeln!(out, "{}", serde_json::to_string(&ids)?)?;
    } else {
        for id in ids {
            let piece = String::from_utf8_lossy(&tok.token_bytes(id)).into_owned();
            writeln!(out, "{id:>7} -> {piece:?}")?;
        }
    }
    Ok(())
}
