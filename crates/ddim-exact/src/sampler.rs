//! DDIM sampling with the exact model: the loop every user of `ddim` writes, with the
//! closed-form denoiser in place of a network.

use ddim::{DdimScheduler, StepOptions};
use rand::Rng;
use rand_distr::{Distribution, StandardNormal};

use crate::error::{Error, Result};
use crate::mixture::GaussianMixture;

/// Draws `count` samples with `scheduler` (whose timesteps must be set) and the exact model of
/// `mixture`:
///
/// x_T ~ N(0, init_noise_sigma²·I); for each t of `scheduler.timesteps()`:
/// m = model(x_t, ᾱ_t) in the config's `prediction_type`, x ← `step`(m, t, x; η).
///
/// `rng` gives x_T first, then the noise of each step when η > 0, so a seeded generator
/// reproduces the samples exactly. `on_step(i, n)` is called after step `i + 1` of `n`.
///
/// ```
/// use rand::SeedableRng;
/// let mixture = ddim_exact::Dataset::Ring.mixture();
/// let mut scheduler = ddim::DdimScheduler::new(ddim::DdimConfig::default())?;
/// scheduler.set_timesteps(20)?;
/// let mut rng = rand::rngs::StdRng::seed_from_u64(0);
/// let x = ddim_exact::ddim_sample(&mixture, &scheduler, 100, 0.0, &mut rng, |_, _| {})?;
/// assert_eq!(x.len(), 200);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// # Errors
///
/// [`Error::ZeroCount`] when `count` is 0; [`Error::Scheduler`] when the scheduler refuses a
/// step (timesteps not set, a bad η).
pub fn ddim_sample<R: Rng + ?Sized>(
    mixture: &GaussianMixture,
    scheduler: &DdimScheduler,
    count: usize,
    eta: f32,
    rng: &mut R,
    mut on_step: impl FnMut(usize, usize),
) -> Result<Vec<f32>> {
    if count == 0 {
        return Err(Error::ZeroCount("count"));
    }
    let sigma = scheduler.init_noise_sigma();
    let mut x: Vec<f32> = (0..count * mixture.dim())
        .map(|_| sigma * Distribution::<f32>::sample(&StandardNormal, rng))
        .collect();
    let prediction_type = scheduler.config().prediction_type;
    let options = StepOptions {
        eta,
        batch_size: Some(count),
        ..StepOptions::default()
    };
    let mut model_output = vec![0.0f32; x.len()];
    let timesteps = scheduler.timesteps();
    for (i, &t) in timesteps.iter().enumerate() {
        let alpha_bar = f64::from(*scheduler.alphas_cumprod().get(t).ok_or(
            ddim::Error::TimestepOutOfRange {
                timestep: t as i64,
                num_train_timesteps: scheduler.alphas_cumprod().len(),
            },
        )?);
        mixture.predict_into(&x, alpha_bar, prediction_type, &mut model_output)?;
        x = scheduler
            .step_with_rng(&model_output, t, &x, &options, rng)?
            .prev_sample;
        on_step(i, timesteps.len());
    }
    Ok(x)
}
