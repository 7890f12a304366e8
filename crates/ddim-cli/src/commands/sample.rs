//! `ddim sample`: DDIM end to end on a built-in exact model, with a picture and metrics.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::time::Instant;

use ddim_exact::{ddim_sample, Dataset, Evaluator, Layout, Metrics};
use indicatif::{ProgressBar, ProgressStyle};
use rand::rngs::StdRng;
use rand::SeedableRng;

use super::plot;
use crate::config_args::ConfigArgs;
use crate::policy_args::PolicyArgs;

/// Arguments of `ddim sample`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The data set (2-D sets are drawn over their density, image sets as a grid).
    #[arg(long, value_enum, default_value_t = Dataset::Spiral)]
    dataset: Dataset,
    #[command(flatten)]
    config: ConfigArgs,
    #[command(flatten)]
    policy: PolicyArgs,
    /// Number of inference steps.
    #[arg(long, short = 'n', default_value_t = 50, value_parser = crate::bounds::steps)]
    steps: usize,
    /// η: 0 is deterministic DDIM, 1 is DDPM-like ancestral sampling.
    #[arg(long, default_value_t = 0.0, value_parser = crate::bounds::eta, allow_negative_numbers = true)]
    eta: f32,
    /// Seed of the initial noise, the η noise and the reference samples.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Number of samples (and of exact reference samples for the metrics).
    #[arg(long, default_value_t = 2000, value_parser = crate::bounds::samples)]
    samples: usize,
    /// The PNG to write.
    #[arg(
        long,
        short = 'o',
        default_value = "ddim-sample.png",
        value_parser = crate::atomic::parse_output
    )]
    output: PathBuf,
}

/// The generator of the initial noise and the η noise for `seed`.
pub(crate) fn sampling_rng(seed: u64) -> StdRng {
    StdRng::seed_from_u64(seed)
}

/// The generator of the reference and noise-floor samples for `seed`: a stream independent
/// of [`sampling_rng`]'s.
pub(crate) fn evaluation_rng(seed: u64) -> StdRng {
    StdRng::seed_from_u64(seed ^ 0x9E37_79B9_7F4A_7C15)
}

/// A progress bar on stderr, hidden when stderr is not a terminal.
pub(crate) fn progress_bar(len: u64, unit: &str) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len);
    if let Ok(style) = ProgressStyle::with_template(&format!(
        "{{bar:40}} {{pos}}/{{len}} {unit} [{{elapsed}}, eta {{eta}}]"
    )) {
        bar.set_style(style);
    }
    bar
}

pub(crate) fn run(args: &Args, out: &mut impl Write) -> anyhow::Result<()> {
    let started = Instant::now();
    crate::atomic::check_writable(&args.output)?;
    let config = args.config.load_and_warn()?;
    let scheduler = args.policy.scheduler(config, args.steps)?;
    let steps = scheduler.timesteps().len();
    let mixture = args.dataset.mixture();

    let bar = progress_bar(steps as u64, "steps");
    let sampling = Instant::now();
    let samples = ddim_sample(
        &mixture,
        &scheduler,
        args.samples,
        args.eta,
        &mut sampling_rng(args.seed),
        |_, _| bar.inc(1),
    )?;
    let sampling = sampling.elapsed();
    bar.finish_and_clear();
    check_finite(&samples, &scheduler)?;

    let mut rng = evaluation_rng(args.seed);
    let evaluator = Evaluator::new(&mixture, args.samples, &mut rng);
    let floor = evaluator.noise_floor(args.samples, &mut rng)?;
    let metrics = evaluator.evaluate(&samples)?;

    let c = scheduler.config();
    let settings = format!(
        "{} steps, η = {}, {}{}, {}{}, seed {}",
        steps,
        args.eta,
        args.policy.spacing_label(c),
        args.policy.describe(),
        c.prediction_type,
        if c.rescale_betas_zero_snr {
            ", zero terminal SNR"
        } else {
            ""
        },
        args.seed
    );
    writeln!(
        out,
        "ddim sample: {} samples of `{}`, {settings}",
        args.samples, args.dataset
    )?;
    write_metrics(out, &metrics, &floor, mixture.num_components())?;

    let title = format!("DDIM on `{}`: {settings}", args.dataset);
    let subtitle = format!(
        "sliced W₂ {:.4} (exact samples: {:.4}) · mean ln p {:.3} ({:.3}) · modes hit {}/{}",
        metrics.sliced_w2,
        floor.sliced_w2,
        metrics.mean_log_likelihood,
        floor.mean_log_likelihood,
        metrics.modes_hit,
        mixture.num_components()
    );
    match args.dataset.layout() {
        Layout::Points2d => {
            let scatter = plot::density::Scatter {
                title,
                subtitle,
                mixture: &mixture,
                samples: &samples,
            };
            plot::write_png(&args.output, plot::density::SIZE, |area| {
                plot::density::draw(area, &scatter)
            })?;
        }
        Layout::Image { width, height } => {
            let grid = plot::images::ImageGrid {
                title,
                subtitle,
                samples: &samples,
                means: mixture.means().iter().map(|&v| v as f32).collect(),
                width,
                height,
                columns: 10,
                rows: 6,
            };
            plot::write_png(&args.output, grid.size(), |area| {
                plot::images::draw(area, &grid)
            })?;
        }
    }
    writeln!(out, "wrote {}", args.output.display())?;
    writeln!(
        out,
        "wall time: {:.2} s ({:.2} s sampling)",
        started.elapsed().as_secs_f64(),
        sampling.as_secs_f64()
    )?;
    Ok(())
}

/// Fails when a sample is NaN or infinite, naming the first timestep of the schedule where a
/// step's scalars break down and why (see [`degenerate_step`]).
pub(crate) fn check_finite(samples: &[f32], scheduler: &ddim::DdimScheduler) -> anyhow::Result<()> {
    if samples.iter().all(|v| v.is_finite()) {
        return Ok(());
    }
    match degenerate_step(scheduler) {
        Some(cause) => anyhow::bail!("samples are not finite (NaN or infinity): {cause}"),
        None => anyhow::bail!(
            "samples are not finite (NaN or infinity), although every step's coefficients are \
             finite: the model's output or the noise overflowed f32"
        ),
    }
}

/// The first scheduled step whose scalars make a step non-finite, described: ᾱ_t = 0 under
/// epsilon prediction (x̂₀ = (x_t − √(1 − ᾱ_t)·ε̂)/√ᾱ_t divides by 0), or a non-finite
/// coefficient (e.g. ᾱ_t = ᾱ_prev = 0, where diffusers' variance is 0/0).
pub(crate) fn degenerate_step(scheduler: &ddim::DdimScheduler) -> Option<String> {
    let config = scheduler.config();
    let why_zero = if config.rescale_betas_zero_snr {
        "rescale_betas_zero_snr sets the last ᾱ to 0: zero terminal snr"
    } else {
        "the betas drive ᾱ to 0: the product of the 1 − β underflows f32, or a β is 1"
    };
    let show = |x: f32| {
        if x == 0.0 {
            "0".to_string()
        } else {
            format!("{x:e}")
        }
    };
    for &t in scheduler.timesteps() {
        let Ok(c) = scheduler.step_coefficients(t, 0.0) else {
            continue;
        };
        if c.alpha_prod_t == 0.0 && config.prediction_type == ddim::PredictionType::Epsilon {
            return Some(format!(
                "at timestep {t}, ᾱ_t = 0 ({why_zero}) and epsilon prediction divides by \
                 √ᾱ_t = 0; use --prediction-type v_prediction (with a model trained for it), \
                 or a schedule whose ᾱ stays above 0"
            ));
        }
        let scalars = [c.alpha_prod_t, c.alpha_prod_t_prev, c.variance, c.direction];
        if scalars.iter().any(|v| !v.is_finite()) {
            return Some(format!(
                "at timestep {t} (to {}), ᾱ_t = {} and ᾱ_prev = {} make diffusers' variance \
                 (1 − ᾱ_prev)/(1 − ᾱ_t)·(1 − ᾱ_t/ᾱ_prev) = {} and the direction coefficient {} \
                 ({why_zero})",
                c.prev_timestep
                    .map_or_else(|| "the final ᾱ".to_string(), |p| p.to_string()),
                show(c.alpha_prod_t),
                show(c.alpha_prod_t_prev),
                c.variance,
                c.direction
            ));
        }
    }
    None
}

/// The metrics beside their noise floor, one per line.
pub(crate) fn write_metrics(
    out: &mut impl Write,
    m: &Metrics,
    floor: &Metrics,
    components: usize,
) -> anyhow::Result<()> {
    writeln!(
        out,
        "{:<34} {:>12} {:>12}",
        "metric", "samples", "noise floor"
    )?;
    let rows = [
        ("sliced W2 to exact samples", m.sliced_w2, floor.sliced_w2),
        ("mode TV distance", m.mode_tv, floor.mode_tv),
        (
            "mean log-likelihood (nats)",
            m.mean_log_likelihood,
            floor.mean_log_likelihood,
        ),
    ];
    for (name, value, reference) in rows {
        writeln!(out, "{name:<34} {value:>12.4} {reference:>12.4}")?;
    }
    writeln!(
        out,
        "{:<34} {:>12} {:>12}",
        "modes hit",
        format!("{}/{components}", m.modes_hit),
        format!("{}/{components}", floor.modes_hit)
    )?;
    Ok(())
}
