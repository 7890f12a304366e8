//! DDIM inversion of a real image, and its reconstruction.
//!
//! ```text
//! x₀   = vae.encode(image).latent_dist.mean × scaling_factor       (no random draw)
//! for t in inverse.timesteps:                                      (ascending)
//!     x = DDIMInverseScheduler.step(unet(x, t, prompt_embeds), t, x)
//! x_T  = x
//! image' = pipe(prompt, latents=x_T, guidance_scale=1, eta=0)      (the forward DDIM loop)
//! ```
//!
//! The inverse scheduler is diffusers' `DDIMInverseScheduler.from_config(scheduler.config)`
//! with the same number of steps ([`ddim::DdimInverseScheduler`]), the UNet runs without
//! guidance (classifier-free guidance makes the inversion drift). The round trip's
//! reconstruction error is reported as PSNR against the input and against the VAE's own
//! round trip `decode(encode(image))`, which isolates what the DDIM inversion loses from
//! what the autoencoder loses. `tools/gen_pipeline_fixtures.py` runs the same loop on the real
//! diffusers for the tests.

use std::time::Instant;

use candle_core::{DType, Tensor};
use ddim::{DdimInverseConfig, DdimInverseScheduler, DdimScheduler};
use half::{bf16, f16};

use crate::denoise::PipelineFloat;
use crate::error::Result;
use crate::image::RgbImage;
use crate::pipeline::StableDiffusion;
use crate::request::{Generated, Latents, Progress, Request, StageTimes};
use crate::text2img::to_f32_latents;

/// What an inversion returns.
#[derive(Debug, Clone)]
pub struct Inversion {
    /// The encoded image x₀ (the VAE posterior's mean × `scaling_factor`).
    pub encoded: Latents,
    /// x_T: the latents the inverse loop reached.
    pub inverted: Latents,
    /// The image regenerated from x_T with η = 0 and no guidance.
    pub reconstruction: Generated,
    /// `decode(x₀)`: the VAE's own round trip.
    pub vae_round_trip: RgbImage,
    /// PSNR of the reconstruction against the input (as the VAE saw it), in dB.
    pub psnr_db: f64,
    /// PSNR of the reconstruction against the VAE's round trip, in dB.
    pub psnr_vs_vae_db: f64,
    /// Time per stage, the inverse loop and the regeneration together.
    pub times: StageTimes,
}

impl StableDiffusion {
    /// Inverts `image` to x_T with the UNet conditioned on `prompt`, then regenerates it with
    /// `scheduler` (its timesteps set; the inverse scheduler takes as many steps).
    ///
    /// # Errors
    ///
    /// As [`image_to_image`](Self::image_to_image) for the image; [`crate::Error::Scheduler`]
    /// when the scheduler's timesteps are not set or its config cannot be inverted.
    pub fn invert(
        &self,
        scheduler: &DdimScheduler,
        image: &RgbImage,
        prompt: &str,
        progress: Progress<'_>,
    ) -> Result<Inversion> {
        match self.dtype {
            DType::F16 => self.invert_as::<f16>(scheduler, image, prompt, progress),
            DType::BF16 => self.invert_as::<bf16>(scheduler, image, prompt, progress),
            _ => self.invert_as::<f32>(scheduler, image, prompt, progress),
        }
    }

    fn invert_as<T: PipelineFloat>(
        &self,
        scheduler: &DdimScheduler,
        image: &RgbImage,
        prompt: &str,
        progress: Progress<'_>,
    ) -> Result<Inversion> {
        let steps = scheduler
            .num_inference_steps()
            .ok_or(ddim::Error::TimestepsNotSet)?;
        let inverse_config = DdimInverseConfig::from_ddim_config(scheduler.config())?;
        let mut inverse = DdimInverseScheduler::new(inverse_config)?;
        inverse.set_timesteps(steps)?;

        let request = Request {
            guidance_scale: 1.0,
            ..Request::new(prompt)
        };
        let mut times = StageTimes::default();
        let (embeds, _) = self.encode_prompt(&request, &mut times)?;

        let started = Instant::now();
        let (x0, shape) = self.encode_image::<T>(image, None)?;
        times.image_encoding += started.elapsed();

        let total = inverse.timesteps().len() + scheduler.timesteps().len();
        let [b, c, h, w] = shape;
        let mut latents = Tensor::from_slice(&x0, (b, c, h, w), &self.device)?;
        for (i, &t) in inverse.timesteps().iter().enumerate() {
            let started = Instant::now();
            let prediction = self.predict(&latents, t, &embeds)?;
            times.unet += started.elapsed();
            let started = Instant::now();
            latents = ddim::backend::candle::inverse_step(&inverse, &prediction, t, &latents)?
                .prev_sample;
            times.scheduler_and_guidance += started.elapsed();
            progress(i + 1, total);
        }
        let latents: Vec<T> = latents.flatten_all()?.to_vec1()?;
        let inverted = to_f32_latents(&latents, shape);

        let done = inverse.timesteps().len();
        let mut forward_progress = |step: usize, _: usize| progress(done + step, total);
        let reconstruction = self.text_to_image_from(
            scheduler,
            &Request {
                height: Some(shape[2] * self.vae_scale_factor()),
                width: Some(shape[3] * self.vae_scale_factor()),
                ..request
            },
            Some(&inverted),
            &mut forward_progress,
        )?;
        times.add(&reconstruction.times);

        let started = Instant::now();
        let vae_round_trip = self
            .decode(&x0, shape)?
            .into_iter()
            .next()
            .ok_or_else(|| candle_core::Error::Msg("the VAE decoded no image".into()))?;
        times.decoding += started.elapsed();

        let seen = self.as_seen_by_vae(image)?;
        let restored = reconstruction
            .images
            .first()
            .ok_or_else(|| candle_core::Error::Msg("the regeneration made no image".into()))?;
        Ok(Inversion {
            encoded: to_f32_latents(&x0, shape),
            inverted,
            psnr_db: psnr(&seen, restored),
            psnr_vs_vae_db: psnr(&vae_round_trip, restored),
            vae_round_trip,
            reconstruction,
            times,
        })
    }
}

impl StableDiffusion {
    /// The image as `preprocess` hands it to the VAE, in 8 bits: resized (PIL Lanczos) to a
    /// multiple of the scale factor when its size is not one.
    fn as_seen_by_vae(&self, image: &RgbImage) -> Result<RgbImage> {
        let f = self.vae_scale_factor_u32();
        let (w, h) = (
            image.width() - image.width() % f,
            image.height() - image.height() % f,
        );
        if (w, h) == (image.width(), image.height()) {
            return Ok(image.clone());
        }
        crate::image::resize_lanczos(image, w, h)
    }
}

/// Peak signal-to-noise ratio of two 8-bit images of the same size, 10·log₁₀(255² / MSE) dB
/// (∞ for identical images, NaN for different sizes).
pub fn psnr(a: &RgbImage, b: &RgbImage) -> f64 {
    if (a.width(), a.height()) != (b.width(), b.height()) {
        return f64::NAN;
    }
    let (sum, count) =
        a.as_raw()
            .iter()
            .zip(b.as_raw())
            .fold((0.0f64, 0usize), |(sum, count), (&x, &y)| {
                let d = f64::from(x) - f64::from(y);
                (sum + d * d, count + 1)
            });
    if count == 0 {
        return f64::NAN;
    }
    let mse = sum / count as f64;
    10.0 * (255.0f64 * 255.0 / mse).log10()
}
