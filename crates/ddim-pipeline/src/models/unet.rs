//! diffusers' `UNet2DConditionModel` (`models/unets/unet_2d_condition.py`) for the Stable
//! Diffusion 1.x/2.x family, every architecture number from [`UNetConfig`].

use std::path::PathBuf;

use candle_core::{DType, Device, Module, Tensor};
use candle_nn::VarBuilder;

use super::attention::TransformerSpec;
use super::config::{DownBlockType, UNetConfig, UpBlockType};
use super::layers::{apply, conv2d, group_norm, linear, Conv2d, GroupNorm, Linear};
use super::resnet::ResnetSpec;
use super::unet_blocks::{BlockSpec, DownBlock, MidBlock, UpBlock};
use super::weights::{load_weights, weights_error};
use crate::{Error, Result};

/// diffusers' `UNet2DConditionModel`: ε (or v) prediction from a noisy latent, a timestep and
/// the text encoder's hidden states.
///
/// ```no_run
/// # use ddim_pipeline::models::{UNetConfig, UNet2DConditionModel};
/// # use candle_core::{DType, Device, Tensor};
/// # use std::path::Path;
/// let path = Path::new("unet/config.json");
/// let config = UNetConfig::from_json_str(&std::fs::read_to_string(path).unwrap(), path)?;
/// let unet = UNet2DConditionModel::load(&config, &["unet/diffusion_pytorch_model.safetensors".into()], DType::F32, &Device::Cpu)?;
/// let latents = Tensor::zeros((1, config.in_channels, 64, 64), DType::F32, &Device::Cpu)?;
/// let text = Tensor::zeros((1, 77, config.cross_attention_dim), DType::F32, &Device::Cpu)?;
/// let eps = unet.forward(&latents, 999, &text)?;
/// # Ok::<(), ddim_pipeline::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct UNet2DConditionModel {
    config: UNetConfig,
    conv_in: Conv2d,
    linear_1: Linear,
    linear_2: Linear,
    down_blocks: Vec<DownBlock>,
    mid_block: Option<MidBlock>,
    up_blocks: Vec<UpBlock>,
    conv_norm_out: GroupNorm,
    conv_out: Conv2d,
}

impl UNet2DConditionModel {
    /// Builds the UNet from `vb` (tensor names as in diffusers' state dict).
    pub fn new(config: &UNetConfig, vb: VarBuilder) -> candle_core::Result<Self> {
        let c = config;
        let boc = &c.block_out_channels;
        let n = boc.len();
        let resnet = ResnetSpec {
            in_channels: 0,
            out_channels: 0,
            temb_channels: Some(c.time_embed_dim),
            groups: c.norm_num_groups,
            eps: c.norm_eps,
            act: c.act_fn,
            output_scale_factor: 1.0,
        };
        let transformer = |i: usize| TransformerSpec {
            heads: c.num_attention_heads[i],
            layers: c.transformer_layers_per_block[i],
            cross_attention_dim: c.cross_attention_dim,
            groups: c.norm_num_groups,
            use_linear_projection: c.use_linear_projection,
            only_cross_attention: c.only_cross_attention[i],
        };

        let mut down_blocks = Vec::with_capacity(n);
        let mut output = boc[0];
        for (i, kind) in c.down_block_types.iter().enumerate() {
            let input = output;
            output = boc[i];
            let spec = BlockSpec {
                layers: c.layers_per_block[i],
                transformer: (*kind == DownBlockType::CrossAttn).then(|| transformer(i)),
                resnet,
            };
            let resample = (i + 1 < n).then_some(c.downsample_padding);
            down_blocks.push(DownBlock::new(
                input,
                output,
                spec,
                resample,
                vb.pp("down_blocks").pp(i),
            )?);
        }

        let mid_block = if c.mid_block {
            let mid_resnet = ResnetSpec {
                output_scale_factor: c.mid_block_scale_factor,
                ..resnet
            };
            let mid_transformer = TransformerSpec {
                only_cross_attention: false,
                ..transformer(n - 1)
            };
            Some(MidBlock::new(
                boc[n - 1],
                mid_transformer,
                mid_resnet,
                vb.pp("mid_block"),
            )?)
        } else {
            None
        };

        // Up blocks read the per-block lists reversed.
        let mut up_blocks = Vec::with_capacity(n);
        let mut output = boc[n - 1];
        for (i, kind) in c.up_block_types.iter().enumerate() {
            let r = n - 1 - i;
            let prev = output;
            output = boc[r];
            let input = boc[r.saturating_sub(1)];
            let spec = BlockSpec {
                layers: c.layers_per_block[r] + 1,
                transformer: (*kind == UpBlockType::CrossAttn).then(|| transformer(r)),
                resnet,
            };
            up_blocks.push(UpBlock::new(
                input,
                prev,
                output,
                spec,
                i + 1 < n,
                vb.pp("up_blocks").pp(i),
            )?);
        }

        let tin = boc[0];
        Ok(Self {
            config: config.clone(),
            conv_in: conv2d(
                c.in_channels,
                boc[0],
                c.conv_in_kernel,
                1,
                (c.conv_in_kernel - 1) / 2,
                vb.pp("conv_in"),
            )?,
            linear_1: linear(
                tin,
                c.time_embed_dim,
                vb.pp("time_embedding").pp("linear_1"),
            )?,
            linear_2: linear(
                c.time_embed_dim,
                c.time_embed_dim,
                vb.pp("time_embedding").pp("linear_2"),
            )?,
            down_blocks,
            mid_block,
            up_blocks,
            conv_norm_out: group_norm(
                c.norm_num_groups,
                boc[0],
                c.norm_eps,
                vb.pp("conv_norm_out"),
            )?,
            conv_out: conv2d(
                boc[0],
                c.out_channels,
                c.conv_out_kernel,
                1,
                (c.conv_out_kernel - 1) / 2,
                vb.pp("conv_out"),
            )?,
        })
    }

    /// Reads `files` (safetensors, see [`load_weights`]) and builds the UNet in `dtype`; a
    /// missing or wrong-shaped tensor is an [`Error::Weights`] naming it.
    pub fn load(
        config: &UNetConfig,
        files: &[PathBuf],
        dtype: DType,
        device: &Device,
    ) -> Result<Self> {
        let vb = load_weights(files, dtype, device)?;
        let first = files.first().cloned().unwrap_or_default();
        Self::new(config, vb).map_err(weights_error(&first))
    }

    /// The configuration the model was built from.
    pub fn config(&self) -> &UNetConfig {
        &self.config
    }

    /// The model's output for `sample` (B, C, H, W) at integer `timestep` (the same for the
    /// whole batch) given `encoder_hidden_states` (B, L, cross_attention_dim); the output has
    /// `sample`'s shape with `out_channels` channels, in `sample`'s dtype.
    pub fn forward(
        &self,
        sample: &Tensor,
        timestep: usize,
        encoder_hidden_states: &Tensor,
    ) -> Result<Tensor> {
        let (b, c, _, _) = sample.dims4()?;
        if c != self.config.in_channels {
            return Err(Error::InvalidArgument {
                name: "sample",
                reason: format!(
                    "has {c} channels, the unet expects {}",
                    self.config.in_channels
                ),
            });
        }
        let (cb, _, cd) = encoder_hidden_states.dims3()?;
        if cb != b || cd != self.config.cross_attention_dim {
            return Err(Error::InvalidArgument {
                name: "encoder_hidden_states",
                reason: format!(
                    "has shape {:?}, expected ({b}, L, {})",
                    encoder_hidden_states.dims(),
                    self.config.cross_attention_dim
                ),
            });
        }
        Ok(self.forward_unchecked(sample, timestep, encoder_hidden_states)?)
    }

    fn forward_unchecked(
        &self,
        sample: &Tensor,
        timestep: usize,
        context: &Tensor,
    ) -> candle_core::Result<Tensor> {
        let c = &self.config;
        let dtype = sample.dtype();
        let batch = sample.dim(0)?;
        let context = context.to_dtype(dtype)?;

        let sample = if c.center_input_sample {
            ((sample * 2.0)? - 1.0)?
        } else {
            sample.clone()
        };

        // Time embedding: sinusoidal features in f32 (as torch), then the model's dtype.
        let features = timestep_features(
            timestep,
            c.block_out_channels[0],
            c.flip_sin_to_cos,
            c.freq_shift,
        );
        let t = Tensor::from_vec(features, (1, c.block_out_channels[0]), sample.device())?
            .to_dtype(dtype)?
            .repeat((batch, 1))?;
        let mut emb = c.act_fn.forward(&apply(&self.linear_1, &t)?)?;
        emb = apply(&self.linear_2, &emb)?;
        if let Some(act) = c.timestep_post_act {
            emb = act.forward(&emb)?;
        }
        if let Some(act) = c.time_embedding_act_fn {
            emb = act.forward(&emb)?;
        }

        let mut h = apply(&self.conv_in, &sample)?;
        let mut skips = vec![h.clone()];
        for block in &self.down_blocks {
            h = block.forward(&h, &emb, &context, &mut skips)?;
        }
        if let Some(mid) = &self.mid_block {
            h = mid.forward(&h, &emb, &context)?;
        }
        for block in &self.up_blocks {
            // The upsampler's target is the size of the skip that the next block takes first.
            let remaining = skips.len().saturating_sub(block.num_layers());
            let size = match remaining.checked_sub(1).and_then(|i| skips.get(i)) {
                Some(next) => {
                    let (_, _, sh, sw) = next.dims4()?;
                    Some((sh, sw))
                }
                None => None,
            };
            h = block.forward(&h, &emb, &context, &mut skips, size)?;
        }
        let h = c.act_fn.forward(&apply(&self.conv_norm_out, &h)?)?;
        self.conv_out.forward(&h)
    }
}

/// diffusers' `get_timestep_embedding(t, dim, flip_sin_to_cos, downscale_freq_shift)` for one
/// timestep, in torch's f32 arithmetic: `fᵢ = exp(−ln(10000)·i / (dim/2 − shift))`,
/// `[sin(t·fᵢ), cos(t·fᵢ)]` (swapped when flipped), zero-padded to an odd `dim`.
fn timestep_features(timestep: usize, dim: usize, flip_sin_to_cos: bool, shift: f64) -> Vec<f32> {
    let half = dim / 2;
    let log_period = -(10000f64.ln()) as f32;
    let denominator = (half as f64 - shift) as f32;
    let args: Vec<f32> = (0..half)
        .map(|i| {
            let exponent = (i as f32 * log_period) / denominator;
            timestep as f32 * exponent.exp()
        })
        .collect();
    let sin = args.iter().map(|a| a.sin());
    let cos = args.iter().map(|a| a.cos());
    let mut out: Vec<f32> = if flip_sin_to_cos {
        cos.chain(sin).collect()
    } else {
        sin.chain(cos).collect()
    };
    out.resize(dim, 0.0);
    out
}
