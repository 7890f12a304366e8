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
//! Everything runs on candle tensors: the UNet here, guidance and the DDIM step through
//! `ddim::backend::candle`, which on the CPU is bit for bit the `ddim` crate's slice functions
//! (bit-exact against diffusers in every element type). The η > 0 noise of each step is drawn
//! from the run's torch-compatible generator in the latents' dtype, after the initial latents,
//! as diffusers draws it.

use std::time::Instant;

use candle_core::{Tensor, WithDType};
use ddim::backend::{candle, TensorStepOptions};
use ddim::rng::{RandnElement, TorchCpuGenerator};
use ddim::DdimScheduler;

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
///
/// The latents stay a tensor on the pipeline's device for the whole loop: guidance and the
/// step run through `ddim::backend::candle` (on the CPU, the same fused kernels as the slice
/// functions, bit for bit; elsewhere candle ops), and only the η noise crosses from the host.
pub(crate) fn denoise<T: PipelineFloat>(
    pipe: &StableDiffusion,
    scheduler: &DdimScheduler,
    run: &Loop<'_>,
    latents: Vec<T>,
    generator: &mut TorchCpuGenerator,
    times: &mut StageTimes,
    progress: Progress<'_>,
) -> Result<Vec<T>> {
    let [batch, channels, h, w] = run.shape;
    let mut latents = Tensor::from_vec(latents, (batch, channels, h, w), pipe.device())?;
    let options = TensorStepOptions {
        eta: run.eta,
        ..TensorStepOptions::default()
    };
    let total = run.timesteps.len();
    for (i, &t) in run.timesteps.iter().enumerate() {
        let started = Instant::now();
        let input = match run.guidance {
            Some(_) => Tensor::cat(&[&latents, &latents], 0)?,
            None => latents.clone(),
        };
        times.scheduler_and_guidance += started.elapsed();

        // On the CPU candle runs synchronously; on a GPU part of the UNet's time lands in the
        // next stage, which waits for it.
        let started = Instant::now();
        let prediction = pipe.predict(&input, t, run.embeds)?;
        times.unet += started.elapsed();

        let started = Instant::now();
        let noise_pred = match run.guidance {
            // ε_u + w·(ε_t − ε_u) over the [uncond; text] halves, then rescale_noise_cfg
            // when φ > 0.
            Some(g) => candle::guide(&prediction, g.scale, g.rescale)?,
            None => prediction,
        };
        latents =
            candle::step_with_generator(scheduler, &noise_pred, t, &latents, &options, generator)?
                .prev_sample;
        times.scheduler_and_guidance += started.elapsed();
        progress(i + 1, total);
    }
    Ok(latents.flatten_all()?.to_vec1()?)
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
