//! 2-D samples drawn over the true density.

use ddim_exact::GaussianMixture;
use plotters::prelude::*;

use super::{font, ramp, Area, FONT_FAMILY};

/// Picture size in pixels.
pub(crate) const SIZE: (u32, u32) = (720, 780);

/// The plotted square, [−LIMIT, LIMIT]² (the built-in sets lie inside [−1, 1]²).
const LIMIT: f64 = 1.15;

/// Heat-map cells per side.
const CELLS: usize = 200;

/// White to deep blue, for the density scaled to [0, 1].
const DENSITY_STOPS: [(f64, [u8; 3]); 4] = [
    (0.0, [255, 255, 255]),
    (0.25, [198, 219, 239]),
    (0.6, [107, 174, 214]),
    (1.0, [8, 69, 148]),
];

/// An axis label with one decimal, without "−0.0".
fn tick(v: &f64) -> String {
    format!("{:.1}", if v.abs() < 1e-9 { 0.0 } else { *v })
}

/// What the picture shows.
pub(crate) struct Scatter<'a> {
    /// First title line.
    pub(crate) title: String,
    /// Second title line (settings, metrics).
    pub(crate) subtitle: String,
    /// The true distribution.
    pub(crate) mixture: &'a GaussianMixture,
    /// The samples, (x, y) pairs.
    pub(crate) samples: &'a [f32],
}

/// Draws the density as a heat map (colour ∝ √(p/p_max), so the tails show) and the samples
/// as dots.
pub(crate) fn draw(area: &Area<'_>, scatter: &Scatter<'_>) -> anyhow::Result<()> {
    let (header, body) = area.split_vertically(64);
    header.draw_text(&scatter.title, &font(22.0), (16, 8))?;
    header.draw_text(&scatter.subtitle, &font(15.0), (16, 38))?;

    let mut chart = ChartBuilder::on(&body)
        .margin(16)
        .x_label_area_size(40)
        .y_label_area_size(48)
        .build_cartesian_2d(-LIMIT..LIMIT, -LIMIT..LIMIT)?;
    chart
        .configure_mesh()
        .disable_mesh()
        .x_desc("x₁")
        .y_desc("x₂")
        .label_style((FONT_FAMILY, 14))
        .axis_desc_style((FONT_FAMILY, 16))
        .x_label_formatter(&tick)
        .y_label_formatter(&tick)
        .draw()?;

    let step = 2.0 * LIMIT / CELLS as f64;
    let centres: Vec<f32> = (0..CELLS * CELLS)
        .flat_map(|i| {
            let (row, col) = (i / CELLS, i % CELLS);
            [
                (-LIMIT + (col as f64 + 0.5) * step) as f32,
                (-LIMIT + (row as f64 + 0.5) * step) as f32,
            ]
        })
        .collect();
    let log_p = scatter.mixture.log_density(&centres)?;
    let max = log_p.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    chart
        .draw_series(log_p.iter().enumerate().map(|(i, lp)| {
            let (row, col) = ((i / CELLS) as f64, (i % CELLS) as f64);
            let (x0, y0) = (-LIMIT + col * step, -LIMIT + row * step);
            let colour = ramp(&DENSITY_STOPS, (lp - max).exp().sqrt());
            Rectangle::new([(x0, y0), (x0 + step, y0 + step)], colour.filled())
        }))?
        .label("true density")
        .legend(|(x, y)| {
            Rectangle::new(
                [(x, y - 6), (x + 14, y + 6)],
                RGBColor(107, 174, 214).filled(),
            )
        });

    let dot = RGBColor(230, 85, 13).mix(0.75).filled();
    chart
        .draw_series(
            scatter
                .samples
                .chunks_exact(2)
                .filter(|p| p.iter().all(|v| v.is_finite()))
                .map(|p| Circle::new((f64::from(p[0]), f64::from(p[1])), 2, dot)),
        )?
        .label(format!("samples ({})", scatter.samples.len() / 2))
        .legend(move |(x, y)| Circle::new((x + 7, y), 4, dot));

    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .label_font((FONT_FAMILY, 14))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;
    Ok(())
}
