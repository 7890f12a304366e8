//! # ddim
//!
//! The DDIM sampler (Song, Meng & Ermon 2020, "Denoising Diffusion Implicit Models") with the
//! behaviour and the numbers of Hugging Face diffusers' `DDIMScheduler` (0.42.1, torch CPU,
//! float32), reading a model's `scheduler_config.json`.
//!
//! ## The loop
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
//! let mut eps = vec![0.0f32; latents.len()];
//! for &t in scheduler.timesteps() {
//!     eps.fill(0.01); // your model here writes ε̂ into `eps`
//!     scheduler.step_in_place(&mut eps, t, &mut latents, &StepOptions::default())?;
//!     // `latents` is now x_{t_prev}; `eps` holds x̂₀
//! }
//! # Ok::<(), ddim::Error>(())
//! ```
//!
//! ## Features
//!
//! All additive; the default build depends on no tensor framework.
//!
//! | feature | default | what it adds | dependency |
//! |---|---|---|---|
//! | `rayon` | yes | large steps split over rayon's pool (bit-identical to one thread) | `rayon` |
//! | `clap` | no | `clap::ValueEnum` on the mode enums | `clap` |
//! | `ndarray` | no | `backend::ndarray`: step, step_into, step_in_place, add_noise, get_velocity on `ArrayView`s of any dimension and layout, plus guidance, torch-seeded latents and noise, the inverse step, `batch_step_no_noise` | `ndarray` |
//! | `candle` | no | `backend::candle`: step, step_in_place, add_noise, get_velocity on candle `Tensor`s (F16, BF16, F32, F64) on any device, plus guidance, torch-seeded latents and noise, the inverse step, `batch_step_no_noise` | `candle-core` |
//! | `candle-transformers` | no | `backend::candle::TransformersDdim`: candle-transformers' Stable Diffusion `Scheduler` trait, so candle's SD code switches to this DDIM by one line | `candle-transformers` |
//!
//! The versions of the dependencies users combine with this crate are re-exported:
//! [`rand`] (for [`DdimScheduler::step_with_rng`]), [`half`], and with their features
//! `ndarray`, `candle_core` and `candle_transformers`. `DdimConfig` and `DdimInverseConfig`
//! implement serde's `Serialize`/`Deserialize` in diffusers' key names.
//!
//! [`backend`] describes the two tensor backends; `docs/backends.md` their measured parity.
//!
//! ## The pieces
//!
//! | module | what |
//! |---|---|
//! | [`config`] | [`DdimConfig`] and its modes; load `scheduler_config.json` like `from_config` (also by model id from the local Hugging Face cache, [`config::hub`]); save like `to_json_string` |
//! | [`schedule`] | β (linear, scaled_linear, squaredcos_cap_v2, trained), zero-terminal-SNR rescale, ᾱ |
//! | [`timesteps`] | leading / linspace / trailing spacing, exactly `n` valid timesteps |
//! | [`DdimScheduler`] | `set_timesteps`, `step_in_place` (the loop to write: no allocation), `step`, `step_into`, `add_noise`, `get_velocity` |
//! | [`StepCoefficients`] | the per-step scalars (ᾱ_t, ᾱ_prev, σ_t, …) |
//! | [`inverse`] | [`DdimInverseScheduler`]: x₀ → x_T, diffusers' `DDIMInverseScheduler` or the exact mirror of a forward scheduler |
//! | [`interpolate`] | [`slerp`] and [`lerp`] of latents |
//! | [`guidance`] | classifier-free guidance and `rescale_noise_cfg` (guidance_rescale), per sample |
//! | [`img2img`] | img2img `strength` → the timesteps to walk and the timestep to noise the image to |
//! | [`policy`] | options beyond diffusers (previous-timestep rule, quad spacing, safe η, DDPM σ̂, zero-SNR guard), diffusers' behaviour by default; custom timesteps; [`DdimScheduler::batch_step_no_noise`] |
//! | [`rng`] | torch-compatible noise: `torch.Generator('cpu')` bit for bit, a CUDA Philox model, `randn_tensor` latents, `step_with_generator` |
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
//! ## Numerics
//!
//! β, ᾱ and every step operation follow torch's float32 arithmetic in diffusers' order
//! (FMA linspace, f64-accumulated cumprod, per-op f32, no contraction). Square roots are IEEE;
//! torch's CPU `sqrt` is not correctly rounded on every machine, so results can differ from
//! diffusers by a few ulps (`docs/parity.md` in the repository gives the measured figure). Where diffusers is wrong
//! (see [`timesteps`]), this crate returns valid output or an error, and documents which.
//!
//! The library never prints: config warnings are returned ([`ConfigWarning`]).
//!
//! ## Links
//!
//! In the repository: `README.md` (the two commands, `ddim generate`), `docs/parity.md` (every
//! measured difference from diffusers), `docs/backends.md` (ndarray and candle),
//! `docs/torch-rng.md` (torch's noise, bit for bit), `docs/errors.md` (every error message),
//! `BENCHMARKS.md`, `RELIABILITY.md`; the Stable Diffusion pipelines are the `ddim-pipeline`
//! crate.

#![deny(missing_docs)]
// docs.rs (nightly, `--cfg docsrs`): feature-gated items show the feature they need.
#![cfg_attr(docsrs, feature(doc_cfg))]
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

mod alloc;
pub mod backend;
mod coefficients;
pub mod config;
pub mod element;
pub mod error;
mod finite;
pub mod guidance;
pub mod img2img;
mod in_place;
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
mod simd;
mod threshold;
pub mod timesteps;

/// The `candle-core` the `candle` backend is built against.
#[cfg(feature = "candle")]
pub use candle_core;
/// The `candle-transformers` whose `Scheduler` trait
/// [`backend::candle::TransformersDdim`] implements.
#[cfg(feature = "candle-transformers")]
pub use candle_transformers;
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
/// The `ndarray` the `ndarray` backend is built against (build arrays with it to avoid
/// "multiple different versions of crate ndarray").
#[cfg(feature = "ndarray")]
pub use ndarray;
pub use policy::{BatchFinalAlpha, EtaPolicy, SpacingOverride, VarianceKind, ZeroSnrGuard};
/// The `rand` this crate is built against: generators for
/// [`DdimScheduler::step_with_rng`] must come from this version (another `rand`, such as the
/// one candle-core pulls in, has its own `Rng` trait). [`rng`]'s torch generators need no
/// `rand` at all.
///
/// ```
/// use ddim::rand::SeedableRng;
/// let mut rng = ddim::rand::rngs::StdRng::seed_from_u64(0);
/// let mut s = ddim::DdimScheduler::new(ddim::DdimConfig::default())?;
/// s.set_timesteps(10)?;
/// let options = ddim::StepOptions { eta: 1.0, ..Default::default() };
/// s.step_with_rng(&[0.1f32; 4], 900, &[0.5; 4], &options, &mut rng)?;
/// # Ok::<(), ddim::Error>(())
/// ```
pub use rand;
pub use scheduler::{DdimScheduler, PrevTimestepRule, StepOptions, StepOutput};
pub use simd::{force_kernel_path, force_portable_kernels, kernel_path, KernelPath};
