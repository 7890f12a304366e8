//! [`DdimInverseConfig`]: the keys of diffusers' `DDIMInverseScheduler`, and loading them the
//! way `DDIMInverseScheduler.from_config` does (diffusers 0.42.1).
//!
//! Loading differs from [`DdimConfig`]'s in three ways, all reproduced:
//!
//! 1. `DDIMInverseScheduler` has no compatible classes, so no key is dropped silently on that
//!    ground: `skip_prk_steps` or `thresholding` in a file without `_class_name` are reported
//!    as unexpected ([`InverseConfigWarning::UnexpectedKeys`]).
//! 2. When `_class_name` names another diffusers scheduler (`DDIMScheduler`, `PNDMScheduler`,
//!    …), that class's own keys are dropped silently, so a saved `DDIMScheduler` config loads
//!    without a warning about `thresholding`.
//! 3. The deprecated key `set_alpha_to_zero` is reported as unexpected *and* used: when it is
//!    not `null`, its value (not its negation) replaces `set_alpha_to_one` in the behaviour,
//!    while the registered `set_alpha_to_one` keeps the file's value. diffusers' config is
//!    then inconsistent with its behaviour; here both are visible:
//!    [`DdimInverseConfig::set_alpha_to_zero`] holds the alias and
//!    [`DdimInverseConfig::initial_alpha_is_one`] the rule that is applied.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::Path;

use serde_json::{Map, Value};

use crate::config::load::{
    extra_keys, parse_error, parse_object, read_config_file, read_keys, split_init_dict, InitDict,
    SourceClass,
};
use crate::config::{BetaSchedule, DdimConfig, PredictionType, TimestepSpacing};
use crate::error::Result;

/// The configuration of a [`DdimInverseScheduler`](crate::DdimInverseScheduler): the 12 keys
/// of diffusers' `DDIMInverseScheduler.__init__` with the same names and defaults, the
/// deprecated `set_alpha_to_zero`, and the other keys of the file it was loaded from.
///
/// Compared with [`DdimConfig`], `thresholding`, `dynamic_thresholding_ratio` and
/// `sample_max_value` are absent (the inverse never thresholds), and `timestep_spacing` may
/// not be `linspace` (diffusers raises in `set_timesteps`; so does this crate).
///
/// ```
/// let loaded = ddim::DdimInverseConfig::load_json_str(r#"{"set_alpha_to_zero": false}"#)?;
/// assert!(loaded.config.set_alpha_to_one); // the registered key keeps its default …
/// assert!(!loaded.config.initial_alpha_is_one()); // … but the alias decides, as in diffusers
/// # Ok::<(), ddim::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct DdimInverseConfig {
    /// `T`: the number of diffusion steps the model was trained with.
    pub num_train_timesteps: usize,
    /// The first β.
    pub beta_start: f64,
    /// The last β.
    pub beta_end: f64,
    /// The shape of the β schedule.
    pub beta_schedule: BetaSchedule,
    /// Explicit β values; override the three keys above.
    pub trained_betas: Option<Vec<f64>>,
    /// Clamp x̂₀ to ±`clip_sample_range` in every inverse step.
    pub clip_sample: bool,
    /// ᾱ of the clean end (before the first inverse step): 1 if true, else ᾱ₀.
    pub set_alpha_to_one: bool,
    /// Added to every `leading` timestep.
    pub steps_offset: usize,
    /// What the model output means.
    pub prediction_type: PredictionType,
    /// The clamp bound of `clip_sample`.
    pub clip_sample_range: f64,
    /// `leading` or `trailing` (`linspace` is refused by `set_timesteps`).
    pub timestep_spacing: TimestepSpacing,
    /// Rescale β to zero terminal SNR.
    pub rescale_betas_zero_snr: bool,
    /// The deprecated alias of `set_alpha_to_one`: when `Some`, it decides the initial ᾱ
    /// (its value, not its negation, as in diffusers).
    pub set_alpha_to_zero: Option<bool>,
    /// Keys of the loaded file that are not inverse keys (kept, as diffusers keeps them).
    pub extra: BTreeMap<String, Value>,
}

impl Default for DdimInverseConfig {
    /// diffusers' `DDIMInverseScheduler()` defaults (those of `DDIMScheduler` for the 12
    /// shared keys).
    fn default() -> Self {
        Self::from_shared_keys(&DdimConfig::default())
    }
}

/// Something worth telling the user about a loaded inverse config. Display gives one line.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum InverseConfigWarning {
    /// Keys that `DDIMInverseScheduler` does not take; diffusers logs the same warning (and
    /// lists `set_alpha_to_zero` there too, although it then uses it).
    UnexpectedKeys {
        /// The keys, sorted.
        keys: Vec<String>,
    },
    /// The deprecated `set_alpha_to_zero` decided the initial ᾱ (diffusers emits a
    /// deprecation warning).
    DeprecatedSetAlphaToZero {
        /// Its value, used as `set_alpha_to_one`.
        value: bool,
    },
    /// The file was written for a scheduler without a discrete β schedule.
    ForeignFamily {
        /// The file's `_class_name`.
        class_name: String,
    },
}

impl fmt::Display for InverseConfigWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnexpectedKeys { keys } => write!(
                f,
                "config keys {} are not DDIMInverseScheduler keys and are ignored",
                keys.join(", ")
            ),
            Self::DeprecatedSetAlphaToZero { value } => write!(
                f,
                "`set_alpha_to_zero` is deprecated: its value {value} is used as \
                 set_alpha_to_one (as diffusers does); write set_alpha_to_one instead"
            ),
            Self::ForeignFamily { class_name } => write!(
                f,
                "config was written for {class_name}, a scheduler without a discrete beta \
                 schedule; the inverse uses its defaults for the missing keys"
            ),
        }
    }
}

/// An inverse config together with what loading it noticed.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadedInverseConfig {
    /// The config diffusers would build.
    pub config: DdimInverseConfig,
    /// Warnings (diffusers logs them).
    pub warnings: Vec<InverseConfigWarning>,
}

impl DdimInverseConfig {
    /// The 12 keys, in the order of diffusers' `DDIMInverseScheduler.__init__`.
    pub const KEYS: [&'static str; 12] = [
        "num_train_timesteps",
        "beta_start",
        "beta_end",
        "beta_schedule",
        "trained_betas",
        "clip_sample",
        "set_alpha_to_one",
        "steps_offset",
        "prediction_type",
        "clip_sample_range",
        "timestep_spacing",
        "rescale_betas_zero_snr",
    ];

    /// The 12 shared keys of a forward config (the three thresholding keys are not taken;
    /// `extra` is left empty).
    pub fn from_shared_keys(c: &DdimConfig) -> Self {
        Self {
            num_train_timesteps: c.num_train_timesteps,
            beta_start: c.beta_start,
            beta_end: c.beta_end,
            beta_schedule: c.beta_schedule,
            trained_betas: c.trained_betas.clone(),
            clip_sample: c.clip_sample,
            set_alpha_to_one: c.set_alpha_to_one,
            steps_offset: c.steps_offset,
            prediction_type: c.prediction_type,
            clip_sample_range: c.clip_sample_range,
            timestep_spacing: c.timestep_spacing,
            rescale_betas_zero_snr: c.rescale_betas_zero_snr,
            set_alpha_to_zero: None,
            extra: BTreeMap::new(),
        }
    }

    /// The forward config with the same schedule (thresholding off), whose β, ᾱ and
    /// validation the inverse reuses.
    pub fn to_ddim_config(&self) -> DdimConfig {
        DdimConfig {
            num_train_timesteps: self.num_train_timesteps,
            beta_start: self.beta_start,
            beta_end: self.beta_end,
            beta_schedule: self.beta_schedule,
            trained_betas: self.trained_betas.clone(),
            clip_sample: self.clip_sample,
            set_alpha_to_one: self.initial_alpha_is_one(),
            steps_offset: self.steps_offset,
            prediction_type: self.prediction_type,
            clip_sample_range: self.clip_sample_range,
            timestep_spacing: self.timestep_spacing,
            rescale_betas_zero_snr: self.rescale_betas_zero_snr,
            ..DdimConfig::default()
        }
    }

    /// Whether the initial ᾱ is 1 (else ᾱ₀): `set_alpha_to_zero` when given, else
    /// `set_alpha_to_one`.
    pub fn initial_alpha_is_one(&self) -> bool {
        self.set_alpha_to_zero.unwrap_or(self.set_alpha_to_one)
    }

    /// `DDIMInverseScheduler.from_config` of a forward config, through the JSON diffusers
    /// would save it as (`_class_name = "DDIMScheduler"`, so the three thresholding keys are
    /// dropped silently, as in diffusers), with the loader's warnings; see
    /// [`from_ddim_config`](Self::from_ddim_config) for the config alone.
    ///
    /// ```
    /// let forward = ddim::DdimConfig { thresholding: true, ..ddim::DdimConfig::stable_diffusion() };
    /// let loaded = ddim::DdimInverseConfig::load_ddim_config(&forward)?;
    /// assert!(loaded.warnings.is_empty());
    /// assert_eq!(loaded.config.steps_offset, 1);
    /// # Ok::<(), ddim::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`load_json_object`](Self::load_json_object).
    pub fn load_ddim_config(config: &DdimConfig) -> Result<LoadedInverseConfig> {
        Self::load_json_object(&config.to_json_object())
    }

    /// The inverse config of a forward config, as [`load_ddim_config`](Self::load_ddim_config)
    /// builds it, without the warnings (the `from_*`/`load_*` naming of [`DdimConfig`]).
    ///
    /// ```
    /// let inverse = ddim::DdimInverseConfig::from_ddim_config(&ddim::DdimConfig::stable_diffusion())?;
    /// assert_eq!(inverse.steps_offset, 1);
    /// # Ok::<(), ddim::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`load_json_object`](Self::load_json_object).
    pub fn from_ddim_config(config: &DdimConfig) -> Result<Self> {
        Ok(Self::load_ddim_config(config)?.config)
    }

    /// Parses a `scheduler_config.json` text as `DDIMInverseScheduler.from_config` would.
    ///
    /// ```
    /// let loaded = ddim::DdimInverseConfig::load_json_str(r#"{"thresholding": true}"#)?;
    /// assert_eq!(loaded.warnings.len(), 1); // no _class_name: diffusers warns about it
    /// # Ok::<(), ddim::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::ConfigParse`](crate::Error::ConfigParse) for text that is not a JSON object
    /// (merge-conflict markers are named as such), or a key with a value of the wrong type.
    pub fn load_json_str(text: &str) -> Result<LoadedInverseConfig> {
        parse(text, "<string>")
    }

    /// Reads a config from a file or a model folder (`<dir>/scheduler/scheduler_config.json`,
    /// else `<dir>/scheduler_config.json`).
    ///
    /// # Errors
    ///
    /// [`Error::ConfigIo`](crate::Error::ConfigIo) when nothing can be read there; otherwise as
    /// [`load_json_str`](Self::load_json_str).
    pub fn load_file(path: impl AsRef<Path>) -> Result<LoadedInverseConfig> {
        let (text, source_name) = read_config_file(path.as_ref())?;
        parse(&text, &source_name)
    }

    /// `DDIMInverseScheduler.from_config(dict)` of an already-parsed JSON object.
    ///
    /// # Errors
    ///
    /// As [`load_json_str`](Self::load_json_str).
    pub fn load_json_object(object: &Map<String, Value>) -> Result<LoadedInverseConfig> {
        extract(object, "<object>")
    }
}

fn parse(text: &str, source_name: &str) -> Result<LoadedInverseConfig> {
    extract(&parse_object(text, source_name)?, source_name)
}

/// The port of `ConfigMixin.extract_init_dict` for `DDIMInverseScheduler` (no compatible
/// classes, so no key is dropped on that ground), then the `_deprecated_kwargs` re-injection
/// of `from_config`.
fn extract(input: &Map<String, Value>, source_name: &str) -> Result<LoadedInverseConfig> {
    let expected: BTreeSet<&str> = DdimInverseConfig::KEYS.iter().copied().collect();
    let InitDict {
        original,
        mut remaining,
        class,
    } = split_init_dict(input, source_name, &expected, false)?;
    let mut warnings = Vec::new();
    if let SourceClass::Known {
        name,
        has_beta_schedule: false,
    } = class
    {
        warnings.push(InverseConfigWarning::ForeignFamily { class_name: name });
    }

    // The 12 keys are read with the forward config's parser (same names, types and modes).
    let mut shared = DdimConfig::default();
    read_keys(
        &mut shared,
        &DdimInverseConfig::KEYS,
        &mut remaining,
        source_name,
    )?;
    let mut config = DdimInverseConfig::from_shared_keys(&shared);
    if !remaining.is_empty() {
        let keys = remaining.keys().cloned().collect();
        warnings.insert(0, InverseConfigWarning::UnexpectedKeys { keys });
    }
    // `_deprecated_kwargs = ["set_alpha_to_zero"]`: re-injected from the unused keys, and used
    // by `__init__` when not None.
    match remaining.get("set_alpha_to_zero") {
        None | Some(Value::Null) => {}
        Some(Value::Bool(value)) => {
            config.set_alpha_to_zero = Some(*value);
            warnings.push(InverseConfigWarning::DeprecatedSetAlphaToZero { value: *value });
        }
        Some(other) => {
            return Err(parse_error(
                source_name,
                format!("`set_alpha_to_zero` must be true, false or null, found {other}"),
            ))
        }
    }
    config.extra = extra_keys(original, &expected, "DDIMInverseScheduler");
    Ok(LoadedInverseConfig { config, warnings })
}
