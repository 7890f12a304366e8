//! img2img, step for step as diffusers' `StableDiffusionImg2ImgPipeline.__call__`:
//!
//! 1. `VaeImageProcessor.preprocess(image)`: the size rounded down to a multiple of the VAE's
//!    scale factor (PIL Lanczos when it changes), `2x − 1`;
//! 2. `get_timesteps(n, strength)` ([`ddim::img2img::img2img_timesteps`]): the last
//!    min(⌊n·strength⌋, n) timesteps, and the first of them as the noise level;
//! 3. `prepare_latents`: `vae.encode(image).latent_dist.sample(generator)` = mean + std·z
//!    (z the generator's **first** draw), × `scaling_factor`, repeated per image; then
//!    `noise = randn(…)` (its second draw) and `scheduler.add_noise(init, noise, t₀)`;
//! 4. the denoising loop from t₀ (η noise: the generator's later draws) and decoding, as in
//!    text-to-image.
//!
//! One difference on purpose: diffusers 0.42.1's img2img pipeline has no `guidance_rescale`
//! argument and drops it silently (its `**kwargs`), so there the zero-SNR recipe's rescale
//! never happens. Here [`Request::guidance_rescale`] is applied as in text-to-image, and the
//! run's warnings say that diffusers would have ignored it (with φ = 0 the images agree).

use std::time::Instant;

use candle_core::{DType, Tensor};
use ddim::element::Compute;
use ddim::rng::{randn_latents, TorchCpuGenerator};
use ddim::DdimScheduler;
use half::{bf16, f16};

use crate::denoise::{PipelineFloat, Prepared};
use crate::error::{Error, Result};
use crate::image::RgbImage;
use crate::pipeline::StableDiffusion;
use crate::request::{Generated, Progress, Request, StageTimes};
use crate::text2img::check_images_per_prompt;

impl StableDiffusion {
    /// Transforms `init` toward `request.prompt`, keeping `1 − strength` of the way from
    /// noise to image, as `StableDiffusionImg2ImgPipeline(prompt, image=init, strength=…,
    /// generator=torch.Generator("cpu").manual_seed(seed))`. The output size is the init
    /// image's (rounded down to a multiple of the VAE's scale factor); `request.height` and
    /// `request.width` must be `None`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] for a strength outside (0, 1] (or one that keeps no step),
    /// a height or width given, an image smaller than the VAE's scale factor;
    /// [`Error::Scheduler`] when the scheduler's timesteps are not set.
    pub fn image_to_image(
        &self,
        scheduler: &DdimScheduler,
        request: &Request,
        init: &RgbImage,
        strength: f64,
        progress: Progress<'_>,
    ) -> Result<Generated> {
        match self.dtype {
            DType::F16 => {
                self.image_to_image_as::<f16>(scheduler, request, init, strength, progress)
            }
            DType::BF16 => {
                self.image_to_image_as::<bf16>(scheduler, request, init, strength, progress)
            }
            _ => self.image_to_image_as::<f32>(scheduler, request, init, strength, progress),
        }
    }

    fn image_to_image_as<T: PipelineFloat>(
        &self,
        scheduler: &DdimScheduler,
        request: &Request,
        init: &RgbImage,
        strength: f64,
        progress: Progress<'_>,
    ) -> Result<Generated> {
        check_strength(strength)?;
        if request.height.is_some() || request.width.is_some() {
            return Err(Error::InvalidArgument {
                name: "height",
                reason: "cannot be set for img2img: the init image's size is the output's".into(),
            });
        }
        check_images_per_prompt(request.num_images_per_prompt)?;
        let plan = ddim::img2img::img2img_timesteps(scheduler, strength).map_err(|e| match e {
            ddim::Error::InvalidStepCount { requested, .. } => Error::InvalidArgument {
                name: "strength",
                reason: format!(
                    "{strength} keeps no step of {requested} (need strength × steps ≥ 1)"
                ),
            },
            other => other.into(),
        })?;
        let mut times = StageTimes::default();
        let (embeds, mut warnings) = self.encode_prompt(request, &mut times)?;
        if request.uses_guidance() && request.guidance_rescale > 0.0 {
            warnings.push(format!(
                "guidance_rescale {} is applied; diffusers' StableDiffusionImg2ImgPipeline \
                 ignores it (no such argument), so its image differs",
                request.guidance_rescale
            ));
        }

        let started = Instant::now();
        let mut generator = TorchCpuGenerator::new(request.seed);
        let (init_latents, item_shape) = self.encode_image::<T>(init, Some(&mut generator))?;
        let copies = request.num_images_per_prompt;
        let shape = [copies, item_shape[1], item_shape[2], item_shape[3]];
        let init_latents: Vec<T> = init_latents.repeat(copies);
        let noise: Vec<T> = randn_latents(&shape, &mut generator)?;
        let latents =
            scheduler.add_noise(&init_latents, &noise, &vec![plan.noise_timestep; copies])?;
        times.image_encoding += started.elapsed();

        let prepared = Prepared {
            embeds,
            latents,
            shape,
            times,
            warnings,
        };
        self.finish(
            scheduler,
            request,
            plan.timesteps,
            prepared,
            &mut generator,
            progress,
        )
    }

    /// The init image's latents × `scaling_factor` (1 × C × h × w): a sample of the VAE's
    /// posterior with the generator's next draw, or its mean when `generator` is `None`.
    pub(crate) fn encode_image<T: PipelineFloat>(
        &self,
        image: &RgbImage,
        generator: Option<&mut TorchCpuGenerator>,
    ) -> Result<(Vec<T>, [usize; 4])> {
        let (pixels, height, width) = crate::image::preprocess(image, self.vae_scale_factor_u32())?;
        let pixels: Vec<T> = pixels
            .iter()
            .map(|&v| T::from_compute(Compute::from_f32(v)))
            .collect();
        let pixels = Tensor::from_vec(pixels, (1, 3, height, width), &self.device)?;
        let posterior = self.vae.encode(&pixels)?;
        let latents = match generator {
            Some(generator) => {
                let dims = posterior.mean.dims().to_vec();
                let noise: Vec<T> = randn_latents(&dims, generator)?;
                let noise = Tensor::from_vec(noise, dims, &self.device)?;
                posterior.sample_with(&noise)?
            }
            None => posterior.mode().clone(),
        };
        let (b, c, h, w) = latents.dims4()?;
        let values: Vec<T> = latents.flatten_all()?.to_vec1()?;
        // `scaling_factor * latents`: the Python float times the tensor, in its arithmetic type.
        let scaling = <T::Compute as Compute>::from_f64(self.vae_config.scaling_factor);
        let scaled = values
            .iter()
            .map(|&x| T::from_compute(scaling * x.to_compute()))
            .collect();
        Ok((scaled, [b, c, h, w]))
    }
}

/// diffusers' `check_inputs`: 0 ≤ strength ≤ 1; 0 keeps no step, so (0, 1] here.
fn check_strength(strength: f64) -> Result<()> {
    if !(strength > 0.0 && strength <= 1.0) {
        return Err(Error::InvalidArgument {
            name: "strength",
            reason: format!("must be in (0, 1], got {strength}"),
        });
    }
    Ok(())
}
