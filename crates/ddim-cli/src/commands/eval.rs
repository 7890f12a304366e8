//! `ddim eval`: experiments on the exact models. `table` is the DDIM paper's Table 1 (η
//! against the number of steps); `zero-snr` measures the zero-terminal-SNR tips (see
//! [`super::zero_snr`]); `prev-timestep` compares diffusers' stride rule with the next
//! scheduled timestep (see [`super::prev_timestep`]).

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use ddim::VarianceKind;
use ddim_exact::{Dataset, Metrics};
use rayon::prelude::*;
use serde_json::json;

use super::plot;
use super::report::{
    evaluators, sample_checked, spread, spread_points, summary_json, write_json, write_steps_header,
};
use super::sample::{parse_eta, progress_bar};
use crate::config_args::ConfigArgs;
use crate::policy_args::PolicyArgs;

/// Which experiment to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Experiment {
    /// The DDIM paper's Table 1: a metric for each η and number of steps S.
    Table,
    /// Brightness bias of the default schedule against zero terminal SNR + v + trailing.
    ZeroSnr,
    /// The DDIM paper's Table 2: x₀ → x_T → x₀ reconstruction error against steps S
    /// (defaults: ring, S = 10,20,50,100,200,500,1000, 500 samples; η is 0).
    Inversion,
    /// diffusers' t_prev = t − T//n against the next scheduled timestep, for linspace and
    /// trailing at step counts that do not divide T.
    PrevTimestep,
}

/// The metric of the table's cells.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Metric {
    /// Sliced Wasserstein-2 distance to exact samples.
    SlicedW2,
    /// Total-variation distance between the share of samples per component and the weights.
    ModeTv,
    /// Mean log-likelihood under the true density (nats per sample).
    LogLikelihood,
}

impl Metric {
    pub(crate) fn pick(self, m: &Metrics) -> f64 {
        match self {
            Metric::SlicedW2 => m.sliced_w2,
            Metric::ModeTv => m.mode_tv,
            Metric::LogLikelihood => m.mean_log_likelihood,
        }
    }

    pub(crate) fn describe(self) -> &'static str {
        match self {
            Metric::SlicedW2 => "sliced W2 to exact samples (lower is better, down to the floor)",
            Metric::ModeTv => "mode TV distance (lower is better, down to the floor)",
            Metric::LogLikelihood => {
                "mean log-likelihood in nats (the floor is ideal; above it = too concentrated)"
            }
        }
    }

    pub(crate) fn short(self) -> &'static str {
        match self {
            Metric::SlicedW2 => "sliced W₂",
            Metric::ModeTv => "mode TV distance",
            Metric::LogLikelihood => "mean ln p (nats)",
        }
    }
}

/// Arguments of `ddim eval`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The experiment.
    #[arg(long, value_enum, default_value_t = Experiment::Table)]
    pub(crate) experiment: Experiment,
    /// The data set [default: spiral for table, bright for zero-snr].
    #[arg(long, value_enum)]
    pub(crate) dataset: Option<Dataset>,
    #[command(flatten)]
    pub(crate) config: ConfigArgs,
    #[command(flatten)]
    pub(crate) policy: PolicyArgs,
    /// Add the DDIM paper's σ̂ row to the table: η = 1 with DDPM's larger variance
    /// σ̂_t = √(1 − ᾱ_t/ᾱ_prev).
    #[arg(long)]
    pub(crate) sigma_hat: bool,
    /// The η rows of the table (comma-separated; zero-snr runs η = 0).
    #[arg(
        long,
        value_delimiter = ',',
        default_values_t = [0.0f32, 0.2, 0.5, 1.0],
        value_parser = parse_eta,
        allow_negative_numbers = true
    )]
    pub(crate) etas: Vec<f32>,
    /// The step counts S (comma-separated) [default: 10,20,50,100,1000 for table;
    /// 10,50,200 for zero-snr].
    #[arg(long, value_delimiter = ',')]
    pub(crate) steps: Vec<usize>,
    /// Number of seeds; cells show mean ± standard deviation over them.
    #[arg(long, default_value_t = 5, value_parser = parse_seeds)]
    pub(crate) seeds: u64,
    /// Samples per run (and exact reference samples) [default: 2000 for table, 500 for
    /// zero-snr].
    #[arg(long)]
    pub(crate) samples: Option<usize>,
    /// The metric of the table's cells.
    #[arg(long, value_enum, default_value_t = Metric::SlicedW2)]
    pub(crate) metric: Metric,
    /// The PNG to write.
    #[arg(long, short = 'o', default_value = "ddim-eval.png")]
    pub(crate) output: PathBuf,
    /// Print JSON instead of markdown.
    #[arg(long)]
    pub(crate) json: bool,
}

/// Parses the number of seeds: at least 2, so that a spread can be measured.
fn parse_seeds(text: &str) -> Result<u64, String> {
    match text.parse::<u64>() {
        Ok(n) if n >= 2 => Ok(n),
        Ok(n) => Err(format!(
            "must be at least 2 (cells show a spread over seeds), got {n}"
        )),
        Err(e) => Err(e.to_string()),
    }
}

/// Mean and sample standard deviation.
pub(crate) fn mean_std(values: &[f64]) -> (f64, f64) {
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0).max(1.0);
    (mean, var.sqrt())
}

pub(crate) fn run(args: &Args, out: &mut impl Write) -> anyhow::Result<()> {
    crate::atomic::check_writable(&args.output)?;
    match args.experiment {
        Experiment::Table => run_table(args, out),
        Experiment::ZeroSnr => super::zero_snr::run(args, out),
        Experiment::Inversion => super::inversion::run(args, out),
        Experiment::PrevTimestep => super::prev_timestep::run(args, out),
    }
}

fn run_table(args: &Args, out: &mut impl Write) -> anyhow::Result<()> {
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

/// Draws an experiment's chart to `--output` and, for text output, reports the wall time.
pub(crate) fn write_chart(
    args: &Args,
    chart: &plot::lines::LineChart,
    elapsed: f64,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    plot::write_png(&args.output, plot::lines::SIZE, |area| {
        plot::lines::draw(area, chart)
    })?;
    if !args.json {
        writeln!(
            out,
            "\nwall time: {elapsed:.1} s on {} threads; wrote {}",
            rayon::current_num_threads(),
            args.output.display()
        )?;
    }
    Ok(())
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
