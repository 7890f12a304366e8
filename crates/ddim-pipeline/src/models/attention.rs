//! diffusers' attention blocks: `Attention` (with `AttnProcessor2_0`), the GEGLU
//! `FeedForward`, `BasicTransformerBlock`, `Transformer2DModel` (continuous input) and the VAE's
//! single-head spatial self-attention.
//!
//! Scores and softmax: diffusers 0.42 on torch 2 runs every attention through
//! `AttnProcessor2_0` (`F.scaled_dot_product_attention`), which never reads
//! `upcast_attention`/`upcast_softmax`; torch's CPU kernel for f16/bf16 accumulates Q·Kᵀ and the
//! softmax in f32 anyway. This module does the same: in f16/bf16 the query and key are converted
//! to f32, scores and softmax are f32, and the probabilities go back to the model dtype for the
//! product with V. So `upcast_attention = true` (SD 2.1) is always honoured, and costs nothing
//! extra.

use candle_core::{DType, Result, Tensor, D};
use candle_nn::{Module, VarBuilder};

use super::layers::{
    apply, conv2d, group_norm, layer_norm, linear, linear_no_bias, matmul, Conv2d, GroupNorm,
    LayerNorm, Linear,
};

/// The largest attention-score block computed at once (bytes of f32).
const SCORES_BYTES: usize = 256 << 20;

/// diffusers' `Attention` with `AttnProcessor2_0` (no mask, no norms):
/// `to_out(softmax(Q·Kᵀ/√d)·V)` over `heads` heads of width `d`.
#[derive(Debug, Clone)]
pub(crate) struct Attention {
    to_q: Linear,
    to_k: Linear,
    to_v: Linear,
    to_out: Linear,
    heads: usize,
    scale: f64,
}

impl Attention {
    /// `context_dim`: width of the keys' source (`query_dim` for self-attention); `qkv_bias`:
    /// whether `to_q/k/v` have biases (`False` in transformer blocks, `True` in the VAE).
    pub(crate) fn new(
        query_dim: usize,
        context_dim: usize,
        heads: usize,
        dim_head: usize,
        qkv_bias: bool,
        vb: VarBuilder,
    ) -> Result<Self> {
        Self::with_names(
            query_dim,
            context_dim,
            heads,
            dim_head,
            qkv_bias,
            ["to_q", "to_k", "to_v", "to_out.0"],
            vb,
        )
    }

    /// As [`Attention::new`] with the four linear layers' names (`[q, k, v, out]`).
    fn with_names(
        query_dim: usize,
        context_dim: usize,
        heads: usize,
        dim_head: usize,
        qkv_bias: bool,
        names: [&str; 4],
        vb: VarBuilder,
    ) -> Result<Self> {
        let inner = heads * dim_head;
        let lin = |i, o, name: &str| {
            if qkv_bias {
                linear(i, o, vb.pp(name))
            } else {
                linear_no_bias(i, o, vb.pp(name))
            }
        };
        Ok(Self {
            to_q: lin(query_dim, inner, names[0])?,
            to_k: lin(context_dim, inner, names[1])?,
            to_v: lin(context_dim, inner, names[2])?,
            to_out: linear(inner, query_dim, vb.pp(names[3]))?,
            heads,
            scale: 1.0 / (dim_head as f64).sqrt(),
        })
    }

    /// `x`: (B, L, query_dim); `context`: (B, S, context_dim) or `None` for self-attention.
    pub(crate) fn forward(&self, x: &Tensor, context: Option<&Tensor>) -> Result<Tensor> {
        let context = context.unwrap_or(x);
        let q = self.split_heads(&apply(&self.to_q, x)?)?;
        let k = self.split_heads(&apply(&self.to_k, context)?)?;
        let v = self.split_heads(&apply(&self.to_v, context)?)?;
        let out = attend(&q, &k, &v, self.scale, SCORES_BYTES)?;
        let (b, h, l, d) = out.dims4()?;
        let out = out.transpose(1, 2)?.contiguous()?.reshape((b, l, h * d))?;
        apply(&self.to_out, &out)
    }

    /// (B, L, H·d) → (B, H, L, d), contiguous.
    fn split_heads(&self, x: &Tensor) -> Result<Tensor> {
        let (b, l, c) = x.dims3()?;
        x.reshape((b, l, self.heads, c / self.heads))?
            .transpose(1, 2)?
            .contiguous()
    }
}

/// `softmax(q·kᵀ·scale)·v` on (B, H, L, d) tensors, scores and softmax in f32, in slices of
/// query rows whose f32 scores take at most `max_bytes` (exact: the softmax is per row).
fn attend(q: &Tensor, k: &Tensor, v: &Tensor, scale: f64, max_bytes: usize) -> Result<Tensor> {
    let dtype = q.dtype();
    let (b, h, l, _) = q.dims4()?;
    let s = k.dim(2)?;
    let q = q.to_dtype(DType::F32)?;
    let kt = k.to_dtype(DType::F32)?.t()?.contiguous()?;
    let rows = (max_bytes / (4 * b * h * s).max(1)).clamp(1, l.max(1));
    let mut slices = Vec::with_capacity(l.div_ceil(rows));
    for start in (0..l).step_by(rows) {
        let q = q.narrow(2, start, rows.min(l - start))?;
        let scores = (q.matmul(&kt)? * scale)?;
        let probs = candle_nn::ops::softmax_last_dim(&scores)?.to_dtype(dtype)?;
        slices.push(matmul(&probs, v)?);
    }
    if slices.len() == 1 {
        Ok(slices.remove(0))
    } else {
        Tensor::cat(&slices, 2)
    }
}

/// diffusers' `FeedForward(activation_fn="geglu")`: `net.2(a · gelu(g))` where
/// `[a, g] = net.0.proj(x)` split in halves, GELU exact (erf).
#[derive(Debug, Clone)]
struct FeedForward {
    proj: Linear,
    out: Linear,
}

impl FeedForward {
    fn new(dim: usize, vb: VarBuilder) -> Result<Self> {
        let inner = 4 * dim;
        Ok(Self {
            proj: linear(dim, 2 * inner, vb.pp("net").pp("0").pp("proj"))?,
            out: linear(inner, dim, vb.pp("net").pp("2"))?,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let projected = apply(&self.proj, x)?;
        let half = projected.dim(D::Minus1)? / 2;
        let a = projected.narrow(D::Minus1, 0, half)?;
        let gate = projected.narrow(D::Minus1, half, half)?.gelu_erf()?;
        apply(&self.out, &(a * gate)?)
    }
}

/// diffusers' `BasicTransformerBlock` (layer norms, self-attention — or cross-attention with
/// `only_cross_attention` —, cross-attention, GEGLU feed-forward, each with a residual).
#[derive(Debug, Clone)]
struct BasicTransformerBlock {
    norm1: LayerNorm,
    attn1: Attention,
    norm2: LayerNorm,
    attn2: Attention,
    norm3: LayerNorm,
    ff: FeedForward,
    only_cross_attention: bool,
}

impl BasicTransformerBlock {
    fn new(dim: usize, spec: &TransformerSpec, vb: VarBuilder) -> Result<Self> {
        let dim_head = dim / spec.heads;
        let attn1_context = if spec.only_cross_attention {
            spec.cross_attention_dim
        } else {
            dim
        };
        let ln = |name: &str| layer_norm(dim, 1e-5, vb.pp(name));
        Ok(Self {
            norm1: ln("norm1")?,
            attn1: Attention::new(
                dim,
                attn1_context,
                spec.heads,
                dim_head,
                false,
                vb.pp("attn1"),
            )?,
            norm2: ln("norm2")?,
            attn2: Attention::new(
                dim,
                spec.cross_attention_dim,
                spec.heads,
                dim_head,
                false,
                vb.pp("attn2"),
            )?,
            norm3: ln("norm3")?,
            ff: FeedForward::new(dim, vb.pp("ff"))?,
            only_cross_attention: spec.only_cross_attention,
        })
    }

    fn forward(&self, x: &Tensor, context: &Tensor) -> Result<Tensor> {
        let attn1_context = self.only_cross_attention.then_some(context);
        let x = (self.attn1.forward(&self.norm1.forward(x)?, attn1_context)? + x)?;
        let x = (self
            .attn2
            .forward(&self.norm2.forward(&x)?, Some(context))?
            + x)?;
        self.ff.forward(&self.norm3.forward(&x)?)? + x
    }
}

/// The numbers a [`Transformer2DModel`] is built from.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TransformerSpec {
    pub(crate) heads: usize,
    pub(crate) layers: usize,
    pub(crate) cross_attention_dim: usize,
    pub(crate) groups: usize,
    pub(crate) use_linear_projection: bool,
    pub(crate) only_cross_attention: bool,
}

/// `proj_in`/`proj_out`: a 1×1 convolution on NCHW or a linear layer on tokens.
#[derive(Debug, Clone)]
enum Projection {
    Conv(Conv2d),
    Linear(Linear),
}

/// diffusers' `Transformer2DModel` on continuous input:
/// `x + proj_out(blocks(proj_in(norm(x))))`, tokens = pixels.
#[derive(Debug, Clone)]
pub(crate) struct Transformer2DModel {
    norm: GroupNorm,
    proj_in: Projection,
    blocks: Vec<BasicTransformerBlock>,
    proj_out: Projection,
}

impl Transformer2DModel {
    pub(crate) fn new(channels: usize, spec: &TransformerSpec, vb: VarBuilder) -> Result<Self> {
        let (proj_in, proj_out) = if spec.use_linear_projection {
            (
                Projection::Linear(linear(channels, channels, vb.pp("proj_in"))?),
                Projection::Linear(linear(channels, channels, vb.pp("proj_out"))?),
            )
        } else {
            (
                Projection::Conv(conv2d(channels, channels, 1, 1, 0, vb.pp("proj_in"))?),
                Projection::Conv(conv2d(channels, channels, 1, 1, 0, vb.pp("proj_out"))?),
            )
        };
        let blocks = (0..spec.layers)
            .map(|i| BasicTransformerBlock::new(channels, spec, vb.pp("transformer_blocks").pp(i)))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            norm: group_norm(spec.groups, channels, 1e-6, vb.pp("norm"))?,
            proj_in,
            blocks,
            proj_out,
        })
    }

    pub(crate) fn forward(&self, x: &Tensor, context: &Tensor) -> Result<Tensor> {
        let (b, c, h, w) = x.dims4()?;
        let to_tokens = |t: &Tensor| t.permute((0, 2, 3, 1))?.reshape((b, h * w, c));
        let to_image = |t: &Tensor| t.reshape((b, h, w, c))?.permute((0, 3, 1, 2))?.contiguous();
        let normed = apply(&self.norm, x)?;
        let mut tokens = match &self.proj_in {
            Projection::Conv(conv) => to_tokens(&apply(conv, &normed)?)?,
            Projection::Linear(lin) => apply(lin, &to_tokens(&normed)?)?,
        };
        for block in &self.blocks {
            tokens = block.forward(&tokens, context)?;
        }
        let out = match &self.proj_out {
            Projection::Conv(conv) => apply(conv, &to_image(&tokens)?)?,
            Projection::Linear(lin) => to_image(&apply(lin, &tokens)?)?,
        };
        out + x
    }
}

/// The VAE mid block's attention (diffusers `Attention` with `norm_num_groups`,
/// `residual_connection=True`, one head as wide as the channels, biases on q/k/v):
/// `x + attention(group_norm(x))` over the pixels. Checkpoints saved before diffusers 0.14
/// name the layers `query`/`key`/`value`/`proj_attn`; those names are accepted too, as
/// diffusers' loader renames them.
#[derive(Debug, Clone)]
pub(crate) struct SpatialSelfAttention {
    group_norm: GroupNorm,
    attention: Attention,
}

impl SpatialSelfAttention {
    pub(crate) fn new(channels: usize, groups: usize, eps: f64, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            group_norm: group_norm(groups, channels, eps, vb.pp("group_norm"))?,
            attention: if vb.contains_tensor("query.weight") && !vb.contains_tensor("to_q.weight") {
                let names = ["query", "key", "value", "proj_attn"];
                Attention::with_names(channels, channels, 1, channels, true, names, vb)?
            } else {
                Attention::new(channels, channels, 1, channels, true, vb)?
            },
        })
    }

    pub(crate) fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (b, c, h, w) = x.dims4()?;
        let normed = apply(&self.group_norm, &x.reshape((b, c, h * w))?)?;
        let tokens = normed.transpose(1, 2)?.contiguous()?;
        let out = self.attention.forward(&tokens, None)?;
        let out = out.transpose(1, 2)?.reshape((b, c, h, w))?;
        out + x
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Tensor};

    #[test]
    fn sliced_attention_equals_whole() {
        let make = |n: usize, phase: f64| {
            let t = Tensor::arange(0f32, (2 * 3 * n * 4) as f32, &Device::Cpu).unwrap();
            ((t * 0.37).unwrap() + phase)
                .unwrap()
                .sin()
                .unwrap()
                .reshape((2, 3, n, 4))
                .unwrap()
        };
        let (q, k, v) = (make(7, 0.1), make(5, 0.5), make(5, 0.9));
        let whole = super::attend(&q, &k, &v, 0.5, usize::MAX / 2).unwrap();
        // 2·3·5 scores of 4 bytes per query row: 130 bytes allow 1 row per slice.
        let sliced = super::attend(&q, &k, &v, 0.5, 130).unwrap();
        let diff = (whole - sliced).unwrap().abs().unwrap().max_all().unwrap();
        assert_eq!(diff.to_scalar::<f32>().unwrap(), 0.0);
    }
}
