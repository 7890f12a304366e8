//! `ddim invert`: encode exact samples of an image data set into their DDIM latents x_T with
//! the matching inverse, decode them again with η = 0 DDIM, and show all three.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use ddim::{DdimInverseScheduler, DdimScheduler, ZeroSnrGuard};
use ddim_exact::{ddim_decode, ddim_invert, rms_error, Dataset, InversionLevel, Layout};

use super::plot;
use super::sample::{check_finite, progress_bar, sampling_rng};
use crate::config_args::ConfigArgs;
use crate::policy_args::explain_zero_snr;

/// Where the exact model is evaluated inside an inverse step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Level {
    /// At the level the sample is at, ᾱ_s (the mirror of the forward step).
    Source,
    /// At the level the step lands on, ᾱ_t (diffusers' inversion pipelines).
    Target,
}

impl Level {
    pub(crate) fn exact(self) -> InversionLevel {
        match self {
            Level::Source => InversionLevel::Source,
            Level::Target => InversionLevel::Target,
        }
    }
}

/// Arguments of `ddim invert`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The image data set (glyphs or bright).
    #[arg(long, default_value = "glyphs", value_parser = parse_image_dataset)]
    dataset: Dataset,
    #[command(flatten)]
    config: ConfigArgs,
    /// Number of inference steps (of the inversion, and of the decoding).
    #[arg(long, short = 'n', default_value_t = 50, value_parser = crate::bounds::steps)]
    steps: usize,
    /// Seed of the exact samples that are inverted.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Number of samples to invert (1 to 32).
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=32))]
    count: u16,
    /// Where the model is evaluated inside an inverse step.
    #[arg(long, value_enum, default_value_t = Level::Source)]
    level: Level,
    /// `refuse`: stop before sampling when epsilon prediction meets ᾱ_t = 0 (zero terminal
    /// SNR), naming the fix; `off`: run anyway, as diffusers (x̂₀ is ±∞ there).
    #[arg(long, value_enum, default_value_t = ZeroSnrGuard::Refuse)]
    zero_snr_guard: ZeroSnrGuard,
    /// The PNG to write.
    #[arg(
        long,
        short = 'o',
        default_value = "ddim-invert.png",
        value_parser = crate::atomic::parse_output
    )]
    output: PathBuf,
}

/// Parses a data set name and accepts only image sets.
pub(crate) fn parse_image_dataset(text: &str) -> Result<Dataset, String> {
    let dataset: Dataset = text.parse().map_err(|e: ddim_exact::Error| e.to_string())?;
    match dataset.layout() {
        Layout::Image { .. } => Ok(dataset),
        Layout::Points2d => Err(format!(
            "{dataset} is a 2-D point set; this command draws images: use glyphs or bright"
        )),
    }
}

/// The (width, height) of an image data set's samples.
pub(crate) fn image_size(dataset: Dataset) -> anyhow::Result<(usize, usize)> {
    match dataset.layout() {
        Layout::Image { width, height } => Ok((width, height)),
        Layout::Points2d => anyhow::bail!("{dataset} is not an image data set"),
    }
}

/// Draws the rows of images to `output`, then reports the file and the wall time since
/// `started`.
pub(crate) fn write_picture(
    picture: &plot::strips::ImageRows,
    output: &Path,
    started: Instant,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    plot::write_png(output, picture.size(), |area| {
        plot::strips::draw(area, picture)
    })?;
    writeln!(out, "wrote {}", output.display())?;
    writeln!(out, "wall time: {:.2} s", started.elapsed().as_secs_f64())?;
    Ok(())
}

/// Mean and standard deviation of `f32` values, in `f64`.
fn moments(x: &[f32]) -> (f64, f64) {
    let n = x.len() as f64;
    let mean = x.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
    let var = x
        .iter()
        .map(|&v| (f64::from(v) - mean).powi(2))
        .sum::<f64>()
        / n;
    (mean, var.sqrt())
}

pub(crate) fn run(args: &Args, out: &mut impl Write) -> anyhow::Result<()> {
    let started = Instant::now();
    crate::atomic::check_writable(&args.output)?;
    let config = args.config.load_and_warn()?;
    let (width, height) = image_size(args.dataset)?;
    let mut forward = DdimScheduler::new(config)?.with_zero_snr_guard(args.zero_snr_guard);
    forward
        .set_timesteps(args.steps)
        .map_err(explain_zero_snr)?;
    let inverse = DdimInverseScheduler::matching(&forward).map_err(explain_zero_snr)?;
    let mixture = args.dataset.mixture();
    let count = usize::from(args.count);
    let x0 = mixture.sample(count, &mut sampling_rng(args.seed));

    let bar = progress_bar(2 * args.steps as u64, "steps");
    let latents = ddim_invert(&mixture, &inverse, &x0, args.level.exact(), |_, _| {
        bar.inc(1);
    })?;
    check_finite(&latents, &forward)?;
    let back = ddim_decode(&mixture, &forward, &latents, |_, _| bar.inc(1))?;
    bar.finish_and_clear();
    check_finite(&back, &forward)?;
    let error = rms_error(&x0, &back)?;
    let (mean, std) = moments(&latents);

    let c = forward.config();
    let settings = format!(
        "{} steps, {} spacing, {}, model at {} level, seed {}",
        args.steps,
        c.timestep_spacing,
        c.prediction_type,
        match args.level {
            Level::Source => "the source",
            Level::Target => "the target",
        },
        args.seed
    );
    writeln!(
        out,
        "ddim invert: {count} samples of `{}`, {settings}",
        args.dataset
    )?;
    writeln!(out, "RMS reconstruction error per pixel: {error:.6}")?;
    writeln!(
        out,
        "latents x_T: mean {mean:+.4}, std {std:.4} (N(0, 1) would give 0 and 1)"
    )?;
    let picture = plot::strips::ImageRows {
        title: format!("DDIM inversion on `{}`: x₀ → x_T → x₀", args.dataset),
        subtitle: format!("{settings}; RMS error {error:.5} per pixel"),
        rows: vec![
            ("exact samples x₀".into(), x0),
            (
                format!(
                    "their latents x_T (inverse to t = {})",
                    inverse.timesteps().last().copied().unwrap_or(0)
                ),
                latents,
            ),
            ("x_T decoded again with η = 0".into(), back),
        ],
        width,
        height,
    };
    write_picture(&picture, &args.output, started, out)
}
