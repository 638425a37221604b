//! `infer`: the command-line tool. Each subcommand lives in its own module
//! with an `Args` struct and a `run` function; add one by adding a module and
//! a variant to [`Command`].

use clap::{Parser, Subcommand};

mod common;
mod inspect;

#[derive(Parser)]
#[command(name = "infer", version, about = "LLM inference on GGUF models")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print a GGUF file's header, metadata and tensor table.
    Inspect(inspect::Args),
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Inspect(args) => inspect::run(&args),
    }
}
