//! Writing a config as diffusers' `to_json_string` does.

use serde_json::{Map, Value};

use super::python_json::python_dumps_pretty;
use super::{DdimConfig, DIFFUSERS_VERSION};

impl DdimConfig {
    /// The config as a JSON object: the 15 DDIM keys, the kept [`extra`](DdimConfig::extra)
    /// keys, `_class_name = "DDIMScheduler"` and `_diffusers_version`.
    pub fn to_json_object(&self) -> Map<String, Value> {
        let mut map: Map<String, Value> = self.extra.clone().into_iter().collect();
        let float = |x: f64| serde_json::Number::from_f64(x).map_or(Value::Null, Value::Number);
        let fields: [(&str, Value); 15] = [
            ("num_train_timesteps", self.num_train_timesteps.into()),
            ("beta_start", float(self.beta_start)),
            ("beta_end", float(self.beta_end)),
            ("beta_schedule", self.beta_schedule.as_str().into()),
            (
                "trained_betas",
                match &self.trained_betas {
                    None => Value::Null,
                    Some(betas) => betas.iter().map(|&b| float(b)).collect(),
                },
            ),
            ("clip_sample", self.clip_sample.into()),
            ("set_alpha_to_one", self.set_alpha_to_one.into()),
            ("steps_offset", self.steps_offset.into()),
            ("prediction_type", self.prediction_type.as_str().into()),
            ("thresholding", self.thresholding.into()),
            (
                "dynamic_thresholding_ratio",
                float(self.dynamic_thresholding_ratio),
            ),
            ("clip_sample_range", float(self.clip_sample_range)),
            ("sample_max_value", float(self.sample_max_value)),
            ("timestep_spacing", self.timestep_spacing.as_str().into()),
            ("rescale_betas_zero_snr", self.rescale_betas_zero_snr.into()),
        ];
        for (key, value) in fields {
            map.insert(key.to_string(), value);
        }
        map.insert("_class_name".into(), "DDIMScheduler".into());
        map.insert("_diffusers_version".into(), DIFFUSERS_VERSION.into());
        for private in [
            "_ignore_files",
            "_use_default_values",
            "_pre_quantization_dtype",
        ] {
            map.remove(private);
        }
        map
    }

    /// A `scheduler_config.json` in diffusers' layout (`json.dumps(indent=2, sort_keys=True)`
    /// plus a newline, floats in Python's `repr` form), which diffusers loads back to an equal
    /// config.
    ///
    /// ```
    /// let text = ddim::DdimConfig::default().to_json_string();
    /// assert!(text.starts_with("{\n  \"_class_name\": \"DDIMScheduler\",\n"));
    /// assert!(text.contains("\n  \"beta_start\": 0.0001,\n"));
    /// ```
    pub fn to_json_string(&self) -> String {
        let mut text = python_dumps_pretty(&Value::Object(self.to_json_object()));
        text.push('\n');
        text
    }
}
