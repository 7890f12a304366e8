//! What a caller asks of a pipeline run, and what it gets back.

use std::time::Duration;

use crate::image::RgbImage;

/// The arguments of diffusers' `StableDiffusionPipeline.__call__` that this crate takes, with
/// diffusers' defaults (except `num_inference_steps`, which lives in the scheduler the caller
/// passes: `scheduler.set_timesteps(n)` as the pipeline does).
///
/// ```
/// let request = ddim_pipeline::Request {
///     guidance_rescale: 0.7,
///     ..ddim_pipeline::Request::new("A lion in galaxies")
/// };
/// assert_eq!(request.guidance_scale, 7.5);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// The prompt.
    pub prompt: String,
    /// The negative prompt; `None` is diffusers' `""` when guidance is on.
    pub negative_prompt: Option<String>,
    /// w in ε̂ = ε_uncond + w·(ε_text − ε_uncond); guidance runs (as one batch of two) when
    /// w > 1.
    pub guidance_scale: f32,
    /// φ of `rescale_noise_cfg` (Lin et al. 2023, §3.4); 0 turns it off.
    pub guidance_rescale: f32,
    /// η of every DDIM step; its noise comes from the seed's generator after the latents.
    pub eta: f32,
    /// Image height in pixels; `None` is `unet.sample_size × vae_scale_factor`.
    pub height: Option<usize>,
    /// Image width in pixels; `None` as for `height`.
    pub width: Option<usize>,
    /// Images made from the prompt, in one batch.
    pub num_images_per_prompt: usize,
    /// `torch.Generator("cpu").manual_seed(seed)`, handed to the pipeline.
    pub seed: u64,
}

impl Request {
    /// A request for `prompt` with diffusers' defaults: guidance 7.5, no rescale, η = 0, the
    /// model's default size, one image, seed 0.
    pub fn new(prompt: impl Into<String>) -> Self {
        Self {
            prompt: prompt.into(),
            negative_prompt: None,
            guidance_scale: 7.5,
            guidance_rescale: 0.0,
            eta: 0.0,
            height: None,
            width: None,
            num_images_per_prompt: 1,
            seed: 0,
        }
    }

    /// Whether classifier-free guidance runs: `guidance_scale > 1` (diffusers'
    /// `do_classifier_free_guidance`).
    pub fn uses_guidance(&self) -> bool {
        self.guidance_scale > 1.0
    }
}

/// Where a run spent its time, by stage.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StageTimes {
    /// Tokenizing and encoding the prompt (and the negative prompt).
    pub text_encoding: Duration,
    /// Encoding the init image with the VAE (img2img and inversion).
    pub image_encoding: Duration,
    /// The UNet's forward passes.
    pub unet: Duration,
    /// Everything else in the denoising loop: guidance, the scheduler step, the noise draws,
    /// moving latents between the host and the device.
    pub scheduler_and_guidance: Duration,
    /// Decoding the latents with the VAE and post-processing to 8-bit.
    pub decoding: Duration,
}

impl StageTimes {
    /// The sum of the stages.
    pub fn total(&self) -> Duration {
        self.text_encoding
            + self.image_encoding
            + self.unet
            + self.scheduler_and_guidance
            + self.decoding
    }

    /// Adds another run's times (inversion = the inverse loop + a regeneration).
    pub fn add(&mut self, other: &StageTimes) {
        self.text_encoding += other.text_encoding;
        self.image_encoding += other.image_encoding;
        self.unet += other.unet;
        self.scheduler_and_guidance += other.scheduler_and_guidance;
        self.decoding += other.decoding;
    }
}

/// Final latents, batch-major, as f32 (whatever dtype the run used), with their shape.
#[derive(Debug, Clone, PartialEq)]
pub struct Latents {
    /// The values, `shape.iter().product()` of them.
    pub values: Vec<f32>,
    /// B × C × h × w.
    pub shape: [usize; 4],
}

/// What a text-to-image or img2img run returns.
#[derive(Debug, Clone)]
pub struct Generated {
    /// The images, 8-bit RGB, as diffusers' `output_type="pil"` gives them.
    pub images: Vec<RgbImage>,
    /// The final latents (diffusers' `output_type="latent"`).
    pub latents: Latents,
    /// Time per stage.
    pub times: StageTimes,
    /// What diffusers would log: the part of a prompt cut off at the tokenizer's
    /// `model_max_length`.
    pub warnings: Vec<String>,
}

/// Called after each denoising step with (steps done, steps in all).
pub type Progress<'a> = &'a mut dyn FnMut(usize, usize);

impl Latents {
    /// The latents as a safetensors file: one F32 tensor named `latents`, shape B × C × h × w
    /// (what `safetensors.torch.save_file({"latents": latents})` writes).
    ///
    /// ```
    /// let latents = ddim_pipeline::Latents { values: vec![0.5; 4], shape: [1, 1, 2, 2] };
    /// let bytes = latents.to_safetensors()?;
    /// let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    /// assert_eq!(file.tensor("latents").unwrap().shape(), [1, 1, 2, 2]);
    /// # Ok::<(), ddim_pipeline::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`crate::Error::InvalidArgument`] when the values do not fill the shape.
    pub fn to_safetensors(&self) -> crate::Result<Vec<u8>> {
        let bytes: Vec<u8> = self.values.iter().flat_map(|v| v.to_le_bytes()).collect();
        let view = safetensors::tensor::TensorView::new(
            safetensors::Dtype::F32,
            self.shape.to_vec(),
            &bytes,
        )
        .map_err(|e| crate::Error::InvalidArgument {
            name: "latents",
            reason: format!("do not fill their shape {:?}: {e}", self.shape),
        })?;
        safetensors::tensor::serialize([("latents", view)], None).map_err(|e| {
            crate::Error::InvalidArgument {
                name: "latents",
                reason: format!("cannot be serialised: {e}"),
            }
        })
    }
}
