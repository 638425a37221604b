//! `infer bench`: prompt-processing and generation speed, measured the way
//! llama-bench measures it so the two tables compare row by row.
//!
//! - `ppN`: `N` tokens evaluated from an empty cache (in batches of `-b`).
//! - `tgN`: `N` tokens evaluated one at a time from an empty cache.
//!
//! Each test runs once unrecorded (warm-up), then `-r` times; the row gives
//! the mean and standard deviation of the per-repetition tokens/s. Token ids
//! are arbitrary valid ids (speed does not depend on them).

use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use infer_engine::kv_cache::CacheType;
use infer_engine::{Logits, Model, SessionParams};
use serde_json::{json, Value};

use crate::gen_args::ModelArgs;
use crate::gpu_report::GpuReport;

#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Prompt lengths to test, comma-separated (0 skips)
    #[arg(short = 'p', long = "n-prompt", value_delimiter = ',', default_value = "128")]
    pub n_prompt: Vec<usize>,
    /// Generation lengths to test, comma-separated (0 skips)
    #[arg(short = 'n', long = "n-gen", value_delimiter = ',', default_value = "64")]
    pub n_gen: Vec<usize>,
    /// Repetitions of each test after the warm-up
    #[arg(short = 'r', long = "repetitions", default_value_t = 3)]
    pub reps: usize,
    /// Most tokens per forward step during prompt processing
    #[arg(short = 'b', long = "batch-size", default_value_t = 512)]
    pub batch: usize,
    /// KV cache element type: f16 or f32
    #[arg(long = "cache-type", default_value = "f16")]
    pub cache_type: CacheType,
    /// Print a JSON array of rows instead of a markdown table
    #[arg(long)]
    pub json: bool,
    /// Offload ratios to sweep (0.0..=1.0 of the layers on the GPU), comma-separated
    #[arg(long = "offload-sweep", value_delimiter = ',', value_name = "R,R,…")]
    pub offload_sweep: Vec<f32>,
    /// With --offload-sweep: draw tokens/s against the ratio into this .svg file
    #[arg(long = "plot", value_name = "FILE.svg", requires = "offload_sweep")]
    pub plot: Option<std::path::PathBuf>,
    /// With layers on the GPU: time every kernel of a few extra decode steps
    /// with GPU timestamps and report where the time goes
    #[arg(long = "gpu-profile")]
    pub gpu_profile: bool,
    /// Sequences at once, comma-separated (as llama-batched-bench's -npl): each
    /// N runs N prompts of -p tokens together, then -n steps of one token per sequence
    #[arg(long = "parallel", value_delimiter = ',', value_name = "N,N,…", conflicts_with = "offload_sweep")]
    pub parallel: Vec<usize>,
}

/// What to measure on one loaded model.
#[derive(Debug, Clone)]
pub struct BenchConfig {
    pub n_prompt: Vec<usize>,
    pub n_gen: Vec<usize>,
    pub reps: usize,
    pub n_batch: usize,
    pub cache_type: CacheType,
    /// Profile the GPU kernels of each generation test (see `--gpu-profile`).
    pub gpu_profile: bool,
}

/// One test's result on one model (one line of the table).
#[derive(Debug, Clone)]
pub struct Row {
    pub model_filename: String,
    /// `arch params type`, e.g. `llama 135M Q4_1`.
    pub model_type: String,
    /// Bytes of tensor data.
    pub model_size: u64,
    pub model_n_params: u64,
    pub backend: String,
    pub n_threads: usize,
    pub n_prompt: usize,
    pub n_gen: usize,
    /// `pp128`, `tg64`.
    pub test: String,
    /// Wall time of each repetition.
    pub samples_ns: Vec<u64>,
    /// The GPU part, when layers run there.
    pub gpu: Option<GpuReport>,
}

impl Row {
    fn n_tokens(&self) -> usize {
        self.n_prompt + self.n_gen
    }
    /// Tokens/s of each repetition.
    pub fn samples_ts(&self) -> Vec<f64> {
        self.samples_ns.iter().map(|&ns| self.n_tokens() as f64 * 1e9 / ns.max(1) as f64).collect()
    }
    /// Mean and sample standard deviation of the tokens/s.
    pub fn tok_s(&self) -> (f64, f64) {
        let ts = self.samples_ts();
        let n = ts.len().max(1) as f64;
        let mean = ts.iter().sum::<f64>() / n;
        let var = if ts.len() > 1 { ts.iter().map(|t| (t - mean).powi(2)).sum::<f64>() / (n - 1.0) } else { 0.0 };
        (mean, var.sqrt())
    }

    pub fn to_json(&self) -> Value {
        let (mean, sd) = self.tok_s();
        let avg_ns = self.samples_ns.iter().sum::<u64>() / self.samples_ns.len().max(1) as u64;
        let mut v = json!({
            "model_filename": self.model_filename,
            "model_type": self.model_type,
            "model_size": self.model_size,
            "model_n_params": self.model_n_params,
            "backend": self.backend,
            "n_threads": self.n_threads,
            "n_prompt": self.n_prompt,
            "n_gen": self.n_gen,
            "test": self.test,
            "avg_ns": avg_ns,
            "samples_ns": self.samples_ns,
            "samples_ts": self.samples_ts(),
            "tok_s": mean,
            "stddev": sd,
        });
        if let (Some(g), Some(obj)) = (&self.gpu, v.as_object_mut()) {
            obj.insert("gpu".into(), g.to_json());
        }
        v
    }
}

pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    if args.reps == 0 {
        anyhow::bail!("-r/--repetitions must be at least 1");
    }
    let cfg = BenchConfig {
        n_prompt: args.n_prompt.iter().copied().filter(|&n| n > 0).collect(),
        n_gen: args.n_gen.iter().copied().filter(|&n| n > 0).collect(),
        reps: args.reps,
        n_batch: args.batch,
        cache_type: args.cache_type,
        gpu_profile: args.gpu_profile,
    };
    if !args.offload_sweep.is_empty() {
        return crate::sweep::run_sweep(&args, &cfg, &args.offload_sweep);
    }
    if !args.parallel.is_empty() {
        if args.parallel.contains(&0) || args.n_prompt.len() != 1 || args.n_gen.len() != 1 {
            anyhow::bail!("--parallel takes counts of at least 1, with one -p and one -n");
        }
        let (np, ng) = (args.n_prompt[0], args.n_gen[0]);
        let model = args.model.load_for_ctx(np + ng + 1)?;
        let rows = crate::bench_parallel::bench_parallel(&model, &args.parallel, np, ng, args.reps, args.batch)?;
        if args.json {
            let all: Vec<Value> = rows.iter().map(|r| r.to_json()).collect();
            println!("{}", serde_json::to_string_pretty(&all)?);
        } else {
            crate::bench_parallel::print_table(&rows);
        }
        return Ok(());
    }
    let model = args.model.load_for_ctx(cfg.n_ctx())?;
    let rows = bench_model(&model, &cfg)?;
    if args.json {
        let all: Vec<Value> = rows.iter().map(Row::to_json).collect();
        println!("{}", serde_json::to_string_pretty(&all)?);
    } else {
        print_table(&rows);
    }
    Ok(())
}

impl BenchConfig {
    /// Context that holds the longest test.
    pub fn n_ctx(&self) -> usize {
        self.n_prompt.iter().chain(&self.n_gen).copied().max().unwrap_or(1).max(2)
    }
}

/// Runs every test of `cfg` on `model` and returns one row per test. The
/// model's offload (from its `ModelOptions`) is whatever it was loaded with,
/// so an offload sweep calls this once per loaded model.
pub fn bench_model(model: &Arc<Model>, cfg: &BenchConfig) -> anyhow::Result<Vec<Row>> {
    let n_batch = cfg.n_batch.max(1);
    let params = SessionParams { n_ctx: cfg.n_ctx(), n_batch, context_shift: false, cache_type: cfg.cache_type };
    let mut session = model.session(params).context("creating the bench session")?;
    let info = ModelInfo::of(model);
    let vocab = model.config().vocab as u32;
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    let mut next_token = move || {
        // xorshift64: any valid ids will do.
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        (rng % vocab as u64) as u32
    };
    let gpu = model.offload().map(|o| o.weights.context().clone());
    let stats = || gpu.as_ref().map(|g| g.stats()).unwrap_or_default();
    let mut rows = Vec::new();
    for &n in &cfg.n_prompt {
        let mut samples = Vec::with_capacity(cfg.reps);
        let mut before = stats();
        for rep in 0..=cfg.reps {
            let tokens: Vec<u32> = (0..n).map(|_| next_token()).collect();
            session.clear();
            if rep == 1 {
                before = stats();
            }
            let t = Instant::now();
            session.eval(&tokens, Logits::Last).with_context(|| format!("pp{n}"))?;
            if rep > 0 {
                samples.push(t.elapsed().as_nanos() as u64);
            }
        }
        let mut row = info.row(format!("pp{n}"), n, 0, samples);
        row.gpu = gpu.as_ref().map(|_| GpuReport {
            tokens: n * cfg.reps,
            stats: stats().since(&before),
            ..Default::default()
        });
        rows.push(row);
    }
    for &n in &cfg.n_gen {
        let mut samples = Vec::with_capacity(cfg.reps);
        let decode = |session: &mut infer_engine::Session, tokens: &[u32]| -> anyhow::Result<()> {
            session.clear();
            for tok in tokens {
                session.eval(std::slice::from_ref(tok), Logits::Last).with_context(|| format!("tg{n}"))?;
            }
            Ok(())
        };
        let mut before = stats();
        for rep in 0..=cfg.reps {
            let tokens: Vec<u32> = (0..n).map(|_| next_token()).collect();
            if rep == 1 {
                before = stats();
            }
            let t = Instant::now();
            decode(&mut session, &tokens)?;
            if rep > 0 {
                samples.push(t.elapsed().as_nanos() as u64);
            }
        }
        let mut row = info.row(format!("tg{n}"), 0, n, samples);
        if let Some(ctx) = &gpu {
            let mut report = GpuReport { tokens: n * cfg.reps, stats: stats().since(&before), ..Default::default() };
            if cfg.gpu_profile {
                // One more pass, timed kernel by kernel (timestamps slow it a little).
                if !ctx.set_profiling(true) {
                    eprintln!("warning: the GPU offers no timestamp queries; no kernel profile");
                }
                let tokens: Vec<u32> = (0..n).map(|_| next_token()).collect();
                let r = decode(&mut session, &tokens);
                ctx.set_profiling(false);
                r?;
                report.profile = ctx.take_profile();
                report.profiled_tokens = n;
            }
            row.gpu = Some(report);
        }
        rows.push(row);
    }
    Ok(rows)
}

/// The model columns shared by every row.
struct ModelInfo {
    filename: String,
    model_type: String,
    size: u64,
    n_params: u64,
    backend: String,
    n_threads: usize,
}

impl ModelInfo {
    fn of(model: &Model) -> Self {
        let g = model.gguf();
        let size = g.tensors().iter().map(|t| t.n_bytes).sum();
        let n_params = g.tensors().iter().map(|t| t.n_elements()).sum();
        // Name the model by its dominant weight type, as llama-bench names it by file type.
        let mut by_type: Vec<(infer_gguf::QuantType, u64)> = Vec::new();
        for t in g.tensors().iter().filter(|t| t.dims.len() >= 2) {
            match by_type.iter_mut().find(|(ty, _)| *ty == t.ty) {
                Some(e) => e.1 += t.n_bytes,
                None => by_type.push((t.ty, t.n_bytes)),
            }
        }
        let ty = by_type.iter().max_by_key(|e| e.1).map_or("?".to_string(), |e| e.0.name().to_uppercase());
        let arch = g.architecture().unwrap_or("?");
        let backend = if model.offload().is_some() { "GPU+CPU" } else { "CPU" };
        ModelInfo {
            filename: model.path().display().to_string(),
            model_type: format!("{arch} {} {ty}", human(n_params as f64, "")),
            size,
            n_params,
            backend: backend.to_string(),
            n_threads: infer_engine::threads::n_threads(),
        }
    }

    fn row(&self, test: String, n_prompt: usize, n_gen: usize, samples_ns: Vec<u64>) -> Row {
        Row {
            model_filename: self.filename.clone(),
            model_type: self.model_type.clone(),
            model_size: self.size,
            model_n_params: self.n_params,
            backend: self.backend.clone(),
            n_threads: self.n_threads,
            n_prompt,
            n_gen,
            test,
            samples_ns,
            gpu: None,
        }
    }
}

/// `134.52M`, `1.24B`.
fn human(n: f64, unit: &str) -> String {
    if n >= 1e9 {
        format!("{:.2}B{unit}", n / 1e9)
    } else {
        format!("{:.2}M{unit}", n / 1e6)
    }
}

fn size_str(bytes: u64) -> String {
    let b = bytes as f64;
    if b >= (1u64 << 30) as f64 {
        format!("{:.2} GiB", b / (1u64 << 30) as f64)
    } else {
        format!("{:.2} MiB", b / (1u64 << 20) as f64)
    }
}

/// llama-bench's markdown table.
fn print_table(rows: &[Row]) {
    println!("| model | size | params | backend | threads | test | t/s |");
    println!("| --- | ---: | ---: | --- | ---: | ---: | ---: |");
    for r in rows {
        let (mean, sd) = r.tok_s();
        println!(
            "| {} | {} | {} | {} | {} | {} | {:.2} ± {:.2} |",
            r.model_type,
            size_str(r.model_size),
            human(r.model_n_params as f64, ""),
            r.backend,
            r.n_threads,
            r.test,
            mean,
            sd
        );
    }
    for r in rows {
        if let Some(g) = &r.gpu {
            g.print(&r.test);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mean_and_stddev_of_rates() {
        let r = Row {
            model_filename: String::new(),
            model_type: String::new(),
            model_size: 0,
            model_n_params: 0,
            backend: "CPU".into(),
            n_threads: 1,
            n_prompt: 100,
            n_gen: 0,
            test: "pp100".into(),
            samples_ns: vec![1_000_000_000, 500_000_000],
            gpu: None,
        };
        let (mean, sd) = r.tok_s();
        assert!((mean - 150.0).abs() < 1e-9);
        assert!((sd - 70.710678).abs() < 1e-4);
        assert_eq!(r.to_json()["test"], "pp100");
    }
}
