//! `ddim eval --experiment inversion`: the DDIM paper's Table 2 on the exact models.
//!
//! For each number of steps S, exact samples x₀ are encoded into latents x_T with the
//! inverse that matches the forward scheduler ([`ddim::DdimInverseScheduler::matching`]) and
//! decoded again with η = 0 DDIM on the same timesteps. The cells are the per-dimension RMS
//! reconstruction error
//!
//! e = √((1/(N·d))·Σ_i ‖x₀⁽ⁱ⁾ − x̂₀⁽ⁱ⁾‖²),
//!
//! for the two ways of evaluating the model inside an inverse step: at the level the sample is
//! at (ᾱ_s, the mirror of the forward step), or at the level the step lands on (ᾱ_t, what
//! diffusers' inversion pipelines do when they call the network with `(x_s, t)`). With the
//! exact model the error is the discretisation's alone; it falls as S grows, down to the
//! resolution of the training grid at S = T.

use std::io::Write;
use std::time::Instant;

use ddim::{DdimInverseScheduler, DdimScheduler};
use ddim_exact::{ddim_decode, ddim_invert, rms_error, Dataset, InversionLevel};
use rayon::prelude::*;
use serde_json::json;

use super::experiment::{write_chart, Args};
use super::plot;
use super::report::{spread, spread_points, summary_json, write_json, write_steps_header};
use super::sample::{check_finite, evaluation_rng, progress_bar};

/// The two rows of the table.
const LEVELS: [(InversionLevel, &str); 2] = [
    (
        InversionLevel::Source,
        "model at the sample's level ᾱ_s (mirror)",
    ),
    (
        InversionLevel::Target,
        "model at the target level ᾱ_t (pipelines)",
    ),
];

pub(crate) fn run(args: &Args, out: &mut impl Write) -> anyhow::Result<()> {
    let started = Instant::now();
    let config = args.config.load_and_warn()?;
    let dataset = args.dataset.unwrap_or(Dataset::Ring);
    let steps = if args.steps.is_empty() {
        vec![10, 20, 50, 100, 200, 500, 1000]
    } else {
        args.steps.clone()
    };
    let n = args.samples.unwrap_or(500);
    anyhow::ensure!(n > 0, "--samples must be at least 1, got 0");
    let mixture = dataset.mixture();
    let pairs = steps
        .iter()
        .map(|&s| {
            let mut forward = DdimScheduler::new(config.clone())?;
            forward.set_timesteps(s)?;
            let inverse = DdimInverseScheduler::matching(&forward)?;
            Ok((forward, inverse))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;

    let seeds: Vec<u64> = (0..args.seeds).collect();
    // One set of exact samples per seed, shared by every cell of that seed.
    let originals: Vec<Vec<f32>> = seeds
        .iter()
        .map(|&seed| mixture.sample(n, &mut evaluation_rng(seed)))
        .collect();
    let (n_steps, n_seeds) = (steps.len(), seeds.len());
    let tasks: Vec<(usize, usize, usize)> = (0..LEVELS.len())
        .flat_map(|l| (0..n_steps).flat_map(move |k| (0..n_seeds).map(move |s| (l, k, s))))
        .collect();
    let total = 2 * LEVELS.len() as u64 * args.seeds * steps.iter().sum::<usize>() as u64;
    let bar = progress_bar(total, "steps");
    let errors: Vec<f64> = tasks
        .par_iter()
        .map(|&(l, k, s)| {
            let (forward, inverse) = &pairs[k];
            let x0 = &originals[s];
            let latents = ddim_invert(&mixture, inverse, x0, LEVELS[l].0, |_, _| bar.inc(1))?;
            let back = ddim_decode(&mixture, forward, &latents, |_, _| bar.inc(1))?;
            check_finite(&back, forward)?;
            Ok(rms_error(x0, &back)?)
        })
        .collect::<anyhow::Result<_>>()?;
    bar.finish_and_clear();
    let cells: Vec<Vec<Vec<f64>>> = errors
        .chunks(seeds.len() * steps.len())
        .map(|row| row.chunks(seeds.len()).map(<[f64]>::to_vec).collect())
        .collect();
    let elapsed = started.elapsed().as_secs_f64();

    if args.json {
        let doc = json!({
            "experiment": "inversion",
            "dataset": dataset.name(),
            "metric": "per-dimension RMS reconstruction error",
            "samples": n,
            "seeds": seeds.len(),
            "steps": steps,
            "rows": LEVELS.iter().zip(&cells).map(|((level, label), row)| json!({
                "level": format!("{level:?}").to_lowercase(),
                "label": label,
                "cells": row.iter().map(|v| summary_json(v)).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
            "config": config.to_json_object(),
            "wall_time_s": elapsed,
        });
        write_json(out, &doc)?;
    } else {
        writeln!(
            out,
            "DDIM inversion on `{dataset}`: per-dimension RMS error of x₀ → x_T → x₀ (η = 0, \
             matching inverse)\nmean ± std over {} seeds, {n} samples each; {} β, {} spacing, \
             {} prediction\n",
            seeds.len(),
            config.beta_schedule,
            config.timestep_spacing,
            config.prediction_type
        )?;
        write_steps_header(out, "inverse step", &steps)?;
        for ((_, label), row) in LEVELS.iter().zip(&cells) {
            let cells: Vec<String> = row.iter().map(|v| spread(v, 5)).collect();
            writeln!(out, "| {label} | {} |", cells.join(" | "))?;
        }
    }

    let chart = plot::lines::LineChart {
        title: format!("DDIM inversion on `{dataset}`: reconstruction error against steps S"),
        subtitle: format!(
            "per-dimension RMS of x₀ → x_T → x₀, mean ± std over {} seeds, {n} samples; {} spacing",
            seeds.len(),
            config.timestep_spacing
        ),
        x_desc: "inference steps S".into(),
        y_desc: "RMS reconstruction error".into(),
        series: LEVELS
            .iter()
            .zip(&cells)
            .map(|((_, label), row)| plot::lines::Series {
                label: (*label).into(),
                points: spread_points(&steps, row),
            })
            .collect(),
        band: None,
        // The error falls with S: the upper right stays empty.
        legend: plotters::chart::SeriesLabelPosition::UpperRight,
    };
    write_chart(args, &chart, elapsed, out)
}
