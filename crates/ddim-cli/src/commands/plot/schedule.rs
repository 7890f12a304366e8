//! `ddim schedule --plot`: log-SNR against the training timestep for one or more configs,
//! with the inference timesteps marked, and the timesteps of every spacing in a strip below.

use std::path::Path;

use anyhow::Context;
use ddim::{DdimConfig, DdimScheduler, TimestepSpacing, ZeroSnrGuard};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::{font, write_png, Area, FONT_FAMILY, PALETTE};

const SIZE: (u32, u32) = (960, 700);
/// Height of the spacing strip under the chart.
const STRIP: u32 = 150;

/// One curve: a config, its label, and a scheduler with its timesteps set.
struct Curve {
    label: String,
    scheduler: DdimScheduler,
}

impl Curve {
    /// A curve with the config's own spacing. A plot only inspects the schedule, so the
    /// zero-SNR guard (which refuses ε-prediction at ᾱ_t = 0 before sampling) is off.
    fn new(label: String, config: DdimConfig, steps: usize) -> anyhow::Result<Self> {
        let mut scheduler = DdimScheduler::new(config)?.with_zero_snr_guard(ZeroSnrGuard::Off);
        scheduler.set_timesteps(steps)?;
        Ok(Self { label, scheduler })
    }

    /// ln(ᾱ_t/(1 − ᾱ_t)) in f64; −∞ where ᾱ_t = 0.
    fn log_snr(&self, t: usize) -> f64 {
        let a = f64::from(self.scheduler.alphas_cumprod()[t]);
        (a / (1.0 - a)).ln()
    }
}

/// A short description of a config: β schedule, spacing, prediction type, terminal SNR.
fn describe(config: &DdimConfig, spacing: &str) -> String {
    format!(
        "{} β, {}, {}{}",
        config.beta_schedule,
        spacing.trim_end_matches(" spacing"),
        config.prediction_type,
        if config.rescale_betas_zero_snr {
            ", zero terminal SNR"
        } else {
            ""
        }
    )
}

/// Writes the plot of `base` (a scheduler with its timesteps set, whose spacing is described
/// by `spacing`: the config's, quad or custom) and of each `compare` entry: `zero-snr` (the
/// base config with `rescale_betas_zero_snr`) or the path of a `scheduler_config.json`, each
/// built by `make` with the same options as `base`. The strip below has a row for each
/// `timestep_spacing` of the base config, and one for `base` itself when its timesteps come
/// from elsewhere. Returns the load warnings of the compared files.
pub(crate) fn write_plot(
    path: &Path,
    base: &DdimScheduler,
    spacing: &str,
    compare: &[String],
    make: &dyn Fn(DdimConfig) -> anyhow::Result<DdimScheduler>,
) -> anyhow::Result<Vec<String>> {
    let base_config = base.config();
    let steps = base.timesteps().len();
    let mut warnings = Vec::new();
    let mut curves = vec![Curve {
        label: format!("config: {}", describe(base_config, spacing)),
        scheduler: base.clone(),
    }];
    for entry in compare {
        let config = if entry == "zero-snr" {
            DdimConfig {
                rescale_betas_zero_snr: true,
                ..base_config.clone()
            }
        } else {
            let loaded = DdimConfig::load_file(entry)
                .with_context(|| format!("cannot load config {entry}"))?;
            warnings.extend(loaded.warnings.iter().map(|w| format!("{entry}: {w}")));
            loaded.config
        };
        let name = if entry == "zero-snr" {
            entry.clone()
        } else {
            Path::new(entry)
                .file_name()
                .map_or(entry.clone(), |n| n.to_string_lossy().into_owned())
        };
        let label = format!("{name}: {}", describe(&config, spacing));
        let scheduler = make(config).with_context(|| format!("cannot schedule {entry}"))?;
        curves.push(Curve { label, scheduler });
    }
    let mut spacings = TimestepSpacing::ALL
        .iter()
        .map(|&s| {
            let config = DdimConfig {
                timestep_spacing: s,
                ..base_config.clone()
            };
            Ok((s.to_string(), Curve::new(String::new(), config, steps)?))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    if spacing != format!("{} spacing", base_config.timestep_spacing) {
        let label = spacing.trim_end_matches(" spacing").to_string();
        let row = Curve {
            label: String::new(),
            scheduler: base.clone(),
        };
        spacings.push((label, row));
    }
    write_png(path, SIZE, |area| draw(area, &curves, &spacings, steps))?;
    Ok(warnings)
}

fn draw(
    area: &Area<'_>,
    curves: &[Curve],
    spacings: &[(String, Curve)],
    steps: usize,
) -> anyhow::Result<()> {
    let train_steps = curves
        .iter()
        .map(|c| c.scheduler.alphas_cumprod().len())
        .max()
        .unwrap_or(1);
    let x_max = train_steps as f64;
    let (header, rest) = area.split_vertically(64);
    let (main, strip) = rest.split_vertically(SIZE.1 - 64 - STRIP);
    header.draw_text(
        "Noise schedule: log-SNR = ln(ᾱ(t) / (1 − ᾱ(t)))",
        &font(22.0),
        (16, 8),
    )?;
    header.draw_text(
        &format!("dots: the {steps} inference timesteps of each config's spacing; ▼ marks log-SNR = −∞ (ᾱ(t) = 0)"),
        &font(15.0),
        (16, 38),
    )?;

    let finite: Vec<f64> = curves
        .iter()
        .flat_map(|c| (0..c.scheduler.alphas_cumprod().len()).map(move |t| c.log_snr(t)))
        .filter(|v| v.is_finite())
        .collect();
    let (lo, hi) = finite
        .iter()
        .fold((f64::MAX, f64::MIN), |(lo, hi), &v| (lo.min(v), hi.max(v)));
    anyhow::ensure!(lo <= hi, "no finite log-SNR to plot");
    let floor = lo - 0.08 * (hi - lo) - 0.5;
    let top = hi + 0.05 * (hi - lo) + 0.5;

    let mut chart = ChartBuilder::on(&main)
        .margin(16)
        .x_label_area_size(36)
        .y_label_area_size(140)
        .build_cartesian_2d(0.0..x_max, floor..top)?;
    chart
        .configure_mesh()
        .y_desc("log-SNR")
        .x_desc("training timestep t")
        .x_label_formatter(&|t| format!("{t:.0}"))
        .label_style((FONT_FAMILY, 14))
        .axis_desc_style((FONT_FAMILY, 16))
        .light_line_style(WHITE.mix(0.0))
        .bold_line_style(BLACK.mix(0.1))
        .draw()?;
    let clamp = |v: f64| if v.is_finite() { v } else { floor };
    for (i, curve) in curves.iter().enumerate() {
        let colour = PALETTE[i % PALETTE.len()];
        let n = curve.scheduler.alphas_cumprod().len();
        chart
            .draw_series(LineSeries::new(
                (0..n).map(|t| (t as f64, clamp(curve.log_snr(t)))),
                colour.stroke_width(2),
            ))?
            .label(curve.label.as_str())
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 18, y)], colour.stroke_width(3)));
        let marked = || {
            curve
                .scheduler
                .timesteps()
                .iter()
                .map(|&t| (t as f64, curve.log_snr(t)))
        };
        chart.draw_series(
            marked()
                .filter(|p| p.1.is_finite())
                .map(|p| Circle::new(p, 3, colour.filled())),
        )?;
        // ᾱ_t = 0: a downward triangle on the bottom edge.
        chart.draw_series(
            marked()
                .filter(|p| !p.1.is_finite())
                .map(|p| TriangleMarker::new((p.0, floor), -8, colour.filled())),
        )?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .label_font((FONT_FAMILY, 14))
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK.mix(0.5))
        .draw()?;

    draw_strip(&strip, spacings, x_max, steps)
}

/// One row per spacing, a tick at each of its timesteps, on the chart's x axis.
fn draw_strip(
    strip: &Area<'_>,
    spacings: &[(String, Curve)],
    x_max: f64,
    steps: usize,
) -> anyhow::Result<()> {
    let rows = spacings.len() as f64;
    let mut chart = ChartBuilder::on(strip)
        .margin_left(16)
        .margin_right(16)
        .margin_bottom(12)
        .x_label_area_size(0)
        .y_label_area_size(140)
        .build_cartesian_2d(0.0..x_max, 0.0..rows)?;
    chart
        .configure_mesh()
        .disable_mesh()
        .disable_x_axis()
        .y_labels(0)
        .draw()?;
    let anchor = Pos::new(HPos::Right, VPos::Center);
    for (row, (spacing, curve)) in spacings.iter().enumerate() {
        let y = rows - row as f64 - 0.5;
        let colour = PALETTE[(row + 3) % PALETTE.len()];
        chart.draw_series(curve.scheduler.timesteps().iter().map(|&t| {
            PathElement::new(
                [(t as f64, y - 0.32), (t as f64, y + 0.32)],
                colour.stroke_width(2),
            )
        }))?;
        let (px, py) = chart.backend_coord(&(0.0, y));
        strip.draw_text(
            &format!("{spacing} ({steps})"),
            &font(14.0).pos(anchor),
            (
                px - 10 - strip.get_base_pixel().0,
                py - strip.get_base_pixel().1,
            ),
        )?;
    }
    Ok(())
}
