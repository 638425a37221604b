//! `infer synth`: writes a synthetic llama model of a real model's shape
//! (random weights) for speed measurements without a downloaded GGUF.

use std::path::PathBuf;

use anyhow::Context;
use infer_engine::synth::{parse_recipe, write_synth_with, SynthConfig, SynthRecipe, SynthTokenizer, PRESETS};
use infer_engine::synth_family::{write_family, FamilyPreset, FAMILY_PRESETS};

#[derive(clap::Args, Debug)]
pub struct SynthArgs {
    /// Shape: 135m (SmolLM2's: dim 576, 30 layers), 1b (2048, 16), 3b (3072, 28) or 8b (4096, 32)
    /// (llama); or another family: qwen2.5-1.5b, qwen3-1.7b, phi3-mini, olmoe-1b-7b (qwen3moe: 64 experts, top 8)
    #[arg(long, default_value = "1b")]
    pub preset: String,
    /// Weight type of every matrix: q4_0, q4_1, q5_0, q5_1, q8_0, q4_k, q5_k, q6_k, f16, f32;
    /// or llama.cpp's mixes q4_k_m, q5_k_m (Q6_K output and some attn_v/ffn_down)
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
    let (ty, recipe) = parse_recipe(&args.ty)?;
    let tok = match args.tokenizer_from {
        Some(p) => SynthTokenizer::From(p),
        None => SynthTokenizer::Builtin,
    };
    let t = std::time::Instant::now();
    let what = if let Some(mut fam) = FamilyPreset::get(&args.preset, ty) {
        if recipe != SynthRecipe::Uniform {
            anyhow::bail!("--type {} (a mix) is written for the llama presets only", args.ty);
        }
        fam.shape.seed = args.seed;
        write_family(&fam, &tok, &args.output).with_context(|| format!("writing {}", args.output.display()))?;
        fam.arch.to_string()
    } else {
        let mut cfg = SynthConfig::preset(&args.preset, ty).with_context(|| {
            format!("unknown preset \"{}\"; one of {}, {}", args.preset, PRESETS.join(", "), FAMILY_PRESETS.join(", "))
        })?;
        cfg.seed = args.seed;
        write_synth_with(&cfg, recipe, &tok, &args.output).with_context(|| format!("writing {}", args.output.display()))?;
        format!("llama, {:.2}B parameters", cfg.n_params() as f64 / 1e9)
    };
    let size = std::fs::metadata(&args.output).map(|m| m.len()).unwrap_or(0);
    eprintln!(
        "wrote {} ({:.2} GiB, {what}, {}) in {:.1} s",
        args.output.display(),
        size as f64 / (1u64 << 30) as f64,
        args.ty,
        t.elapsed().as_secs_f64()
    );
    Ok(())
}
