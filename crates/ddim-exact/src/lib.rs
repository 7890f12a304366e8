//! # ddim-exact
//!
//! Built-in "exact models" for the `ddim` sampler: Gaussian-mixture data sets whose optimal
//! denoiser is known in closed form, so DDIM can be run end to end, and judged against the
//! true distribution, without a trained network.
//!
//! ## The loop
//!
//! ```
//! use rand::SeedableRng;
//! use ddim_exact::{ddim_sample, Dataset, Evaluator};
//!
//! let ring = Dataset::Ring.mixture();
//! let mut scheduler = ddim::DdimScheduler::new(ddim::DdimConfig::default())?;
//! scheduler.set_timesteps(50)?;
//! let mut rng = rand::rngs::StdRng::seed_from_u64(0);
//! let samples = ddim_sample(&ring, &scheduler, 500, 0.0, &mut rng, |_, _| {})?;
//! let eval = Evaluator::new(&ring, 500, &mut rng);
//! let (got, floor) = (eval.evaluate(&samples)?, eval.noise_floor(500, &mut rng)?);
//! assert_eq!(got.modes_hit, 8);
//! assert!(got.sliced_w2 < 3.0 * floor.sliced_w2);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! ## The pieces
//!
//! | item | what |
//! |---|---|
//! | [`GaussianMixture`] | the mixture: exact sampling, log-density, component assignment, [`predict`](GaussianMixture::predict) for every `prediction_type` |
//! | [`Dataset`] | built-in sets: `ring`, `grid`, `spiral` (2-D), `glyphs`, `bright` (16×16 images) |
//! | [`metrics`] | sliced Wasserstein-2, mode coverage, mean log-likelihood, and their noise floors ([`Evaluator`]) |
//! | [`ddim_sample`] | the DDIM loop with the exact model |
//! | [`ddim_invert`], [`ddim_decode`] | DDIM inversion x₀ → x_T and η = 0 decoding, with the exact model |
//!
//! ## The maths
//!
//! The data are x₀ ~ p = Σ_k w_k·N(μ_k, s_k²·I). Noised as diffusion training does,
//! x_t = √ᾱ_t·x₀ + √(1 − ᾱ_t)·ε, every component stays Gaussian, so the posterior means that
//! a perfectly trained network would output are closed form (see [`denoiser`]):
//!
//! r_k ∝ w_k·N(x_t; √ᾱ·μ_k, (ᾱ·s_k² + 1 − ᾱ)·I),
//! E[x₀ | x_t] = Σ_k r_k·(μ_k + √ᾱ·s_k²/(ᾱ·s_k² + 1 − ᾱ)·(x_t − √ᾱ·μ_k)),
//! E[ε | x_t] = Σ_k r_k·√(1 − ᾱ)/(ᾱ·s_k² + 1 − ᾱ)·(x_t − √ᾱ·μ_k),
//! v̂ = √ᾱ·E[ε | x_t] − √(1 − ᾱ)·E[x₀ | x_t].
//!
//! Any error left in the samples is then the sampler's own: the discretisation of the
//! schedule, the choice of timesteps, the η noise, the start at a non-zero terminal SNR.
//!
//! All computation is in `f64`; samples and model outputs are `f32`, flat and batch-major,
//! as `ddim` takes them. The crate prints nothing. `docs/exact-models.md` and
//! `docs/experiments.md` in the repository show what the models measure.

#![deny(missing_docs)]
// docs.rs (nightly, `--cfg docsrs`): feature-gated items show the feature they need.
#![cfg_attr(docsrs, feature(doc_cfg))]
#![doc(test(attr(deny(warnings))))]
#![forbid(unsafe_code)]

mod datasets;
pub mod denoiser;
mod error;
pub mod metrics;
mod mixture;
mod roundtrip;
mod sampler;

pub use datasets::{Dataset, Layout, GLYPH_SIZE};
pub use denoiser::PosteriorMean;
pub use error::{Error, Result};
pub use metrics::{
    mean_log_likelihood, mode_coverage, sliced_wasserstein, Evaluator, Metrics, ModeCoverage,
};
pub use mixture::GaussianMixture;
pub use roundtrip::{ddim_decode, ddim_invert, rms_error, InversionLevel};
pub use sampler::ddim_sample;
