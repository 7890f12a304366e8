//! Stable Diffusion pipelines on candle with the [`ddim`] scheduler at their centre:
//! text-to-image, img2img and DDIM inversion, loaded from a diffusers model folder or the local
//! Hugging Face cache (never downloaded), giving diffusers' image for the same prompt and seed.
//!
//! The initial latents, the VAE's posterior sample and every η > 0 step's noise come from
//! [`ddim::rng`], which draws what `torch.Generator("cpu").manual_seed(seed)` draws, in the
//! order diffusers' pipelines draw it; guidance and the DDIM step are the `ddim` crate's,
//! bit-exact against diffusers; the UNet, VAE and CLIP text encoder are written here on
//! candle-nn from the folders' `config.json` files ([`models`] says why not
//! candle-transformers'). On tiny SD 1.x and SD 2.x folders built by the real diffusers, every
//! image is within 1 level of diffusers' 8-bit image (`docs/stable-diffusion.md` in the
//! repository has the table).
//!
//! ```no_run
//! use ddim_pipeline::{folder::PipelineFolder, LoadOptions, Request, StableDiffusion};
//!
//! // A folder with model_index.json, or an `org/name` id in the local Hugging Face cache.
//! let folder = PipelineFolder::open_or_cached("ptx0/pseudo-journey-v2", None)?;
//! let pipe = StableDiffusion::load(&folder, &LoadOptions::default())?;
//!
//! // DDIMScheduler.from_config(pipe.scheduler.config, rescale_betas_zero_snr=True,
//! //                           timestep_spacing="trailing")
//! let mut config = pipe.scheduler_config().clone();
//! config.rescale_betas_zero_snr = true;
//! config.timestep_spacing = ddim::TimestepSpacing::Trailing;
//! let mut scheduler = ddim::DdimScheduler::new(config)?;
//! scheduler.set_timesteps(50)?;
//!
//! let request = Request { guidance_rescale: 0.7, seed: 42, ..Request::new("A lion in galaxies") };
//! let out = pipe.text_to_image(&scheduler, &request, &mut |step, total| {
//!     let _ = (step, total); // a progress bar here
//! })?;
//! ddim_pipeline::image::write_png("lion.png".as_ref(), &out.images[0])?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! | item | diffusers |
//! |---|---|
//! | [`StableDiffusion::load`], [`LoadOptions`] | `StableDiffusionPipeline.from_pretrained(…, torch_dtype, variant)` |
//! | [`StableDiffusion::text_to_image`], [`Request`] | `StableDiffusionPipeline.__call__` |
//! | [`StableDiffusion::image_to_image`] | `StableDiffusionImg2ImgPipeline.__call__` |
//! | [`StableDiffusion::invert`], [`Inversion`] | `DDIMInverseScheduler` driven by the UNet, then regeneration |
//! | [`folder`] | `model_index.json`, components, safetensors weights (never pickles), HF cache |
//! | [`tokenizer`] | transformers' `CLIPTokenizer` |
//! | [`models`] | `UNet2DConditionModel`, `AutoencoderKL`, `CLIPTextModel` |
//! | [`image`] | `VaeImageProcessor` (PIL Lanczos, PNG/JPEG in, PNG out) |
//!
//! The command line `ddim generate` (crate `ddim-cli`) is a thin layer over this crate.

#![forbid(unsafe_code)]

mod denoise;
pub mod error;
pub mod folder;
pub mod image;
mod img2img;
pub mod invert;
pub mod models;
mod pipeline;
mod request;
mod text2img;
pub mod tokenizer;

pub use denoise::PipelineFloat;
pub use error::{Error, Result};
pub use invert::Inversion;
pub use pipeline::{LoadOptions, StableDiffusion};
pub use request::{Generated, Latents, Progress, Request, StageTimes};
pub use text2img::{MAX_IMAGES_PER_PROMPT, MAX_IMAGE_SIDE};
