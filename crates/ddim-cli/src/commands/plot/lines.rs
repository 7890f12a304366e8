//! Mean ± standard deviation against the number of steps (log axis), one line per series,
//! with an optional reference band (the noise floor).

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::{font, Area, FONT_FAMILY, PALETTE};

/// Picture size in pixels.
pub(crate) const SIZE: (u32, u32) = (900, 600);

/// One line: points (steps, mean, standard deviation).
pub(crate) struct Series {
    /// Legend text.
    pub(crate) label: String,
    /// (x, mean, std) per point, x > 0.
    pub(crate) points: Vec<(f64, f64, f64)>,
}

/// What the chart shows.
pub(crate) struct LineChart {
    /// First title line.
    pub(crate) title: String,
    /// Second title line.
    pub(crate) subtitle: String,
    /// The x axis description.
    pub(crate) x_desc: String,
    /// The y axis description.
    pub(crate) y_desc: String,
    /// The lines.
    pub(crate) series: Vec<Series>,
    /// A horizontal band (label, mean, std), e.g. the metric of exact samples.
    pub(crate) band: Option<(String, f64, f64)>,
    /// Where the legend goes (the corner the data leave empty).
    pub(crate) legend: SeriesLabelPosition,
}

/// Draws the chart. Series are nudged sideways a little so their error bars do not overlap.
pub(crate) fn draw(area: &Area<'_>, chart_spec: &LineChart) -> anyhow::Result<()> {
    let (header, body) = area.split_vertically(64);
    header.draw_text(&chart_spec.title, &font(22.0), (16, 8))?;
    header.draw_text(&chart_spec.subtitle, &font(15.0), (16, 38))?;

    let data_xs: Vec<f64> = chart_spec
        .series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.0))
        .collect();
    let (x_min, x_max) = data_xs
        .iter()
        .fold((f64::MAX, f64::MIN), |(lo, hi), &x| (lo.min(x), hi.max(x)));
    let mut ys: Vec<f64> = chart_spec
        .series
        .iter()
        .flat_map(|s| s.points.iter().flat_map(|p| [p.1 - p.2, p.1 + p.2]))
        .collect();
    if let Some((_, m, s)) = &chart_spec.band {
        ys.extend([m - s, m + s]);
    }
    ys.retain(|y| y.is_finite());
    anyhow::ensure!(x_min > 0.0 && !ys.is_empty(), "nothing finite to plot");
    let (y_lo, y_hi) = ys
        .iter()
        .fold((f64::MAX, f64::MIN), |(lo, hi), &y| (lo.min(y), hi.max(y)));
    let pad = ((y_hi - y_lo) * 0.08).max(1e-9);
    let (x_lo, x_hi) = (x_min / 1.5, x_max * 1.5);

    let mut chart = ChartBuilder::on(&body)
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(72)
        .build_cartesian_2d((x_lo..x_hi).log_scale(), (y_lo - pad)..(y_hi + pad))?;
    chart
        .configure_mesh()
        .x_desc(chart_spec.x_desc.as_str())
        .y_desc(chart_spec.y_desc.as_str())
        .label_style((FONT_FAMILY, 14))
        .axis_desc_style((FONT_FAMILY, 16))
        .x_labels(0)
        .x_label_formatter(&|_| String::new())
        .light_line_style(WHITE.mix(0.0))
        .bold_line_style(BLACK.mix(0.12))
        .draw()?;

    // The x axis is labelled at the data's own x values (plotters' log-axis key points skip
    // most of them), with a faint vertical line each.
    let mut ticks = data_xs.clone();
    ticks.sort_by(f64::total_cmp);
    ticks.dedup();
    let (y_bottom, y_top) = (y_lo - pad, y_hi + pad);
    chart.draw_series(
        ticks
            .iter()
            .map(|&x| PathElement::new([(x, y_bottom), (x, y_top)], BLACK.mix(0.12))),
    )?;
    let label_style = font(14.0).pos(Pos::new(HPos::Center, VPos::Top));
    for &x in &ticks {
        let (px, py) = chart.backend_coord(&(x, y_bottom));
        let base = body.get_base_pixel();
        body.draw_text(
            &format!("{x}"),
            &label_style,
            (px - base.0, py - base.1 + 8),
        )?;
    }

    if let Some((label, m, s)) = &chart_spec.band {
        let gray = RGBColor(150, 150, 150);
        chart
            .draw_series([Rectangle::new(
                [(x_lo, m - s), (x_hi, m + s)],
                gray.mix(0.25).filled(),
            )])?
            .label(label.as_str())
            .legend(move |(x, y)| {
                Rectangle::new([(x, y - 5), (x + 16, y + 5)], gray.mix(0.4).filled())
            });
        chart.draw_series(DashedLineSeries::new(
            [(x_lo, *m), (x_hi, *m)],
            6,
            4,
            gray.stroke_width(2),
        ))?;
    }

    let n = chart_spec.series.len() as f64;
    for (i, series) in chart_spec.series.iter().enumerate() {
        let colour = PALETTE[i % PALETTE.len()];
        let nudge = 1.0 + 0.035 * (i as f64 - (n - 1.0) / 2.0);
        let points: Vec<(f64, f64, f64)> = series
            .points
            .iter()
            .filter(|p| p.1.is_finite())
            .map(|&(x, m, s)| (x * nudge, m, if s.is_finite() { s } else { 0.0 }))
            .collect();
        chart
            .draw_series(LineSeries::new(
                points.iter().map(|p| (p.0, p.1)),
                colour.stroke_width(2),
            ))?
            .label(series.label.as_str())
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 16, y)], colour.stroke_width(3)));
        chart.draw_series(
            points
                .iter()
                .map(|p| Circle::new((p.0, p.1), 4, colour.filled())),
        )?;
        chart.draw_series(points.iter().filter(|p| p.2 > 0.0).map(|&(x, m, s)| {
            PathElement::new([(x, m - s), (x, m + s)], colour.stroke_width(2))
        }))?;
    }

    chart
        .configure_series_labels()
        .position(chart_spec.legend.clone())
        .label_font((FONT_FAMILY, 14))
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK.mix(0.5))
        .draw()?;
    Ok(())
}
