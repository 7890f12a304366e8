//! The networks of a Stable Diffusion pipeline on candle-nn: diffusers'
//! `UNet2DConditionModel` and `AutoencoderKL`, number for number.
//!
//! | item | diffusers |
//! |---|---|
//! | [`UNetConfig`], [`UNet2DConditionModel`] | `models/unets/unet_2d_condition.py` and its blocks |
//! | [`VaeConfig`], [`AutoencoderKl`], [`LatentDistribution`] | `AutoencoderKL`, `Encoder`, `Decoder`, `DiagonalGaussianDistribution` |
//! | [`load_weights`] | reading `diffusion_pytorch_model*.safetensors` (no mmap, no `unsafe`) |
//!
//! Every architecture number comes from the component's `config.json`; keys whose
//! non-default values are not implemented here (class and addition embeddings — SDXL —,
//! `resnet_time_scale_shift = "scale_shift"`, `time_cond_proj_dim`, `encoder_hid_dim`,
//! `dual_cross_attention`, other block types, ...) are refused with [`crate::Error::Config`]
//! naming the key and its value, never silently ignored.
//!
//! # Why not candle-transformers' models
//!
//! These are this crate's workarounds for candle-transformers 0.11.1's `stable_diffusion`
//! module, measured against diffusers 0.42.1 on tiny random models:
//!
//! - **UNet**: its `DownBlock2D`/`UpBlock2D` constructors never pass `resnet_groups` on, so
//!   their ResNets use 32 groups whatever `norm_num_groups` says (44 % off when it is not 32;
//!   silent for real SD checkpoints, which use 32). Its GEGLU feed-forward uses the tanh
//!   approximation of GELU where diffusers uses the exact (erf) one (≈ 3e-5 relative). Its
//!   config cannot express `num_attention_heads` (which diffusers 0.42 refuses anyway, and so
//!   do we), `upcast_attention`, `only_cross_attention`, `transformer_layers_per_block`,
//!   `time_embedding_dim`/`time_embedding_act_fn`/`timestep_post_act`, `conv_in_kernel`, or the
//!   refusal of keys it does not implement. So the UNet is written here on candle-nn.
//! - **VAE**: `stable_diffusion::vae::AutoEncoderKL` decodes to ≈ 1e-6 of diffusers, but its
//!   `encode` returns a `DiagonalGaussianDistribution` whose `mean` and `std` fields are
//!   private and whose only `sample()` draws with candle's own RNG (`Tensor::randn`). img2img
//!   must draw that noise from the torch-compatible generator (`ddim::rng`) in diffusers' order,
//!   which its API cannot take; it also has no `use_quant_conv`/`use_post_quant_conv`/
//!   `mid_block_add_attention`, and its config builder is separate from diffusers'
//!   `config.json`. So the VAE is written here too, with [`LatentDistribution::sample_with`]
//!   taking the caller's noise. candle's own RNG is never used in this module.
//!
//! # Dtypes
//!
//! F32 is the reference (≈ 1e-6 relative to diffusers on torch CPU). F16 and BF16 compute in
//! that dtype, as diffusers with `torch_dtype`, except where torch upcasts on CPU: GroupNorm
//! and LayerNorm statistics, the attention scores and softmax (always f32 for f16/bf16, which
//! also covers `upcast_attention`), the sinusoidal timestep features (computed in f32 and then
//! converted, as diffusers' `t_emb.to(sample.dtype)`).

mod attention;
mod config;
mod layers;
mod resnet;
mod unet;
mod unet_blocks;
mod vae;
mod weights;

pub use config::{Activation, DownBlockType, UNetConfig, UpBlockType, VaeConfig};
pub use unet::UNet2DConditionModel;
pub use vae::{AutoencoderKl, LatentDistribution};
pub use weights::load_weights;
