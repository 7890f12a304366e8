//! The `config.json` of a diffusers `UNet2DConditionModel` and `AutoencoderKL`, resolved the way
//! diffusers' constructors resolve them.
//!
//! Every architecture number comes from the file; defaults are diffusers 0.42's constructor
//! defaults. Keys whose non-default values this crate does not implement are refused with
//! [`Error::Config`] naming the key and the value; keys diffusers itself ignores for the
//! supported blocks, unknown keys and `_`-prefixed metadata are ignored as diffusers does.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;

use crate::{Error, Result};

/// An activation function named in a config (`act_fn`, `time_embedding_act_fn`, ...), as
/// diffusers' `get_activation`: `"silu"`/`"swish"` → SiLU, `"gelu"` → exact (erf) GELU,
/// `"relu"`, `"mish"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// `x · σ(x)`.
    Silu,
    /// `x · Φ(x)` with the exact normal CDF (torch's `nn.GELU()`).
    Gelu,
    /// `max(x, 0)`.
    Relu,
    /// `x · tanh(softplus(x))`.
    Mish,
}

impl Activation {
    /// Parses a diffusers activation name (case-insensitive, as `get_activation`).
    ///
    /// ```
    /// use ddim_pipeline::models::Activation;
    /// assert_eq!(Activation::parse("SiLU"), Some(Activation::Silu));
    /// assert_eq!(Activation::parse("tanh"), None);
    /// ```
    pub fn parse(name: &str) -> Option<Self> {
        match name.to_ascii_lowercase().as_str() {
            "silu" | "swish" => Some(Self::Silu),
            "gelu" => Some(Self::Gelu),
            "relu" => Some(Self::Relu),
            "mish" => Some(Self::Mish),
            _ => None,
        }
    }
}

/// A UNet down block type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DownBlockType {
    /// `CrossAttnDownBlock2D`: ResNets each followed by a `Transformer2DModel`.
    CrossAttn,
    /// `DownBlock2D`: ResNets only.
    Plain,
}

/// A UNet up block type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpBlockType {
    /// `CrossAttnUpBlock2D`.
    CrossAttn,
    /// `UpBlock2D`.
    Plain,
}

/// The `config.json` of a diffusers `UNet2DConditionModel`, resolved per block.
///
/// Lists are expanded to one entry per down block (index `i` = `down_block_types[i]`); the up
/// blocks use them reversed, the mid block the last entry, as diffusers does.
#[derive(Debug, Clone, PartialEq)]
pub struct UNetConfig {
    /// `in_channels` (latent channels in).
    pub in_channels: usize,
    /// `out_channels`.
    pub out_channels: usize,
    /// `sample_size`: the latent side the model was trained at (the pipeline's default image
    /// side is `sample_size × vae_scale_factor`). Required: diffusers' default is `None`, with
    /// which its pipelines cannot pick a default size either.
    pub sample_size: usize,
    /// `center_input_sample`: the input becomes `2x − 1` first.
    pub center_input_sample: bool,
    /// `flip_sin_to_cos`: the timestep embedding is `[cos, sin]` instead of `[sin, cos]`.
    pub flip_sin_to_cos: bool,
    /// `freq_shift`: the `downscale_freq_shift` of the timestep embedding.
    pub freq_shift: f64,
    /// `down_block_types`.
    pub down_block_types: Vec<DownBlockType>,
    /// `mid_block_type`: `true` for `UNetMidBlock2DCrossAttn`, `false` for none (`null`).
    pub mid_block: bool,
    /// `up_block_types`.
    pub up_block_types: Vec<UpBlockType>,
    /// `only_cross_attention` per down block: the first attention of each transformer block
    /// attends to the text too.
    pub only_cross_attention: Vec<bool>,
    /// `block_out_channels`.
    pub block_out_channels: Vec<usize>,
    /// `layers_per_block` per down block (up blocks have one more).
    pub layers_per_block: Vec<usize>,
    /// `downsample_padding` of the down blocks' convolutions (0 pads right/bottom by one first).
    pub downsample_padding: usize,
    /// `mid_block_scale_factor`: the mid block's ResNets divide their output by it.
    pub mid_block_scale_factor: f64,
    /// `act_fn` of the ResNets, the time embedding and the output.
    pub act_fn: Activation,
    /// `norm_num_groups` of every GroupNorm.
    pub norm_num_groups: usize,
    /// `norm_eps` of the ResNets' and the output's GroupNorm.
    pub norm_eps: f64,
    /// `cross_attention_dim`: the width of `encoder_hidden_states`.
    pub cross_attention_dim: usize,
    /// `transformer_layers_per_block` per down block.
    pub transformer_layers_per_block: Vec<usize>,
    /// Attention heads per down block: `num_attention_heads or attention_head_dim` (the legacy
    /// meaning of `attention_head_dim` is the number of heads).
    pub num_attention_heads: Vec<usize>,
    /// `use_linear_projection`: `proj_in`/`proj_out` are linear layers, not 1×1 convolutions.
    pub use_linear_projection: bool,
    /// `upcast_attention`: attention scores and softmax in f32.
    pub upcast_attention: bool,
    /// `time_embedding_dim` (default `4 · block_out_channels[0]`).
    pub time_embed_dim: usize,
    /// `time_embedding_act_fn`: an activation applied to the time embedding before the blocks.
    pub time_embedding_act_fn: Option<Activation>,
    /// `timestep_post_act`: an activation after `time_embedding.linear_2`.
    pub timestep_post_act: Option<Activation>,
    /// `conv_in_kernel`.
    pub conv_in_kernel: usize,
    /// `conv_out_kernel`.
    pub conv_out_kernel: usize,
}

/// The `config.json` of a diffusers `AutoencoderKL`.
#[derive(Debug, Clone, PartialEq)]
pub struct VaeConfig {
    /// `in_channels` (image channels).
    pub in_channels: usize,
    /// `out_channels`.
    pub out_channels: usize,
    /// `block_out_channels`.
    pub block_out_channels: Vec<usize>,
    /// `layers_per_block` of the encoder (the decoder has one more).
    pub layers_per_block: usize,
    /// `act_fn`.
    pub act_fn: Activation,
    /// `latent_channels`.
    pub latent_channels: usize,
    /// `norm_num_groups`.
    pub norm_num_groups: usize,
    /// `sample_size` (image side; diffusers' default 32).
    pub sample_size: usize,
    /// `scaling_factor`: latents are `scaling_factor · (z − shift_factor)`.
    pub scaling_factor: f64,
    /// `shift_factor` (`None` = 0).
    pub shift_factor: Option<f64>,
    /// `force_upcast`: diffusers runs this VAE in f32 when the pipeline is f16.
    pub force_upcast: bool,
    /// `use_quant_conv`.
    pub use_quant_conv: bool,
    /// `use_post_quant_conv`.
    pub use_post_quant_conv: bool,
    /// `mid_block_add_attention`.
    pub mid_block_add_attention: bool,
}

impl VaeConfig {
    /// `2^(len(block_out_channels) − 1)`: image side / latent side.
    ///
    /// ```
    /// # use ddim_pipeline::models::VaeConfig;
    /// # use std::path::Path;
    /// let c = VaeConfig::from_json_str(r#"{"block_out_channels": [8, 8, 16, 16], "norm_num_groups": 4}"#, Path::new("vae/config.json"))?;
    /// assert_eq!(c.vae_scale_factor(), 8);
    /// # Ok::<(), ddim_pipeline::Error>(())
    /// ```
    pub fn vae_scale_factor(&self) -> usize {
        1usize << self.block_out_channels.len().saturating_sub(1)
    }

    /// Reads and resolves a VAE `config.json` (text already read; `path` names it in errors).
    pub fn from_json_str(text: &str, path: &Path) -> Result<Self> {
        let keys = Keys::parse(text, path)?;
        keys.expect_class("AutoencoderKL")?;
        let block_out_channels = keys.usize_list("block_out_channels", &[64])?;
        let n = block_out_channels.len();
        for (key, want) in [
            ("down_block_types", "DownEncoderBlock2D"),
            ("up_block_types", "UpDecoderBlock2D"),
        ] {
            let types = keys.str_list(key, &vec![want; n])?;
            if types.len() != n {
                return Err(keys.err(format!(
                    "`{key}` has {} entries but `block_out_channels` has {n}",
                    types.len()
                )));
            }
            if let Some(other) = types.iter().find(|t| t.as_str() != want) {
                return Err(keys.err(format!(
                    "`{key}` entry \"{other}\" is not supported (only {want})"
                )));
            }
        }
        keys.refuse_non_default("latents_mean", &Value::Null)?;
        keys.refuse_non_default("latents_std", &Value::Null)?;
        let config = Self {
            in_channels: keys.usize("in_channels", 3)?,
            out_channels: keys.usize("out_channels", 3)?,
            layers_per_block: keys.usize("layers_per_block", 1)?,
            act_fn: keys
                .activation("act_fn", Some("silu"))?
                .unwrap_or(Activation::Silu),
            latent_channels: keys.usize("latent_channels", 4)?,
            norm_num_groups: keys.usize("norm_num_groups", 32)?,
            sample_size: keys.usize("sample_size", 32)?,
            scaling_factor: keys.f64("scaling_factor", 0.18215)?,
            shift_factor: keys.opt_f64("shift_factor")?,
            force_upcast: keys.bool("force_upcast", true)?,
            use_quant_conv: keys.bool("use_quant_conv", true)?,
            use_post_quant_conv: keys.bool("use_post_quant_conv", true)?,
            mid_block_add_attention: keys.bool("mid_block_add_attention", true)?,
            block_out_channels,
        };
        for &c in &config.block_out_channels {
            keys.check_groups(c, config.norm_num_groups)?;
        }
        Ok(config)
    }
}

impl UNetConfig {
    /// Reads and resolves a UNet `config.json` (text already read; `path` names it in errors).
    ///
    /// ```
    /// # use ddim_pipeline::models::UNetConfig;
    /// # use std::path::Path;
    /// let c = UNetConfig::from_json_str(r#"{"sample_size": 8, "block_out_channels": [32, 64], "attention_head_dim": [2, 4],
    ///   "down_block_types": ["CrossAttnDownBlock2D", "DownBlock2D"],
    ///   "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D"], "cross_attention_dim": 16}"#,
    ///   Path::new("unet/config.json"))?;
    /// assert_eq!(c.num_attention_heads, vec![2, 4]);
    /// # Ok::<(), ddim_pipeline::Error>(())
    /// ```
    pub fn from_json_str(text: &str, path: &Path) -> Result<Self> {
        let keys = Keys::parse(text, path)?;
        keys.expect_class("UNet2DConditionModel")?;
        // Keys whose non-default values change the network in ways not implemented here.
        for key in [
            "class_embed_type",
            "addition_embed_type",
            "num_class_embeds",
            "projection_class_embeddings_input_dim",
            "time_cond_proj_dim",
            "encoder_hid_dim",
            "encoder_hid_dim_type",
            "reverse_transformer_layers_per_block",
            "num_attention_heads",
        ] {
            keys.refuse_non_default(key, &Value::Null)?;
        }
        keys.refuse_non_default("dual_cross_attention", &Value::Bool(false))?;
        keys.refuse_non_default("class_embeddings_concat", &Value::Bool(false))?;
        keys.refuse_non_default("resnet_time_scale_shift", &Value::from("default"))?;
        keys.refuse_non_default("time_embedding_type", &Value::from("positional"))?;
        keys.refuse_non_default("attention_type", &Value::from("default"))?;

        let block_out_channels = keys.usize_list("block_out_channels", &[320, 640, 1280, 1280])?;
        let n = block_out_channels.len();
        let down_names = keys.str_list(
            "down_block_types",
            &[
                "CrossAttnDownBlock2D",
                "CrossAttnDownBlock2D",
                "CrossAttnDownBlock2D",
                "DownBlock2D",
            ],
        )?;
        let up_names = keys.str_list(
            "up_block_types",
            &[
                "UpBlock2D",
                "CrossAttnUpBlock2D",
                "CrossAttnUpBlock2D",
                "CrossAttnUpBlock2D",
            ],
        )?;
        for (key, len) in [
            ("down_block_types", down_names.len()),
            ("up_block_types", up_names.len()),
        ] {
            if len != n {
                return Err(keys.err(format!(
                    "`{key}` has {len} entries but `block_out_channels` has {n}"
                )));
            }
        }
        let mut down_block_types = Vec::with_capacity(n);
        for name in &down_names {
            down_block_types.push(match name.as_str() {
                "CrossAttnDownBlock2D" => DownBlockType::CrossAttn,
                "DownBlock2D" => DownBlockType::Plain,
                other => {
                    return Err(keys.err(format!(
                        "`down_block_types` entry \"{other}\" is not supported (CrossAttnDownBlock2D, DownBlock2D)"
                    )))
                }
            });
        }
        let mut up_block_types = Vec::with_capacity(n);
        for name in &up_names {
            up_block_types.push(match name.as_str() {
                "CrossAttnUpBlock2D" => UpBlockType::CrossAttn,
                "UpBlock2D" => UpBlockType::Plain,
                other => {
                    return Err(keys.err(format!(
                        "`up_block_types` entry \"{other}\" is not supported (CrossAttnUpBlock2D, UpBlock2D)"
                    )))
                }
            });
        }
        let mid_block = match keys.get("mid_block_type") {
            None => true,
            Some(Value::Null) => false,
            Some(Value::String(s)) if s == "UNetMidBlock2DCrossAttn" => true,
            Some(other) => {
                return Err(keys.err(format!(
                    "`mid_block_type` {other} is not supported (UNetMidBlock2DCrossAttn or null)"
                )))
            }
        };

        let norm_num_groups = match keys.get("norm_num_groups") {
            Some(Value::Null) => {
                return Err(
                    keys.err("`norm_num_groups` null (no output norm) is not supported".into())
                )
            }
            _ => keys.usize("norm_num_groups", 32)?,
        };
        let cross_dims = keys.per_block_usize("cross_attention_dim", 1280, n)?;
        let cross_attention_dim = cross_dims[0];
        if cross_dims.iter().any(|&d| d != cross_attention_dim) {
            return Err(keys.err(format!(
                "`cross_attention_dim` {cross_dims:?} differs between blocks, which needs an encoder projection (not supported)"
            )));
        }
        // `num_attention_heads = num_attention_heads or attention_head_dim` (null refused above).
        let num_attention_heads = keys.per_block_usize("attention_head_dim", 8, n)?;
        let time_embed_dim = match keys.opt_usize("time_embedding_dim")? {
            Some(d) => d,
            None => 4 * block_out_channels[0],
        };
        let config = Self {
            in_channels: keys.usize("in_channels", 4)?,
            out_channels: keys.usize("out_channels", 4)?,
            sample_size: keys.opt_usize("sample_size")?.ok_or_else(|| {
                keys.err("`sample_size` is missing (an integer is needed)".into())
            })?,
            center_input_sample: keys.bool("center_input_sample", false)?,
            flip_sin_to_cos: keys.bool("flip_sin_to_cos", true)?,
            freq_shift: keys.f64("freq_shift", 0.0)?,
            mid_block,
            only_cross_attention: keys.per_block_bool("only_cross_attention", false, n)?,
            layers_per_block: keys.per_block_usize("layers_per_block", 2, n)?,
            downsample_padding: keys.usize("downsample_padding", 1)?,
            mid_block_scale_factor: keys.f64("mid_block_scale_factor", 1.0)?,
            act_fn: keys
                .activation("act_fn", Some("silu"))?
                .unwrap_or(Activation::Silu),
            norm_num_groups,
            norm_eps: keys.f64("norm_eps", 1e-5)?,
            cross_attention_dim,
            transformer_layers_per_block: keys.per_block_usize(
                "transformer_layers_per_block",
                1,
                n,
            )?,
            num_attention_heads,
            use_linear_projection: keys.bool("use_linear_projection", false)?,
            upcast_attention: keys.bool("upcast_attention", false)?,
            time_embed_dim,
            time_embedding_act_fn: keys.activation("time_embedding_act_fn", None)?,
            timestep_post_act: keys.activation("timestep_post_act", None)?,
            conv_in_kernel: keys.usize("conv_in_kernel", 3)?,
            conv_out_kernel: keys.usize("conv_out_kernel", 3)?,
            block_out_channels,
            down_block_types,
            up_block_types,
        };
        for &c in &config.block_out_channels {
            keys.check_groups(c, config.norm_num_groups)?;
        }
        for (i, (&c, &h)) in config
            .block_out_channels
            .iter()
            .zip(&config.num_attention_heads)
            .enumerate()
        {
            if h == 0 || c % h != 0 {
                return Err(keys.err(format!(
                    "`attention_head_dim` (heads) {h} of block {i} does not divide its {c} channels"
                )));
            }
        }
        for (key, k) in [
            ("conv_in_kernel", config.conv_in_kernel),
            ("conv_out_kernel", config.conv_out_kernel),
        ] {
            if k % 2 == 0 {
                return Err(keys.err(format!("`{key}` {k} must be odd")));
            }
        }
        Ok(config)
    }
}

/// The raw keys of a config file, with typed, erroring accessors.
struct Keys {
    map: serde_json::Map<String, Value>,
    path: PathBuf,
}

impl Keys {
    fn parse(text: &str, path: &Path) -> Result<Self> {
        let value: Value = serde_json::from_str(text).map_err(|e| Error::Config {
            path: path.to_path_buf(),
            reason: format!("not valid json: {e}"),
        })?;
        match value {
            Value::Object(map) => Ok(Self {
                map,
                path: path.to_path_buf(),
            }),
            _ => Err(Error::Config {
                path: path.to_path_buf(),
                reason: "not a json object".into(),
            }),
        }
    }

    fn err(&self, reason: String) -> Error {
        Error::Config {
            path: self.path.clone(),
            reason,
        }
    }

    fn get(&self, key: &str) -> Option<&Value> {
        self.map.get(key)
    }

    fn expect_class(&self, class: &str) -> Result<()> {
        match self.get("_class_name") {
            None => Ok(()),
            Some(Value::String(s)) if s == class => Ok(()),
            Some(other) => Err(self.err(format!("`_class_name` is {other}, expected \"{class}\""))),
        }
    }

    fn refuse_non_default(&self, key: &str, default: &Value) -> Result<()> {
        match self.get(key) {
            Some(v) if v != default => {
                Err(self.err(format!("`{key}` = {v} is not supported (only {default})")))
            }
            _ => Ok(()),
        }
    }

    fn typed<T: for<'de> Deserialize<'de>>(&self, key: &str, what: &str) -> Result<Option<T>> {
        match self.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => T::deserialize(v)
                .map(Some)
                .map_err(|_| self.err(format!("`{key}` = {v} is not {what}"))),
        }
    }

    fn usize(&self, key: &str, default: usize) -> Result<usize> {
        Ok(self
            .typed(key, "a non-negative integer")?
            .unwrap_or(default))
    }

    fn opt_usize(&self, key: &str) -> Result<Option<usize>> {
        self.typed(key, "a non-negative integer")
    }

    fn f64(&self, key: &str, default: f64) -> Result<f64> {
        Ok(self.typed(key, "a number")?.unwrap_or(default))
    }

    fn opt_f64(&self, key: &str) -> Result<Option<f64>> {
        self.typed(key, "a number")
    }

    fn bool(&self, key: &str, default: bool) -> Result<bool> {
        Ok(self.typed(key, "true or false")?.unwrap_or(default))
    }

    fn usize_list(&self, key: &str, default: &[usize]) -> Result<Vec<usize>> {
        let list: Vec<usize> = self
            .typed(key, "a list of non-negative integers")?
            .unwrap_or_else(|| default.to_vec());
        if list.is_empty() || list.contains(&0) {
            return Err(self.err(format!("`{key}` = {list:?} must be non-empty and positive")));
        }
        Ok(list)
    }

    fn str_list(&self, key: &str, default: &[&str]) -> Result<Vec<String>> {
        Ok(self
            .typed(key, "a list of strings")?
            .unwrap_or_else(|| default.iter().map(|s| s.to_string()).collect()))
    }

    /// An int (repeated for every block) or a list with one entry per block.
    fn per_block_usize(&self, key: &str, default: usize, n: usize) -> Result<Vec<usize>> {
        self.per_block(key, default, n, "an integer or a list of integers")
    }

    /// A boolean (repeated for every block) or a list with one entry per block.
    fn per_block_bool(&self, key: &str, default: bool, n: usize) -> Result<Vec<bool>> {
        self.per_block(key, default, n, "a boolean or a list of booleans")
    }

    /// One value repeated for every block, or a list with exactly one entry per block.
    fn per_block<T>(&self, key: &str, default: T, n: usize, what: &str) -> Result<Vec<T>>
    where
        T: Clone + for<'de> Deserialize<'de>,
    {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum OneOrMany<T> {
            One(T),
            Many(Vec<T>),
        }
        let list = match self.typed::<OneOrMany<T>>(key, what)? {
            None => vec![default; n],
            Some(OneOrMany::One(v)) => vec![v; n],
            Some(OneOrMany::Many(v)) => v,
        };
        if list.len() != n {
            return Err(self.err(format!(
                "`{key}` has {} entries but there are {n} blocks",
                list.len()
            )));
        }
        Ok(list)
    }

    fn activation(&self, key: &str, default: Option<&str>) -> Result<Option<Activation>> {
        let name: Option<String> = self.typed(key, "an activation name")?;
        match name.as_deref().or(default) {
            None => Ok(None),
            Some(n) => Activation::parse(n).map(Some).ok_or_else(|| {
                self.err(format!(
                    "`{key}` = \"{n}\" is not supported (silu, swish, gelu, relu, mish)"
                ))
            }),
        }
    }

    fn check_groups(&self, channels: usize, groups: usize) -> Result<()> {
        if groups == 0 || channels % groups != 0 {
            return Err(self.err(format!(
                "`norm_num_groups` {groups} does not divide {channels} channels of `block_out_channels`"
            )));
        }
        Ok(())
    }
}
