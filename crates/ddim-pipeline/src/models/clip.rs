//! The CLIP text encoder of Stable Diffusion, as transformers' `CLIPTextModel`, on candle-nn.
//!
//! ```text
//! h  = token_embedding[ids] + position_embedding[0..L]
//! for each layer:
//!     h = h + out_proj(attention(layer_norm1(h)))        causal: token i sees tokens 0..=i
//!     h = h + fc2(act(fc1(layer_norm2(h))))
//! last_hidden_state = final_layer_norm(h)                 (B × L × hidden_size)
//! ```
//!
//! `attention` is multi-head scaled dot-product attention, `softmax(q·kᵀ/√d_head + mask)·v`, the
//! softmax taken in f32 as transformers does for half precision. `last_hidden_state` is what
//! diffusers' `encode_prompt` hands to the UNet (`prompt_embeds`, `clip_skip = None`).
//!
//! Why not candle-transformers' CLIP: its public `ClipTextConfig` knows only `quick_gelu`, and the
//! `stable_diffusion::clip` presets (private fields) use the tanh approximation for `gelu`, where
//! transformers' `"gelu"`, the activation of SD 2.x's OpenCLIP ViT-H encoder, is the exact erf
//! form. This module reads every number from the text encoder's `config.json` and implements
//! each `hidden_act` exactly ([`Activation`]).
//!
//! The config's `eos_token_id`, `projection_dim`, `pad_token_id`, `bos_token_id` and the dropouts
//! only matter for the pooled output, the projection head or training: `last_hidden_state` does not
//! depend on them.
//!
//! Weights: transformers 5 saves `CLIPTextModel` without the `text_model.` key prefix, older repos
//! have it; [`ClipTextModel::load`] accepts both (it looks at the keys).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Module, Tensor};
use candle_nn::{Embedding, LayerNorm, Linear, VarBuilder};
use serde_json::{Map, Value};

use crate::error::{Error, Result};

/// transformers' `hidden_act` of a CLIP text encoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Activation {
    /// `"quick_gelu"`: `x · σ(1.702 x)` (OpenAI CLIP, SD 1.x).
    QuickGelu,
    /// `"gelu"`: the exact `x · Φ(x) = x/2 · (1 + erf(x/√2))` (OpenCLIP, SD 2.x).
    Gelu,
    /// `"gelu_new"`, `"gelu_pytorch_tanh"`, `"gelu_fast"`:
    /// `x/2 · (1 + tanh(√(2/π) · (x + 0.044715 x³)))`.
    GeluTanh,
    /// `"relu"`: `max(x, 0)`.
    Relu,
    /// `"silu"`/`"swish"`: `x · σ(x)`.
    Silu,
}

impl Activation {
    /// Parses transformers' `ACT2FN` name.
    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "quick_gelu" => Self::QuickGelu,
            "gelu" => Self::Gelu,
            "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast" => Self::GeluTanh,
            "relu" => Self::Relu,
            "silu" | "swish" => Self::Silu,
            _ => return None,
        })
    }

    fn apply(self, x: &Tensor) -> candle_core::Result<Tensor> {
        match self {
            Self::QuickGelu => x * candle_nn::ops::sigmoid(&(x * 1.702)?)?,
            Self::Gelu => x.gelu_erf(),
            Self::GeluTanh => x.gelu(),
            Self::Relu => x.relu(),
            Self::Silu => x.silu(),
        }
    }
}

/// The text encoder's architecture, from its `config.json` (transformers' `CLIPTextConfig`).
///
/// A missing key takes transformers' default (noted per field), as `from_pretrained` would.
#[derive(Debug, Clone, PartialEq)]
pub struct ClipTextConfig {
    /// `vocab_size` (default 49408): rows of the token embedding.
    pub vocab_size: usize,
    /// `hidden_size` (default 512): the width `D` of `last_hidden_state`.
    pub hidden_size: usize,
    /// `intermediate_size` (default 2048): the MLP's inner width.
    pub intermediate_size: usize,
    /// `num_hidden_layers` (default 12).
    pub num_hidden_layers: usize,
    /// `num_attention_heads` (default 8); must divide `hidden_size`.
    pub num_attention_heads: usize,
    /// `max_position_embeddings` (default 77): the longest input.
    pub max_position_embeddings: usize,
    /// `hidden_act` (default `"quick_gelu"`).
    pub hidden_act: Activation,
    /// `layer_norm_eps` (default 1e-5).
    pub layer_norm_eps: f64,
}

fn config_err(path: &Path, reason: impl std::fmt::Display) -> Error {
    Error::Config {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

fn count(obj: &Map<String, Value>, key: &str, default: usize, path: &Path) -> Result<usize> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(default),
        Some(v) => v
            .as_u64()
            .and_then(|n| usize::try_from(n).ok())
            .filter(|&n| n > 0)
            .ok_or_else(|| {
                config_err(
                    path,
                    format!("`{key}` must be a positive integer, found {v}"),
                )
            }),
    }
}

impl ClipTextConfig {
    /// Parses a text encoder's `config.json` (`path` only names the file in errors). A full
    /// `CLIPConfig` is accepted too: its `text_config` is used.
    ///
    /// ```
    /// use ddim_pipeline::models::ClipTextConfig;
    /// # fn main() -> ddim_pipeline::Result<()> {
    /// let json = r#"{"hidden_size": 1024, "intermediate_size": 4096, "num_hidden_layers": 23,
    ///               "num_attention_heads": 16, "hidden_act": "gelu"}"#;
    /// let config = ClipTextConfig::from_json_str(json, "text_encoder/config.json".as_ref())?;
    /// assert_eq!(config.num_hidden_layers, 23);
    /// # Ok(())
    /// # }
    /// ```
    pub fn from_json_str(text: &str, path: &Path) -> Result<Self> {
        let value: Value = serde_json::from_str(text)
            .map_err(|e| config_err(path, format!("invalid json: {e}")))?;
        let Value::Object(mut obj) = value else {
            return Err(config_err(path, "expected a json object"));
        };
        if !obj.contains_key("hidden_size") {
            if let Some(Value::Object(text_config)) = obj.remove("text_config") {
                obj = text_config;
            }
        }
        let hidden_act = match obj.get("hidden_act") {
            None | Some(Value::Null) => Activation::QuickGelu,
            Some(Value::String(name)) => Activation::from_name(name).ok_or_else(|| {
                config_err(
                    path,
                    format!("`hidden_act` \"{name}\" is not supported (quick_gelu, gelu, gelu_new, gelu_pytorch_tanh, gelu_fast, relu, silu)"),
                )
            })?,
            Some(v) => return Err(config_err(path, format!("`hidden_act` must be a string, found {v}"))),
        };
        let layer_norm_eps = match obj.get("layer_norm_eps") {
            None | Some(Value::Null) => 1e-5,
            Some(v) => v
                .as_f64()
                .filter(|e| e.is_finite() && *e >= 0.0)
                .ok_or_else(|| {
                    config_err(
                        path,
                        format!("`layer_norm_eps` must be a non-negative number, found {v}"),
                    )
                })?,
        };
        let config = Self {
            vocab_size: count(&obj, "vocab_size", 49408, path)?,
            hidden_size: count(&obj, "hidden_size", 512, path)?,
            intermediate_size: count(&obj, "intermediate_size", 2048, path)?,
            num_hidden_layers: count(&obj, "num_hidden_layers", 12, path)?,
            num_attention_heads: count(&obj, "num_attention_heads", 8, path)?,
            max_position_embeddings: count(&obj, "max_position_embeddings", 77, path)?,
            hidden_act,
            layer_norm_eps,
        };
        if config.hidden_size % config.num_attention_heads != 0 {
            return Err(config_err(
                path,
                format!(
                    "`hidden_size` {} is not a multiple of `num_attention_heads` {}",
                    config.hidden_size, config.num_attention_heads
                ),
            ));
        }
        Ok(config)
    }

    /// Reads and parses a `config.json` file.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::Io {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        Self::from_json_str(&text, path)
    }

    /// Every weight the model reads, with its shape, keys without the `text_model.` prefix.
    pub fn expected_tensors(&self) -> Vec<(String, Vec<usize>)> {
        let (d, f) = (self.hidden_size, self.intermediate_size);
        let mut out = vec![
            (
                "embeddings.token_embedding.weight".to_string(),
                vec![self.vocab_size, d],
            ),
            (
                "embeddings.position_embedding.weight".to_string(),
                vec![self.max_position_embeddings, d],
            ),
        ];
        for i in 0..self.num_hidden_layers {
            let p = format!("encoder.layers.{i}");
            for name in ["q_proj", "k_proj", "v_proj", "out_proj"] {
                out.push((format!("{p}.self_attn.{name}.weight"), vec![d, d]));
                out.push((format!("{p}.self_attn.{name}.bias"), vec![d]));
            }
            for ln in ["layer_norm1", "layer_norm2"] {
                out.push((format!("{p}.{ln}.weight"), vec![d]));
                out.push((format!("{p}.{ln}.bias"), vec![d]));
            }
            out.push((format!("{p}.mlp.fc1.weight"), vec![f, d]));
            out.push((format!("{p}.mlp.fc1.bias"), vec![f]));
            out.push((format!("{p}.mlp.fc2.weight"), vec![d, f]));
            out.push((format!("{p}.mlp.fc2.bias"), vec![d]));
        }
        out.push(("final_layer_norm.weight".to_string(), vec![d]));
        out.push(("final_layer_norm.bias".to_string(), vec![d]));
        out
    }
}

#[derive(Debug)]
struct Attention {
    q: Linear,
    k: Linear,
    v: Linear,
    out: Linear,
    heads: usize,
    head_dim: usize,
}

impl Attention {
    fn new(config: &ClipTextConfig, vb: VarBuilder) -> candle_core::Result<Self> {
        let d = config.hidden_size;
        Ok(Self {
            q: candle_nn::linear(d, d, vb.pp("q_proj"))?,
            k: candle_nn::linear(d, d, vb.pp("k_proj"))?,
            v: candle_nn::linear(d, d, vb.pp("v_proj"))?,
            out: candle_nn::linear(d, d, vb.pp("out_proj"))?,
            heads: config.num_attention_heads,
            head_dim: d / config.num_attention_heads,
        })
    }

    /// `x`: B × L × D; `mask`: L × L in f32, 0 on and below the diagonal, −∞ above.
    fn forward(&self, x: &Tensor, mask: &Tensor) -> candle_core::Result<Tensor> {
        let (b, l, d) = x.dims3()?;
        let split = |t: Tensor| -> candle_core::Result<Tensor> {
            t.reshape((b, l, self.heads, self.head_dim))?
                .transpose(1, 2)?
                .contiguous()
        };
        let q = split(self.q.forward(x)?)?;
        let k = split(self.k.forward(x)?)?;
        let v = split(self.v.forward(x)?)?;
        let scale = (self.head_dim as f64).powf(-0.5);
        let scores = (q.matmul(&k.t()?)? * scale)?;
        let dtype = scores.dtype();
        let scores = scores.to_dtype(DType::F32)?.broadcast_add(mask)?;
        let weights = candle_nn::ops::softmax_last_dim(&scores)?.to_dtype(dtype)?;
        let y = weights.matmul(&v)?.transpose(1, 2)?.reshape((b, l, d))?;
        self.out.forward(&y)
    }
}

#[derive(Debug)]
struct EncoderLayer {
    layer_norm1: LayerNorm,
    attention: Attention,
    layer_norm2: LayerNorm,
    fc1: Linear,
    fc2: Linear,
    act: Activation,
}

impl EncoderLayer {
    fn new(config: &ClipTextConfig, vb: VarBuilder) -> candle_core::Result<Self> {
        let (d, f, eps) = (
            config.hidden_size,
            config.intermediate_size,
            config.layer_norm_eps,
        );
        Ok(Self {
            layer_norm1: candle_nn::layer_norm(d, eps, vb.pp("layer_norm1"))?,
            attention: Attention::new(config, vb.pp("self_attn"))?,
            layer_norm2: candle_nn::layer_norm(d, eps, vb.pp("layer_norm2"))?,
            fc1: candle_nn::linear(d, f, vb.pp("mlp").pp("fc1"))?,
            fc2: candle_nn::linear(f, d, vb.pp("mlp").pp("fc2"))?,
            act: config.hidden_act,
        })
    }

    fn forward(&self, x: &Tensor, mask: &Tensor) -> candle_core::Result<Tensor> {
        let h = (x + self
            .attention
            .forward(&self.layer_norm1.forward(x)?, mask)?)?;
        let m = self.fc1.forward(&self.layer_norm2.forward(&h)?)?;
        let m = self.fc2.forward(&self.act.apply(&m)?)?;
        h + m
    }
}

/// transformers' `CLIPTextModel`, returning `last_hidden_state` (module docs).
#[derive(Debug)]
pub struct ClipTextModel {
    token_embedding: Embedding,
    position_embedding: Embedding,
    layers: Vec<EncoderLayer>,
    final_layer_norm: LayerNorm,
    config: ClipTextConfig,
}

/// The key prefix of a transformers-4 `CLIPTextModel` checkpoint.
const LEGACY_PREFIX: &str = "text_model.";

impl ClipTextModel {
    /// Builds the model from `vb`, whose keys are those of transformers 5
    /// (`embeddings.token_embedding.weight`, `encoder.layers.0.self_attn.q_proj.weight`, …); use
    /// `vb.pp("text_model")` for older checkpoints, or [`load`](Self::load), which checks every
    /// tensor first and names the one that is missing or wrong.
    pub fn new(config: ClipTextConfig, vb: VarBuilder) -> Result<Self> {
        let d = config.hidden_size;
        let emb = vb.pp("embeddings");
        let token_embedding =
            candle_nn::embedding(config.vocab_size, d, emb.pp("token_embedding"))?;
        let position_embedding = candle_nn::embedding(
            config.max_position_embeddings,
            d,
            emb.pp("position_embedding"),
        )?;
        let layers = (0..config.num_hidden_layers)
            .map(|i| EncoderLayer::new(&config, vb.pp("encoder").pp("layers").pp(i)))
            .collect::<candle_core::Result<Vec<_>>>()?;
        let final_layer_norm =
            candle_nn::layer_norm(d, config.layer_norm_eps, vb.pp("final_layer_norm"))?;
        Ok(Self {
            token_embedding,
            position_embedding,
            layers,
            final_layer_norm,
            config,
        })
    }

    /// Loads `model.safetensors` (or the shards of a sharded checkpoint, or the `fp16` variant)
    /// into `dtype` on `device`. Keys with or without the `text_model.` prefix are accepted.
    /// Every tensor the config calls for is checked first: a missing one, or one of the wrong
    /// shape, is [`Error::Weights`] naming the tensor and the file.
    ///
    /// ```no_run
    /// use candle_core::{DType, Device};
    /// use ddim_pipeline::models::{ClipTextConfig, ClipTextModel};
    /// # fn main() -> ddim_pipeline::Result<()> {
    /// let config = ClipTextConfig::from_file("model/text_encoder/config.json".as_ref())?;
    /// let files = ["model/text_encoder/model.safetensors".into()];
    /// let encoder = ClipTextModel::load(config, &files, DType::F32, &Device::Cpu)?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn load(
        config: ClipTextConfig,
        files: &[PathBuf],
        dtype: DType,
        device: &Device,
    ) -> Result<Self> {
        let first = files.first().ok_or_else(|| Error::Weights {
            path: PathBuf::from("text_encoder"),
            reason: "no weights file given".into(),
        })?;
        let mut tensors: HashMap<String, Tensor> = HashMap::new();
        let mut origin: HashMap<String, PathBuf> = HashMap::new();
        for file in files {
            let loaded =
                candle_core::safetensors::load(file, device).map_err(|e| Error::Weights {
                    path: file.clone(),
                    reason: format!("cannot read safetensors: {e}"),
                })?;
            for (name, tensor) in loaded {
                origin.insert(name.clone(), file.clone());
                tensors.insert(name, tensor);
            }
        }
        let prefixed = tensors.keys().any(|k| k.starts_with(LEGACY_PREFIX));
        let prefix = if prefixed { LEGACY_PREFIX } else { "" };
        for (name, shape) in config.expected_tensors() {
            let key = format!("{prefix}{name}");
            match tensors.get(&key) {
                None => {
                    return Err(Error::Weights {
                        path: first.clone(),
                        reason: format!("tensor `{key}` is missing"),
                    })
                }
                Some(t) if t.dims() != shape.as_slice() => {
                    return Err(Error::Weights {
                        path: origin.get(&key).unwrap_or(first).clone(),
                        reason: format!(
                            "tensor `{key}` has shape {:?}, the config needs {:?}",
                            t.dims(),
                            shape
                        ),
                    })
                }
                Some(_) => {}
            }
        }
        let vb = VarBuilder::from_tensors(tensors, dtype, device);
        let vb = if prefixed { vb.pp("text_model") } else { vb };
        Self::new(config, vb)
    }

    /// The configuration the model was built with.
    pub fn config(&self) -> &ClipTextConfig {
        &self.config
    }

    /// `last_hidden_state` for `input_ids` (B × L, any integer dtype, `L ≤
    /// max_position_embeddings`): B × L × `hidden_size`, in the model's dtype.
    pub fn forward(&self, input_ids: &Tensor) -> Result<Tensor> {
        let (_, l) = input_ids.dims2()?;
        if l == 0 || l > self.config.max_position_embeddings {
            return Err(Error::InvalidArgument {
                name: "input_ids",
                reason: format!(
                    "has {l} tokens per prompt, the text encoder takes 1 to {} (max_position_embeddings)",
                    self.config.max_position_embeddings
                ),
            });
        }
        let device = input_ids.device();
        let positions = Tensor::arange(0u32, l as u32, device)?;
        let tokens = self.token_embedding.forward(input_ids)?;
        let mut h = tokens.broadcast_add(&self.position_embedding.forward(&positions)?)?;
        let mask = causal_mask(l, device)?;
        for layer in &self.layers {
            h = layer.forward(&h, &mask)?;
        }
        Ok(self.final_layer_norm.forward(&h)?)
    }
}

/// L × L, f32: 0 where key ≤ query, −∞ above the diagonal.
fn causal_mask(l: usize, device: &Device) -> candle_core::Result<Tensor> {
    let mask: Vec<f32> = (0..l)
        .flat_map(|i| (0..l).map(move |j| if j > i { f32::NEG_INFINITY } else { 0.0 }))
        .collect();
    Tensor::from_vec(mask, (l, l), device)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_bad_values() {
        let p = Path::new("config.json");
        let c = ClipTextConfig::from_json_str("{}", p).unwrap();
        assert_eq!(
            (c.vocab_size, c.hidden_size, c.num_hidden_layers),
            (49408, 512, 12)
        );
        assert_eq!(c.hidden_act, Activation::QuickGelu);
        let e = ClipTextConfig::from_json_str(r#"{"hidden_act": "mish"}"#, p).unwrap_err();
        assert!(e.to_string().contains("hidden_act"), "{e}");
        let e =
            ClipTextConfig::from_json_str(r#"{"hidden_size": 30, "num_attention_heads": 4}"#, p)
                .unwrap_err();
        assert!(e.to_string().contains("num_attention_heads"), "{e}");
        let e = ClipTextConfig::from_json_str(r#"{"num_hidden_layers": -1}"#, p).unwrap_err();
        assert!(e.to_string().contains("num_hidden_layers"), "{e}");
        let c = ClipTextConfig::from_json_str(
            r#"{"text_config": {"hidden_size": 64, "hidden_act": "gelu"}}"#,
            p,
        )
        .unwrap();
        assert_eq!((c.hidden_size, c.hidden_act), (64, Activation::Gelu));
    }
}
