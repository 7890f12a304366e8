//! diffusers' `AutoencoderKL` (`models/autoencoders/autoencoder_kl.py`, `vae.py`): the
//! `Encoder`/`Decoder` of Stable Diffusion's VAE and the `DiagonalGaussianDistribution` of the
//! latents.

use std::path::PathBuf;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;

use super::attention::SpatialSelfAttention;
use super::config::{Activation, VaeConfig};
use super::layers::{apply, conv2d, group_norm, Conv2d, GroupNorm};
use super::resnet::{Downsample2D, ResnetBlock2D, ResnetSpec, Upsample2D};
use super::weights::{load_weights, weights_error};
use crate::Result;

/// The VAE's ResNets and norms use this epsilon whatever the config says (diffusers'
/// `Encoder`/`Decoder` pass `resnet_eps=1e-6`).
const VAE_EPS: f64 = 1e-6;

/// diffusers' `UNetMidBlock2D` as the VAE uses it: ResNet, optional single-head attention,
/// ResNet (no time embedding).
#[derive(Debug, Clone)]
struct VaeMidBlock {
    first: ResnetBlock2D,
    attention: Option<SpatialSelfAttention>,
    second: ResnetBlock2D,
}

impl VaeMidBlock {
    fn new(channels: usize, config: &VaeConfig, vb: VarBuilder) -> candle_core::Result<Self> {
        let spec = resnet_spec(channels, channels, config);
        let attention = if config.mid_block_add_attention {
            Some(SpatialSelfAttention::new(
                channels,
                config.norm_num_groups,
                VAE_EPS,
                vb.pp("attentions").pp(0),
            )?)
        } else {
            None
        };
        Ok(Self {
            first: ResnetBlock2D::new(spec, vb.pp("resnets").pp(0))?,
            attention,
            second: ResnetBlock2D::new(spec, vb.pp("resnets").pp(1))?,
        })
    }

    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let mut h = self.first.forward(x, None)?;
        if let Some(attention) = &self.attention {
            h = attention.forward(&h)?;
        }
        self.second.forward(&h, None)
    }
}

fn resnet_spec(cin: usize, cout: usize, config: &VaeConfig) -> ResnetSpec {
    ResnetSpec {
        in_channels: cin,
        out_channels: cout,
        temb_channels: None,
        groups: config.norm_num_groups,
        eps: VAE_EPS,
        act: config.act_fn,
        output_scale_factor: 1.0,
    }
}

fn resnets(
    cin: usize,
    cout: usize,
    layers: usize,
    config: &VaeConfig,
    vb: &VarBuilder,
) -> candle_core::Result<Vec<ResnetBlock2D>> {
    (0..layers)
        .map(|i| {
            let input = if i == 0 { cin } else { cout };
            ResnetBlock2D::new(resnet_spec(input, cout, config), vb.pp("resnets").pp(i))
        })
        .collect()
}

/// diffusers' `Encoder` (`double_z=True`): image → `2 · latent_channels` moments.
#[derive(Debug, Clone)]
struct Encoder {
    conv_in: Conv2d,
    down_blocks: Vec<(Vec<ResnetBlock2D>, Option<Downsample2D>)>,
    mid_block: VaeMidBlock,
    conv_norm_out: GroupNorm,
    conv_out: Conv2d,
    act: Activation,
}

impl Encoder {
    fn new(config: &VaeConfig, vb: VarBuilder) -> candle_core::Result<Self> {
        let boc = &config.block_out_channels;
        let n = boc.len();
        let mut down_blocks = Vec::with_capacity(n);
        let mut output = boc[0];
        for (i, &channels) in boc.iter().enumerate() {
            let input = output;
            output = channels;
            let block_vb = vb.pp("down_blocks").pp(i);
            let blocks = resnets(input, output, config.layers_per_block, config, &block_vb)?;
            // `DownEncoderBlock2D` uses `downsample_padding=0`: pad right/bottom, then convolve.
            let down = if i + 1 < n {
                Some(Downsample2D::new(
                    output,
                    0,
                    block_vb.pp("downsamplers").pp(0),
                )?)
            } else {
                None
            };
            down_blocks.push((blocks, down));
        }
        let last = boc[n - 1];
        Ok(Self {
            conv_in: conv2d(config.in_channels, boc[0], 3, 1, 1, vb.pp("conv_in"))?,
            down_blocks,
            mid_block: VaeMidBlock::new(last, config, vb.pp("mid_block"))?,
            conv_norm_out: group_norm(
                config.norm_num_groups,
                last,
                VAE_EPS,
                vb.pp("conv_norm_out"),
            )?,
            conv_out: conv2d(last, 2 * config.latent_channels, 3, 1, 1, vb.pp("conv_out"))?,
            // diffusers' Encoder/Decoder end with `nn.SiLU()` whatever `act_fn` says.
            act: Activation::Silu,
        })
    }

    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let mut h = apply(&self.conv_in, x)?;
        for (blocks, down) in &self.down_blocks {
            for resnet in blocks {
                h = resnet.forward(&h, None)?;
            }
            if let Some(down) = down {
                h = down.forward(&h)?;
            }
        }
        h = self.mid_block.forward(&h)?;
        let h = self.act.forward(&apply(&self.conv_norm_out, &h)?)?;
        apply(&self.conv_out, &h)
    }
}

/// diffusers' `Decoder`: latents → image.
#[derive(Debug, Clone)]
struct Decoder {
    conv_in: Conv2d,
    mid_block: VaeMidBlock,
    up_blocks: Vec<(Vec<ResnetBlock2D>, Option<Upsample2D>)>,
    conv_norm_out: GroupNorm,
    conv_out: Conv2d,
    act: Activation,
}

impl Decoder {
    fn new(config: &VaeConfig, vb: VarBuilder) -> candle_core::Result<Self> {
        let boc = &config.block_out_channels;
        let n = boc.len();
        let last = boc[n - 1];
        let mut up_blocks = Vec::with_capacity(n);
        let mut output = last;
        for i in 0..n {
            let prev = output;
            output = boc[n - 1 - i];
            let block_vb = vb.pp("up_blocks").pp(i);
            let blocks = resnets(prev, output, config.layers_per_block + 1, config, &block_vb)?;
            let up = if i + 1 < n {
                Some(Upsample2D::new(output, block_vb.pp("upsamplers").pp(0))?)
            } else {
                None
            };
            up_blocks.push((blocks, up));
        }
        Ok(Self {
            conv_in: conv2d(config.latent_channels, last, 3, 1, 1, vb.pp("conv_in"))?,
            mid_block: VaeMidBlock::new(last, config, vb.pp("mid_block"))?,
            up_blocks,
            conv_norm_out: group_norm(
                config.norm_num_groups,
                boc[0],
                VAE_EPS,
                vb.pp("conv_norm_out"),
            )?,
            conv_out: conv2d(boc[0], config.out_channels, 3, 1, 1, vb.pp("conv_out"))?,
            act: Activation::Silu,
        })
    }

    fn forward(&self, z: &Tensor) -> candle_core::Result<Tensor> {
        let mut h = apply(&self.conv_in, z)?;
        h = self.mid_block.forward(&h)?;
        for (blocks, up) in &self.up_blocks {
            for resnet in blocks {
                h = resnet.forward(&h, None)?;
            }
            if let Some(up) = up {
                h = up.forward(&h, None)?;
            }
        }
        let h = self.act.forward(&apply(&self.conv_norm_out, &h)?)?;
        apply(&self.conv_out, &h)
    }
}

/// diffusers' `DiagonalGaussianDistribution`: the encoder's latent distribution
/// `N(mean, std²)` with `logvar` clamped to [−30, 20] and `std = exp(logvar / 2)`.
///
/// There is no `sample()` drawing its own noise: the caller draws `noise` (the latent's shape)
/// from its torch-compatible generator, exactly where diffusers calls `randn_tensor`, and
/// calls [`LatentDistribution::sample_with`].
#[derive(Debug, Clone)]
pub struct LatentDistribution {
    /// The mean (B, latent_channels, h, w).
    pub mean: Tensor,
    /// The clamped log-variance.
    pub logvar: Tensor,
    /// `exp(0.5 · logvar)`.
    pub std: Tensor,
}

impl LatentDistribution {
    /// Splits encoder moments (B, 2·C, h, w) into mean and log-variance, as
    /// `DiagonalGaussianDistribution.__init__`.
    pub fn from_moments(moments: &Tensor) -> Result<Self> {
        let channels = moments.dim(1)? / 2;
        let mean = moments.narrow(1, 0, channels)?.contiguous()?;
        let logvar = moments
            .narrow(1, channels, channels)?
            .clamp(-30f32, 20f32)?
            .contiguous()?;
        let std = (&logvar * 0.5)?.exp()?;
        Ok(Self { mean, logvar, std })
    }

    /// `mean + std · noise` (`DiagonalGaussianDistribution.sample`, with the noise the caller
    /// drew). `noise` must have the latent's shape; it is converted to the latent's dtype.
    ///
    /// ```no_run
    /// # fn f(dist: &ddim_pipeline::models::LatentDistribution, noise: &candle_core::Tensor) -> ddim_pipeline::Result<()> {
    /// let latent = dist.sample_with(noise)?;
    /// # Ok(()) }
    /// ```
    pub fn sample_with(&self, noise: &Tensor) -> Result<Tensor> {
        if noise.dims() != self.mean.dims() {
            return Err(crate::Error::InvalidArgument {
                name: "noise",
                reason: format!(
                    "has shape {:?}, the latent has {:?}",
                    noise.dims(),
                    self.mean.dims()
                ),
            });
        }
        let noise = noise
            .to_dtype(self.mean.dtype())?
            .to_device(self.mean.device())?;
        Ok((&self.mean + (&self.std * noise)?)?)
    }

    /// The mode of the distribution: its mean (`retrieve_latents(..., sample_mode="argmax")`).
    pub fn mode(&self) -> &Tensor {
        &self.mean
    }
}

/// diffusers' `AutoencoderKL`: `encode` = encoder + `quant_conv` → [`LatentDistribution`];
/// `decode` = `post_quant_conv` + decoder. Scaling by `scaling_factor` (and `shift_factor`) is
/// the pipeline's job, as in diffusers.
///
/// ```no_run
/// # use ddim_pipeline::models::{VaeConfig, AutoencoderKl};
/// # use candle_core::{DType, Device, Tensor};
/// # use std::path::Path;
/// let path = Path::new("vae/config.json");
/// let config = VaeConfig::from_json_str(&std::fs::read_to_string(path).unwrap(), path)?;
/// let vae = AutoencoderKl::load(&config, &["vae/diffusion_pytorch_model.safetensors".into()], DType::F32, &Device::Cpu)?;
/// let latents = Tensor::zeros((1, config.latent_channels, 64, 64), DType::F32, &Device::Cpu)?;
/// let image = vae.decode(&(latents / config.scaling_factor)?)?;
/// # Ok::<(), ddim_pipeline::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct AutoencoderKl {
    config: VaeConfig,
    encoder: Encoder,
    decoder: Decoder,
    quant_conv: Option<Conv2d>,
    post_quant_conv: Option<Conv2d>,
}

impl AutoencoderKl {
    /// Builds the VAE from `vb` (tensor names as in diffusers' state dict).
    pub fn new(config: &VaeConfig, vb: VarBuilder) -> candle_core::Result<Self> {
        let l = config.latent_channels;
        let quant_conv = if config.use_quant_conv {
            Some(conv2d(2 * l, 2 * l, 1, 1, 0, vb.pp("quant_conv"))?)
        } else {
            None
        };
        let post_quant_conv = if config.use_post_quant_conv {
            Some(conv2d(l, l, 1, 1, 0, vb.pp("post_quant_conv"))?)
        } else {
            None
        };
        Ok(Self {
            config: config.clone(),
            encoder: Encoder::new(config, vb.pp("encoder"))?,
            decoder: Decoder::new(config, vb.pp("decoder"))?,
            quant_conv,
            post_quant_conv,
        })
    }

    /// Reads `files` (safetensors) and builds the VAE in `dtype`; a missing or wrong-shaped
    /// tensor is an [`crate::Error::Weights`] naming it.
    pub fn load(
        config: &VaeConfig,
        files: &[PathBuf],
        dtype: DType,
        device: &Device,
    ) -> Result<Self> {
        let vb = load_weights(files, dtype, device)?;
        let first = files.first().cloned().unwrap_or_default();
        Self::new(config, vb).map_err(weights_error(&first))
    }

    /// The configuration the model was built from.
    pub fn config(&self) -> &VaeConfig {
        &self.config
    }

    /// Encodes images (B, in_channels, H, W) in [−1, 1] into the latent distribution.
    pub fn encode(&self, x: &Tensor) -> Result<LatentDistribution> {
        self.check_channels("x", x, self.config.in_channels)?;
        let mut moments = self.encoder.forward(x)?;
        if let Some(conv) = &self.quant_conv {
            moments = apply(conv, &moments)?;
        }
        LatentDistribution::from_moments(&moments)
    }

    /// Decodes latents (B, latent_channels, h, w) — already divided by `scaling_factor` —
    /// into images (B, out_channels, h·f, w·f), f = [`VaeConfig::vae_scale_factor`].
    pub fn decode(&self, z: &Tensor) -> Result<Tensor> {
        self.check_channels("z", z, self.config.latent_channels)?;
        let z = match &self.post_quant_conv {
            Some(conv) => apply(conv, z)?,
            None => z.clone(),
        };
        Ok(self.decoder.forward(&z)?)
    }

    fn check_channels(&self, name: &'static str, x: &Tensor, channels: usize) -> Result<()> {
        let dims = x.dims();
        if dims.len() != 4 || dims[1] != channels {
            return Err(crate::Error::InvalidArgument {
                name,
                reason: format!("has shape {dims:?}, expected (batch, {channels}, height, width)"),
            });
        }
        Ok(())
    }
}
