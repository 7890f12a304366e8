//! The UNet's down, mid and up blocks (diffusers `models/unets/unet_2d_blocks.py`):
//! `CrossAttnDownBlock2D`/`DownBlock2D`, `UNetMidBlock2DCrossAttn`,
//! `CrossAttnUpBlock2D`/`UpBlock2D`. A block without attentions is the plain variant.

use candle_core::{Result, Tensor};
use candle_nn::VarBuilder;

use super::attention::{Transformer2DModel, TransformerSpec};
use super::resnet::{Downsample2D, ResnetBlock2D, ResnetSpec, Upsample2D};

/// A down block: `layers` × (ResNet [+ transformer]) then an optional stride-2 convolution.
/// Every layer's output and the downsampler's are kept for the up path's skip connections.
#[derive(Debug, Clone)]
pub(crate) struct DownBlock {
    resnets: Vec<ResnetBlock2D>,
    attentions: Vec<Transformer2DModel>,
    downsampler: Option<Downsample2D>,
}

/// The numbers a block is built from besides its channels.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BlockSpec {
    pub(crate) layers: usize,
    /// `None` for a block without attention.
    pub(crate) transformer: Option<TransformerSpec>,
    pub(crate) resnet: ResnetSpec,
}

impl DownBlock {
    /// `resample`: `Some(padding)` adds a `Downsample2D` with that padding.
    pub(crate) fn new(
        in_channels: usize,
        out_channels: usize,
        spec: BlockSpec,
        resample: Option<usize>,
        vb: VarBuilder,
    ) -> Result<Self> {
        let mut resnets = Vec::with_capacity(spec.layers);
        let mut attentions = Vec::new();
        for i in 0..spec.layers {
            let cin = if i == 0 { in_channels } else { out_channels };
            let rs = ResnetSpec {
                in_channels: cin,
                out_channels,
                ..spec.resnet
            };
            resnets.push(ResnetBlock2D::new(rs, vb.pp("resnets").pp(i))?);
            if let Some(t) = &spec.transformer {
                attentions.push(Transformer2DModel::new(
                    out_channels,
                    t,
                    vb.pp("attentions").pp(i),
                )?);
            }
        }
        let downsampler = match resample {
            Some(padding) => Some(Downsample2D::new(
                out_channels,
                padding,
                vb.pp("downsamplers").pp(0),
            )?),
            None => None,
        };
        Ok(Self {
            resnets,
            attentions,
            downsampler,
        })
    }

    /// Returns the block's output and pushes its skip tensors onto `skips`.
    pub(crate) fn forward(
        &self,
        x: &Tensor,
        temb: &Tensor,
        context: &Tensor,
        skips: &mut Vec<Tensor>,
    ) -> Result<Tensor> {
        let mut h = x.clone();
        for (i, resnet) in self.resnets.iter().enumerate() {
            h = resnet.forward(&h, Some(temb))?;
            if let Some(attn) = self.attentions.get(i) {
                h = attn.forward(&h, context)?;
            }
            skips.push(h.clone());
        }
        if let Some(down) = &self.downsampler {
            h = down.forward(&h)?;
            skips.push(h.clone());
        }
        Ok(h)
    }
}

/// `UNetMidBlock2DCrossAttn` (one layer): ResNet, then per transformer layer group a
/// transformer and a ResNet.
#[derive(Debug, Clone)]
pub(crate) struct MidBlock {
    first: ResnetBlock2D,
    rest: Vec<(Transformer2DModel, ResnetBlock2D)>,
}

impl MidBlock {
    pub(crate) fn new(
        channels: usize,
        transformer: TransformerSpec,
        resnet: ResnetSpec,
        vb: VarBuilder,
    ) -> Result<Self> {
        let rs = ResnetSpec {
            in_channels: channels,
            out_channels: channels,
            ..resnet
        };
        let first = ResnetBlock2D::new(rs, vb.pp("resnets").pp(0))?;
        let rest = vec![(
            Transformer2DModel::new(channels, &transformer, vb.pp("attentions").pp(0))?,
            ResnetBlock2D::new(rs, vb.pp("resnets").pp(1))?,
        )];
        Ok(Self { first, rest })
    }

    pub(crate) fn forward(&self, x: &Tensor, temb: &Tensor, context: &Tensor) -> Result<Tensor> {
        let mut h = self.first.forward(x, Some(temb))?;
        for (attn, resnet) in &self.rest {
            h = attn.forward(&h, context)?;
            h = resnet.forward(&h, Some(temb))?;
        }
        Ok(h)
    }
}

/// An up block: `layers` × (concat skip, ResNet [+ transformer]) then an optional nearest
/// upsampler to the next skip's size.
#[derive(Debug, Clone)]
pub(crate) struct UpBlock {
    resnets: Vec<ResnetBlock2D>,
    attentions: Vec<Transformer2DModel>,
    upsampler: Option<Upsample2D>,
}

impl UpBlock {
    /// Channels as diffusers: ResNet `i` takes `prev_output` (i = 0) or `out` plus the skip's
    /// channels, which are `in_channels` for the last ResNet and `out` otherwise.
    pub(crate) fn new(
        in_channels: usize,
        prev_output_channels: usize,
        out_channels: usize,
        spec: BlockSpec,
        add_upsample: bool,
        vb: VarBuilder,
    ) -> Result<Self> {
        let mut resnets = Vec::with_capacity(spec.layers);
        let mut attentions = Vec::new();
        for i in 0..spec.layers {
            let skip = if i == spec.layers - 1 {
                in_channels
            } else {
                out_channels
            };
            let cin = if i == 0 {
                prev_output_channels
            } else {
                out_channels
            };
            let rs = ResnetSpec {
                in_channels: cin + skip,
                out_channels,
                ..spec.resnet
            };
            resnets.push(ResnetBlock2D::new(rs, vb.pp("resnets").pp(i))?);
            if let Some(t) = &spec.transformer {
                attentions.push(Transformer2DModel::new(
                    out_channels,
                    t,
                    vb.pp("attentions").pp(i),
                )?);
            }
        }
        let upsampler = if add_upsample {
            Some(Upsample2D::new(out_channels, vb.pp("upsamplers").pp(0))?)
        } else {
            None
        };
        Ok(Self {
            resnets,
            attentions,
            upsampler,
        })
    }

    /// How many skip tensors the block consumes.
    pub(crate) fn num_layers(&self) -> usize {
        self.resnets.len()
    }

    /// `skips`: popped from the end, one per ResNet. `size`: the upsampler's output size.
    pub(crate) fn forward(
        &self,
        x: &Tensor,
        temb: &Tensor,
        context: &Tensor,
        skips: &mut Vec<Tensor>,
        size: Option<(usize, usize)>,
    ) -> Result<Tensor> {
        let mut h = x.clone();
        for (i, resnet) in self.resnets.iter().enumerate() {
            let skip = skips
                .pop()
                .ok_or_else(|| candle_core::Error::Msg("unet skip connections exhausted".into()))?;
            h = Tensor::cat(&[&h, &skip], 1)?;
            h = resnet.forward(&h, Some(temb))?;
            if let Some(attn) = self.attentions.get(i) {
                h = attn.forward(&h, context)?;
            }
        }
        if let Some(up) = &self.upsampler {
            h = up.forward(&h, size)?;
        }
        Ok(h)
    }
}
