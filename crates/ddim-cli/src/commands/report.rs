//! What the `ddim eval` experiments share: the evaluators of each seed, one checked sampling
//! run, the `mean ± std`
//! summaries of per-seed values (markdown cell, JSON object, chart points), the markdown
//! header of a table with one column per step count, and pretty JSON on stdout.

use std::io::Write;

use ddim::DdimScheduler;
use ddim_exact::{ddim_sample, Evaluator, GaussianMixture, Metrics};
use indicatif::ProgressBar;
use rayon::prelude::*;

use super::sample::{check_finite, evaluation_rng, sampling_rng};

/// `n` samples drawn with `eta` from `seed`'s x_T, one tick of `bar` per step, refused with
/// a one-line error when any value is not finite.
pub(crate) fn sample_checked(
    mixture: &GaussianMixture,
    scheduler: &DdimScheduler,
    n: usize,
    eta: f32,
    seed: u64,
    bar: &ProgressBar,
) -> anyhow::Result<Vec<f32>> {
    let x = ddim_sample(
        mixture,
        scheduler,
        n,
        eta,
        &mut sampling_rng(seed),
        |_, _| bar.inc(1),
    )?;
    check_finite(&x, scheduler)?;
    Ok(x)
}

/// One evaluator (`n` exact reference samples) and its noise floor (the metrics of `n` more
/// exact samples) per seed, drawn from [`evaluation_rng`].
pub(crate) fn evaluators<'a>(
    mixture: &'a GaussianMixture,
    n: usize,
    seeds: &[u64],
) -> anyhow::Result<Vec<(Evaluator<'a>, Metrics)>> {
    seeds
        .par_iter()
        .map(|&seed| {
            let mut rng = evaluation_rng(seed);
            let evaluator = Evaluator::new(mixture, n, &mut rng);
            let floor = evaluator.noise_floor(n, &mut rng)?;
            Ok((evaluator, floor))
        })
        .collect()
}

/// `mean ± std` of the values, both with `digits` decimals.
pub(crate) fn spread(values: &[f64], digits: usize) -> String {
    let (m, s) = mean_std(values);
    format!("{m:.digits$} ± {s:.digits$}")
}

/// `{ "mean", "std", "values" }` of the values, for `--json`.
pub(crate) fn summary_json(values: &[f64]) -> serde_json::Value {
    let (mean, std) = mean_std(values);
    serde_json::json!({ "mean": mean, "std": std, "values": values })
}

/// Chart points (S, mean, std): one per step count, `row[k]` holding the values of `steps[k]`.
pub(crate) fn spread_points(steps: &[usize], row: &[Vec<f64>]) -> Vec<(f64, f64, f64)> {
    steps
        .iter()
        .zip(row)
        .map(|(&s, v)| {
            let (m, sd) = mean_std(v);
            (s as f64, m, sd)
        })
        .collect()
}

/// The two header lines of a markdown table: `first`, then `S = …` right-aligned per step count.
pub(crate) fn write_steps_header(
    out: &mut impl Write,
    first: &str,
    steps: &[usize],
) -> anyhow::Result<()> {
    let header: Vec<String> = steps.iter().map(|s| format!("S = {s}")).collect();
    writeln!(out, "| {first} | {} |", header.join(" | "))?;
    writeln!(out, "|---|{}", "---:|".repeat(steps.len()))?;
    Ok(())
}

/// The document as pretty JSON and a newline.
pub(crate) fn write_json(out: &mut impl Write, doc: &serde_json::Value) -> anyhow::Result<()> {
    serde_json::to_writer_pretty(&mut *out, doc)?;
    writeln!(out)?;
    Ok(())
}

/// Mean and sample standard deviation.
pub(crate) fn mean_std(values: &[f64]) -> (f64, f64) {
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0).max(1.0);
    (mean, var.sqrt())
}
