//! DDIM inversion with the exact model: encode samples x₀ into their latents x_T with a
//! [`DdimInverseScheduler`], decode latents with η = 0 DDIM, and measure the round trip.
//!
//! With the exact denoiser the only error left is the discretisation of the two ODE solves:
//! the reconstruction error falls as the number of steps grows (the DDIM paper's Table 2).

use ddim::{DdimInverseScheduler, DdimScheduler, StepOptions};

use crate::error::{Error, Result};
use crate::mixture::GaussianMixture;

/// Which noise level the exact model is evaluated at in an inverse step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum InversionLevel {
    /// The level the sample is at, ᾱ_s ([`InverseStep::alpha_prod_source`](ddim::InverseStep)):
    /// explicit Euler backwards, the exact mirror of the forward step.
    #[default]
    Source,
    /// The level the step lands on, ᾱ_t: what diffusers' inversion pipelines do when they
    /// call the network with `(x_s, t)`. The model then sees a sample less noisy than it
    /// expects.
    Target,
}

/// Encodes `x0` (a batch, `mixture.dim()` values per sample) into latents with `inverse`
/// (whose timesteps must be set) and the exact model of `mixture`: for each t of
/// `inverse.timesteps()`, m = model(x, ᾱ at `level`) in the config's prediction type, then
/// x ← `inverse.step(m, t, x)`. `on_step(i, n)` is called after step `i + 1` of `n`.
///
/// ```
/// use rand::SeedableRng;
/// let ring = ddim_exact::Dataset::Ring.mixture();
/// let x0 = ring.sample(4, &mut rand::rngs::StdRng::seed_from_u64(0));
/// let mut forward = ddim::DdimScheduler::new(ddim::DdimConfig::default())?;
/// forward.set_timesteps(200)?;
/// let inverse = ddim::DdimInverseScheduler::matching(&forward)?;
/// let level = ddim_exact::InversionLevel::Source;
/// let latents = ddim_exact::ddim_invert(&ring, &inverse, &x0, level, |_, _| {})?;
/// let back = ddim_exact::ddim_decode(&ring, &forward, &latents, |_, _| {})?;
/// assert!(ddim_exact::rms_error(&x0, &back)? < 0.02); // about 0.0085 per dimension
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// # Errors
///
/// [`Error::LengthMismatch`] for a batch that is not a whole number of samples,
/// [`Error::ZeroCount`] for an empty one, [`Error::Scheduler`] when the inverse refuses a
/// step (timesteps not set).
pub fn ddim_invert(
    mixture: &GaussianMixture,
    inverse: &DdimInverseScheduler,
    x0: &[f32],
    level: InversionLevel,
    mut on_step: impl FnMut(usize, usize),
) -> Result<Vec<f32>> {
    check_batch(mixture, x0)?;
    if inverse.num_inference_steps().is_none() {
        return Err(ddim::Error::TimestepsNotSet.into());
    }
    let prediction_type = inverse.config().prediction_type;
    let mut x = x0.to_vec();
    let mut model_output = vec![0.0f32; x.len()];
    let timesteps = inverse.timesteps();
    for (i, &t) in timesteps.iter().enumerate() {
        let levels = inverse.step_levels(t)?;
        let alpha_bar = match level {
            InversionLevel::Source => levels.alpha_prod_source,
            InversionLevel::Target => levels.alpha_prod_target,
        };
        mixture.predict_into(&x, f64::from(alpha_bar), prediction_type, &mut model_output)?;
        inverse.step_in_place(&mut model_output, t, &mut x)?;
        on_step(i, timesteps.len());
    }
    Ok(x)
}

/// Decodes latents `x_t` with η = 0 DDIM (`scheduler`'s timesteps must be set) and the exact
/// model: [`ddim_sample`](crate::ddim_sample) from given latents instead of drawn ones.
///
/// # Errors
///
/// As [`ddim_invert`].
pub fn ddim_decode(
    mixture: &GaussianMixture,
    scheduler: &DdimScheduler,
    x_t: &[f32],
    mut on_step: impl FnMut(usize, usize),
) -> Result<Vec<f32>> {
    check_batch(mixture, x_t)?;
    if scheduler.num_inference_steps().is_none() {
        return Err(ddim::Error::TimestepsNotSet.into());
    }
    let dim = mixture.dim();
    let options = StepOptions {
        batch_size: Some(x_t.len() / dim),
        ..StepOptions::default()
    };
    let prediction_type = scheduler.config().prediction_type;
    let mut x = x_t.to_vec();
    let mut model_output = vec![0.0f32; x.len()];
    let timesteps = scheduler.timesteps();
    for (i, &t) in timesteps.iter().enumerate() {
        let alpha_bar = scheduler.step_coefficients(t, 0.0)?.alpha_prod_t;
        mixture.predict_into(&x, f64::from(alpha_bar), prediction_type, &mut model_output)?;
        scheduler.step_in_place(&mut model_output, t, &mut x, &options)?;
        on_step(i, timesteps.len());
    }
    Ok(x)
}

/// The per-dimension root-mean-square difference √((1/(N·d))·Σ (x − y)²), in `f64`.
///
/// ```
/// assert_eq!(ddim_exact::rms_error(&[0.0, 0.0], &[3.0, 4.0])?, 12.5f64.sqrt());
/// # Ok::<(), ddim_exact::Error>(())
/// ```
///
/// # Errors
///
/// [`Error::LengthMismatch`] when the lengths differ, [`Error::ZeroCount`] when empty.
pub fn rms_error(x: &[f32], y: &[f32]) -> Result<f64> {
    if x.len() != y.len() {
        return Err(Error::LengthMismatch {
            name: "y",
            expected: x.len(),
            got: y.len(),
        });
    }
    if x.is_empty() {
        return Err(Error::ZeroCount("x"));
    }
    let sum: f64 = x
        .iter()
        .zip(y)
        .map(|(&a, &b)| (f64::from(a) - f64::from(b)).powi(2))
        .sum();
    Ok((sum / x.len() as f64).sqrt())
}

fn check_batch(mixture: &GaussianMixture, x: &[f32]) -> Result<()> {
    if x.is_empty() {
        return Err(Error::ZeroCount("samples"));
    }
    mixture.check_batch("x", x).map(|_| ())
}
