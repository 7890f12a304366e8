//! `ResnetBlock2D`, `Downsample2D` and `Upsample2D` of diffusers (`models/resnet.py`,
//! `models/downsampling.py`, `models/upsampling.py`), in their default configuration
//! (`time_embedding_norm = "default"`, convolutional resampling).

use candle_core::{Result, Tensor};
use candle_nn::VarBuilder;

use super::config::Activation;
use super::layers::{
    apply, conv2d, group_norm, linear, upsample_nearest, Conv2d, GroupNorm, Linear,
};

/// diffusers' `ResnetBlock2D`:
/// `h = conv1(act(norm1(x))) + time_emb_proj(act(temb))`, `h = conv2(act(norm2(h)))`,
/// `out = (shortcut(x) + h) / output_scale_factor`.
#[derive(Debug, Clone)]
pub(crate) struct ResnetBlock2D {
    norm1: GroupNorm,
    conv1: Conv2d,
    time_emb_proj: Option<Linear>,
    norm2: GroupNorm,
    conv2: Conv2d,
    conv_shortcut: Option<Conv2d>,
    act: Activation,
    output_scale_factor: f64,
}

/// The numbers a [`ResnetBlock2D`] is built from.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ResnetSpec {
    pub(crate) in_channels: usize,
    pub(crate) out_channels: usize,
    /// `None`: no time embedding (the VAE).
    pub(crate) temb_channels: Option<usize>,
    pub(crate) groups: usize,
    pub(crate) eps: f64,
    pub(crate) act: Activation,
    pub(crate) output_scale_factor: f64,
}

impl ResnetBlock2D {
    pub(crate) fn new(spec: ResnetSpec, vb: VarBuilder) -> Result<Self> {
        let ResnetSpec {
            in_channels,
            out_channels,
            ..
        } = spec;
        let time_emb_proj = match spec.temb_channels {
            Some(t) => Some(linear(t, out_channels, vb.pp("time_emb_proj"))?),
            None => None,
        };
        let conv_shortcut = if in_channels != out_channels {
            Some(conv2d(
                in_channels,
                out_channels,
                1,
                1,
                0,
                vb.pp("conv_shortcut"),
            )?)
        } else {
            None
        };
        Ok(Self {
            norm1: group_norm(spec.groups, in_channels, spec.eps, vb.pp("norm1"))?,
            conv1: conv2d(in_channels, out_channels, 3, 1, 1, vb.pp("conv1"))?,
            time_emb_proj,
            norm2: group_norm(spec.groups, out_channels, spec.eps, vb.pp("norm2"))?,
            conv2: conv2d(out_channels, out_channels, 3, 1, 1, vb.pp("conv2"))?,
            conv_shortcut,
            act: spec.act,
            output_scale_factor: spec.output_scale_factor,
        })
    }

    pub(crate) fn forward(&self, x: &Tensor, temb: Option<&Tensor>) -> Result<Tensor> {
        let h = self.act.forward(&apply(&self.norm1, x)?)?;
        let mut h = apply(&self.conv1, &h)?;
        if let (Some(proj), Some(temb)) = (&self.time_emb_proj, temb) {
            let t = apply(proj, &self.act.forward(temb)?)?;
            h = h.broadcast_add(&t.unsqueeze(2)?.unsqueeze(3)?)?;
        }
        let h = self.act.forward(&apply(&self.norm2, &h)?)?;
        let h = apply(&self.conv2, &h)?;
        let shortcut = match &self.conv_shortcut {
            Some(conv) => apply(conv, x)?,
            None => x.clone(),
        };
        let out = (shortcut + h)?;
        if self.output_scale_factor == 1.0 {
            Ok(out)
        } else {
            out / self.output_scale_factor
        }
    }
}

/// diffusers' `Downsample2D(use_conv=True)`: a 3×3 stride-2 convolution with `padding`; with
/// padding 0 the input is first padded by one zero row at the bottom and column at the right.
#[derive(Debug, Clone)]
pub(crate) struct Downsample2D {
    conv: Conv2d,
    padding: usize,
}

impl Downsample2D {
    pub(crate) fn new(channels: usize, padding: usize, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            conv: conv2d(channels, channels, 3, 2, padding, vb.pp("conv"))?,
            padding,
        })
    }

    pub(crate) fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if self.padding == 0 {
            let x = x.pad_with_zeros(3, 0, 1)?.pad_with_zeros(2, 0, 1)?;
            apply(&self.conv, &x)
        } else {
            apply(&self.conv, x)
        }
    }
}

/// diffusers' `Upsample2D(use_conv=True)`: nearest resize (2× or to the skip connection's size)
/// then a 3×3 convolution.
#[derive(Debug, Clone)]
pub(crate) struct Upsample2D {
    conv: Conv2d,
}

impl Upsample2D {
    pub(crate) fn new(channels: usize, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            conv: conv2d(channels, channels, 3, 1, 1, vb.pp("conv"))?,
        })
    }

    /// `size`: the output's (height, width); `None` doubles both.
    pub(crate) fn forward(&self, x: &Tensor, size: Option<(usize, usize)>) -> Result<Tensor> {
        let (_, _, h, w) = x.dims4()?;
        let (oh, ow) = size.unwrap_or((2 * h, 2 * w));
        apply(&self.conv, &upsample_nearest(x, oh, ow)?)
    }
}
