//! The README's chart: requests/s and p99 latency by concurrency, ours
//! against hyper-util and wrk, drawn with plotters' SVG backend.

use std::path::Path;

use plotters::prelude::*;

use crate::Series;

const NAMES: [&str; 3] = ["keepalive", "hyper-util", "wrk (ceiling)"];
const COLORS: [RGBColor; 3] = [
    RGBColor(0x1f, 0x77, 0xb4),
    RGBColor(0xd6, 0x27, 0x28),
    RGBColor(0x7f, 0x7f, 0x7f),
];

pub fn draw(series: &[Series], path: &Path) {
    if let Err(e) = try_draw(series, path) {
        eprintln!("chart not drawn: {e}");
    }
}

fn try_draw(series: &[Series], path: &Path) -> Result<(), Box<dyn std::error::Error>> {
    let root = SVGBackend::new(path, (960, 400)).into_drawing_area();
    root.fill(&WHITE)?;
    let (left, right) = root.split_horizontally(480);
    panel(&left, series, "requests/s by concurrency", |s| s.rps)?;
    panel(&right, series, "p99 latency (µs) by concurrency", |s| {
        s.p99
    })?;
    root.present()?;
    Ok(())
}

fn panel(
    area: &DrawingArea<SVGBackend<'_>, plotters::coord::Shift>,
    series: &[Series],
    title: &str,
    value: impl Fn(&Series) -> [Option<f64>; 3],
) -> Result<(), Box<dyn std::error::Error>> {
    let max = series
        .iter()
        .flat_map(|s| value(s).into_iter().flatten())
        .fold(0.0f64, f64::max)
        * 1.15;
    let xs: Vec<f64> = series.iter().map(|s| (s.conc as f64).log2()).collect();
    let x_max = xs.iter().copied().fold(0.0, f64::max) + 0.5;
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(64)
        .build_cartesian_2d(-0.5f64..x_max, 0f64..max.max(1.0))?;
    chart
        .configure_mesh()
        .x_desc("concurrent connections")
        .x_labels(8)
        .y_label_formatter(&|y| format!("{y:.0}"))
        .x_label_formatter(&|x| {
            let c = 2f64.powf(*x).round();
            if (x.fract().abs() < 1e-9) && [1.0, 4.0, 16.0, 64.0].contains(&c) {
                format!("{c}")
            } else {
                String::new()
            }
        })
        .draw()?;
    for (i, name) in NAMES.iter().enumerate() {
        let points: Vec<(f64, f64)> = series
            .iter()
            .zip(&xs)
            .filter_map(|(s, &x)| value(s)[i].map(|v| (x, v)))
            .collect();
        if points.is_empty() {
            continue;
        }
        let color = COLORS[i];
        chart
            .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))?
            .label(*name)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 16, y)], color.stroke_width(2))
            });
        chart.draw_series(points.iter().map(|&p| Circle::new(p, 4, color.filled())))?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .border_style(BLACK)
        .background_style(WHITE.mix(0.8))
        .draw()?;
    Ok(())
}
