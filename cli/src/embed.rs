//! `infer embed`: sentence embeddings of texts (one vector per text), their
//! cosine matrix, and `--bench` (texts/s and tokens/s by batch size).

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use infer_engine::embed::cosine;
use infer_engine::{EmbedOptions, GpuLayers, Model, ModelOptions, Pooling};

/// The embedding model used when `-m` and `INFER_EMBED_MODEL` are both absent.
pub const DEFAULT_EMBED_MODEL: &str = "models/all-MiniLM-L6-v2.f16.gguf";

#[derive(clap::Args, Debug)]
pub struct EmbedArgs {
    /// Embedding model (GGUF): an encoder such as all-MiniLM-L6-v2, or a
    /// decoder whose file names a pooling type
    #[arg(short = 'm', long = "model", env = "INFER_EMBED_MODEL", default_value = DEFAULT_EMBED_MODEL)]
    pub model: PathBuf,
    /// Threads for the CPU path (default: physical cores)
    #[arg(short = 't', long = "threads")]
    pub threads: Option<usize>,
    /// Layers to run on the GPU: a count (the output head counts as one),
    /// "all" or "auto". Also -ngl
    #[arg(long = "gpu-layers", visible_alias = "ngl", value_name = "N|all|auto")]
    pub gpu_layers: Option<GpuLayers>,
    /// Texts to embed, one vector each
    #[arg(value_name = "TEXT", required_unless_present_any = ["file", "bench"])]
    pub texts: Vec<String>,
    /// Read the texts from a file, one a line
    #[arg(long = "file", short = 'f', conflicts_with = "texts")]
    pub file: Option<PathBuf>,
    /// Print JSON: {"embeddings": [[...], ...]} (and "similarity" with --similarity)
    #[arg(long = "json")]
    pub json: bool,
    /// Keep the pooled vectors as they are (no L2 normalisation)
    #[arg(long = "no-normalize")]
    pub no_normalize: bool,
    /// Also print the cosine similarity of every pair of texts
    #[arg(long = "similarity")]
    pub similarity: bool,
    /// Pool this way instead of as the model says (mean, cls, last)
    #[arg(long = "pooling", value_name = "mean|cls|last")]
    pub pooling: Option<Pooling>,
    /// Fail on a text longer than the model's context instead of cutting it
    #[arg(long = "no-truncate")]
    pub no_truncate: bool,
    /// Measure texts/s and tokens/s for batches of 1, 32 and 256 sentences of 8-30 words
    #[arg(long = "bench", conflicts_with_all = ["texts", "file"])]
    pub bench: bool,
    /// With --bench: write its 256 sentences to this file (one a line) and
    /// stop, so another program can embed the same texts
    #[arg(long = "bench-texts", value_name = "FILE", requires = "bench")]
    pub bench_texts: Option<PathBuf>,
}

pub fn run(args: EmbedArgs) -> anyhow::Result<()> {
    if let Some(p) = &args.bench_texts {
        let mut text = bench_sentences(256).join("\n");
        text.push('\n');
        return std::fs::write(p, text).with_context(|| format!("writing {}", p.display()));
    }
    crate::gen_args::init_threads(args.threads)?;
    let path = crate::common::resolve_model(&args.model)?;
    let t0 = Instant::now();
    let options = ModelOptions { gpu_layers: args.gpu_layers.unwrap_or(GpuLayers::None), ..Default::default() };
    let model = Model::load(&path, options).with_context(|| format!("loading {}", path.display()))?;
    let load_s = t0.elapsed().as_secs_f64();
    for w in model.warnings() {
        eprintln!("warning: {w}");
    }
    let opts = EmbedOptions {
        normalize: !args.no_normalize,
        pooling: args.pooling,
        truncate: !args.no_truncate,
        ..Default::default()
    };
    if args.bench {
        return bench(&model, &opts, load_s);
    }
    let texts: Vec<String> = match &args.file {
        Some(p) => std::fs::read_to_string(p)
            .with_context(|| format!("reading {}", p.display()))?
            .lines()
            .map(str::to_string)
            .collect(),
        None => args.texts.clone(),
    };
    let e = model.embed_with(&texts, &opts)?;
    for &i in &e.truncated {
        eprintln!("warning: text {} is longer than the model's context; cut to {} tokens", i + 1, e.n_ctx);
    }
    let sim: Vec<Vec<f32>> = if args.similarity {
        e.vectors.iter().map(|a| e.vectors.iter().map(|b| cosine(a, b)).collect()).collect()
    } else {
        Vec::new()
    };
    let mut out = std::io::stdout().lock();
    if args.json {
        let mut j = serde_json::json!({ "embeddings": e.vectors, "n_tokens": e.n_tokens });
        if args.similarity {
            j["similarity"] = serde_json::json!(sim);
        }
        writeln!(out, "{j}")?;
        return Ok(());
    }
    for v in &e.vectors {
        let parts: Vec<String> = v.iter().map(|x| format!("{x:.6}")).collect();
        writeln!(out, "{}", parts.join(" "))?;
    }
    if args.similarity {
        writeln!(out, "cosine similarity:")?;
        for row in &sim {
            let parts: Vec<String> = row.iter().map(|x| format!("{x:6.3}")).collect();
            writeln!(out, "{}", parts.join(" "))?;
        }
    }
    Ok(())
}

/// 256 sentences of 8-30 words from a fixed word list (the same every run).
pub fn bench_sentences(n: usize) -> Vec<String> {
    const WORDS: &[&str] = &[
        "the", "a", "model", "river", "city", "quickly", "small", "green", "data", "house", "runs", "reads", "over",
        "under", "bright", "music", "table", "people", "carry", "system", "winter", "summer", "market", "price",
        "question", "answer", "garden", "window", "train", "station", "morning", "evening", "software", "library",
        "engine", "travels", "grows", "and", "with", "from", "into", "because", "while", "language", "vector", "search",
        "document", "result", "friend", "teacher", "student", "writes", "builds", "mountain", "ocean", "quiet", "loud",
        "history", "future", "simple", "complex", "machine", "learning", "coffee", "street", "paper", "light", "dark",
    ];
    let mut s: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        s = s.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        (s >> 33) as usize
    };
    (0..n)
        .map(|_| {
            let n_words = 8 + next() % 23;
            let mut t: Vec<&str> = (0..n_words).map(|_| WORDS[next() % WORDS.len()]).collect();
            let first = t[0].to_string();
            let mut c = first.chars();
            let cap: String = c.next().map(|f| f.to_uppercase().chain(c).collect()).unwrap_or_default();
            t[0] = &cap;
            format!("{}.", t.join(" "))
        })
        .collect()
}

/// CPU seconds this process has used, all threads (0 where unknown).
fn cpu_seconds() -> f64 {
    #[cfg(unix)]
    {
        // SAFETY: getrusage fills the struct it is given.
        let mut u: libc::rusage = unsafe { std::mem::zeroed() };
        if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) } == 0 {
            let t = |v: libc::timeval| v.tv_sec as f64 + v.tv_usec as f64 * 1e-6;
            return t(u.ru_utime) + t(u.ru_stime);
        }
    }
    0.0
}

fn bench(model: &Model, opts: &EmbedOptions, load_s: f64) -> anyhow::Result<()> {
    let texts = bench_sentences(256);
    let n_tokens: usize = model.embed_with(&texts[..32], opts)?.n_tokens; // warm-up (repacking, pages)
    let _ = n_tokens;
    println!(
        "model {} ({} layers, dim {}), {} threads, load {:.2} s",
        model.path().display(),
        model.config().n_layers,
        model.config().dim,
        infer_engine::threads::n_threads(),
        load_s
    );
    // Each batch size three times, the median reported (as the
    // sentence-transformers comparison script times `encode`), with the
    // process CPU seconds of that run: on a shared machine, wall time over
    // CPU time tells whether the run had its threads' cores.
    println!("| batch | texts | tokens | seconds (median of 3) | texts/s | tokens/s | CPU s |");
    println!("|---:|---:|---:|---:|---:|---:|---:|");
    for batch in [1usize, 32, 256] {
        let mut runs = Vec::with_capacity(3);
        let mut tokens = 0;
        for _ in 0..3 {
            let (t0, c0) = (Instant::now(), cpu_seconds());
            tokens = 0;
            for chunk in texts.chunks(batch) {
                tokens += model.embed_with(chunk, opts)?.n_tokens;
            }
            runs.push((t0.elapsed().as_secs_f64(), cpu_seconds() - c0));
        }
        runs.sort_by(|a, b| a.0.total_cmp(&b.0));
        let (s, cpu) = runs[1];
        println!(
            "| {batch} | {} | {tokens} | {s:.3} | {:.1} | {:.0} | {cpu:.3} |",
            texts.len(),
            texts.len() as f64 / s,
            tokens as f64 / s
        );
    }
    Ok(())
}
