//! `ddim eval --experiment table`: the DDIM paper's Table 1, a metric for each η (rows) and
//! number of steps S (columns), mean ± standard deviation over seeds.

use std::io::Write;
use std::time::Instant;

use ddim::VarianceKind;
use ddim_exact::Dataset;
use rayon::prelude::*;
use serde_json::json;

use super::experiment::{write_chart, Args, Metric};
use super::plot;
use super::report::{
    evaluators, mean_std, sample_checked, spread, spread_points, summary_json, write_json,
    write_steps_header,
};
use super::sample::progress_bar;

pub(crate) fn run(args: &Args, out: &mut impl Write) -> anyhow::Result<()> {
    let started = Instant::now();
    let config = args.config.load_and_warn()?;
    let dataset = args.dataset.unwrap_or(Dataset::Spiral);
    let steps = if args.steps.is_empty() {
        vec![10, 20, 50, 100, 1000]
    } else {
        args.steps.clone()
    };
    let n = args.samples.unwrap_or(2000);
    let mixture = dataset.mixture();
    // The rows: each η with the chosen σ_t, then (--sigma-hat) η = 1 with DDPM's σ̂.
    let mut rows: Vec<(f32, VarianceKind)> = args
        .etas
        .iter()
        .map(|&e| (e, args.policy.variance))
        .collect();
    if args.sigma_hat {
        rows.push((1.0, VarianceKind::DdpmLarger));
    }
    let schedulers = rows
        .iter()
        .map(|&(_, kind)| {
            steps
                .iter()
                .map(|&s| args.policy.scheduler_with(config.clone(), s, kind))
                .collect::<anyhow::Result<Vec<_>>>()
        })
        .collect::<anyhow::Result<Vec<_>>>()?;

    // One reference set and one noise floor per seed; every cell of a seed starts from the
    // same x_T (common random numbers), so differences between cells are the sampler's.
    let seeds: Vec<u64> = (0..args.seeds).collect();
    let evaluators = evaluators(&mixture, n, &seeds)?;
    let (n_etas, n_steps) = (rows.len(), steps.len());
    let mut tasks: Vec<(usize, usize, usize)> = (0..seeds.len())
        .flat_map(|s| (0..n_etas).flat_map(move |e| (0..n_steps).map(move |k| (s, e, k))))
        .collect();
    // Longest runs first, so the threads finish together.
    tasks.sort_by_key(|&(_, _, k)| std::cmp::Reverse(steps[k]));
    let total_steps = args.seeds * rows.len() as u64 * steps.iter().sum::<usize>() as u64;
    let bar = progress_bar(total_steps, "steps");
    let values: Vec<((usize, usize, usize), f64)> = tasks
        .par_iter()
        .map(|&(s, e, k)| {
            let x = sample_checked(&mixture, &schedulers[e][k], n, rows[e].0, seeds[s], &bar)?;
            Ok(((s, e, k), args.metric.pick(&evaluators[s].0.evaluate(&x)?)))
        })
        .collect::<anyhow::Result<_>>()?;
    bar.finish_and_clear();

    let mut cells = vec![vec![Vec::new(); steps.len()]; rows.len()];
    let mut sorted = values;
    sorted.sort_by_key(|&(key, _)| key);
    for ((_, e, k), v) in sorted {
        cells[e][k].push(v);
    }
    let floor: Vec<f64> = evaluators
        .iter()
        .map(|(_, f)| args.metric.pick(f))
        .collect();
    let elapsed = started.elapsed().as_secs_f64();
    let table = Table {
        dataset,
        metric: args.metric,
        etas: &rows,
        steps: &steps,
        cells: &cells,
        floor: &floor,
        samples: n,
        config: &config,
    };
    if args.json {
        table.write_json(out, elapsed)?;
    } else {
        table.write_markdown(out)?;
    }
    write_chart(args, &table.chart(), elapsed, out)
}

/// The results of the table experiment: `cells[η][S]` holds one value per seed.
struct Table<'a> {
    dataset: Dataset,
    metric: Metric,
    /// η and σ_t kind of each row.
    etas: &'a [(f32, VarianceKind)],
    steps: &'a [usize],
    cells: &'a [Vec<Vec<f64>>],
    floor: &'a [f64],
    samples: usize,
    config: &'a ddim::DdimConfig,
}

impl Table<'_> {
    /// A row's label: `0.5`, or `σ̂ (η = 1.0)` for DDPM's larger variance.
    fn label(&(eta, kind): &(f32, VarianceKind)) -> String {
        match kind {
            VarianceKind::DdpmLarger => format!("σ̂ (η = {eta:.1})"),
            _ => format!("{eta:.1}"),
        }
    }

    fn cell(values: &[f64]) -> String {
        spread(values, 4)
    }

    fn write_markdown(&self, out: &mut impl Write) -> anyhow::Result<()> {
        writeln!(
            out,
            "DDIM on `{}`: {}\nmean ± std over {} seeds, {} samples each; {} β, {} spacing, {} prediction\n",
            self.dataset,
            self.metric.describe(),
            self.floor.len(),
            self.samples,
            self.config.beta_schedule,
            self.config.timestep_spacing,
            self.config.prediction_type
        )?;
        write_steps_header(out, "η", self.steps)?;
        for (eta, row) in self.etas.iter().zip(self.cells) {
            let cells: Vec<String> = row.iter().map(|v| Self::cell(v)).collect();
            writeln!(out, "| {} | {} |", Self::label(eta), cells.join(" | "))?;
        }
        let floor = Self::cell(self.floor);
        writeln!(
            out,
            "| exact samples (noise floor) | {} |",
            vec![floor; self.steps.len()].join(" | ")
        )?;
        Ok(())
    }

    fn write_json(&self, out: &mut impl Write, elapsed: f64) -> anyhow::Result<()> {
        let rows: Vec<_> = self
            .etas
            .iter()
            .zip(self.cells)
            .map(|(&(eta, kind), row)| {
                json!({
                    "eta": eta,
                    "variance": format!("{kind:?}"),
                    "cells": row.iter().map(|v| summary_json(v)).collect::<Vec<_>>(),
                })
            })
            .collect();
        let doc = json!({
            "experiment": "table",
            "dataset": self.dataset.name(),
            "metric": format!("{:?}", self.metric),
            "samples": self.samples,
            "seeds": self.floor.len(),
            "steps": self.steps,
            "rows": rows,
            "noise_floor": summary_json(self.floor),
            "config": self.config.to_json_object(),
            "wall_time_s": elapsed,
        });
        write_json(out, &doc)
    }

    fn chart(&self) -> plot::lines::LineChart {
        let series: Vec<plot::lines::Series> = self
            .etas
            .iter()
            .zip(self.cells)
            .map(|(eta, row)| plot::lines::Series {
                label: match eta.1 {
                    VarianceKind::DdpmLarger => format!("σ̂, η = {:.1}", eta.0),
                    _ => format!("η = {:.1}", eta.0),
                },
                points: spread_points(self.steps, row),
            })
            .collect();
        let (fm, fs) = mean_std(self.floor);
        plot::lines::LineChart {
            title: format!(
                "DDIM on `{}`: {} against steps S",
                self.dataset,
                self.metric.short()
            ),
            subtitle: format!(
                "mean ± std over {} seeds, {} samples; {} spacing, {}",
                self.floor.len(),
                self.samples,
                self.config.timestep_spacing,
                self.config.prediction_type
            ),
            x_desc: "inference steps S".into(),
            y_desc: self.metric.short().into(),
            series,
            band: Some(("exact samples (noise floor)".into(), fm, fs)),
            // The metric falls with S for every η: the upper right stays empty.
            legend: plotters::chart::SeriesLabelPosition::UpperRight,
        }
    }
}
