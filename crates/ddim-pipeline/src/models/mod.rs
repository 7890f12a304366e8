//! The networks of a Stable Diffusion pipeline on candle-nn: diffusers'
//! `UNet2DConditionModel` and `AutoencoderKL` and transformers' `CLIPTextModel`, number for
//! number.
//!
//! | item | diffusers |
//! |---|---|
//! | [`UNetConfig`], [`UNet2DConditionModel`] | `models/unets/unet_2d_condition.py` and its blocks |
//! | [`VaeConfig`], [`AutoencoderKl`], [`LatentDistribution`] | `AutoencoderKL`, `Encoder`, `Decoder`, `DiagonalGaussianDistribution` |
//! | [`ClipTextConfig`], [`ClipTextModel`] ([`clip`]) | transformers' `CLIPTextModel` (`last_hidden_state`) |
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
//!   `UNet2DConditionModelConfig` has no `upcast_attention`, `only_cross_attention`,
//!   per-block `layers_per_block`, `act_fn`, `mid_block_type: null`, `time_embedding_dim`,
//!   `time_embedding_act_fn`, `timestep_post_act`, `conv_in_kernel`/`conv_out_kernel`, and no
//!   reader for diffusers' `config.json` that would refuse the keys it does not implement
//!   (`num_attention_heads` — which diffusers 0.42 refuses too —, class/addition embeddings,
//!   `resnet_time_scale_shift`, ...). So the UNet is written here on candle-nn; measured
//!   against diffusers it is within 1e-6 relative in f32 (`tests/models.rs`).
//! - **VAE**: `stable_diffusion::vae::AutoEncoderKL` decodes to ≈ 1e-6 of diffusers, and its
//!   config has `use_quant_conv`/`use_post_quant_conv`, but `encode` returns a
//!   `DiagonalGaussianDistribution` whose `mean` and `std` fields are private (no `logvar`
//!   either) and whose only `sample()` draws with candle's own RNG (`randn_like`); it also does
//!   not clamp `logvar` to [−30, 20] as diffusers does, and cannot leave out the mid-block
//!   attention (`mid_block_add_attention`) or use another activation (`act_fn`). img2img must
//!   draw the latent noise from the torch-compatible generator (`ddim::rng`) in diffusers'
//!   order, which its API cannot take. So the VAE is written here too, with
//!   [`LatentDistribution::sample_with`] taking the caller's noise. candle's own RNG is never
//!   used in this module.
//!
//! # Dtypes
//!
//! F32 is the reference (≤ 3.2e-6 relative to diffusers on torch CPU on the test models). F16 and
//! BF16 compute in that dtype, as diffusers with `torch_dtype`, with torch's CPU rounding points:
//! products (linear layers, convolutions, attention·V) accumulate in f32 and round once with their
//! bias (candle 0.11 has no CPU bf16 matmul at all); GroupNorm and LayerNorm statistics and affine
//! maps in f32; the attention scores and softmax always in f32 (which also covers
//! `upcast_attention`); the sinusoidal timestep features in f32, then converted like diffusers'
//! `t_emb.to(sample.dtype)`. On the tiny test models our f16/bf16 error against diffusers' f32
//! output is about diffusers' own f16/bf16 error (see `tests/models.rs`). On other devices candle's
//! own half-precision kernels are used.
//!
//! Attention over many pixels is computed in slices of query rows (exact: the softmax is per
//! row), so that a 64×64 latent does not need gigabytes of scores at once.

mod attention;
pub mod clip;
mod config;
mod layers;
mod resnet;
mod unet;
mod unet_blocks;
mod vae;
mod weights;

pub use clip::{ClipTextConfig, ClipTextModel};
pub use config::{Activation, DownBlockType, UNetConfig, UpBlockType, VaeConfig};
pub use unet::UNet2DConditionModel;
pub use vae::{AutoencoderKl, LatentDistribution};
pub use weights::load_weights;
