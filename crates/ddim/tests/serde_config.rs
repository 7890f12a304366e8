//! serde round trips of `DdimConfig` and `DdimInverseConfig` through diffusers' key names,
//! against the JSON loader, on the real configs of `tests/data/configs`.

mod common;

use ddim::{DdimConfig, DdimInverseConfig};

#[test]
fn ddim_config_round_trips_through_serde() {
    let dir = common::data_dir().join("configs");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        let Ok(loaded) = DdimConfig::from_json_str(&text) else {
            // Broken configs fail in serde exactly as in the loader.
            assert!(
                serde_json::from_str::<DdimConfig>(&text).is_err(),
                "{path:?}"
            );
            continue;
        };
        // serde reads the file as the loader does...
        let via_serde: DdimConfig = serde_json::from_str(&text).unwrap();
        assert_eq!(via_serde, loaded, "{path:?}");
        // ...writes diffusers' keys, and reads them back unchanged (but for
        // `_diffusers_version`, which saving sets to this crate's, as diffusers does).
        let value = serde_json::to_value(&loaded).unwrap();
        assert_eq!(value["_class_name"], "DDIMScheduler");
        let back = serde_json::from_value::<DdimConfig>(value.clone()).unwrap();
        let without_version = |c: &DdimConfig| {
            let mut c = c.clone();
            c.extra.remove("_diffusers_version");
            c
        };
        assert_eq!(without_version(&back), without_version(&loaded), "{path:?}");
        assert_eq!(DdimConfig::from_json_str(&value.to_string()).unwrap(), back);
        assert_eq!(value, serde_json::Value::Object(loaded.to_json_object()));
        checked += 1;
    }
    eprintln!("{checked} real configs round-trip through serde");
    assert!(checked >= 5, "{checked}");
}

#[test]
fn inverse_config_round_trips_through_serde() {
    let configs = [
        DdimInverseConfig::default(),
        DdimInverseConfig::from_ddim_config(&DdimConfig::stable_diffusion()).unwrap(),
        DdimInverseConfig {
            set_alpha_to_zero: Some(false),
            trained_betas: Some(vec![0.1, 0.2, 0.3]),
            num_train_timesteps: 3,
            timestep_spacing: ddim::TimestepSpacing::Trailing,
            prediction_type: ddim::PredictionType::VPrediction,
            ..DdimInverseConfig::default()
        },
    ];
    for config in configs {
        let text = serde_json::to_string(&config).unwrap();
        let back: DdimInverseConfig = serde_json::from_str(&text).unwrap();
        // The loader keeps `_class_name` among the extra keys.
        let loaded = DdimInverseConfig::load_json_str(&text).unwrap().config;
        assert_eq!(back, loaded);
        assert_eq!(back.to_json_object(), config.to_json_object(), "{text}");
        assert_eq!(back.set_alpha_to_zero, config.set_alpha_to_zero);
    }
    // Invalid values are refused with the loader's message.
    let e = serde_json::from_str::<DdimInverseConfig>(r#"{"beta_schedule": "bogus"}"#)
        .unwrap_err()
        .to_string();
    assert!(e.contains("beta_schedule"), "{e}");
}
