//! Small layers shared by the UNet and the VAE: activations, convolutions, group norms and
//! torch's nearest-neighbour resize.

use candle_core::{Module, Result, Tensor};
use candle_nn::{Conv2d, Conv2dConfig, GroupNorm, VarBuilder};

use super::config::Activation;

impl Activation {
    /// Applies the activation element-wise (torch's `nn.SiLU`, `nn.GELU()` with erf,
    /// `nn.ReLU`, `nn.Mish`).
    pub fn forward(self, x: &Tensor) -> Result<Tensor> {
        match self {
            Self::Silu => x.silu(),
            Self::Gelu => x.gelu_erf(),
            Self::Relu => x.relu(),
            // mish(x) = x·tanh(softplus(x)); softplus = ln(1 + eˣ) (torch switches to x above
            // 20, where the two agree to f32 precision).
            Self::Mish => {
                let softplus = (x.exp()? + 1.0)?.log()?;
                x * softplus.tanh()?
            }
        }
    }
}

/// `nn.Conv2d(cin, cout, k, stride, padding)` with bias, weights `{prefix}.weight`/`.bias`.
pub(crate) fn conv2d(
    cin: usize,
    cout: usize,
    kernel: usize,
    stride: usize,
    padding: usize,
    vb: VarBuilder,
) -> Result<Conv2d> {
    let config = Conv2dConfig {
        padding,
        stride,
        ..Default::default()
    };
    candle_nn::conv2d(cin, cout, kernel, config, vb)
}

/// `nn.GroupNorm(groups, channels, eps)` with affine parameters. Statistics in f32 for f16/bf16
/// inputs, as torch does on CPU.
pub(crate) fn group_norm(groups: usize, channels: usize, eps: f64, vb: VarBuilder) -> Result<GroupNorm> {
    candle_nn::group_norm(groups, channels, eps, vb)
}

/// `F.interpolate(x, size=(h, w), mode="nearest")` on an NCHW tensor, with torch's source index
/// rule `min(floor(dst · (in / out)), in − 1)` computed in f32 (exact halving when `out = 2·in`).
pub(crate) fn upsample_nearest(x: &Tensor, out_h: usize, out_w: usize) -> Result<Tensor> {
    let (_, _, in_h, in_w) = x.dims4()?;
    let rows = nearest_indices(in_h, out_h);
    let cols = nearest_indices(in_w, out_w);
    let device = x.device();
    let rows = Tensor::from_vec(rows, out_h, device)?;
    let cols = Tensor::from_vec(cols, out_w, device)?;
    x.index_select(&rows, 2)?.index_select(&cols, 3)
}

/// The source index of every output index of a nearest resize from `input` to `output`.
fn nearest_indices(input: usize, output: usize) -> Vec<u32> {
    (0..output)
        .map(|dst| {
            let src = if output == input {
                dst
            } else if output == 2 * input {
                dst >> 1
            } else {
                let scale = input as f32 / output as f32;
                ((dst as f32 * scale).floor() as usize).min(input.saturating_sub(1))
            };
            src as u32
        })
        .collect()
}

/// Runs a candle module (keeps call sites short).
pub(crate) fn apply<M: Module>(m: &M, x: &Tensor) -> Result<Tensor> {
    m.forward(x)
}

#[cfg(test)]
mod tests {
    use super::nearest_indices;

    #[test]
    fn nearest_indices_follow_torch() {
        assert_eq!(nearest_indices(2, 4), vec![0, 0, 1, 1]);
        // torch.nn.functional.interpolate(size=5) of 3 rows picks rows 0, 0, 1, 1, 2.
        assert_eq!(nearest_indices(3, 5), vec![0, 0, 1, 1, 2]);
        assert_eq!(nearest_indices(3, 3), vec![0, 1, 2]);
    }
}
