//! Options shared by the commands that load a model and generate.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use infer_engine::{ChatMessage, CpuMoe, GpuLayers, Model, ModelOptions, SamplerParams, SessionParams};

/// The model file (`-m`), defaulting to the project's default model.
#[derive(clap::Args, Debug, Clone)]
pub struct ModelArgs {
    /// GGUF model file, or a Hugging Face folder (config.json, *.safetensors, tokenizer.json)
    #[arg(short = 'm', long = "model", env = "INFER_MODEL", default_value = crate::common::DEFAULT_MODEL)]
    pub model: PathBuf,
    /// Quantize F32/F16/BF16 matrices while loading: q8_0 or q4_0
    #[arg(long = "quantize", value_name = "TYPE", value_parser = crate::convert::parse_quant)]
    pub quantize: Option<infer_gguf::QuantType>,
    /// Threads for the CPU path (default: physical cores)
    #[arg(short = 't', long = "threads")]
    pub threads: Option<usize>,
    /// Layers to run on the GPU: a count (the output head counts as one; the
    /// last layers go first), "all" or "auto" (what fits the VRAM budget). Also -ngl
    #[arg(long = "gpu-layers", visible_alias = "ngl", value_name = "N|all|auto")]
    pub gpu_layers: Option<GpuLayers>,
    /// Fraction 0.0..=1.0 of the layers (blocks + output head) to run on the GPU
    #[arg(long = "offload", value_name = "R", conflicts_with = "gpu_layers")]
    pub offload: Option<f32>,
    /// GPU memory the offload may use, in bytes (suffixes K, M, G); default: what the adapter reports, minus 10%
    #[arg(long = "vram-budget", value_name = "BYTES", value_parser = parse_bytes)]
    pub vram_budget: Option<u64>,
    /// Keep every MoE layer's expert weights on the CPU while the rest of the layer is offloaded
    #[arg(long = "cpu-moe", conflicts_with = "n_cpu_moe")]
    pub cpu_moe: bool,
    /// Keep the expert weights of the first N MoE layers on the CPU
    #[arg(long = "n-cpu-moe", value_name = "N")]
    pub n_cpu_moe: Option<usize>,
}

/// Parses a byte count with an optional binary suffix (`512M`, `2G`).
fn parse_bytes(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let (num, mul) = match t.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let m = match c.to_ascii_uppercase() {
                'K' => 1u64 << 10,
                'M' => 1 << 20,
                'G' => 1 << 30,
                'T' => 1 << 40,
                _ => return Err(format!("\"{s}\": unknown size suffix {c} (K, M, G, T)")),
            };
            (&t[..i], m)
        }
        _ => (t, 1),
    };
    let v: f64 = num.parse().map_err(|_| format!("\"{s}\" is not a byte count"))?;
    if !(v >= 0.0) {
        return Err(format!("\"{s}\" is not a byte count"));
    }
    Ok((v * mul as f64) as u64)
}

/// llama.cpp spells `--gpu-layers` as `-ngl`, which clap cannot take as a
/// short flag: rewrite it before parsing.
pub fn normalize_args(args: impl Iterator<Item = std::ffi::OsString>) -> Vec<std::ffi::OsString> {
    args.map(|a| if a == "-ngl" { "--gpu-layers".into() } else { a }).collect()
}

impl ModelArgs {
    /// The offload asked for on the command line.
    pub fn gpu_layers(&self) -> GpuLayers {
        match (self.gpu_layers, self.offload) {
            (Some(g), _) => g,
            (None, Some(r)) => GpuLayers::Ratio(r),
            (None, None) => GpuLayers::None,
        }
    }

    /// Which layers keep their experts on the CPU.
    pub fn cpu_moe(&self) -> CpuMoe {
        match (self.cpu_moe, self.n_cpu_moe) {
            (true, _) => CpuMoe::All,
            (false, Some(n)) if n > 0 => CpuMoe::First(n),
            _ => CpuMoe::None,
        }
    }

    /// Sets up the thread pool and loads the model, with a progress bar on a terminal.
    pub fn load(&self) -> anyhow::Result<Arc<Model>> {
        self.load_for_ctx(0)
    }

    /// As [`ModelArgs::load`], sizing the offload estimate for sessions of
    /// `n_ctx` tokens (0 = the default context).
    pub fn load_for_ctx(&self, n_ctx: usize) -> anyhow::Result<Arc<Model>> {
        init_threads(self.threads)?;
        let path = crate::common::resolve_model(&self.model)?;
        let bar = std::io::stderr().is_terminal().then(|| {
            let b = indicatif::ProgressBar::new(100);
            b.set_style(
                indicatif::ProgressStyle::with_template("loading {msg} [{bar:30}] {percent}%")
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            b.set_message(path.display().to_string());
            b
        });
        let opts = ModelOptions {
            prefault: true,
            gpu_layers: self.gpu_layers(),
            vram_budget: self.vram_budget,
            n_ctx,
            cpu_moe: self.cpu_moe(),
            quantize: self.quantize,
        };
        // The estimate goes to stderr before the weights are uploaded.
        let on_estimate = |e: &infer_engine::offload::OffloadEstimate| match &bar {
            Some(b) => b.suspend(|| eprintln!("{e}")),
            None => eprintln!("{e}"),
        };
        let model = Model::load_with(&path, opts, on_estimate, |f| {
            if let Some(b) = &bar {
                b.set_position((f * 100.0) as u64);
            }
        })
        .with_context(|| format!("loading {}", path.display()))?;
        if let Some(b) = bar {
            b.finish_and_clear();
        }
        for w in model.warnings() {
            eprintln!("warning: {w}");
        }
        Ok(model)
    }
}

/// Builds rayon's global pool once with `n` threads (default: physical cores).
pub fn init_threads(n: Option<usize>) -> anyhow::Result<()> {
    let n = match n {
        Some(0) => anyhow::bail!("-t/--threads must be at least 1"),
        Some(n) => n,
        None => physical_cores(),
    };
    // A second call (tests, repeated commands in one process) keeps the first pool.
    infer_engine::threads::set_threads(n);
    Ok(())
}

/// Physical cores from /proc/cpuinfo where available, else logical CPUs.
pub fn physical_cores() -> usize {
    let logical = std::thread::available_parallelism().map_or(1, |n| n.get());
    let Ok(info) = std::fs::read_to_string("/proc/cpuinfo") else { return logical };
    let mut cores = std::collections::HashSet::new();
    let mut phys = "";
    for line in info.lines() {
        if let Some(v) = line.strip_prefix("physical id") {
            phys = v.trim_start_matches([' ', '\t', ':']);
        } else if let Some(v) = line.strip_prefix("core id") {
            cores.insert((phys.to_string(), v.trim_start_matches([' ', '\t', ':']).to_string()));
        }
    }
    if cores.is_empty() {
        logical
    } else {
        cores.len().min(logical)
    }
}

/// Sampling and context options, with llama.cpp's names.
#[derive(clap::Args, Debug, Clone)]
pub struct GenArgs {
    /// Tokens to generate
    #[arg(short = 'n', long = "n-predict", default_value_t = 256)]
    pub n_predict: usize,
    /// Context size in tokens (default: min(4096, the model's))
    #[arg(short = 'c', long = "ctx", visible_alias = "ctx-size", default_value_t = 0)]
    pub ctx: usize,
    /// Prompt batch size
    #[arg(short = 'b', long = "batch-size", default_value_t = 256)]
    pub batch: usize,
    /// When the context fills up, drop the oldest half after the system prompt and go on
    #[arg(long = "context-shift")]
    pub context_shift: bool,
    /// KV cache element type: f16 or f32
    #[arg(long = "cache-type", default_value = "f16")]
    pub cache_type: infer_engine::kv_cache::CacheType,
    /// Temperature (0 = greedy)
    #[arg(long = "temp", default_value_t = 0.8)]
    pub temp: f32,
    #[arg(long = "top-k", default_value_t = 40)]
    pub top_k: usize,
    #[arg(long = "top-p", default_value_t = 0.95)]
    pub top_p: f32,
    #[arg(long = "min-p", default_value_t = 0.05)]
    pub min_p: f32,
    #[arg(long = "repeat-penalty", default_value_t = 1.0)]
    pub repeat_penalty: f32,
    #[arg(long = "repeat-last-n", default_value_t = 64)]
    pub repeat_last_n: usize,
    /// Random seed (default: from the clock)
    #[arg(short = 's', long = "seed")]
    pub seed: Option<u64>,
    /// Stop where this text appears (repeatable)
    #[arg(long = "stop")]
    pub stop: Vec<String>,
}

impl GenArgs {
    pub fn sampler(&self) -> SamplerParams {
        let seed = self.seed.unwrap_or_else(|| {
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
        });
        SamplerParams {
            temperature: self.temp,
            top_k: self.top_k,
            top_p: self.top_p,
            min_p: self.min_p,
            repeat_penalty: self.repeat_penalty,
            repeat_last_n: self.repeat_last_n,
            seed,
        }
    }

    pub fn session(&self) -> SessionParams {
        SessionParams { n_ctx: self.ctx, n_batch: self.batch, context_shift: self.context_shift, cache_type: self.cache_type }
    }
}

/// Reads a `--messages` file: a JSON list of `{role, content}`.
pub fn read_messages(path: &std::path::Path) -> anyhow::Result<Vec<ChatMessage>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text)
        .with_context(|| format!("{}: expected a JSON list of {{\"role\", \"content\"}} objects", path.display()))
}
