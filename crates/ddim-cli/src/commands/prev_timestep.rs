//! `ddim eval --experiment prev-timestep`: diffusers' previous-timestep rule against the
//! schedule's own, measured on an exact model.
//!
//! diffusers steps from t to t − ⌊T/n⌋ whatever the spacing. For `linspace`, and for
//! `trailing` when n does not divide T, that is not the next scheduled timestep, so the next
//! model call is made at a noise level (the scheduled t) other than the one the sample was
//! moved to (diffusers issues #12633, #11347, #9261). This experiment samples with both rules,
//! η = 0, for `linspace` and `trailing` at step counts that do not divide T, every pair of arms
//! of a seed from the same x_T, and reports the metric, its noise floor, and the paired
//! difference (next-in-schedule − stride) per seed:
//!
//! Δ_s = metric(next-in-schedule, seed s) − metric(stride, seed s), shown as mean ± std over s.
//!
//! A second table measures the discretisation error directly: η = 0 DDIM is a solver of the
//! probability-flow ODE, so with an exact model its output from x_T should approach the
//! T-step solution from the same x_T. It reports the RMS distance
//! √(mean_i ‖x_S⁽ⁱ⁾ − x_T-step⁽ⁱ⁾‖²/d) (0 is ideal; there is no sampling noise floor).

use std::io::Write;
use std::time::Instant;

use ddim::{DdimConfig, PrevTimestepRule, TimestepSpacing};
use ddim_exact::{ddim_sample, Dataset};
use rayon::prelude::*;
use serde_json::json;

use super::experiment::{write_chart, Args};
use super::plot;
use super::report::mean_std;
use super::report::{evaluators, sample_checked, spread, summary_json, write_json};
use super::sample::{progress_bar, sampling_rng};
use crate::policy_args::PolicyArgs;

const SPACINGS: [TimestepSpacing; 2] = [TimestepSpacing::Linspace, TimestepSpacing::Trailing];
const RULES: [PrevTimestepRule; 2] = [PrevTimestepRule::Stride, PrevTimestepRule::NextInSchedule];

/// One measured cell: spacing, step count, rule, and the metric per seed.
struct Cell {
    spacing: TimestepSpacing,
    steps: usize,
    rule: PrevTimestepRule,
    values: Vec<f64>,
    /// RMS distance to the T-step solution, per seed.
    ode: Vec<f64>,
}

/// √(mean of (a − b)²) over all elements.
fn rms_distance(a: &[f32], b: &[f32]) -> f64 {
    let sum: f64 = a
        .iter()
        .zip(b)
        .map(|(&x, &y)| (f64::from(x) - f64::from(y)).powi(2))
        .sum();
    (sum / a.len().max(1) as f64).sqrt()
}

pub(crate) fn run(args: &Args, out: &mut impl Write) -> anyhow::Result<()> {
    let started = Instant::now();
    let base = args.config.load_and_warn()?;
    let dataset = args.dataset.unwrap_or(Dataset::Spiral);
    let steps = if args.steps.is_empty() {
        vec![7, 15, 30, 60]
    } else {
        args.steps.clone()
    };
    let n = args.samples.unwrap_or(2000);
    let mixture = dataset.mixture();
    let seeds: Vec<u64> = (0..args.seeds).collect();

    let mut arms = Vec::new();
    for spacing in SPACINGS {
        for &s in &steps {
            for rule in RULES {
                let config = DdimConfig {
                    timestep_spacing: spacing,
                    ..base.clone()
                };
                let policy = PolicyArgs {
                    prev_timestep: rule,
                    ..args.policy.clone()
                };
                arms.push((spacing, s, rule, policy.scheduler(config, s)?));
            }
        }
    }
    let evaluators = evaluators(&mixture, n, &seeds)?;
    // The T-step solution from each seed's x_T (every spacing gives all T timesteps).
    let reference = PolicyArgs {
        prev_timestep: PrevTimestepRule::NextInSchedule,
        timesteps: None,
        ..args.policy.clone()
    }
    .scheduler(
        DdimConfig {
            timestep_spacing: TimestepSpacing::Trailing,
            ..base.clone()
        },
        base.num_train_timesteps,
    )?;
    let solutions: Vec<Vec<f32>> = seeds
        .par_iter()
        .map(|&seed| {
            let x = ddim_sample(
                &mixture,
                &reference,
                n,
                0.0,
                &mut sampling_rng(seed),
                |_, _| {},
            )?;
            Ok(x)
        })
        .collect::<anyhow::Result<_>>()?;
    let tasks: Vec<(usize, usize)> = (0..arms.len())
        .flat_map(|a| (0..seeds.len()).map(move |s| (a, s)))
        .collect();
    let total: u64 = arms.iter().map(|a| a.1 as u64).sum::<u64>() * args.seeds;
    let bar = progress_bar(total, "steps");
    let values: Vec<(f64, f64)> = tasks
        .par_iter()
        .map(|&(a, s)| {
            let x = sample_checked(&mixture, &arms[a].3, n, 0.0, seeds[s], &bar)?;
            Ok((
                args.metric.pick(&evaluators[s].0.evaluate(&x)?),
                rms_distance(&x, &solutions[s]),
            ))
        })
        .collect::<anyhow::Result<_>>()?;
    bar.finish_and_clear();
    let cells: Vec<Cell> = arms
        .iter()
        .zip(values.chunks_exact(seeds.len()))
        .map(|((spacing, steps, rule, _), v)| Cell {
            spacing: *spacing,
            steps: *steps,
            rule: *rule,
            values: v.iter().map(|p| p.0).collect(),
            ode: v.iter().map(|p| p.1).collect(),
        })
        .collect();
    let floor: Vec<f64> = evaluators
        .iter()
        .map(|(_, f)| args.metric.pick(f))
        .collect();
    let elapsed = started.elapsed().as_secs_f64();
    let report = Report {
        dataset,
        args,
        cells: &cells,
        floor: &floor,
        samples: n,
        config: &base,
    };
    if args.json {
        report.write_json(out, elapsed)?;
    } else {
        report.write_markdown(out)?;
    }
    write_chart(args, &report.chart(), elapsed, out)
}

struct Report<'a> {
    dataset: Dataset,
    args: &'a Args,
    cells: &'a [Cell],
    floor: &'a [f64],
    samples: usize,
    config: &'a DdimConfig,
}

impl Report<'_> {
    /// The (stride, next-in-schedule) cells of each spacing and step count.
    fn pairs(&self) -> impl Iterator<Item = (&Cell, &Cell)> {
        self.cells
            .chunks_exact(RULES.len())
            .filter_map(|pair| match pair {
                [stride, next] => Some((stride, next)),
                _ => None,
            })
    }

    fn write_markdown(&self, out: &mut impl Write) -> anyhow::Result<()> {
        let c = self.config;
        writeln!(
            out,
            "DDIM on `{}`, η = 0: {}\nmean ± std over {} seeds, {} samples each (both rules of a \
             seed from the same x_T); {} β, T = {}, {} prediction\n",
            self.dataset,
            self.args.metric.describe(),
            self.floor.len(),
            self.samples,
            c.beta_schedule,
            c.num_train_timesteps,
            c.prediction_type
        )?;
        self.write_paired_table(out, |cell| &cell.values)?;
        writeln!(
            out,
            "| exact samples (noise floor) | | {} | | |",
            spread(self.floor, 4)
        )?;
        writeln!(
            out,
            "\nRMS distance to the {}-step DDIM solution from the same x_T (0 is ideal)\n",
            self.config.num_train_timesteps
        )?;
        self.write_paired_table(out, |cell| &cell.ode)
    }

    /// A table of one quantity of the cells: each rule's `mean ± std`, then the per-seed
    /// difference next − stride (both rules of a seed start from the same x_T).
    fn write_paired_table(
        &self,
        out: &mut impl Write,
        quantity: impl Fn(&Cell) -> &[f64],
    ) -> anyhow::Result<()> {
        writeln!(
            out,
            "| spacing | S | stride t − T//S (diffusers) | next in schedule | next − stride (paired) |"
        )?;
        writeln!(out, "|---|---:|---:|---:|---:|")?;
        for (stride, next) in self.pairs() {
            let (stride_values, next_values) = (quantity(stride), quantity(next));
            let diff: Vec<f64> = next_values
                .iter()
                .zip(stride_values)
                .map(|(a, b)| a - b)
                .collect();
            writeln!(
                out,
                "| {} | {} | {} | {} | {} |",
                stride.spacing,
                stride.steps,
                spread(stride_values, 4),
                spread(next_values, 4),
                spread(&diff, 4)
            )?;
        }
        Ok(())
    }

    fn write_json(&self, out: &mut impl Write, elapsed: f64) -> anyhow::Result<()> {
        let cells: Vec<_> = self
            .cells
            .iter()
            .map(|cell| {
                json!({
                    "spacing": cell.spacing.as_str(),
                    "steps": cell.steps,
                    "rule": format!("{:?}", cell.rule),
                    "metric": summary_json(&cell.values),
                    "rms_to_full_solution": summary_json(&cell.ode),
                })
            })
            .collect();
        let doc = json!({
            "experiment": "prev-timestep",
            "dataset": self.dataset.name(),
            "metric": format!("{:?}", self.args.metric),
            "samples": self.samples,
            "seeds": self.floor.len(),
            "cells": cells,
            "noise_floor": summary_json(self.floor),
            "config": self.config.to_json_object(),
            "wall_time_s": elapsed,
        });
        write_json(out, &doc)
    }

    fn chart(&self) -> plot::lines::LineChart {
        let mut series = Vec::new();
        for spacing in SPACINGS {
            for rule in RULES {
                let points = self
                    .cells
                    .iter()
                    .filter(|c| c.spacing == spacing && c.rule == rule)
                    .map(|c| {
                        let (m, sd) = mean_std(&c.values);
                        (c.steps as f64, m, sd)
                    })
                    .collect();
                let rule = match rule {
                    PrevTimestepRule::Stride => "stride (diffusers)",
                    _ => "next in schedule",
                };
                series.push(plot::lines::Series {
                    label: format!("{spacing}, {rule}"),
                    points,
                });
            }
        }
        let (fm, fs) = mean_std(self.floor);
        plot::lines::LineChart {
            title: format!(
                "DDIM on `{}`: previous-timestep rule, {} against S",
                self.dataset,
                self.args.metric.short()
            ),
            subtitle: format!(
                "η = 0, mean ± std over {} seeds, {} samples",
                self.floor.len(),
                self.samples
            ),
            x_desc: "inference steps S".into(),
            y_desc: self.args.metric.short().into(),
            series,
            band: Some(("exact samples (noise floor)".into(), fm, fs)),
            legend: plotters::chart::SeriesLabelPosition::UpperRight,
        }
    }
}
