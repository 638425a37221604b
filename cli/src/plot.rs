//! `--plot FILE.svg`: tokens/s against the offload ratio.

use std::path::Path;

use anyhow::Context;
use plotters::prelude::*;

/// One point of an offload sweep.
#[derive(Debug, Clone, PartialEq)]
pub struct SweepPoint {
    pub ratio: f64,
    pub pp_tok_s: Option<f64>,
    pub tg_tok_s: Option<f64>,
}

/// Draws prompt and generation tokens/s against the offload ratio as an SVG.
pub fn plot_sweep(points: &[SweepPoint], title: &str, path: &Path) -> anyhow::Result<()> {
    match path.extension().and_then(|e| e.to_str()) {
        Some("svg") => {}
        other => anyhow::bail!(
            "--plot {}: only .svg is supported (got {:?}); SVG opens in any browser",
            path.display(),
            other.unwrap_or("no extension")
        ),
    }
    let max = points.iter().flat_map(|p| [p.pp_tok_s, p.tg_tok_s]).flatten().fold(1.0f64, f64::max) * 1.1;
    let root = SVGBackend::new(path, (800, 500)).into_drawing_area();
    let draw = || -> Result<(), Box<dyn std::error::Error>> {
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 20))
            .margin(15)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(0.0f64..1.0f64, 0.0f64..max)?;
        chart.configure_mesh().x_desc("offload ratio (share of layers on the GPU)").y_desc("tokens/s").draw()?;
        let series = |f: fn(&SweepPoint) -> Option<f64>| -> Vec<(f64, f64)> {
            points.iter().filter_map(|p| f(p).map(|v| (p.ratio, v))).collect()
        };
        for (name, color, data) in [("prompt (pp)", BLUE, series(|p| p.pp_tok_s)), ("generation (tg)", RED, series(|p| p.tg_tok_s))] {
            if data.is_empty() {
                continue;
            }
            chart
                .draw_series(LineSeries::new(data.clone(), color.stroke_width(2)))?
                .label(name)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
            chart.draw_series(data.into_iter().map(|(x, y)| Circle::new((x, y), 4, color.filled())))?;
        }
        chart.configure_series_labels().background_style(WHITE.mix(0.8)).border_style(BLACK).draw()?;
        root.present()?;
        Ok(())
    };
    draw().map_err(|e| anyhow::anyhow!("{e}")).with_context(|| format!("drawing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_an_svg_with_both_series() {
        let path = std::env::temp_dir().join(format!("infer-plot-{}.svg", std::process::id()));
        let pts: Vec<SweepPoint> = [0.0, 0.5, 1.0]
            .iter()
            .map(|&r| SweepPoint { ratio: r, pp_tok_s: Some(100.0 + r * 50.0), tg_tok_s: Some(20.0 + r * 10.0) })
            .collect();
        plot_sweep(&pts, "test", &path).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        assert!(svg.starts_with("<svg") && svg.contains("generation (tg)") && svg.contains("<polyline"), "{svg}");
        std::fs::remove_file(&path).ok();
        assert!(plot_sweep(&pts, "test", Path::new("x.png")).is_err());
    }
}
