//! Small layers shared by the UNet and the VAE: activations, convolutions, group norms and
//! torch's nearest-neighbour resize.

use candle_core::{DType, Module, Result, Tensor, D};
use candle_nn::VarBuilder;

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

/// Whether a product on `x` goes through f32: on the CPU, torch's f16/bf16 GEMM and
/// convolution accumulate in f32 and round the result (bias included) once, which is what the
/// f32 detour does (candle 0.11's CPU matmul has no bf16 kernel at all, and its f16 one rounds
/// the bias addition separately). On other devices candle's own kernels are used.
fn needs_f32(x: &Tensor) -> bool {
    matches!(x.dtype(), DType::BF16 | DType::F16) && x.device().is_cpu()
}

/// Runs `f` on `x` and `params` in f32 and rounds the result back to `x`'s dtype when
/// [`needs_f32`]; otherwise runs it as is.
fn compat(
    x: &Tensor,
    params: &[&Tensor],
    f: impl Fn(&Tensor, &[Tensor]) -> Result<Tensor>,
) -> Result<Tensor> {
    if needs_f32(x) {
        let up: Vec<Tensor> = params
            .iter()
            .map(|p| p.to_dtype(DType::F32))
            .collect::<Result<_>>()?;
        f(&x.to_dtype(DType::F32)?, &up)?.to_dtype(x.dtype())
    } else {
        let same: Vec<Tensor> = params.iter().map(|p| (*p).clone()).collect();
        f(x, &same)
    }
}

/// `a · b` (batched matmul), through f32 for bf16 on the CPU.
pub(crate) fn matmul(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    compat(a, &[b], |a, p| a.matmul(&p[0]))
}

/// `nn.Linear`: `y = x·Wᵀ + b` over the last dimension of `x`, weights `{prefix}.weight`
/// (out, in) and `{prefix}.bias`.
#[derive(Debug, Clone)]
pub(crate) struct Linear {
    weight: Tensor,
    bias: Option<Tensor>,
}

/// `nn.Linear(cin, cout)` with bias.
pub(crate) fn linear(cin: usize, cout: usize, vb: VarBuilder) -> Result<Linear> {
    Ok(Linear {
        weight: vb.get((cout, cin), "weight")?,
        bias: Some(vb.get(cout, "bias")?),
    })
}

/// `nn.Linear(cin, cout, bias=False)`.
pub(crate) fn linear_no_bias(cin: usize, cout: usize, vb: VarBuilder) -> Result<Linear> {
    Ok(Linear {
        weight: vb.get((cout, cin), "weight")?,
        bias: None,
    })
}

impl Module for Linear {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mut params = vec![&self.weight];
        params.extend(self.bias.as_ref());
        compat(x, &params, |x, p| {
            let dims = x.dims();
            let cin = dims[dims.len() - 1];
            let rows = x.elem_count() / cin.max(1);
            let y = x.reshape((rows, cin))?.matmul(&p[0].t()?)?;
            let y = match p.get(1) {
                Some(b) => y.broadcast_add(b)?,
                None => y,
            };
            let mut out_dims = dims.to_vec();
            let last = out_dims.len() - 1;
            out_dims[last] = p[0].dim(0)?;
            y.reshape(out_dims)
        })
    }
}

/// `nn.Conv2d` with bias on NCHW tensors.
#[derive(Debug, Clone)]
pub(crate) struct Conv2d {
    weight: Tensor,
    bias: Tensor,
    stride: usize,
    padding: usize,
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
    Ok(Conv2d {
        weight: vb.get((cout, cin, kernel, kernel), "weight")?,
        bias: vb.get(cout, "bias")?,
        stride,
        padding,
    })
}

impl Module for Conv2d {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        compat(x, &[&self.weight, &self.bias], |x, p| {
            let y = x.conv2d(&p[0], self.padding, self.stride, 1, 1)?;
            y.broadcast_add(&p[1].reshape((1, p[1].elem_count(), 1, 1))?)
        })
    }
}

/// `nn.GroupNorm`: per sample and group of `channels / groups` channels,
/// `y = (x − mean) / √(var + eps) · weight + bias` (biased variance). For f16/bf16 inputs the
/// statistics and the affine map are computed in f32 and rounded once, as torch's CPU kernel.
#[derive(Debug, Clone)]
pub(crate) struct GroupNorm {
    weight: Tensor,
    bias: Tensor,
    groups: usize,
    eps: f64,
}

/// `nn.GroupNorm(groups, channels, eps)` with affine parameters `{prefix}.weight`/`.bias`.
pub(crate) fn group_norm(
    groups: usize,
    channels: usize,
    eps: f64,
    vb: VarBuilder,
) -> Result<GroupNorm> {
    Ok(GroupNorm {
        weight: vb.get(channels, "weight")?,
        bias: vb.get(channels, "bias")?,
        groups,
        eps,
    })
}

impl Module for GroupNorm {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let dims = x.dims().to_vec();
        if dims.len() < 3 {
            candle_core::bail!("group norm input must have rank 3 or more, got {dims:?}");
        }
        let (b, c) = (dims[0], dims[1]);
        let dtype = x.dtype();
        let xf = x.to_dtype(DType::F32)?.reshape((b, self.groups, ()))?;
        let n = xf.dim(2)? as f64;
        let mean = (xf.sum_keepdim(2)? / n)?;
        let centred = xf.broadcast_sub(&mean)?;
        let var = (centred.sqr()?.sum_keepdim(2)? / n)?;
        let normed = centred
            .broadcast_div(&(var + self.eps)?.sqrt()?)?
            .reshape(dims.as_slice())?;
        let mut shape = vec![1; dims.len()];
        shape[1] = c;
        let weight = self
            .weight
            .to_dtype(DType::F32)?
            .reshape(shape.as_slice())?;
        let bias = self.bias.to_dtype(DType::F32)?.reshape(shape.as_slice())?;
        normed
            .broadcast_mul(&weight)?
            .broadcast_add(&bias)?
            .to_dtype(dtype)
    }
}

/// `nn.LayerNorm(dim, eps)` over the last dimension, two-pass statistics (mean, then the mean
/// of squared deviations) in f32 and the affine map in f32, rounded once to the input's dtype,
/// as torch. (candle-nn's fused layer norm takes the variance as E[x²] − mean², which loses
/// digits when the mean is large against the spread.)
#[derive(Debug, Clone)]
pub(crate) struct LayerNorm {
    weight: Tensor,
    bias: Tensor,
    eps: f64,
}

/// `nn.LayerNorm(dim, eps)` with `{prefix}.weight`/`.bias`.
pub(crate) fn layer_norm(dim: usize, eps: f64, vb: VarBuilder) -> Result<LayerNorm> {
    Ok(LayerNorm {
        weight: vb.get(dim, "weight")?,
        bias: vb.get(dim, "bias")?,
        eps,
    })
}

impl Module for LayerNorm {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let dtype = x.dtype();
        let xf = x.to_dtype(DType::F32)?;
        let mean = xf.mean_keepdim(D::Minus1)?;
        let centred = xf.broadcast_sub(&mean)?;
        let var = centred.sqr()?.mean_keepdim(D::Minus1)?;
        let normed = centred.broadcast_div(&(var + self.eps)?.sqrt()?)?;
        let weight = self.weight.to_dtype(DType::F32)?;
        let bias = self.bias.to_dtype(DType::F32)?;
        normed
            .broadcast_mul(&weight)?
            .broadcast_add(&bias)?
            .to_dtype(dtype)
    }
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
    fn layer_norm_keeps_digits_when_the_mean_is_large() {
        use candle_core::{Device, Module, Tensor};
        // 1000 + a spread of 0.01: E[x²] − mean² in f32 would lose every digit of the variance.
        let values: Vec<f32> = (0..64)
            .map(|i| 1000.0 + 0.01 * ((i as f32) * 0.7).sin())
            .collect();
        let x = Tensor::from_vec(values.clone(), (1, 64), &Device::Cpu).unwrap();
        let norm = super::LayerNorm {
            weight: Tensor::ones(64, candle_core::DType::F32, &Device::Cpu).unwrap(),
            bias: Tensor::zeros(64, candle_core::DType::F32, &Device::Cpu).unwrap(),
            eps: 1e-5,
        };
        let ours: Vec<f32> = norm
            .forward(&x)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let mean = values.iter().map(|&v| v as f64).sum::<f64>() / 64.0;
        let var = values
            .iter()
            .map(|&v| (v as f64 - mean).powi(2))
            .sum::<f64>()
            / 64.0;
        for (o, v) in ours.iter().zip(&values) {
            let exact = (*v as f64 - mean) / (var + 1e-5).sqrt();
            assert!((*o as f64 - exact).abs() < 2e-2, "{o} vs {exact}");
        }
    }

    #[test]
    fn nearest_indices_follow_torch() {
        assert_eq!(nearest_indices(2, 4), vec![0, 0, 1, 1]);
        // torch.nn.functional.interpolate(size=5) of 3 rows picks rows 0, 0, 1, 1, 2.
        assert_eq!(nearest_indices(3, 5), vec![0, 0, 1, 1, 2]);
        assert_eq!(nearest_indices(3, 3), vec![0, 1, 2]);
    }
}
