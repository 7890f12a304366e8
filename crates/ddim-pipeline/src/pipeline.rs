//! A loaded Stable Diffusion pipeline: its five components, on one device, in one dtype.
//!
//! As `StableDiffusionPipeline.from_pretrained(folder, torch_dtype=…)`: the tokenizer, the CLIP
//! text encoder, the UNet and the VAE are read from their sub-folders, every architecture
//! number from their `config.json`; the scheduler's config is read from
//! `scheduler/scheduler_config.json` as diffusers' `DDIMScheduler.from_config` reads it (any
//! scheduler class's config: DDIM takes the keys it knows). `safety_checker` and
//! `feature_extractor` are not loaded: this crate never runs the safety checker (as
//! `safety_checker=None` in diffusers).

use std::path::Path;

use candle_core::{DType, Device, Tensor};

use crate::error::{Error, Result};
use crate::folder::{Component, PipelineFolder};
use crate::models::{
    AutoencoderKl, ClipTextConfig, ClipTextModel, UNet2DConditionModel, UNetConfig, VaeConfig,
};
use crate::tokenizer::ClipTokenizer;

/// How to load a pipeline: dtype, device and weights variant.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// The dtype every network computes in (`torch_dtype`): F32, F16 or BF16.
    pub dtype: DType,
    /// Where the networks run.
    pub device: Device,
    /// The weights variant (`variant="fp16"` reads `*.fp16.safetensors`); `None` reads the
    /// plain files.
    pub variant: Option<String>,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            dtype: DType::F32,
            device: Device::Cpu,
            variant: None,
        }
    }
}

/// A Stable Diffusion pipeline (SD 1.x or 2.x layout) ready to run.
#[derive(Debug)]
pub struct StableDiffusion {
    pub(crate) tokenizer: ClipTokenizer,
    pub(crate) text_encoder: ClipTextModel,
    pub(crate) unet: UNet2DConditionModel,
    pub(crate) unet_config: UNetConfig,
    pub(crate) vae: AutoencoderKl,
    pub(crate) vae_config: VaeConfig,
    scheduler_config: ddim::DdimConfig,
    scheduler_warnings: Vec<String>,
    pub(crate) dtype: DType,
    pub(crate) device: Device,
}

impl StableDiffusion {
    /// Loads every component of `folder`.
    ///
    /// ```no_run
    /// use ddim_pipeline::{folder::PipelineFolder, LoadOptions, StableDiffusion};
    /// let folder = PipelineFolder::open_or_cached("runwayml/stable-diffusion-v1-5", None)?;
    /// let pipe = StableDiffusion::load(&folder, &LoadOptions::default())?;
    /// assert_eq!(pipe.vae_scale_factor(), 8);
    /// # Ok::<(), ddim_pipeline::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// A missing component, config or weights file, a config this crate cannot run (naming
    /// the key), a tensor missing or of the wrong shape (naming it), an unsupported dtype.
    pub fn load(folder: &PipelineFolder, options: &LoadOptions) -> Result<Self> {
        let dtype = options.dtype;
        if !matches!(dtype, DType::F32 | DType::F16 | DType::BF16) {
            return Err(Error::InvalidArgument {
                name: "dtype",
                reason: format!("must be f32, f16 or bf16, got {dtype:?}"),
            });
        }
        let device = &options.device;
        let variant = options.variant.as_deref();

        let tokenizer = ClipTokenizer::from_folder(&folder.component_dir(Component::Tokenizer))?;

        let (path, text) = folder.config_text(Component::TextEncoder)?;
        let text_config = ClipTextConfig::from_json_str(&text, &path)?;
        let files = folder.weights(Component::TextEncoder, variant)?;
        let text_encoder = ClipTextModel::load(text_config, &files, dtype, device)?;

        let (path, text) = folder.config_text(Component::Unet)?;
        let unet_config = UNetConfig::from_json_str(&text, &path)?;
        let files = folder.weights(Component::Unet, variant)?;
        let unet = UNet2DConditionModel::load(&unet_config, &files, dtype, device)?;

        let (path, text) = folder.config_text(Component::Vae)?;
        let vae_config = VaeConfig::from_json_str(&text, &path)?;
        let files = folder.weights(Component::Vae, variant)?;
        let vae = AutoencoderKl::load(&vae_config, &files, dtype, device)?;

        let (path, _) = folder.config_text(Component::Scheduler)?;
        let (scheduler_config, scheduler_warnings) = load_scheduler_config(&path)?;

        Ok(Self {
            tokenizer,
            text_encoder,
            unet,
            unet_config,
            vae,
            vae_config,
            scheduler_config,
            scheduler_warnings,
            dtype,
            device: device.clone(),
        })
    }

    /// The scheduler config of the folder, as `DDIMScheduler.from_config(pipe.scheduler.config)`
    /// reads it. Apply overrides to a clone (the seed document's
    /// `rescale_betas_zero_snr=True, timestep_spacing="trailing"`) and build a
    /// [`ddim::DdimScheduler`] from it.
    pub fn scheduler_config(&self) -> &ddim::DdimConfig {
        &self.scheduler_config
    }

    /// What loading the scheduler config warned about (diffusers logs these).
    pub fn scheduler_warnings(&self) -> &[String] {
        &self.scheduler_warnings
    }

    /// `2 ** (len(vae.config.block_out_channels) - 1)`: pixels per latent along each side.
    pub fn vae_scale_factor(&self) -> usize {
        self.vae_config.vae_scale_factor()
    }

    /// [`vae_scale_factor`](Self::vae_scale_factor) as image sizes are counted.
    pub(crate) fn vae_scale_factor_u32(&self) -> u32 {
        u32::try_from(self.vae_scale_factor()).unwrap_or(u32::MAX)
    }

    /// The default `(height, width)`: `unet.config.sample_size × vae_scale_factor`.
    pub fn default_size(&self) -> (usize, usize) {
        let side = self.unet_config.sample_size * self.vae_scale_factor();
        (side, side)
    }

    /// The UNet's latent channels (`unet.config.in_channels`).
    pub fn latent_channels(&self) -> usize {
        self.unet_config.in_channels
    }

    /// The dtype the networks compute in.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// The device the networks run on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The tokenizer (for inspecting token ids).
    pub fn tokenizer(&self) -> &ClipTokenizer {
        &self.tokenizer
    }

    /// The UNet's ε/v prediction for `latents` (B×C×h×w) at `timestep`.
    pub(crate) fn predict(
        &self,
        latents: &Tensor,
        timestep: usize,
        embeds: &Tensor,
    ) -> Result<Tensor> {
        self.unet.forward(latents, timestep, embeds)
    }
}

/// The folder's scheduler config through the `ddim` crate's loader, with its warnings as text.
fn load_scheduler_config(path: &Path) -> Result<(ddim::DdimConfig, Vec<String>)> {
    let loaded = ddim::DdimConfig::load_file(path)?;
    let warnings = loaded.warnings.iter().map(ToString::to_string).collect();
    Ok((loaded.config, warnings))
}
