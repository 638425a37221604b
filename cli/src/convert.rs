//! `infer convert`: a Hugging Face folder to a GGUF file with llama.cpp's
//! tensor names, metadata keys and tokenizer arrays.

use std::path::PathBuf;

use anyhow::Context;
use infer_gguf::QuantType;

#[derive(clap::Args, Debug)]
pub struct ConvertArgs {
    /// The folder: config.json, model.safetensors (or shards with
    /// model.safetensors.index.json), tokenizer.json, tokenizer_config.json
    pub folder: PathBuf,
    /// Output GGUF file
    #[arg(short = 'o', long = "output")]
    pub output: PathBuf,
    /// Type of the matrices: f16, q8_0 or q4_0 (vectors stay f32)
    #[arg(long = "type", default_value = "f16", value_parser = parse_type)]
    pub ty: QuantType,
}

/// `q8_0` / `q4_0`: the types a model can be quantized to while loading.
pub fn parse_quant(s: &str) -> Result<QuantType, String> {
    match s.to_ascii_lowercase().as_str() {
        "q8_0" => Ok(QuantType::Q8_0),
        "q4_0" => Ok(QuantType::Q4_0),
        _ => Err(format!("\"{s}\": expected q8_0 or q4_0")),
    }
}

fn parse_type(s: &str) -> Result<QuantType, String> {
    match s.to_ascii_lowercase().as_str() {
        "f16" => Ok(QuantType::F16),
        "f32" => Ok(QuantType::F32),
        _ => parse_quant(s).map_err(|_| format!("\"{s}\": expected f16, f32, q8_0 or q4_0")),
    }
}

pub fn run(args: ConvertArgs) -> anyhow::Result<()> {
    let t = std::time::Instant::now();
    let r = infer_engine::hf::convert::convert(&args.folder, &args.output, args.ty)
        .with_context(|| format!("converting {}", args.folder.display()))?;
    let size = std::fs::metadata(&args.output).map(|m| m.len()).unwrap_or(0);
    eprintln!(
        "wrote {} ({}, {} tensors, {:.1} MB, {}) in {:.1} s",
        args.output.display(),
        r.arch,
        r.n_tensors,
        size as f64 / 1e6,
        args.ty,
        t.elapsed().as_secs_f64()
    );
    Ok(())
}
