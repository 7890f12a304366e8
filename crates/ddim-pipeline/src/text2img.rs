//! Text-to-image, step for step as diffusers' `StableDiffusionPipeline.__call__`:
//!
//! 1. `check_inputs`: height and width multiples of 8 (default `sample_size × vae_scale_factor`);
//! 2. `encode_prompt`: the prompt (and, when guided, the negative prompt, `""` if absent)
//!    through the CLIP tokenizer and text encoder, repeated `num_images_per_prompt` times,
//!    `[negative…, positive…]`;
//! 3. the scheduler's timesteps (set by the caller: `set_timesteps(num_inference_steps)`);
//! 4. `prepare_latents`: one `torch.randn((B, C, h/f, w/f))` from the seed's generator, in the
//!    run's dtype, times `init_noise_sigma` (1 for DDIM);
//! 5. the denoising loop ([`crate::denoise`]), η noise from the same generator;
//! 6. `vae.decode(latents / scaling_factor)` and `VaeImageProcessor.postprocess` to 8-bit RGB.

use std::time::Instant;

use candle_core::{DType, Tensor};
use ddim::element::{Compute, Element};
use ddim::rng::{randn_latents, TorchCpuGenerator};
use ddim::DdimScheduler;
use half::{bf16, f16};

use crate::denoise::{PipelineFloat, Prepared};
use crate::error::{Error, Result};
use crate::image::RgbImage;
use crate::pipeline::StableDiffusion;
use crate::request::{Generated, Latents, Progress, Request, StageTimes};

/// The largest image side accepted, in pixels (the UNet's memory grows with its square).
pub const MAX_IMAGE_SIDE: usize = 16_384;

/// The most images one run makes.
pub const MAX_IMAGES_PER_PROMPT: usize = 256;

impl StableDiffusion {
    /// Makes `request.num_images_per_prompt` images from `request.prompt`, with `scheduler`
    /// (its timesteps set, e.g. `set_timesteps(50)`) as diffusers'
    /// `pipe(prompt, generator=torch.Generator("cpu").manual_seed(seed), …)` does.
    ///
    /// ```no_run
    /// use ddim_pipeline::{folder::PipelineFolder, LoadOptions, Request, StableDiffusion};
    /// let pipe = StableDiffusion::load(&PipelineFolder::open("sd-model".as_ref())?, &LoadOptions::default())?;
    /// // The seed document's recipe: zero terminal SNR, trailing spacing, guidance rescale.
    /// let mut config = pipe.scheduler_config().clone();
    /// config.rescale_betas_zero_snr = true;
    /// config.timestep_spacing = ddim::TimestepSpacing::Trailing;
    /// let mut scheduler = ddim::DdimScheduler::new(config)?;
    /// scheduler.set_timesteps(50)?;
    /// let request = Request { guidance_rescale: 0.7, ..Request::new("A lion in galaxies") };
    /// let out = pipe.text_to_image(&scheduler, &request, &mut |_, _| {})?;
    /// ddim_pipeline::image::write_png("lion.png".as_ref(), &out.images[0])?;
    /// # Ok::<(), ddim_pipeline::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] for a height or width that is not a positive multiple of 8
    /// (or above [`MAX_IMAGE_SIDE`]), no images or more than [`MAX_IMAGES_PER_PROMPT`];
    /// [`Error::Scheduler`] when the scheduler's timesteps are not set or a step fails.
    pub fn text_to_image(
        &self,
        scheduler: &DdimScheduler,
        request: &Request,
        progress: Progress<'_>,
    ) -> Result<Generated> {
        self.text_to_image_from(scheduler, request, None, progress)
    }

    /// [`text_to_image`](Self::text_to_image) from given initial latents x_T (diffusers'
    /// `latents=` argument; B × C × h × w with B = `num_images_per_prompt`), drawing none.
    ///
    /// # Errors
    ///
    /// As [`text_to_image`](Self::text_to_image), and [`Error::InvalidArgument`] when the
    /// latents' shape is not the one the request implies.
    pub fn text_to_image_from(
        &self,
        scheduler: &DdimScheduler,
        request: &Request,
        latents: Option<&Latents>,
        progress: Progress<'_>,
    ) -> Result<Generated> {
        match self.dtype {
            DType::F16 => self.text_to_image_as::<f16>(scheduler, request, latents, progress),
            DType::BF16 => self.text_to_image_as::<bf16>(scheduler, request, latents, progress),
            _ => self.text_to_image_as::<f32>(scheduler, request, latents, progress),
        }
    }

    fn text_to_image_as<T: PipelineFloat>(
        &self,
        scheduler: &DdimScheduler,
        request: &Request,
        given: Option<&Latents>,
        progress: Progress<'_>,
    ) -> Result<Generated> {
        let (height, width) = self.checked_size(request)?;
        check_images_per_prompt(request.num_images_per_prompt)?;
        let timesteps = scheduler.timesteps();
        if scheduler.num_inference_steps().is_none() {
            return Err(ddim::Error::TimestepsNotSet.into());
        }
        let mut times = StageTimes::default();
        let (embeds, warnings) = self.encode_prompt(request, &mut times)?;

        let f = self.vae_scale_factor();
        let shape = [
            request.num_images_per_prompt,
            self.latent_channels(),
            height / f,
            width / f,
        ];
        let mut generator = TorchCpuGenerator::new(request.seed);
        let latents: Vec<T> = match given {
            Some(given) => {
                if given.shape != shape {
                    return Err(Error::InvalidArgument {
                        name: "latents",
                        reason: format!(
                            "have shape {:?}, the request needs {shape:?}",
                            given.shape
                        ),
                    });
                }
                given
                    .values
                    .iter()
                    .map(|&v| T::from_compute(Compute::from_f32(v)))
                    .collect()
            }
            // × init_noise_sigma, which is exactly 1 for DDIM.
            None => randn_latents(&shape, &mut generator)?,
        };
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
            timesteps,
            prepared,
            &mut generator,
            progress,
        )
    }

    /// `(height, width)` of a request, checked as diffusers' `check_inputs`.
    fn checked_size(&self, request: &Request) -> Result<(usize, usize)> {
        let (default_h, default_w) = self.default_size();
        let height = request.height.unwrap_or(default_h);
        let width = request.width.unwrap_or(default_w);
        for (name, value) in [("height", height), ("width", width)] {
            if value == 0 || value % 8 != 0 || value > MAX_IMAGE_SIDE {
                return Err(Error::InvalidArgument {
                    name,
                    reason: format!(
                        "must be a positive multiple of 8 up to {MAX_IMAGE_SIDE}, got {value} \
                         (`height` and `width` have to be divisible by 8 in diffusers too)"
                    ),
                });
            }
            if value % self.vae_scale_factor() != 0 {
                return Err(Error::InvalidArgument {
                    name,
                    reason: format!(
                        "must be a multiple of the VAE's scale factor {}, got {value}",
                        self.vae_scale_factor()
                    ),
                });
            }
        }
        Ok((height, width))
    }

    /// diffusers' `encode_prompt`: `[negative × B, positive × B]` when guided, else
    /// `positive × B`, and the truncation warning for the prompt.
    pub(crate) fn encode_prompt(
        &self,
        request: &Request,
        times: &mut StageTimes,
    ) -> Result<(Tensor, Vec<String>)> {
        let started = Instant::now();
        let mut warnings = Vec::new();
        let copies = request.num_images_per_prompt;
        let positive = self.encode_text_reporting(&request.prompt, Some(&mut warnings))?;
        let positive = positive.repeat((copies, 1, 1))?;
        let embeds = if request.uses_guidance() {
            let negative = request.negative_prompt.as_deref().unwrap_or("");
            // diffusers warns about truncation for the prompt only.
            let negative = self.encode_text(negative)?.repeat((copies, 1, 1))?;
            Tensor::cat(&[negative, positive], 0)?
        } else {
            positive
        };
        times.text_encoding += started.elapsed();
        Ok((embeds, warnings))
    }

    /// The prompt embeddings of one text, as diffusers' `encode_prompt` computes them:
    /// `text_encoder(tokenizer(text, padding="max_length", truncation=True).input_ids)[0]`,
    /// 1 × L × D in the run's dtype (truncation is not reported here).
    ///
    /// # Errors
    ///
    /// A tokenizer or text-encoder failure.
    pub fn encode_text(&self, text: &str) -> Result<Tensor> {
        self.encode_text_reporting(text, None)
    }

    /// [`encode_text`](Self::encode_text), adding diffusers' truncation warning to `warnings`.
    fn encode_text_reporting(
        &self,
        text: &str,
        warnings: Option<&mut Vec<String>>,
    ) -> Result<Tensor> {
        let tokens = self.tokenizer.encode(text)?;
        if let (Some(warnings), Some(warning)) = (warnings, tokens.truncation_warning()) {
            warnings.push(warning);
        }
        let length = tokens.ids.len();
        let ids = Tensor::from_vec(tokens.ids, (1, length), &self.device)?;
        Ok(self.text_encoder.forward(&ids)?.to_dtype(self.dtype)?)
    }

    /// `vae.decode(latents / scaling_factor)` and diffusers' post-processing to 8-bit RGB.
    pub(crate) fn decode<T: PipelineFloat>(
        &self,
        latents: &[T],
        shape: [usize; 4],
    ) -> Result<Vec<RgbImage>> {
        // torch divides by the Python float in the tensor's arithmetic type (f32 for every
        // dtype here), rounding once to the dtype.
        let scaling = <T::Compute as Compute>::from_f64(self.vae_config.scaling_factor);
        let scaled: Vec<T> = latents
            .iter()
            .map(|&x| T::from_compute(x.to_compute() / scaling))
            .collect();
        let z = Tensor::from_vec(
            scaled,
            (shape[0], shape[1], shape[2], shape[3]),
            &self.device,
        )?;
        // `VaeImageProcessor.postprocess` denormalises in the tensor's dtype.
        crate::image::postprocess_tensor(&self.vae.decode(&z)?)
    }
}

pub(crate) fn check_images_per_prompt(count: usize) -> Result<()> {
    if count == 0 || count > MAX_IMAGES_PER_PROMPT {
        return Err(Error::InvalidArgument {
            name: "num_images_per_prompt",
            reason: format!("must be in 1..={MAX_IMAGES_PER_PROMPT}, got {count}"),
        });
    }
    Ok(())
}

/// Latents as f32 values with their shape (exact for f16/bf16: every value is an f32).
pub(crate) fn to_f32_latents<T: PipelineFloat>(latents: &[T], shape: [usize; 4]) -> Latents {
    Latents {
        values: latents
            .iter()
            .map(|&x| Element::to_compute(x).to_f64() as f32)
            .collect(),
        shape,
    }
}
