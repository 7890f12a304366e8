//! Loading `scheduler_config.json` the way `DDIMScheduler.from_config` does (diffusers 0.42.1,
//! `ConfigMixin.extract_init_dict`):
//!
//! 1. keys listed in `_use_default_values` are removed (the target's defaults apply);
//! 2. keys that only schedulers *compatible* with DDIM use (`skip_prk_steps`, `solver_order`,
//!    `use_karras_sigmas`, …) are dropped silently;
//! 3. if `_class_name` names another diffusers scheduler, that class's own keys are dropped too;
//! 4. `_`-prefixed keys are set aside; the 15 DDIM keys are read; anything left is reported
//!    as [`ConfigWarning::UnexpectedKeys`] (diffusers logs the same warning);
//! 5. every key of the file that is not a DDIM key is kept in [`DdimConfig::extra`], so saving
//!    writes it back, as diffusers does.
//!
//! Beyond diffusers, a file written for a scheduler family DDIM does not serve (flow matching,
//! EDM, cosine DPM: no discrete β schedule) loads the same way but adds
//! [`ConfigWarning::ForeignFamily`]. The library returns warnings; it never prints them.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use super::known_schedulers::known_schedulers;
use super::DdimConfig;
use crate::error::{Error, Result};

/// A config together with what loading it noticed.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadedConfig {
    /// The config diffusers would build.
    pub config: DdimConfig,
    /// Things the caller should be told about (diffusers logs some of them as warnings).
    pub warnings: Vec<ConfigWarning>,
    /// DDIM keys absent from the file, so at their defaults (diffusers logs these at info level).
    pub defaulted_keys: Vec<&'static str>,
}

/// Something worth telling the user about a loaded config. Display gives one line.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigWarning {
    /// Keys that neither DDIM nor any scheduler compatible with it uses; they are ignored
    /// (but kept in [`DdimConfig::extra`]). diffusers logs the same warning.
    UnexpectedKeys {
        /// The ignored keys, sorted.
        keys: Vec<String>,
    },
    /// The file was written for a scheduler without a discrete β schedule (flow matching,
    /// EDM, cosine DPM, …): DDIM loads it with its own defaults for the β keys, which are
    /// probably not the model's noise schedule.
    ForeignFamily {
        /// The file's `_class_name`.
        class_name: String,
    },
    /// `_class_name` names no scheduler of diffusers 0.42.1 (for example a removed Flax class),
    /// so only the keys of DDIM-compatible schedulers were recognised.
    UnknownClass {
        /// The file's `_class_name`.
        class_name: String,
    },
    /// `beta_end < beta_start` with a linear or scaled-linear schedule: β decreases with t,
    /// unlike every published schedule. diffusers accepts it (so does DDIM); a large
    /// `beta_start` can drive ᾱ to 0 long before `T`, where ε-prediction divides by 0.
    DecreasingBetas {
        /// `beta_start` as the file writes it.
        beta_start: String,
        /// `beta_end` as the file writes it.
        beta_end: String,
        /// The first t where ᾱ_t is 0 in f32, if it reaches 0 (`None` when it stays above 0,
        /// or when `T` is too large to compute the schedule at load time).
        alpha_bar_zero_at: Option<usize>,
    },
}

impl fmt::Display for ConfigWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnexpectedKeys { keys } => write!(
                f,
                "config keys {} are not DDIMScheduler keys and are ignored",
                keys.join(", ")
            ),
            Self::ForeignFamily { class_name } => write!(
                f,
                "config was written for {class_name}, a scheduler family DDIM does not serve \
                 (no discrete beta schedule); it loads as diffusers would, with DDIM defaults \
                 for the missing keys, which may not match the model"
            ),
            Self::UnknownClass { class_name } => write!(
                f,
                "_class_name {class_name:?} is not a scheduler of diffusers {}; only keys of \
                 DDIM-compatible schedulers were recognised",
                super::DIFFUSERS_VERSION
            ),
            Self::DecreasingBetas {
                beta_start,
                beta_end,
                alpha_bar_zero_at,
            } => {
                write!(
                    f,
                    "betas decrease (beta_start {beta_start} > beta_end {beta_end}), unlike \
                     published schedules; diffusers accepts it"
                )?;
                match alpha_bar_zero_at {
                    Some(t) => write!(
                        f,
                        ": alpha_bar reaches 0 at t = {t} and stays 0, where epsilon \
                         prediction divides by sqrt(alpha_bar) = 0"
                    ),
                    None => Ok(()),
                }
            }
        }
    }
}

impl DdimConfig {
    /// Parses a `scheduler_config.json` text as `DDIMScheduler.from_config` would, discarding
    /// the warnings (see [`DdimConfig::load_json_str`] to get them).
    ///
    /// ```
    /// let config = ddim::DdimConfig::from_json_str(r#"{"_class_name": "PNDMScheduler",
    ///     "beta_schedule": "scaled_linear", "beta_start": 0.00085, "beta_end": 0.012,
    ///     "skip_prk_steps": true, "steps_offset": 1}"#)?;
    /// assert_eq!(config.steps_offset, 1);
    /// assert_eq!(config.extra["skip_prk_steps"], true); // kept, as diffusers keeps it
    /// # Ok::<(), ddim::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::ConfigParse`] for text that is not a JSON object (merge-conflict markers are
    /// named as such), a DDIM key with a value of the wrong type or an unknown mode name, or a
    /// `_class_name` that is neither a string nor a list.
    pub fn from_json_str(text: &str) -> Result<Self> {
        Ok(Self::load_json_str(text)?.config)
    }

    /// Like [`DdimConfig::from_json_str`], and also returns the load warnings.
    ///
    /// ```
    /// use ddim::{ConfigWarning, DdimConfig};
    /// let loaded = DdimConfig::load_json_str(r#"{"foo_unknown": 3}"#)?;
    /// assert_eq!(loaded.warnings, [ConfigWarning::UnexpectedKeys { keys: vec!["foo_unknown".into()] }]);
    /// # Ok::<(), ddim::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`DdimConfig::from_json_str`].
    pub fn load_json_str(text: &str) -> Result<LoadedConfig> {
        load_text(text, "<string>")
    }

    /// Reads a config from a `scheduler_config.json` file or a model folder (diffusers layout:
    /// `<dir>/scheduler/scheduler_config.json`, else `<dir>/scheduler_config.json`).
    ///
    /// # Errors
    ///
    /// [`Error::ConfigIo`] when no file can be read there; otherwise as
    /// [`DdimConfig::from_json_str`], with the file name in the message.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        Ok(Self::load_file(path)?.config)
    }

    /// Like [`DdimConfig::from_file`], and also returns the load warnings.
    ///
    /// # Errors
    ///
    /// As [`DdimConfig::from_file`].
    pub fn load_file(path: impl AsRef<Path>) -> Result<LoadedConfig> {
        let (text, source_name) = read_config_file(path.as_ref())?;
        load_text(&text, &source_name)
    }

    /// Builds a config from an already-parsed JSON object, as `DDIMScheduler.from_config(dict)`.
    ///
    /// # Errors
    ///
    /// As [`DdimConfig::from_json_str`].
    pub fn load_json_object(object: &Map<String, Value>) -> Result<LoadedConfig> {
        extract(object, "<object>")
    }
}

const CONFIG_NAME: &str = "scheduler_config.json";

/// The config file a path names: the path itself, or in a model folder
/// `<dir>/scheduler/scheduler_config.json`, else `<dir>/scheduler_config.json`.
fn resolve_config_file(path: &Path) -> Result<PathBuf> {
    if !path.is_dir() {
        return Ok(path.to_path_buf());
    }
    let candidates = [
        path.join("scheduler").join(CONFIG_NAME),
        path.join(CONFIG_NAME),
    ];
    candidates
        .iter()
        .find(|c| c.is_file())
        .cloned()
        .ok_or_else(|| Error::ConfigIo {
            path: path.to_path_buf(),
            reason: format!("a folder with neither scheduler/{CONFIG_NAME} nor {CONFIG_NAME}"),
        })
}

/// Reads the config file of a file or model folder (see [`resolve_config_file`]); returns its
/// text and the name errors give it.
pub(crate) fn read_config_file(path: &Path) -> Result<(String, String)> {
    let file = resolve_config_file(path)?;
    let text = read_capped(&file, CONFIG_MAX_BYTES).map_err(|e| Error::ConfigIo {
        path: file.clone(),
        reason: e.to_string(),
    })?;
    Ok((text, file.display().to_string()))
}

/// The most bytes a config file may hold: 16 MiB. Real scheduler configs hold about 1 kB
/// (`trained_betas` for T = 1000 about 25 kB); the cap keeps `--config /dev/zero` (or any
/// endless stream) from reading until memory runs out.
pub const CONFIG_MAX_BYTES: u64 = 16 * 1024 * 1024;

/// The UTF-8 text of `path`, refusing a file (or stream) of more than `cap` bytes without
/// reading past the cap.
pub(crate) fn read_capped(path: &Path, cap: u64) -> std::io::Result<String> {
    use std::io::Read;
    let mut bytes = Vec::new();
    std::fs::File::open(path)?
        .take(cap.saturating_add(1))
        .read_to_end(&mut bytes)?;
    if bytes.len() as u64 > cap {
        return Err(std::io::Error::other(format!(
            "more than {cap} bytes, the most a config file may hold"
        )));
    }
    String::from_utf8(bytes).map_err(|_| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "stream did not contain valid UTF-8",
        )
    })
}

/// The `Error::ConfigParse` of `source_name` with `reason`.
pub(crate) fn parse_error(source_name: &str, reason: String) -> Error {
    Error::ConfigParse {
        source_name: source_name.to_string(),
        reason,
    }
}

/// Parses a config text into its top-level JSON object, naming merge-conflict markers as such.
pub(crate) fn parse_object(text: &str, source_name: &str) -> Result<Map<String, Value>> {
    if let Some((line, marker)) = find_conflict_marker(text) {
        return Err(parse_error(
            source_name,
            format!("merge-conflict marker {marker:?} on line {line}: resolve the conflict first"),
        ));
    }
    let value: Value = serde_json::from_str(text)
        .map_err(|e| parse_error(source_name, format!("not valid JSON: {e}")))?;
    match value {
        Value::Object(object) => Ok(object),
        other => Err(parse_error(
            source_name,
            format!(
                "expected a JSON object at the top level, found {}",
                json_kind(&other)
            ),
        )),
    }
}

fn load_text(text: &str, source_name: &str) -> Result<LoadedConfig> {
    extract(&parse_object(text, source_name)?, source_name)
}

fn find_conflict_marker(text: &str) -> Option<(usize, &str)> {
    text.lines().enumerate().find_map(|(i, line)| {
        let is_marker = ["<<<<<<< ", ">>>>>>> "].iter().any(|m| line.starts_with(m))
            || line.trim_end() == "======="
            || line.trim_end() == "<<<<<<<"
            || line.trim_end() == ">>>>>>>";
        is_marker.then_some((i + 1, line.trim_end()))
    })
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// What `_class_name` said about the class a file was written for.
pub(crate) enum SourceClass {
    /// No `_class_name`, or a list of names (diffusers ignores both).
    Unnamed,
    /// A scheduler of diffusers 0.42.1; its own keys were dropped.
    Known {
        /// The file's `_class_name`.
        name: String,
        /// Whether that scheduler has a discrete β schedule.
        has_beta_schedule: bool,
    },
    /// A name diffusers 0.42.1 does not know.
    Unknown(String),
}

/// A config object split as `ConfigMixin.extract_init_dict` splits it for a target class.
pub(crate) struct InitDict {
    /// The input without `_use_default_values` and the keys it lists.
    pub(crate) original: Map<String, Value>,
    /// The keys the target may read, and the unexpected ones: `original` without the private
    /// keys, `quantization_config` and the keys dropped silently.
    pub(crate) remaining: Map<String, Value>,
    /// What `_class_name` said.
    pub(crate) class: SourceClass,
}

/// Steps 1 to 4 of `extract_init_dict` for a target taking the keys `expected`: drops the
/// `_use_default_values` keys, the keys only DDIM-compatible schedulers take (when
/// `drop_compatible`; diffusers does so for classes with compatibles), the keys of the class
/// `_class_name` names (unless `expected`), the private keys and `quantization_config`.
pub(crate) fn split_init_dict(
    input: &Map<String, Value>,
    source_name: &str,
    expected: &BTreeSet<&str>,
    drop_compatible: bool,
) -> Result<InitDict> {
    let table = known_schedulers();

    // 1. `_use_default_values`: those keys take the target's defaults.
    let used_defaults: BTreeSet<&str> = match input.get("_use_default_values") {
        None => BTreeSet::new(),
        Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).collect(),
        Some(other) => {
            return Err(parse_error(
                source_name,
                format!(
                    "`_use_default_values` must be a list of key names, found {}",
                    json_kind(other)
                ),
            ))
        }
    };
    let original: Map<String, Value> = input
        .iter()
        .filter(|(k, _)| *k != "_use_default_values" && !used_defaults.contains(k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();

    // 2. keys of compatible schedulers that the target does not take: dropped silently.
    let mut remaining: Map<String, Value> = original
        .iter()
        .filter(|(k, _)| !(drop_compatible && table.compatible_only_keys.contains(*k)))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();

    // 3. `_class_name`: the original class's own keys are dropped too.
    let class = match remaining.remove("_class_name") {
        None | Some(Value::Array(_)) => SourceClass::Unnamed,
        Some(Value::String(name)) => match table.classes.get(&name) {
            Some(class) => {
                remaining.retain(|k, _| {
                    expected.contains(k.as_str()) || !class.init_keys.iter().any(|c| c == k)
                });
                SourceClass::Known {
                    name,
                    has_beta_schedule: class.has_beta_schedule,
                }
            }
            None => SourceClass::Unknown(name),
        },
        Some(other) => {
            return Err(parse_error(
                source_name,
                format!(
                    "`_class_name` must be a string or a list of strings, found {}",
                    json_kind(&other)
                ),
            ))
        }
    };

    // 4. private keys and `quantization_config` are set aside.
    remaining.retain(|k, _| !k.starts_with('_') && k != "quantization_config");
    Ok(InitDict {
        original,
        remaining,
        class,
    })
}

/// Moves the `keys` present in `remaining` into `config` (type-checked by [`set_key`]);
/// returns the keys that were absent, so at their defaults.
pub(crate) fn read_keys(
    config: &mut DdimConfig,
    keys: &[&'static str],
    remaining: &mut Map<String, Value>,
    source_name: &str,
) -> Result<Vec<&'static str>> {
    let mut defaulted_keys = Vec::new();
    for &key in keys {
        match remaining.remove(key) {
            Some(value) => set_key(config, key, &value).map_err(|e| match e {
                Error::InvalidConfig { key, reason } => {
                    parse_error(source_name, format!("`{key}` {reason}"))
                }
                other => other,
            })?,
            None => defaulted_keys.push(key),
        }
    }
    Ok(defaulted_keys)
}

/// Step 5, `register_to_config`: every key of `original` that is not `expected` is kept, with
/// `_class_name` renamed to `target_class` (diffusers drops a key named `kwargs`).
pub(crate) fn extra_keys(
    original: Map<String, Value>,
    expected: &BTreeSet<&str>,
    target_class: &str,
) -> BTreeMap<String, Value> {
    original
        .into_iter()
        .filter(|(k, _)| !expected.contains(k.as_str()) && k != "kwargs")
        .map(|(k, v)| match k.as_str() {
            "_class_name" => (k, Value::String(target_class.into())),
            _ => (k, v),
        })
        .collect()
}

/// The port of `ConfigMixin.extract_init_dict` followed by `register_to_config`.
fn extract(input: &Map<String, Value>, source_name: &str) -> Result<LoadedConfig> {
    let expected: BTreeSet<&str> = DdimConfig::KEYS.iter().copied().collect();
    let InitDict {
        original,
        mut remaining,
        class,
    } = split_init_dict(input, source_name, &expected, true)?;
    let mut warnings = Vec::new();
    match class {
        SourceClass::Known {
            name,
            has_beta_schedule: false,
        } => warnings.push(ConfigWarning::ForeignFamily { class_name: name }),
        SourceClass::Unknown(name) => {
            warnings.push(ConfigWarning::UnknownClass { class_name: name })
        }
        SourceClass::Unnamed | SourceClass::Known { .. } => {}
    }
    let mut config = DdimConfig::default();
    let defaulted_keys = read_keys(&mut config, &DdimConfig::KEYS, &mut remaining, source_name)?;
    if !remaining.is_empty() {
        let keys = remaining.keys().cloned().collect();
        warnings.insert(0, ConfigWarning::UnexpectedKeys { keys });
    }
    config.extra = extra_keys(original, &expected, "DDIMScheduler");
    if let Some(warning) = decreasing_betas(&config) {
        warnings.push(warning);
    }
    Ok(LoadedConfig {
        config,
        warnings,
        defaulted_keys,
    })
}

/// The largest `T` for which loading computes the schedule to say where ᾱ reaches 0.
const DECREASING_BETAS_SCAN_MAX: usize = 10_000_000;

/// [`ConfigWarning::DecreasingBetas`] for a linear or scaled-linear config whose β decrease.
fn decreasing_betas(config: &DdimConfig) -> Option<ConfigWarning> {
    let computed = matches!(
        config.beta_schedule,
        super::BetaSchedule::Linear | super::BetaSchedule::ScaledLinear
    ) && config.trained_betas.is_none();
    let decreasing =
        config.beta_end.partial_cmp(&config.beta_start) == Some(std::cmp::Ordering::Less);
    if !computed || !decreasing {
        return None;
    }
    let alpha_bar_zero_at = (config.num_train_timesteps <= DECREASING_BETAS_SCAN_MAX)
        .then(|| crate::schedule::NoiseSchedule::from_config(config).ok())
        .flatten()
        .and_then(|s| s.alphas_cumprod.iter().position(|&a| a == 0.0));
    Some(ConfigWarning::DecreasingBetas {
        beta_start: super::python_json::python_float_repr(config.beta_start),
        beta_end: super::python_json::python_float_repr(config.beta_end),
        alpha_bar_zero_at,
    })
}

/// Sets one DDIM key from its JSON value, checking the type.
pub(crate) fn set_key(config: &mut DdimConfig, key: &'static str, value: &Value) -> Result<()> {
    let wrong = |expected: &str| Error::InvalidConfig {
        key,
        reason: format!("must be {expected}, found {}", describe(value)),
    };
    let float = || value.as_f64().ok_or_else(|| wrong("a number"));
    let boolean = || value.as_bool().ok_or_else(|| wrong("true or false"));
    let count = || {
        // `-0` parses as the float -0.0; Python's json reads it as the integer 0.
        let minus_zero = value
            .as_f64()
            .is_some_and(|v| v == 0.0 && v.is_sign_negative());
        value
            .as_u64()
            .or(minus_zero.then_some(0))
            .and_then(|v| usize::try_from(v).ok())
            .ok_or_else(|| wrong("a non-negative integer"))
    };
    let text = || value.as_str().ok_or_else(|| wrong("a string"));
    match key {
        "num_train_timesteps" => config.num_train_timesteps = count()?,
        "beta_start" => config.beta_start = float()?,
        "beta_end" => config.beta_end = float()?,
        "beta_schedule" => config.beta_schedule = text()?.parse()?,
        "trained_betas" => {
            config.trained_betas = match value {
                Value::Null => None,
                Value::Array(items) => Some(
                    items
                        .iter()
                        .map(|v| v.as_f64().ok_or_else(|| wrong("null or a list of numbers")))
                        .collect::<Result<_>>()?,
                ),
                _ => return Err(wrong("null or a list of numbers")),
            }
        }
        "clip_sample" => config.clip_sample = boolean()?,
        "set_alpha_to_one" => config.set_alpha_to_one = boolean()?,
        "steps_offset" => config.steps_offset = count()?,
        "prediction_type" => config.prediction_type = text()?.parse()?,
        "thresholding" => config.thresholding = boolean()?,
        "dynamic_thresholding_ratio" => config.dynamic_thresholding_ratio = float()?,
        "clip_sample_range" => config.clip_sample_range = float()?,
        "sample_max_value" => config.sample_max_value = float()?,
        "timestep_spacing" => config.timestep_spacing = text()?.parse()?,
        "rescale_betas_zero_snr" => config.rescale_betas_zero_snr = boolean()?,
        _ => {
            return Err(Error::InvalidConfig {
                key,
                reason: "is not a DDIMScheduler key".into(),
            })
        }
    }
    Ok(())
}

fn describe(value: &Value) -> String {
    match value {
        Value::Array(_) | Value::Object(_) => json_kind(value).to_string(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conflict_markers_are_named_with_their_line() {
        let text = "{\n<<<<<<< HEAD\n  \"a\": 1,\n=======\n>>>>>>> abc\n}";
        let err = DdimConfig::from_json_str(text).unwrap_err().to_string();
        assert!(
            err.contains("merge-conflict marker \"<<<<<<< HEAD\" on line 2"),
            "{err}"
        );
    }

    #[test]
    fn wrong_types_name_the_key() {
        let err = DdimConfig::from_json_str(r#"{"clip_sample": "yes"}"#).unwrap_err();
        assert!(
            err.to_string()
                .contains("`clip_sample` must be true or false"),
            "{err}"
        );
        let err = DdimConfig::from_json_str(r#"{"num_train_timesteps": 10.5}"#).unwrap_err();
        assert!(
            err.to_string().contains("non-negative integer, found 10.5"),
            "{err}"
        );
        let err = DdimConfig::from_json_str(r#"{"beta_schedule": "laplace"}"#).unwrap_err();
        assert!(err.to_string().contains("must be one of linear"), "{err}");
    }

    #[test]
    fn non_object_and_bad_json_are_errors() {
        assert!(DdimConfig::from_json_str("[1, 2]")
            .unwrap_err()
            .to_string()
            .contains("expected a JSON object"));
        assert!(DdimConfig::from_json_str("{\"a\": }")
            .unwrap_err()
            .to_string()
            .contains("not valid JSON"));
    }

    #[test]
    fn use_default_values_keys_take_defaults() {
        let c = DdimConfig::from_json_str(
            r#"{"beta_start": 0.5, "_use_default_values": ["beta_start"]}"#,
        )
        .unwrap();
        assert_eq!(c.beta_start, 0.0001);
        assert!(!c.extra.contains_key("_use_default_values"));
    }

    #[test]
    fn model_folder_prefers_scheduler_subfolder() {
        let dir = std::env::temp_dir().join(format!("ddim-load-test-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("scheduler")).unwrap();
        std::fs::write(dir.join(CONFIG_NAME), r#"{"steps_offset": 2}"#).unwrap();
        assert_eq!(DdimConfig::from_file(&dir).unwrap().steps_offset, 2);
        std::fs::write(
            dir.join("scheduler").join(CONFIG_NAME),
            r#"{"steps_offset": 1}"#,
        )
        .unwrap();
        assert_eq!(DdimConfig::from_file(&dir).unwrap().steps_offset, 1);
        std::fs::remove_dir_all(&dir).unwrap();
        let err = DdimConfig::from_file(&dir).unwrap_err().to_string();
        assert!(err.starts_with("cannot read"), "{err}");
    }
}
