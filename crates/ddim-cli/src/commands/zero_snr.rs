//! `ddim eval --experiment zero-snr`: the seed document's zero-terminal-SNR tips, measured.
//!
//! Lin et al. (2023, "Common Diffusion Noise Schedules and Sample Steps are Flawed") note that
//! common schedules end at ᾱ_T > 0, so training always leaves a little signal in x_T, while
//! sampling starts from pure noise; and that `leading` spacing starts below T − 1. Both bias
//! the sample brightness towards the middle. On a data set whose mean is far from zero
//! (`bright`), this experiment runs the configured schedule, the same with `trailing`
//! spacing, and the fix (rescaled betas with ᾱ_T = 0, v-prediction, trailing), all with the
//! exact denoiser, and reports the bias of the mean brightness of the samples:
//!
//! bias = (1/(N·d))·Σ_i Σ_j x_j⁽ⁱ⁾ − (1/d)·Σ_j E\[x₀\]_j.
//!
//! The exact model isolates the schedule's own share of the effect (a trained network adds
//! its own, which the paper also describes).

use std::io::Write;
use std::time::Instant;

use ddim::{DdimConfig, PredictionType, TimestepSpacing};
use ddim_exact::Dataset;
use rayon::prelude::*;
use serde_json::json;

use super::experiment::{write_chart, Args};
use super::plot;
use super::report::mean_std;
use super::report::{sample_checked, spread_points, summary_json, write_json, write_steps_header};
use super::sample::{evaluation_rng, progress_bar};

/// A schedule under test.
struct Arm {
    label: &'static str,
    config: DdimConfig,
}

fn arms(base: &DdimConfig) -> [Arm; 3] {
    [
        Arm {
            label: "as configured",
            config: base.clone(),
        },
        Arm {
            label: "trailing spacing",
            config: DdimConfig {
                timestep_spacing: TimestepSpacing::Trailing,
                ..base.clone()
            },
        },
        Arm {
            label: "zero terminal SNR + v_prediction + trailing",
            config: DdimConfig {
                rescale_betas_zero_snr: true,
                prediction_type: PredictionType::VPrediction,
                timestep_spacing: TimestepSpacing::Trailing,
                ..base.clone()
            },
        },
    ]
}

/// The mean of `f32` values, accumulated in `f64`.
fn mean_of(x: &[f32]) -> f64 {
    x.iter().map(|&v| f64::from(v)).sum::<f64>() / x.len() as f64
}

pub(crate) fn run(args: &Args, out: &mut impl Write) -> anyhow::Result<()> {
    let started = Instant::now();
    let base = args.config.load_and_warn()?;
    let dataset = args.dataset.unwrap_or(Dataset::Bright);
    let steps = if args.steps.is_empty() {
        vec![10, 50, 200]
    } else {
        args.steps.clone()
    };
    let n = args.samples.unwrap_or(500);
    let mixture = dataset.mixture();
    let data_mean = mixture.data_mean().iter().sum::<f64>() / mixture.dim() as f64;
    let arms = arms(&base);
    let schedulers = arms
        .iter()
        .map(|arm| {
            steps
                .iter()
                .map(|&s| args.policy.scheduler(arm.config.clone(), s))
                .collect::<anyhow::Result<Vec<_>>>()
        })
        .collect::<anyhow::Result<Vec<_>>>()?;

    let seeds: Vec<u64> = (0..args.seeds).collect();
    let floor: Vec<f64> = seeds
        .iter()
        .map(|&seed| mean_of(&mixture.sample(n, &mut evaluation_rng(seed))) - data_mean)
        .collect();
    let (n_steps, n_seeds) = (steps.len(), seeds.len());
    let tasks: Vec<(usize, usize, usize)> = (0..arms.len())
        .flat_map(|a| (0..n_steps).flat_map(move |k| (0..n_seeds).map(move |s| (a, k, s))))
        .collect();
    let total = arms.len() as u64 * args.seeds * steps.iter().sum::<usize>() as u64;
    let bar = progress_bar(total, "steps");
    // Every arm starts from the same x_T for a given seed (common random numbers).
    let biases: Vec<f64> = tasks
        .par_iter()
        .map(|&(a, k, s)| {
            let x = sample_checked(&mixture, &schedulers[a][k], n, 0.0, seeds[s], &bar)?;
            Ok(mean_of(&x) - data_mean)
        })
        .collect::<anyhow::Result<_>>()?;
    bar.finish_and_clear();
    let cells: Vec<Vec<Vec<f64>>> = biases
        .chunks(seeds.len() * steps.len())
        .map(|arm| arm.chunks(seeds.len()).map(<[f64]>::to_vec).collect())
        .collect();
    // The schedule's own effect: each arm minus the zero-SNR arm on the same x_T, per seed.
    // Pairing removes the spread of the digit mix between seeds, which dominates the raw bias.
    let zero = arms.len() - 1;
    let shifts: Vec<Vec<Vec<f64>>> = cells
        .iter()
        .map(|row| {
            row.iter()
                .zip(&cells[zero])
                .map(|(arm, reference)| arm.iter().zip(reference).map(|(a, r)| a - r).collect())
                .collect()
        })
        .collect();
    let elapsed = started.elapsed().as_secs_f64();

    if args.json {
        let doc = json!({
            "experiment": "zero-snr",
            "dataset": dataset.name(),
            "data_mean": data_mean,
            "samples": n,
            "seeds": seeds.len(),
            "steps": steps,
            "arms": arms.iter().zip(&cells).zip(&schedulers).map(|((arm, row), scheds)| json!({
                "label": arm.label,
                "config": arm.config.to_json_object(),
                "first_timesteps": scheds.iter().map(|s| s.timesteps()[0]).collect::<Vec<_>>(),
                "bias": row.iter().map(|v| summary_json(v)).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
            "shift_against_zero_snr_arm": arms.iter().zip(&shifts).map(|(arm, row)| json!({
                "label": arm.label,
                "shift": row.iter().map(|v| summary_json(v)).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
            "exact_samples_bias": summary_json(&floor),
            "wall_time_s": elapsed,
        });
        write_json(out, &doc)?;
    } else {
        writeln!(
            out,
            "Zero terminal SNR on `{dataset}` (data mean brightness {data_mean:.4}): bias of the \
             sample mean brightness, mean ± std over {} seeds, {n} samples each, η = 0{}\n",
            seeds.len(),
            args.policy.describe()
        )?;
        write_steps_header(out, "schedule", &steps)?;
        for (arm, row) in arms.iter().zip(&cells) {
            write_spread_row(out, arm.label, row)?;
        }
        let (fm, fs) = mean_std(&floor);
        writeln!(
            out,
            "| exact samples (noise floor) | {} |",
            vec![format!("{fm:+.5} ± {fs:.5}"); steps.len()].join(" | ")
        )?;
        writeln!(
            out,
            "\nshift of the mean brightness against the zero-SNR arm, paired (same x_T per seed):\n"
        )?;
        write_steps_header(out, "schedule", &steps)?;
        for (arm, row) in arms.iter().zip(&shifts).take(zero) {
            write_spread_row(out, arm.label, row)?;
        }
        writeln!(out, "\nwhere sampling starts (first timestep t, ᾱ_t):\n")?;
        write_steps_header(out, "schedule", &steps)?;
        for (arm, scheds) in arms.iter().zip(&schedulers) {
            let starts: Vec<String> = scheds
                .iter()
                .map(|s| {
                    let t = s.timesteps()[0];
                    format!("t = {t}, ᾱ = {:.3e}", s.alphas_cumprod()[t])
                })
                .collect();
            writeln!(out, "| {} | {} |", arm.label, starts.join(" | "))?;
        }
    }

    let chart = plot::lines::LineChart {
        title: format!("Zero terminal SNR on `{dataset}`: brightness shift of each schedule"),
        subtitle: format!(
            "sample mean minus the zero-SNR arm's, same x_T (paired); mean ± std over {} seeds, \
             {n} samples, η = 0; data mean {data_mean:.3}",
            seeds.len(),
        ),
        x_desc: "inference steps S".into(),
        y_desc: "brightness shift".into(),
        series: arms
            .iter()
            .zip(&shifts)
            .map(|(arm, row)| plot::lines::Series {
                label: arm.label.into(),
                points: spread_points(&steps, row),
            })
            .collect(),
        band: None,
        // The reference arm sits at 0 on top; the others lie below it.
        legend: plotters::chart::SeriesLabelPosition::LowerRight,
    };
    write_chart(args, &chart, elapsed, out)
}

/// One markdown row: the label, then `mean ± std` over seeds for each step count.
fn write_spread_row(out: &mut impl Write, label: &str, row: &[Vec<f64>]) -> anyhow::Result<()> {
    let cells: Vec<String> = row
        .iter()
        .map(|v| {
            let (m, s) = mean_std(v);
            format!("{m:+.5} ± {s:.5}")
        })
        .collect();
    writeln!(out, "| {label} | {} |", cells.join(" | "))?;
    Ok(())
}
