//! `infer bench --offload-sweep 0,0.25,…`: the speed at each position of the
//! GPU offload slider, as a table, JSON rows, or a plot.

use infer_engine::Model;
use serde_json::{json, Value};

use crate::bench::{bench_model, BenchArgs, BenchConfig, Row};
use crate::plot::{plot_sweep, SweepPoint};

/// One ratio of a sweep.
pub struct SweepRow {
    pub ratio: f32,
    /// Layers on the GPU (blocks + output head) and the total.
    pub n_gpu: usize,
    pub n_total: usize,
    pub pp: Option<(String, f64, f64)>,
    pub tg: Option<(String, f64, f64)>,
    pub gpu_weight_bytes: u64,
    pub gpu_kv_bytes: u64,
    /// Resident memory of this process after the tests.
    pub host_rss_bytes: u64,
    pub device: Option<String>,
    /// The GPU side of the generation test (with GPU layers).
    pub gpu_tg: Option<crate::gpu_report::GpuReport>,
}

impl SweepRow {
    fn to_json(&self) -> Value {
        let t = |x: &Option<(String, f64, f64)>| match x {
            Some((test, mean, sd)) => json!({"test": test, "tok_s": mean, "stddev": sd}),
            None => Value::Null,
        };
        json!({
            "ratio": self.ratio,
            "gpu_layers": self.n_gpu,
            "total_layers": self.n_total,
            "pp": t(&self.pp),
            "tg": t(&self.tg),
            "pp_tok_s": self.pp.as_ref().map(|p| p.1),
            "tg_tok_s": self.tg.as_ref().map(|p| p.1),
            "gpu_weight_bytes": self.gpu_weight_bytes,
            "gpu_kv_bytes": self.gpu_kv_bytes,
            "host_rss_bytes": self.host_rss_bytes,
            "device": self.device,
            "gpu_tg": self.gpu_tg.as_ref().map(|g| g.to_json()),
        })
    }
}

/// Resident set size of this process, from /proc (0 where unavailable).
fn host_rss() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

fn first(rows: &[Row], prompt: bool) -> Option<(String, f64, f64)> {
    rows.iter().find(|r| (r.n_prompt > 0) == prompt).map(|r| {
        let (m, s) = r.tok_s();
        (r.test.clone(), m, s)
    })
}

/// Loads the model once per ratio and benchmarks it.
pub fn run_sweep(args: &BenchArgs, cfg: &BenchConfig, ratios: &[f32]) -> anyhow::Result<()> {
    if let Some(bad) = ratios.iter().find(|r| !(0.0..=1.0).contains(*r)) {
        anyhow::bail!("--offload-sweep: ratio {bad} is outside 0..=1");
    }
    let mut out = Vec::with_capacity(ratios.len());
    for &ratio in ratios {
        let mut m = args.model.clone();
        m.gpu_layers = None;
        m.offload = Some(ratio);
        let model = m.load_for_ctx(cfg.n_ctx())?;
        let rows = bench_model(&model, cfg)?;
        out.push(sweep_row(&model, ratio, &rows));
        eprintln!("ratio {ratio}: done");
    }
    if args.json {
        let all: Vec<Value> = out.iter().map(SweepRow::to_json).collect();
        println!("{}", serde_json::to_string_pretty(&all)?);
    } else {
        print_sweep(&out);
    }
    if let Some(path) = &args.plot {
        let points: Vec<SweepPoint> = out
            .iter()
            .map(|r| SweepPoint {
                ratio: r.ratio as f64,
                pp_tok_s: r.pp.as_ref().map(|p| p.1),
                tg_tok_s: r.tg.as_ref().map(|p| p.1),
            })
            .collect();
        let name = args.model.model.file_name().map_or_else(String::new, |n| n.to_string_lossy().into_owned());
        let device = out.iter().find_map(|r| r.device.clone()).unwrap_or_else(|| "no GPU".into());
        plot_sweep(&points, &format!("{name} on {device}"), path)?;
        eprintln!("plot written to {}", path.display());
    }
    Ok(())
}

fn sweep_row(model: &Model, ratio: f32, rows: &[Row]) -> SweepRow {
    let n_total = model.config().n_layers + 1;
    let (n_gpu, gpu_w, gpu_kv, device) = match model.offload() {
        Some(o) => {
            let e = &o.plan.estimate;
            (o.plan.n_gpu, e.gpu.weights, e.gpu.kv, e.device.clone())
        }
        None => (0, 0, 0, None),
    };
    SweepRow {
        ratio,
        n_gpu,
        n_total,
        pp: first(rows, true),
        tg: first(rows, false),
        gpu_weight_bytes: gpu_w,
        gpu_kv_bytes: gpu_kv,
        host_rss_bytes: host_rss(),
        device,
        gpu_tg: rows.iter().find(|r| r.n_gen > 0).and_then(|r| r.gpu.clone()),
    }
}

fn print_sweep(rows: &[SweepRow]) {
    let mib = |b: u64| format!("{:.1} MiB", b as f64 / (1024.0 * 1024.0));
    let ts = |x: &Option<(String, f64, f64)>| match x {
        Some((test, m, s)) => format!("{test}: {m:.2} ± {s:.2}"),
        None => "-".into(),
    };
    println!("| ratio | layers on GPU | pp t/s | tg t/s | GPU weights | GPU KV | host RSS |");
    println!("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    for r in rows {
        println!(
            "| {:.2} | {}/{} | {} | {} | {} | {} | {} |",
            r.ratio,
            r.n_gpu,
            r.n_total,
            ts(&r.pp),
            ts(&r.tg),
            mib(r.gpu_weight_bytes),
            mib(r.gpu_kv_bytes),
            mib(r.host_rss_bytes)
        );
    }
    for r in rows {
        if let Some(g) = &r.gpu_tg {
            print!("\nratio {:.2}:", r.ratio);
            g.print(r.tg.as_ref().map_or("tg", |t| t.0.as_str()));
        }
    }
}
