//! Draws a soak run's timeline (the JSON that tests/server/soak.py writes)
//! as an SVG: tokens/s, the server's RSS and its open fds over time.
//!
//! `cargo run --release -p infer-cli --example soak_plot -- soak.json docs/soak.svg`

use anyhow::Context;
use plotters::prelude::*;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let [_, input, output] = &args[..] else { anyhow::bail!("usage: soak_plot SOAK.json OUT.svg") };
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(input).with_context(|| format!("reading {input}"))?)
        .with_context(|| format!("{input} is not JSON"))?;
    let timeline = report["timeline"].as_array().with_context(|| format!("{input} has no \"timeline\" array"))?;
    let series = |key: &str| -> Vec<(f64, f64)> {
        timeline.iter().filter_map(|s| Some((s["t"].as_f64()?, s[key].as_f64()?))).collect()
    };
    let panels = [("tokens/s (all slots)", series("tokens_per_s"), BLUE), ("RSS (MiB)", series("rss_mib"), RED), ("open fds", series("fds"), GREEN)];
    let t_end = panels[0].1.last().map_or(1.0, |p| p.0).max(1.0);
    let summary = &report["summary"];
    let title = format!(
        "infer serve --parallel 4 soak: {} requests, TTFT p50 {} s / p99 {} s",
        summary["requests_served"], summary["ttft_p50_s"], summary["ttft_p99_s"]
    );
    let root = SVGBackend::new(output, (900, 720)).into_drawing_area();
    let draw = || -> Result<(), Box<dyn std::error::Error>> {
        root.fill(&WHITE)?;
        let root = root.titled(&title, ("sans-serif", 18))?;
        for (area, (name, data, color)) in root.split_evenly((3, 1)).iter().zip(panels) {
            let max = data.iter().map(|p| p.1).fold(0.0, f64::max) * 1.1 + 1e-9;
            let mut chart = ChartBuilder::on(area)
                .margin(10)
                .x_label_area_size(30)
                .y_label_area_size(60)
                .build_cartesian_2d(0.0..t_end, 0.0..max)?;
            chart.configure_mesh().x_desc("seconds").y_desc(name).draw()?;
            chart.draw_series(LineSeries::new(data, color.stroke_width(2)))?;
        }
        root.present()?;
        Ok(())
    };
    draw().map_err(|e| anyhow::anyhow!("{e}")).with_context(|| format!("drawing {output}"))
}
