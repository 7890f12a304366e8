//! The denoising loop every pipeline shares (`StableDiffusionPipeline.__call__` step 7):
//!
//! ```text
//! for t in timesteps:
//!     x_in  = cat([x_t] * 2) if guided else x_t            # scale_model_input is the identity
//!     pred  = unet(x_in, t, encoder_hidden_states=embeds)
//!     if guided:
//!         uncond, text = pred.chunk(2)
//!         pred = uncond + w · (text − uncond)
//!         if φ > 0: pred = rescale_noise_cfg(pred, text, φ)
//!     x_t = scheduler.step(pred, t, x_t, eta=η, generator=g).prev_sample
//! ```
//!
//! The UNet runs on candle tensors; guidance and the DDIM step run on the host through the
//! `ddim` crate's slice functions, which are bit-exact against diffusers in every element
//! type. The η > 0 noise of each step is drawn from the run's torch-compatible generator in
//! the latents' dtype, after the initial latents, as diffusers draws it.

use std::time::Instant;

use candle_core::{Tensor, WithDType};
use ddim::rng::{RandnElement, TorchCpuGenerator};
use ddim::{DdimScheduler, StepOptions};

use crate::error::Result;
use crate::pipeline::StableDiffusion;
use crate::request::{Generated, Progress, Request, StageTimes};

/// An element type the pipelines run in: f32, f16 or bf16 (candle and `ddim` both know it).
pub trait PipelineFloat: RandnElement + WithDType {}

impl<T: RandnElement + WithDType> PipelineFloat for T {}

/// Classifier-free guidance settings of a loop (`None` in [`Loop::guidance`] is unguided).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Guidance {
    pub(crate) scale: f32,
    pub(crate) rescale: f32,
}

/// One denoising loop's inputs.
#[derive(Debug)]
pub(crate) struct Loop<'a> {
    /// The text conditioning: `[negative × B, positive × B]` when guided, else `positive × B`.
    pub(crate) embeds: &'a Tensor,
    pub(crate) guidance: Option<Guidance>,
    pub(crate) eta: f32,
    pub(crate) timesteps: &'a [usize],
    /// B × C × h × w of the latents.
    pub(crate) shape: [usize; 4],
}

/// Runs the loop from `latents`, returning the final latents.
pub(crate) fn denoise<T: PipelineFloat>(
    pipe: &StableDiffusion,
    scheduler: &DdimScheduler,
    run: &Loop<'_>,
    mut latents: Vec<T>,
    generator: &mut TorchCpuGenerator,
    times: &mut StageTimes,
    progress: Progress<'_>,
) -> Result<Vec<T>> {
    let [batch, channels, h, w] = run.shape;
    let n = latents.len();
    let total = run.timesteps.len();
    // The η > 0 noise of each step, drawn into one buffer for the whole loop.
    let mut noise = if run.eta > 0.0 {
        latents.clone()
    } else {
        Vec::new()
    };
    for (i, &t) in run.timesteps.iter().enumerate() {
        let started = Instant::now();
        let input = match run.guidance {
            Some(_) => {
                let mut doubled = Vec::with_capacity(2 * n);
                doubled.extend_from_slice(&latents);
                doubled.extend_from_slice(&latents);
                Tensor::from_vec(doubled, (2 * batch, channels, h, w), pipe.device())?
            }
            None => Tensor::from_slice(&latents, (batch, channels, h, w), pipe.device())?,
        };
        times.scheduler_and_guidance += started.elapsed();

        let started = Instant::now();
        let prediction = pipe.predict(&input, t, run.embeds)?;
        // Reading the values back waits for the device: the UNet's time includes its queue.
        let prediction: Vec<T> = prediction.flatten_all()?.to_vec1()?;
        times.unet += started.elapsed();

        let started = Instant::now();
        let mut noise_pred = match run.guidance {
            Some(guidance) => guide(&prediction, n, batch, guidance)?,
            None => prediction,
        };
        let options = StepOptions {
            eta: run.eta,
            batch_size: batch,
            ..StepOptions::default()
        };
        scheduler.step_in_place_with_generator(
            &mut noise_pred,
            t,
            &mut latents,
            &options,
            generator,
            &mut noise,
        )?;
        times.scheduler_and_guidance += started.elapsed();
        progress(i + 1, total);
    }
    Ok(latents)
}

/// ε̂ = ε_uncond + w·(ε_text − ε_uncond), then `rescale_noise_cfg` when φ > 0, from the UNet's
/// output for the batch of two (`[uncond × B, text × B]`, `n` values each).
fn guide<T: PipelineFloat>(
    prediction: &[T],
    n: usize,
    batch: usize,
    guidance: Guidance,
) -> Result<Vec<T>> {
    let (uncond, text) = prediction.split_at(n.min(prediction.len()));
    let mut guided = uncond.to_vec();
    ddim::guidance::classifier_free_guidance(uncond, text, guidance.scale, &mut guided)?;
    if guidance.rescale > 0.0 {
        ddim::guidance::rescale_noise_cfg(&mut guided, text, guidance.rescale, batch)?;
    }
    Ok(guided)
}

/// A run ready for its loop: the conditioning, x_T (or the noised init latents), what the
/// stages so far took and warned about.
#[derive(Debug)]
pub(crate) struct Prepared<T> {
    pub(crate) embeds: Tensor,
    pub(crate) latents: Vec<T>,
    pub(crate) shape: [usize; 4],
    pub(crate) times: StageTimes,
    pub(crate) warnings: Vec<String>,
}

impl StableDiffusion {
    /// The denoising loop over `timesteps` and the decoding: the part text-to-image and img2img
    /// share.
    pub(crate) fn finish<T: PipelineFloat>(
        &self,
        scheduler: &DdimScheduler,
        request: &Request,
        timesteps: &[usize],
        prepared: Prepared<T>,
        generator: &mut TorchCpuGenerator,
        progress: Progress<'_>,
    ) -> Result<Generated> {
        let Prepared {
            embeds,
            latents,
            shape,
            mut times,
            warnings,
        } = prepared;
        let run = Loop {
            embeds: &embeds,
            guidance: request.uses_guidance().then_some(Guidance {
                scale: request.guidance_scale,
                rescale: request.guidance_rescale,
            }),
            eta: request.eta,
            timesteps,
            shape,
        };
        let latents = denoise(
            self, scheduler, &run, latents, generator, &mut times, progress,
        )?;
        let started = Instant::now();
        let images = self.decode(&latents, shape)?;
        times.decoding += started.elapsed();
        Ok(Generated {
            images,
            latents: crate::text2img::to_f32_latents(&latents, shape),
            times,
            warnings,
        })
    }
}
