//! [`DdimConfig`]: every key of diffusers' `DDIMScheduler`, with its defaults and JSON names.
//!
//! Loading (`scheduler_config.json` → config, the way `DDIMScheduler.from_config` does it)
//! lives in [`load`]; saving in diffusers' layout in `save`.

pub mod hub;
pub(crate) mod known_schedulers;
pub mod load;
mod modes;
mod python_json;
mod save;
mod serde_impls;

use std::collections::BTreeMap;

pub use load::{ConfigWarning, LoadedConfig};
pub use modes::{BetaSchedule, PredictionType, TimestepSpacing};

use crate::error::{Error, Result};

/// The diffusers release whose `DDIMScheduler` this crate reproduces; written as
/// `_diffusers_version` by [`DdimConfig::to_json_string`].
pub const DIFFUSERS_VERSION: &str = "0.42.1";

/// The configuration of a DDIM scheduler: the 15 keys of diffusers' `DDIMScheduler.__init__`,
/// with the same names and defaults, plus the extra keys of the file it was loaded from.
///
/// | key | default | meaning |
/// |---|---|---|
/// | `num_train_timesteps` | 1000 | `T`, the length of the training schedule |
/// | `beta_start`, `beta_end` | 0.0001, 0.02 | ends of the β schedule |
/// | `beta_schedule` | linear | how β goes from start to end ([`BetaSchedule`]) |
/// | `trained_betas` | none | explicit β values; overrides the three keys above |
/// | `clip_sample` | true | clamp x̂₀ to ±`clip_sample_range` |
/// | `set_alpha_to_one` | true | ᾱ before step 0 is 1 (else ᾱ₀) |
/// | `steps_offset` | 0 | added to `leading` timesteps |
/// | `prediction_type` | epsilon | what the model predicts ([`PredictionType`]) |
/// | `thresholding` | false | Imagen dynamic thresholding of x̂₀ (wins over clipping) |
/// | `dynamic_thresholding_ratio` | 0.995 | the quantile of \|x̂₀\| used as threshold |
/// | `clip_sample_range` | 1.0 | the clamp bound |
/// | `sample_max_value` | 1.0 | upper bound of the dynamic threshold |
/// | `timestep_spacing` | leading | how inference timesteps are chosen ([`TimestepSpacing`]) |
/// | `rescale_betas_zero_snr` | false | rescale β so that ᾱ_{T-1} = 0 (zero terminal SNR) |
///
/// Construct with struct-update syntax, or load a diffusers file:
///
/// ```
/// use ddim::{DdimConfig, PredictionType, TimestepSpacing};
/// let config = DdimConfig {
///     prediction_type: PredictionType::VPrediction,
///     timestep_spacing: TimestepSpacing::Trailing,
///     rescale_betas_zero_snr: true,
///     ..DdimConfig::default()
/// };
/// let same = DdimConfig::from_json_str(&config.to_json_string())?;
/// assert_eq!(config.rescale_betas_zero_snr, same.rescale_betas_zero_snr);
/// # Ok::<(), ddim::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct DdimConfig {
    /// `T`: the number of diffusion steps the model was trained with.
    pub num_train_timesteps: usize,
    /// The first β (for `scaled_linear`, √β goes linearly from √`beta_start`).
    pub beta_start: f64,
    /// The last β.
    pub beta_end: f64,
    /// The shape of the β schedule.
    pub beta_schedule: BetaSchedule,
    /// Explicit β values (`T` of them); when set, `beta_start`, `beta_end` and `beta_schedule`
    /// are ignored, as in diffusers.
    pub trained_betas: Option<Vec<f64>>,
    /// Clamp the predicted x̂₀ to `[-clip_sample_range, clip_sample_range]` (when not thresholding).
    pub clip_sample: bool,
    /// Use ᾱ = 1 for the step after the last one; otherwise ᾱ₀.
    pub set_alpha_to_one: bool,
    /// Added to every timestep of the `leading` spacing (Stable Diffusion uses 1).
    pub steps_offset: usize,
    /// What the model output means.
    pub prediction_type: PredictionType,
    /// Apply Imagen's dynamic thresholding to x̂₀ (takes precedence over `clip_sample`).
    pub thresholding: bool,
    /// The quantile `q` of |x̂₀| (per batch item) that becomes the threshold `s`.
    pub dynamic_thresholding_ratio: f64,
    /// The clamp bound used by `clip_sample`.
    pub clip_sample_range: f64,
    /// The largest dynamic threshold: `s = clamp(quantile, 1, sample_max_value)`.
    pub sample_max_value: f64,
    /// How the inference timesteps are spread over `[0, T)`.
    pub timestep_spacing: TimestepSpacing,
    /// Rescale the β schedule to zero terminal SNR (Lin et al. 2023, Algorithm 1).
    pub rescale_betas_zero_snr: bool,
    /// Keys of the loaded file that are not DDIM keys (`_class_name`, `_diffusers_version`,
    /// `skip_prk_steps`, …). diffusers keeps them in `scheduler.config` and writes them back
    /// when saving; so does [`DdimConfig::to_json_string`].
    pub extra: BTreeMap<String, serde_json::Value>,
}

impl Default for DdimConfig {
    /// diffusers' `DDIMScheduler()` defaults.
    fn default() -> Self {
        Self {
            num_train_timesteps: 1000,
            beta_start: 0.0001,
            beta_end: 0.02,
            beta_schedule: BetaSchedule::Linear,
            trained_betas: None,
            clip_sample: true,
            set_alpha_to_one: true,
            steps_offset: 0,
            prediction_type: PredictionType::Epsilon,
            thresholding: false,
            dynamic_thresholding_ratio: 0.995,
            clip_sample_range: 1.0,
            sample_max_value: 1.0,
            timestep_spacing: TimestepSpacing::Leading,
            rescale_betas_zero_snr: false,
            extra: BTreeMap::new(),
        }
    }
}

impl DdimConfig {
    /// The 15 DDIM keys, in the order of diffusers' `DDIMScheduler.__init__`.
    pub const KEYS: [&'static str; 15] = [
        "num_train_timesteps",
        "beta_start",
        "beta_end",
        "beta_schedule",
        "trained_betas",
        "clip_sample",
        "set_alpha_to_one",
        "steps_offset",
        "prediction_type",
        "thresholding",
        "dynamic_thresholding_ratio",
        "clip_sample_range",
        "sample_max_value",
        "timestep_spacing",
        "rescale_betas_zero_snr",
    ];

    /// Stable Diffusion 1.x/2.x's scheduler settings as its pipelines run them: scaled_linear
    /// β from 0.00085 to 0.012, `set_alpha_to_one = false`, `steps_offset = 1`, no clipping.
    ///
    /// ```
    /// let sd = ddim::DdimConfig::stable_diffusion();
    /// assert_eq!(sd.steps_offset, 1);
    /// ```
    pub fn stable_diffusion() -> Self {
        Self {
            beta_start: 0.00085,
            beta_end: 0.012,
            beta_schedule: BetaSchedule::ScaledLinear,
            clip_sample: false,
            set_alpha_to_one: false,
            steps_offset: 1,
            ..Self::default()
        }
    }

    /// Checks the values a scheduler needs to be well defined. Called by
    /// [`DdimScheduler::new`](crate::DdimScheduler::new); the hot loop then cannot fail.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] naming the key when `num_train_timesteps` is 0, a float is NaN
    /// or infinite, `beta_start`/`beta_end` is negative (or, for `scaled_linear`, has no square
    /// root), `trained_betas` has a length other than `num_train_timesteps`,
    /// `dynamic_thresholding_ratio` is outside `[0, 1]`, `clip_sample_range` /
    /// `sample_max_value` is not positive, `steps_offset` exceeds 2³¹ − 1, or
    /// `rescale_betas_zero_snr` is set with a single timestep.
    pub fn validate(&self) -> Result<()> {
        let bad = |key: &'static str, reason: String| Err(Error::InvalidConfig { key, reason });
        if self.num_train_timesteps == 0 {
            return bad("num_train_timesteps", "must be at least 1, got 0".into());
        }
        if self.num_train_timesteps > i32::MAX as usize {
            return bad(
                "num_train_timesteps",
                format!(
                    "must be at most {}, got {}",
                    i32::MAX,
                    self.num_train_timesteps
                ),
            );
        }
        // Beyond this a `leading` timestep t·⌊T/n⌋ + steps_offset no longer fits the i64
        // arithmetic of diffusers' formula (2^64 − 1 wrapped to timestep 2^64 − 1); any offset
        // of T or more is refused by set_timesteps for `leading` anyway.
        if self.steps_offset > i32::MAX as usize {
            return bad(
                "steps_offset",
                format!("must be at most {}, got {}", i32::MAX, self.steps_offset),
            );
        }
        if self.rescale_betas_zero_snr && self.num_train_timesteps < 2 {
            return bad(
                "rescale_betas_zero_snr",
                format!(
                    "needs num_train_timesteps >= 2 (it maps the last of them to alpha_bar = 0 \
                     and keeps the first), got {}",
                    self.num_train_timesteps
                ),
            );
        }
        match &self.trained_betas {
            Some(betas) => {
                if betas.len() != self.num_train_timesteps {
                    return bad(
                        "trained_betas",
                        format!(
                            "has {} values but num_train_timesteps is {}",
                            betas.len(),
                            self.num_train_timesteps
                        ),
                    );
                }
                if let Some((i, b)) = betas.iter().enumerate().find(|(_, b)| !b.is_finite()) {
                    return bad(
                        "trained_betas",
                        format!("value {i} is {b}, not a finite number"),
                    );
                }
            }
            None => {
                for (key, value) in [("beta_start", self.beta_start), ("beta_end", self.beta_end)] {
                    if !(value.is_finite() && value >= 0.0) {
                        return bad(key, format!("must be a finite number >= 0, got {value}"));
                    }
                }
            }
        }
        if !(0.0..=1.0).contains(&self.dynamic_thresholding_ratio) {
            return bad(
                "dynamic_thresholding_ratio",
                format!("must be in [0, 1], got {}", self.dynamic_thresholding_ratio),
            );
        }
        for (key, value) in [
            ("clip_sample_range", self.clip_sample_range),
            ("sample_max_value", self.sample_max_value),
        ] {
            if !(value.is_finite() && value > 0.0) {
                return bad(key, format!("must be a finite number > 0, got {value}"));
            }
        }
        Ok(())
    }
}
