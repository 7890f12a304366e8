//! # ddim
//!
//! The DDIM sampler (Song, Meng & Ermon 2020, "Denoising Diffusion Implicit Models") with the
//! behaviour and the numbers of Hugging Face diffusers' `DDIMScheduler` (0.42.1, torch CPU,
//! float32), reading a model's `scheduler_config.json`.
//!
//! ## The maths
//!
//! Training adds noise with a schedule β_t, t = 0 … T−1: ᾱ_t = ∏_{s≤t}(1 − β_s) and
//! x_t = √ᾱ_t·x₀ + √(1 − ᾱ_t)·ε. Sampling walks down `n` chosen timesteps; at each, the model
//! output gives x̂₀ and ε̂, and DDIM moves to the previous timestep:
//!
//! x_{t_prev} = √ᾱ_prev·x̂₀ + √(1 − ᾱ_prev − σ_t²)·ε̂ + σ_t·z,
//! σ_t = η·√((1 − ᾱ_prev)/(1 − ᾱ_t)·(1 − ᾱ_t/ᾱ_prev)).
//!
//! η = 0 is deterministic (DDIM proper); η = 1 matches DDPM's posterior variance.
//!
//! ## The pieces
//!
//! | module | what |
//! |---|---|
//! | [`config`] | [`DdimConfig`] and its modes; load `scheduler_config.json` like `from_config` (also by model id from the local Hugging Face cache, [`config::hub`]); save like `to_json_string` |
//! | [`schedule`] | β (linear, scaled_linear, squaredcos_cap_v2, trained), zero-terminal-SNR rescale, ᾱ |
//! | [`timesteps`] | leading / linspace / trailing spacing, exactly `n` valid timesteps |
//! | [`DdimScheduler`] | `set_timesteps`, `step`, `step_into`, `add_noise`, `get_velocity` |
//! | [`StepCoefficients`] | the per-step scalars (ᾱ_t, ᾱ_prev, σ_t, …) |
//! | [`inverse`] | [`DdimInverseScheduler`]: x₀ → x_T, diffusers' `DDIMInverseScheduler` or the exact mirror of a forward scheduler |
//! | [`interpolate`] | [`slerp`] and [`lerp`] of latents |
//! | [`guidance`] | classifier-free guidance and `rescale_noise_cfg` (guidance_rescale), per sample |
//! | [`img2img`] | img2img `strength` → the timesteps to walk and the timestep to noise the image to |
//! | [`policy`] | options beyond diffusers (previous-timestep rule, quad spacing, safe η, DDPM σ̂, zero-SNR guard), diffusers' behaviour by default; custom timesteps; [`DdimScheduler::batch_step_no_noise`] |
//! | [`rng`] | torch-compatible noise: `torch.Generator('cpu')` bit for bit, a CUDA Philox model, `randn_tensor` latents, `step_with_generator` |
//!
//! ## Features
//!
//! All additive; the default build depends on no tensor framework.
//!
//! | feature | default | what it adds | dependency |
//! |---|---|---|---|
//! | `rayon` | yes | large steps split over rayon's pool (bit-identical to one thread) | `rayon` |
//! | `clap` | no | `clap::ValueEnum` on the mode enums | `clap` |
//! | `ndarray` | no | `backend::ndarray`: step, step_into, add_noise, get_velocity on `ArrayView`s of any dimension and layout | `ndarray` |
//! | `candle` | no | `backend::candle`: the same on candle `Tensor`s (F16, BF16, F32, F64) on any device | `candle-core` |
//!
//! [`backend`] describes the two tensor backends; `docs/backends.md` their measured parity.
//!
//! ## Quick start
//!
//! ```
//! use ddim::{DdimConfig, DdimScheduler, StepOptions};
//!
//! let config = DdimConfig::from_json_str(r#"{
//!     "_class_name": "PNDMScheduler", "beta_schedule": "scaled_linear",
//!     "beta_start": 0.00085, "beta_end": 0.012, "set_alpha_to_one": false,
//!     "skip_prk_steps": true, "steps_offset": 1, "clip_sample": false
//! }"#)?;
//! let mut scheduler = DdimScheduler::new(config)?;
//! scheduler.set_timesteps(50)?;
//! let mut latents = vec![0.3f32; 4 * 8 * 8];
//! for &t in scheduler.timesteps() {
//!     let eps = vec![0.01f32; latents.len()]; // your model here
//!     let out = scheduler.step(&eps, t, &latents, &StepOptions::default())?;
//!     latents = out.prev_sample;
//! }
//! # Ok::<(), ddim::Error>(())
//! ```
//!
//! ## Numerics
//!
//! β, ᾱ and every step operation follow torch's float32 arithmetic in diffusers' order
//! (FMA linspace, f64-accumulated cumprod, per-op f32, no contraction). Square roots are IEEE;
//! torch's CPU `sqrt` is not correctly rounded on every machine, so results can differ from
//! diffusers by a few ulps (the README gives the measured figure). Where diffusers is wrong
//! (see [`timesteps`]), this crate returns valid output or an error, and documents which.
//!
//! The library never prints: config warnings are returned ([`ConfigWarning`]).

#![deny(missing_docs)]
#![doc(test(attr(deny(warnings))))]
// No panic paths on user input: no unwrap/expect/panic, no unchecked indexing, no lossy casts.
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing,
        clippy::unreachable,
        clippy::todo,
        clippy::unimplemented,
        clippy::cast_possible_truncation,
        clippy::cast_possible_wrap,
        clippy::cast_sign_loss
    )
)]

pub mod backend;
mod coefficients;
pub mod config;
pub mod element;
pub mod error;
mod finite;
pub mod guidance;
pub mod img2img;
pub mod interpolate;
pub mod inverse;
mod kernel;
mod parallel;
pub mod policy;
#[cfg(doctest)]
mod readme;
pub mod rng;
pub mod schedule;
mod scheduler;
mod threshold;
pub mod timesteps;

pub use coefficients::StepCoefficients;
pub use config::{
    BetaSchedule, ConfigWarning, DdimConfig, LoadedConfig, PredictionType, TimestepSpacing,
    DIFFUSERS_VERSION,
};
pub use element::Element;
pub use error::{Error, Result};
pub use half;
pub use interpolate::{lerp, slerp};
pub use inverse::{
    DdimInverseConfig, DdimInverseScheduler, InverseConfigWarning, InverseStep, LoadedInverseConfig,
};
pub use kernel::PARALLEL_MIN_LEN;
pub use policy::{BatchFinalAlpha, EtaPolicy, SpacingOverride, VarianceKind, ZeroSnrGuard};
pub use scheduler::{DdimScheduler, PrevTimestepRule, StepOptions, StepOutput};
