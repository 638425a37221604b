//! `infer`: the command-line tool. Each subcommand lives in its own module
//! with an `Args` struct and a `run` function; add one by adding a module and
//! a variant to [`Command`].

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod bench;
mod bench_parallel;
mod chat;
mod common;
mod convert;
mod devices;
mod embed;
mod gen_args;
mod gpu_report;
mod inspect;
mod logits;
mod perplexity;
mod plot;
mod run;
mod serve;
mod sweep;
mod synth;
mod tokenize;
mod verify;

#[derive(Parser)]
#[command(name = "infer", version, about = "LLM inference on GGUF models and Hugging Face folders")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print a GGUF file's header, metadata and tensor table.
    Inspect(inspect::Args),
    /// Generate text from a prompt, streaming it as it comes.
    Run(run::RunArgs),
    /// Chat interactively (history kept; /reset, /system TEXT, /exit).
    Chat(chat::ChatArgs),
    /// Print the token ids of a text.
    Tokenize(tokenize::TokenizeArgs),
    /// Sentence embeddings of texts (one vector each), their similarity; --bench for speed.
    Embed(embed::EmbedArgs),
    /// Score a sequence: per position, the top logits and the log-sum-exp.
    Logits(logits::LogitsArgs),
    /// Perplexity of a text file (llama.cpp's method).
    Perplexity(perplexity::PerplexityArgs),
    /// Compare every intermediate of a prompt on the CPU and with the GPU offload.
    Verify(verify::VerifyArgs),
    /// Measure prompt-processing and generation speed (as llama-bench).
    Bench(bench::BenchArgs),
    /// Convert a Hugging Face folder (config.json, safetensors, tokenizer.json) to a GGUF file.
    Convert(convert::ConvertArgs),
    /// Write a synthetic llama model of a real shape with random weights.
    Synth(synth::SynthArgs),
    /// Serve the model over an OpenAI-compatible HTTP API (and a chat page at /).
    Serve(serve::ServeArgs),
    /// List the GPU adapters, the one the offload uses, and its bandwidth.
    Devices(devices::DevicesArgs),
}

fn main() -> ExitCode {
    let command = Cli::parse_from(gen_args::normalize_args(std::env::args_os())).command;
    // Output piped into `head` or `grep -q`: end quietly when the reader
    // goes, as Unix tools do, instead of panicking in `println!`. Not for
    // the server: there SIGPIPE would come from a client that reset its
    // socket mid-reply, and kill the server with every request in it.
    #[cfg(unix)]
    if !matches!(command, Command::Serve(_)) {
        // SAFETY: restores the default action of one signal before any thread starts.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
    let result = match command {
        Command::Inspect(args) => inspect::run(&args),
        Command::Run(args) => run::run(args),
        Command::Chat(args) => chat::run(args),
        Command::Tokenize(args) => tokenize::run(args),
        Command::Embed(args) => embed::run(args),
        Command::Logits(args) => logits::run(args),
        Command::Perplexity(args) => perplexity::run(args),
        Command::Verify(args) => verify::run(args),
        Command::Bench(args) => bench::run(args),
        Command::Synth(args) => synth::run(args),
        Command::Convert(args) => convert::run(args),
        Command::Devices(args) => devices::run(args),
        Command::Serve(args) => serve::run(args),
    };
    // Print the error chain on one line ourselves: returning the error from
    // main would also print a backtrace whenever RUST_BACKTRACE is set.
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
