//! Stable Diffusion pipelines on candle with the [`ddim`] scheduler at their centre:
//! text-to-image, img2img and DDIM inversion, loaded from a diffusers model folder or the local
//! Hugging Face cache, giving diffusers' image for the same prompt and seed.

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
