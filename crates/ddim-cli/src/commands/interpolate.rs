//! `ddim interpolate`: decode latents interpolated between two seeds' x_T (the DDIM paper's
//! Figure 6): spherical interpolation (slerp) on top, linear (lerp) beneath for comparison.
//!
//! Gaussian latents of dimension d lie near the sphere of radius √d; the straight line between
//! two of them dips to a norm of about √(d/2) halfway, where the model sees inputs of the
//! wrong scale. slerp keeps the norm, so every frame decodes like a sample.

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use ddim::{DdimScheduler, ZeroSnrGuard};
use ddim_exact::ddim_decode;
use rand::Rng;
use rand_distr::{Distribution, StandardNormal};

use super::invert::{image_size, parse_image_dataset, write_picture};
use super::plot;
use super::sample::{check_finite, progress_bar, sampling_rng};
use crate::config_args::ConfigArgs;
use crate::policy_args::explain_zero_snr;

/// Arguments of `ddim interpolate`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The image data set (glyphs or bright).
    #[arg(long, default_value = "glyphs", value_parser = parse_image_dataset)]
    dataset: ddim_exact::Dataset,
    #[command(flatten)]
    config: ConfigArgs,
    /// Number of inference steps.
    #[arg(long, short = 'n', default_value_t = 50, value_parser = crate::bounds::steps)]
    steps: usize,
    /// Seed of the first latent (the same x_T as `ddim sample --seed`'s first sample).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Seed of the second latent [default: seed + 1].
    #[arg(long)]
    seed2: Option<u64>,
    /// Number of frames, both ends included (2 to 32).
    #[arg(long, default_value_t = 9, value_parser = clap::value_parser!(u16).range(2..=32))]
    frames: u16,
    /// `refuse`: stop before sampling when epsilon prediction meets ᾱ_t = 0 (zero terminal
    /// SNR), naming the fix; `off`: run anyway, as diffusers (x̂₀ is ±∞ there).
    #[arg(long, value_enum, default_value_t = ZeroSnrGuard::Refuse)]
    zero_snr_guard: ZeroSnrGuard,
    /// The PNG to write.
    #[arg(
        long,
        short = 'o',
        default_value = "ddim-interpolate.png",
        value_parser = crate::atomic::parse_output
    )]
    output: PathBuf,
}

/// x_T ~ N(0, σ²·I) for `seed`, drawn as [`ddim_exact::ddim_sample`] draws its first sample's.
fn latent(seed: u64, dim: usize, sigma: f32) -> Vec<f32> {
    let mut rng = sampling_rng(seed);
    draw(&mut rng, dim, sigma)
}

fn draw<R: Rng>(rng: &mut R, dim: usize, sigma: f32) -> Vec<f32> {
    (0..dim)
        .map(|_| sigma * Distribution::<f32>::sample(&StandardNormal, rng))
        .collect()
}

fn norm(x: &[f32]) -> f64 {
    x.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>().sqrt()
}

pub(crate) fn run(args: &Args, out: &mut impl Write) -> anyhow::Result<()> {
    let started = Instant::now();
    crate::atomic::check_writable(&args.output)?;
    let config = args.config.load_and_warn()?;
    let (width, height) = image_size(args.dataset)?;
    let mut scheduler = DdimScheduler::new(config)?.with_zero_snr_guard(args.zero_snr_guard);
    scheduler
        .set_timesteps(args.steps)
        .map_err(explain_zero_snr)?;
    let mixture = args.dataset.mixture();
    let dim = mixture.dim();
    let seed2 = args.seed2.unwrap_or(args.seed.wrapping_add(1));
    let sigma = scheduler.init_noise_sigma();
    let (a, b) = (latent(args.seed, dim, sigma), latent(seed2, dim, sigma));
    let frames = usize::from(args.frames);

    let mut spherical = vec![0.0f32; frames * dim];
    let mut linear = vec![0.0f32; frames * dim];
    for (i, (s, l)) in spherical
        .chunks_exact_mut(dim)
        .zip(linear.chunks_exact_mut(dim))
        .enumerate()
    {
        let t = i as f64 / (frames - 1) as f64;
        ddim::slerp(t, &a, &b, s)?;
        ddim::lerp(t, &a, &b, l)?;
    }
    let norms = |x: &[f32]| -> Vec<String> {
        x.chunks_exact(dim)
            .map(|v| format!("{:.1}", norm(v)))
            .collect()
    };
    let bar = progress_bar(2 * args.steps as u64, "steps");
    let decoded_s = ddim_decode(&mixture, &scheduler, &spherical, |_, _| bar.inc(1))?;
    let decoded_l = ddim_decode(&mixture, &scheduler, &linear, |_, _| bar.inc(1))?;
    bar.finish_and_clear();
    check_finite(&decoded_s, &scheduler)?;
    check_finite(&decoded_l, &scheduler)?;

    let c = scheduler.config();
    let settings = format!(
        "{} steps, η = 0, {} spacing, {}, seeds {} → {seed2}",
        args.steps, c.timestep_spacing, c.prediction_type, args.seed
    );
    writeln!(
        out,
        "ddim interpolate: {frames} frames of `{}`, {settings}",
        args.dataset
    )?;
    writeln!(out, "latent norms, slerp: {}", norms(&spherical).join(" "))?;
    writeln!(out, "latent norms, lerp:  {}", norms(&linear).join(" "))?;
    writeln!(out, "(√d = {:.1})", (dim as f64).sqrt())?;
    let picture = plot::strips::ImageRows {
        title: format!("DDIM latent interpolation on `{}`", args.dataset),
        subtitle: settings,
        rows: vec![
            (
                "slerp between the two latents x_T, decoded".into(),
                decoded_s,
            ),
            (
                "lerp, for comparison (the middle latents are too short)".into(),
                decoded_l,
            ),
        ],
        width,
        height,
    };
    write_picture(&picture, &args.output, started, out)
}
