//! Stable Diffusion pipelines on candle with the [`ddim`] scheduler at their centre:
//! text-to-image, img2img and DDIM inversion, loaded from a diffusers model folder or the local
//! Hugging Face cache, giving diffusers' image for the same prompt and seed.

#![forbid(unsafe_code)]

pub mod error;
pub mod folder;
pub mod image;
pub mod models;
pub mod tokenizer;

pub use error::{Error, Result};
