//! img2img `strength`: which of the scheduler's timesteps an image-to-image run walks, as
//! diffusers' `StableDiffusionImg2ImgPipeline.get_timesteps` derives them.
//!
//! img2img starts from an encoded image instead of pure noise: it noises the image's latents
//! to an intermediate timestep and denoises from there. With `n` inference steps and strength
//! s ∈ [0, 1], diffusers keeps the last
//!
//! k = min(⌊n·s⌋, n)
//!
//! steps: it skips the first t_start = n − k timesteps (`timesteps[t_start·order:]`), noises the
//! image's latents to the first kept timestep (`scheduler.add_noise(latents, noise,
//! timesteps[:1])`), and runs the k remaining steps. s = 1 keeps every step (the image is
//! noised to the start of the schedule, so little of it survives); small s changes the image
//! little. `n·s` is computed in double precision and truncated, as Python's `int(n * strength)`
//! does, so `strength` is an `f64`.
//!
//! Schedulers with a step index get `set_begin_index(t_start·order)`; DDIM has none (its `step`
//! reads no per-run state), so [`Img2ImgTimesteps::begin_index`] is informational here.
//!
//! ## Where this differs from diffusers
//!
//! - A strength that keeps no step (⌊n·s⌋ = 0, e.g. s = 0, or s < 1/n) is an error here.
//!   diffusers returns an empty schedule, and its pipeline then fails inside `add_noise` with
//!   an `IndexError` (the fixtures record it).
//! - A strength outside [0, 1] or NaN is an error, as in the pipeline's `check_inputs` (which
//!   lets NaN through to fail in `int()`).

use crate::error::{Error, Result};
use crate::DdimScheduler;

/// The part of the schedule an img2img run walks (see the [module docs](self)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Img2ImgTimesteps<'a> {
    /// The timesteps to denoise through, descending: the scheduler's timesteps from
    /// `begin_index` on. Never empty.
    pub timesteps: &'a [usize],
    /// The index of the first kept timestep in the full schedule, t_start·order (what
    /// diffusers passes to `set_begin_index`).
    pub begin_index: usize,
    /// The number of denoising steps, k = min(⌊n·s⌋, n) (`get_timesteps`' second value).
    pub num_inference_steps: usize,
    /// The timestep to noise the initial latents to: the first kept timestep (the pipeline's
    /// `latent_timestep`). Pass it to [`DdimScheduler::add_noise`] once per batch item.
    pub noise_timestep: usize,
}

/// The number of leading timesteps an img2img run skips, t_start = n − min(⌊n·s⌋, n), for
/// `num_inference_steps` = n and `strength` = s.
///
/// ```
/// // diffusers' default: 50 steps at strength 0.8 skip 10 and run 40.
/// assert_eq!(ddim::img2img::skipped_steps(50, 0.8)?, 10);
/// # Ok::<(), ddim::Error>(())
/// ```
///
/// # Errors
///
/// [`Error::InvalidStepOption`] for a strength outside [0, 1] or NaN;
/// [`Error::InvalidStepCount`] when no step would be kept (⌊n·s⌋ = 0, including n = 0).
pub fn skipped_steps(num_inference_steps: usize, strength: f64) -> Result<usize> {
    if !(0.0..=1.0).contains(&strength) {
        return Err(Error::InvalidStepOption {
            name: "strength",
            reason: format!(
                "must be in [0, 1], got {}",
                crate::error::short_float(strength)
            ),
        });
    }
    // Python's `int(num_inference_steps * strength)`: the product in double, truncated.
    // Step counts are far below 2^53, so the conversion to f64 is exact.
    #[allow(clippy::cast_precision_loss)]
    let product = num_inference_steps as f64 * strength;
    // 0 ≤ product ≤ n (strength is in [0, 1]), so truncating it to usize is in range.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let kept = (product.trunc() as usize).min(num_inference_steps);
    if kept == 0 {
        return Err(Error::InvalidStepCount {
            requested: num_inference_steps,
            reason: format!(
                "img2img strength {strength} keeps int({num_inference_steps} * {strength}) = 0 \
                 of them; it needs at least 1 (strength >= 1/{num_inference_steps})",
                strength = crate::error::short_float(strength)
            ),
        });
    }
    Ok(num_inference_steps - kept)
}

/// The timesteps an img2img run walks with `strength` on a scheduler after
/// [`set_timesteps`](DdimScheduler::set_timesteps), as diffusers'
/// `StableDiffusionImg2ImgPipeline.get_timesteps` derives them:
///
/// k = min(⌊n·s⌋, n), t_start = n − k, timesteps = timesteps[t_start·order..]
///
/// ```
/// use ddim::{DdimConfig, DdimScheduler, StepOptions};
/// use ddim::img2img::img2img_timesteps;
///
/// let mut scheduler = DdimScheduler::new(DdimConfig::stable_diffusion())?;
/// scheduler.set_timesteps(50)?;
/// let plan = img2img_timesteps(&scheduler, 0.75)?;
/// assert_eq!(plan.num_inference_steps, 37); // int(50 * 0.75)
/// assert_eq!(plan.noise_timestep, plan.timesteps[0]);
///
/// let init_latents = vec![0.5f32; 4 * 8 * 8]; // the encoded image
/// let noise = vec![0.1f32; init_latents.len()]; // standard normal noise in a real run
/// let mut latents = scheduler.add_noise(&init_latents, &noise, &[plan.noise_timestep])?;
/// for &t in plan.timesteps {
///     let eps = vec![0.0f32; latents.len()]; // your model here
///     latents = scheduler.step(&eps, t, &latents, &StepOptions::default())?.prev_sample;
/// }
/// # Ok::<(), ddim::Error>(())
/// ```
///
/// # Errors
///
/// [`Error::TimestepsNotSet`] before `set_timesteps`; as [`skipped_steps`] for the strength.
pub fn img2img_timesteps(scheduler: &DdimScheduler, strength: f64) -> Result<Img2ImgTimesteps<'_>> {
    let n = scheduler
        .num_inference_steps()
        .ok_or(Error::TimestepsNotSet)?;
    let t_start = skipped_steps(n, strength)?;
    let begin_index = t_start * scheduler.order();
    let all = scheduler.timesteps();
    let timesteps = all.get(begin_index..).unwrap_or_default();
    let Some(&noise_timestep) = timesteps.first() else {
        // set_timesteps makes exactly n · order timesteps and t_start < n, so some are kept.
        return Err(Error::InvalidStepCount {
            requested: n,
            reason: format!(
                "img2img strength {} skips {begin_index} of the {} timesteps",
                crate::error::short_float(strength),
                all.len()
            ),
        });
    };
    Ok(Img2ImgTimesteps {
        timesteps,
        begin_index,
        num_inference_steps: n - t_start,
        noise_timestep,
    })
}
