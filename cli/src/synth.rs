//! `infer synth`: writes a synthetic llama model of a real model's shape
//! (random weights) for speed measurements without a downloaded GGUF.

use std::path::PathBuf;

use anyhow::Context;
use infer_engine::synth::{parse_type, write_synth, SynthConfig, SynthTokenizer, PRESETS};
use infer_engine::synth_family::{write_family, FamilyPreset, FAMILY_PRESETS};

#[derive(clap::Args, Debug)]
pub struct SynthArgs {
    /// Shape: 135m (SmolLM2's: dim 576, 30 layers), 1b (2048, 16), 3b (3072, 28) or 8b (4096, 32)
    /// (llama); or another family: qwen2.5-1.5b, qwen3-1.7b, phi3-mini, olmoe-1b-7b (qwen3moe: 64 experts, top 8)
    #[arg(long, default_value = "1b")]
    pub preset: String,
    /// Weight type of every matrix: q4_0, q4_1, q5_0, q5_1, q8_0, q4_k, q5_k, q6_k, f16, f32
    #[arg(long = "type", default_value = "q4_0")]
    pub ty: String,
    /// Output GGUF file
    #[arg(short = 'o', long = "output")]
    pub output: PathBuf,
    /// Copy every tokenizer.* key (and the vocabulary size) from this GGUF;
    /// default: a built-in byte-level vocabulary
    #[arg(long = "tokenizer-from")]
    pub tokenizer_from: Option<PathBuf>,
    /// Seed of the random weights
    #[arg(long, default_value_t = 0x5eed)]
    pub seed: u64,
}

pub fn run(args: SynthArgs) -> anyhow::Result<()> {
    let ty = parse_type(&args.ty)?;
    if let Some(mut fam) = FamilyPreset::get(&args.preset, ty) {
        fam.shape.seed = args.seed;
        let tok = match args.tokenizer_from {
            Some(p) => SynthTokenizer::From(p),
            None => SynthTokenizer::Builtin,
        };
        let t = std::time::Instant::now();
        write_family(&fam, &tok, &args.output).with_context(|| format!("writing {}", args.output.display()))?;
        let size = std::fs::metadata(&args.output).map(|m| m.len()).unwrap_or(0);
        eprintln!(
            "wrote {} ({:.2} GiB, {} {}) in {:.1} s",
            args.output.display(),
            size as f64 / (1u64 << 30) as f64,
            fam.arch,
            ty,
            t.elapsed().as_secs_f64()
        );
        return Ok(());
    }
    let mut cfg = SynthConfig::preset(&args.preset, ty)
        .with_context(|| {
            format!("unknown preset \"{}\"; one of {}, {}", args.preset, PRESETS.join(", "), FAMILY_PRESETS.join(", "))
        })?;
    cfg.seed = args.seed;
    let tok = match args.tokenizer_from {
        Some(p) => SynthTokenizer::From(p),
        None => SynthTokenizer::Builtin,
    };
    let t = std::time::Instant::now();
    write_synth(&cfg, &tok, &args.output).with_context(|| format!("writing {}", args.output.display()))?;
    let size = std::fs::metadata(&args.output).map(|m| m.len()).unwrap_or(0);
    eprintln!(
        "wrote {} ({:.2} GiB, {:.2}B parameters, {}) in {:.1} s",
        args.output.display(),
        size as f64 / (1u64 << 30) as f64,
        cfg.n_params() as f64 / 1e9,
        ty,
        t.elapsed().as_secs_f64()
    );
    Ok(())
}
