//! serde `Serialize`/`Deserialize` for [`DdimConfig`] and [`DdimInverseConfig`], in
//! diffusers' `scheduler_config.json` form: the same key names and enum spellings, through the
//! same loader as [`DdimConfig::from_json_str`] (so a deserialized config is validated and
//! read exactly as a file would be, its warnings dropped as `from_json_str` drops them).
//!
//! A pipeline can embed the scheduler's config in its own serde config:
//!
//! ```
//! #[derive(serde::Serialize, serde::Deserialize)]
//! struct Pipeline {
//!     steps: usize,
//!     scheduler: ddim::DdimConfig,
//! }
//! let text = r#"{"steps": 30, "scheduler": {"beta_schedule": "scaled_linear", "steps_offset": 1}}"#;
//! let p: Pipeline = serde_json::from_str(text).map_err(|e| ddim::Error::InvalidConfig { key: "scheduler", reason: e.to_string() })?;
//! assert_eq!(p.scheduler.steps_offset, 1);
//! let back = serde_json::to_value(&p).map_err(|e| ddim::Error::InvalidConfig { key: "scheduler", reason: e.to_string() })?;
//! assert_eq!(back["scheduler"]["beta_schedule"], "scaled_linear");
//! # Ok::<(), ddim::Error>(())
//! ```

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

use super::{DdimConfig, DIFFUSERS_VERSION};
use crate::inverse::DdimInverseConfig;

impl Serialize for DdimConfig {
    /// The object of [`DdimConfig::to_json_object`] (`_class_name`, `_diffusers_version`, the
    /// 15 keys, the kept extra keys).
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.to_json_object().serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for DdimConfig {
    /// A JSON object read as [`DdimConfig::load_json_object`] reads it.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let object = Map::<String, Value>::deserialize(deserializer)?;
        DdimConfig::load_json_object(&object)
            .map(|loaded| loaded.config)
            .map_err(D::Error::custom)
    }
}

impl DdimInverseConfig {
    /// The config as diffusers' `DDIMInverseScheduler` saves it: its 12 keys,
    /// `set_alpha_to_zero` when given, the kept extra keys, `_class_name` and
    /// `_diffusers_version`.
    ///
    /// ```
    /// let object = ddim::DdimInverseConfig::default().to_json_object();
    /// assert_eq!(object["_class_name"], "DDIMInverseScheduler");
    /// assert!(!object.contains_key("thresholding"));
    /// ```
    pub fn to_json_object(&self) -> Map<String, Value> {
        let forward = DdimConfig {
            set_alpha_to_one: self.set_alpha_to_one,
            ..self.to_ddim_config()
        };
        let shared = forward.to_json_object();
        let mut map: Map<String, Value> = self.extra.clone().into_iter().collect();
        for key in Self::KEYS {
            if let Some(v) = shared.get(key) {
                map.insert(key.to_string(), v.clone());
            }
        }
        if let Some(zero) = self.set_alpha_to_zero {
            map.insert("set_alpha_to_zero".into(), zero.into());
        }
        map.insert("_class_name".into(), "DDIMInverseScheduler".into());
        map.insert("_diffusers_version".into(), DIFFUSERS_VERSION.into());
        map
    }
}

impl Serialize for DdimInverseConfig {
    /// The object of [`DdimInverseConfig::to_json_object`].
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.to_json_object().serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for DdimInverseConfig {
    /// A JSON object read as [`DdimInverseConfig::load_json_object`] reads it.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let object = Map::<String, Value>::deserialize(deserializer)?;
        DdimInverseConfig::load_json_object(&object)
            .map(|loaded| loaded.config)
            .map_err(D::Error::custom)
    }
}
