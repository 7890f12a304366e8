//! The config options shared by commands: a `scheduler_config.json` (a path, or a model id in
//! the local Hugging Face cache) and per-key overrides.

use std::path::PathBuf;

use anyhow::Context;
use ddim::config::hub::scheduler_config_path;
use ddim::{BetaSchedule, DdimConfig, PredictionType, TimestepSpacing};

/// Where the scheduler config comes from, and what to change in it.
#[derive(Debug, Clone, Default, clap::Args)]
pub(crate) struct ConfigArgs {
    /// A scheduler_config.json, or a model folder holding scheduler/scheduler_config.json
    /// (default: diffusers' DDIMScheduler defaults).
    #[arg(long, value_name = "PATH", conflicts_with = "model")]
    pub(crate) config: Option<PathBuf>,
    /// A model id (`org/name`) whose scheduler/scheduler_config.json is in the local Hugging
    /// Face cache ($HF_HUB_CACHE, $HF_HOME/hub or ~/.cache/huggingface/hub); never downloads.
    #[arg(long, value_name = "ORG/NAME")]
    pub(crate) model: Option<String>,
    /// The revision of --model: a branch, tag or commit hash (default: main).
    #[arg(long, value_name = "REV", requires = "model")]
    pub(crate) revision: Option<String>,
    #[command(flatten)]
    pub(crate) overrides: ConfigOverrides,
}

/// Per-key overrides of a scheduler config, each named after its `scheduler_config.json` key.
#[derive(Debug, Clone, Default, clap::Args)]
pub(crate) struct ConfigOverrides {
    /// Override `num_train_timesteps`.
    #[arg(long, value_name = "T", value_parser = crate::bounds::train_timesteps)]
    pub(crate) num_train_timesteps: Option<usize>,
    /// Override `beta_start`.
    #[arg(long, value_parser = crate::bounds::finite_f64, allow_negative_numbers = true)]
    pub(crate) beta_start: Option<f64>,
    /// Override `beta_end`.
    #[arg(long, value_parser = crate::bounds::finite_f64, allow_negative_numbers = true)]
    pub(crate) beta_end: Option<f64>,
    /// Override `beta_schedule`.
    #[arg(long, value_enum)]
    pub(crate) beta_schedule: Option<BetaSchedule>,
    /// Override `timestep_spacing`.
    #[arg(long, value_enum)]
    pub(crate) spacing: Option<TimestepSpacing>,
    /// Override `steps_offset`.
    #[arg(long, value_parser = crate::bounds::steps_offset)]
    pub(crate) steps_offset: Option<usize>,
    /// Override `prediction_type`.
    #[arg(long, value_enum)]
    pub(crate) prediction_type: Option<PredictionType>,
    /// Override `set_alpha_to_one`.
    #[arg(long, value_name = "BOOL")]
    pub(crate) set_alpha_to_one: Option<bool>,
    /// Override `rescale_betas_zero_snr`.
    #[arg(long, value_name = "BOOL")]
    pub(crate) rescale_betas_zero_snr: Option<bool>,
    /// Override `clip_sample`.
    #[arg(long, value_name = "BOOL")]
    pub(crate) clip_sample: Option<bool>,
    /// Override `clip_sample_range`.
    #[arg(long, value_parser = crate::bounds::finite_f64, allow_negative_numbers = true)]
    pub(crate) clip_sample_range: Option<f64>,
    /// Override `thresholding`.
    #[arg(long, value_name = "BOOL")]
    pub(crate) thresholding: Option<bool>,
    /// Override `dynamic_thresholding_ratio`.
    #[arg(long, value_parser = crate::bounds::finite_f64, allow_negative_numbers = true)]
    pub(crate) dynamic_thresholding_ratio: Option<f64>,
    /// Override `sample_max_value`.
    #[arg(long, value_parser = crate::bounds::finite_f64, allow_negative_numbers = true)]
    pub(crate) sample_max_value: Option<f64>,
}

impl ConfigArgs {
    /// Loads the config like [`ConfigArgs::load`] and prints its warnings on stderr, one line
    /// each (the library returns them; the command line shows them).
    pub(crate) fn load_and_warn(&self) -> anyhow::Result<DdimConfig> {
        let (config, warnings) = self.load()?;
        for warning in warnings {
            eprintln!("warning: {warning}");
        }
        Ok(config)
    }

    /// Loads the file (or the defaults), applies the overrides, and returns the config with
    /// the load warnings as one-line texts.
    pub(crate) fn load(&self) -> anyhow::Result<(DdimConfig, Vec<String>)> {
        let path = match (&self.config, &self.model) {
            (Some(path), _) => Some(path.clone()),
            (None, Some(model)) => Some(
                scheduler_config_path(model, self.revision.as_deref())
                    .context("cannot load --model")?,
            ),
            (None, None) => None,
        };
        let (mut config, warnings) = match &path {
            Some(path) => {
                let loaded = DdimConfig::load_file(path)
                    .with_context(|| format!("cannot load config {}", path.display()))?;
                let warnings = loaded.warnings.iter().map(ToString::to_string).collect();
                (loaded.config, warnings)
            }
            None => (DdimConfig::default(), Vec::new()),
        };
        self.overrides.apply(&mut config);
        Ok((config, warnings))
    }
}

impl ConfigOverrides {
    /// Sets every key given on the command line.
    pub(crate) fn apply(&self, config: &mut DdimConfig) {
        macro_rules! apply {
            ($($field:ident <- $arg:ident),* $(,)?) => {
                $(if let Some(v) = self.$arg.clone() { config.$field = v; })*
            };
        }
        apply!(
            num_train_timesteps <- num_train_timesteps,
            beta_start <- beta_start,
            beta_end <- beta_end,
            beta_schedule <- beta_schedule,
            timestep_spacing <- spacing,
            steps_offset <- steps_offset,
            prediction_type <- prediction_type,
            set_alpha_to_one <- set_alpha_to_one,
            rescale_betas_zero_snr <- rescale_betas_zero_snr,
            clip_sample <- clip_sample,
            clip_sample_range <- clip_sample_range,
            thresholding <- thresholding,
            dynamic_thresholding_ratio <- dynamic_thresholding_ratio,
            sample_max_value <- sample_max_value,
        );
    }
}
