//! Real `scheduler_config.json` files (copied from public model repositories into
//! `tests/data/configs/`) and synthetic edge cases load to the config diffusers'
//! `DDIMScheduler.from_config` produces, or fail with an error naming the file and the fault.
//! The expectations were recorded from diffusers 0.42.1 by `tools/gen_fixtures.py`.

mod common;

use common::{data_dir, Fixtures};
use ddim::{ConfigWarning, DdimConfig, LoadedConfig};
use serde_json::{Map, Value};

/// JSON equality where `2` equals `2.0`, as in Python.
fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| json_eq(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| json_eq(v, w)))
        }
        _ => a == b,
    }
}

/// The keys named in diffusers' warning "The config attributes {'a': 1, 'b': 2} were passed…".
fn warned_keys(message: &str) -> Vec<String> {
    let inner = message
        .split_once('{')
        .and_then(|(_, rest)| rest.split_once('}'))
        .map_or("", |(inner, _)| inner);
    let mut keys: Vec<String> = inner
        .split(", '")
        .filter_map(|item| {
            item.trim_start_matches('\'')
                .split_once("': ")
                .map(|(k, _)| k.to_string())
        })
        .collect();
    keys.sort();
    keys
}

fn check_loaded(what: &str, loaded: &LoadedConfig, expected: &Value) {
    let ours = loaded.config.to_json_object();
    for (key, value) in expected["init"].as_object().unwrap() {
        assert!(
            json_eq(&ours[key], value),
            "{what}: `{key}` is {} in diffusers, {} here",
            value,
            ours[key]
        );
    }
    let extra: Map<String, Value> = loaded.config.extra.clone().into_iter().collect();
    assert!(
        json_eq(&Value::Object(extra.clone()), &expected["extra"]),
        "{what}: extra keys {extra:?} vs diffusers {}",
        expected["extra"]
    );
    let mut defaulted: Vec<&str> = loaded.defaulted_keys.clone();
    defaulted.sort_unstable();
    let theirs: Vec<&str> = expected["defaulted"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(defaulted, theirs, "{what}: defaulted keys");

    let their_warned: Vec<String> = expected["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|w| warned_keys(w.as_str().unwrap()))
        .collect();
    let our_warned: Vec<String> = loaded
        .warnings
        .iter()
        .flat_map(|w| match w {
            ConfigWarning::UnexpectedKeys { keys } => keys.clone(),
            _ => Vec::new(),
        })
        .collect();
    // diffusers also drops the keys of a *model or pipeline* named in `_class_name`; our table
    // holds schedulers only, so such keys are reported here (with an UnknownClass warning).
    let non_scheduler_class = loaded
        .warnings
        .iter()
        .any(|w| matches!(w, ConfigWarning::UnknownClass { .. }))
        && their_warned.len() < our_warned.len();
    if !non_scheduler_class {
        assert_eq!(our_warned, their_warned, "{what}: unexpected-key warnings");
    }

    let their_text = expected["to_json_string"].as_str().unwrap();
    let our_text = loaded.config.to_json_string();
    let parse = |t: &str| serde_json::from_str::<Value>(t).unwrap();
    assert!(
        json_eq(&parse(&our_text), &parse(their_text)),
        "{what}:\n{our_text}\nvs\n{their_text}"
    );
}

#[test]
fn real_config_files_load_like_diffusers() {
    let fx = Fixtures::load();
    let mut files = 0;
    for entry in fx
        .section("configs")
        .iter()
        .filter(|e| e["file"].is_string())
    {
        let name = entry["file"].as_str().unwrap();
        let path = data_dir().join("configs").join(name);
        let result = DdimConfig::load_file(&path);
        if entry["ok"].as_bool().unwrap() {
            let loaded = result.unwrap_or_else(|e| panic!("{name}: {e}"));
            check_loaded(name, &loaded, entry);
            // Real files hold floats where diffusers expects floats: byte-identical output.
            assert_eq!(
                loaded.config.to_json_string(),
                entry["to_json_string"].as_str().unwrap(),
                "{name}"
            );
        } else {
            let message = result.unwrap_err().to_string();
            assert!(
                message.contains(name),
                "{name}: error does not name the file: {message}"
            );
            assert!(!message.contains('\n'), "{message}");
            println!("{message}");
        }
        files += 1;
    }
    assert_eq!(
        files,
        std::fs::read_dir(data_dir().join("configs"))
            .unwrap()
            .count()
    );
}

#[test]
fn synthetic_configs_load_like_diffusers() {
    let fx = Fixtures::load();
    for (i, entry) in fx
        .section("configs")
        .iter()
        .filter(|e| e["file"].is_null())
        .enumerate()
    {
        let input = entry["input"].as_object().unwrap();
        let what = format!("synthetic #{i} {}", Value::Object(input.clone()));
        let result = DdimConfig::load_json_object(input);
        if entry["ok"].as_bool().unwrap() {
            check_loaded(
                &what,
                &result.unwrap_or_else(|e| panic!("{what}: {e}")),
                entry,
            );
        } else {
            assert!(
                result.is_err(),
                "{what}: diffusers raised {}",
                entry["error"]
            );
        }
    }
}

#[test]
fn foreign_families_are_flagged() {
    let dir = data_dir().join("configs");
    let flux = DdimConfig::load_file(dir.join("flux_flowmatch.json")).unwrap();
    assert_eq!(
        flux.warnings,
        [ConfigWarning::ForeignFamily {
            class_name: "FlowMatchEulerDiscreteScheduler".into()
        }]
    );
    assert!(flux.warnings[0].to_string().contains("does not serve"));
    for ddpm_family in [
        "sd21base_pndm.json",
        "sdxl_euler_a.json",
        "inpainting_ddim_old.json",
    ] {
        let loaded = DdimConfig::load_file(dir.join(ddpm_family)).unwrap();
        assert!(
            loaded.warnings.is_empty(),
            "{ddpm_family}: {:?}",
            loaded.warnings
        );
    }
    let err = DdimConfig::from_file(dir.join("waifu_conflicted.json"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("merge-conflict marker") && err.contains("line 7"),
        "{err}"
    );
}

/// `tools/check_roundtrip.py` fed what `ddim config` wrote to the real diffusers and checked
/// that it loads back to the config diffusers builds from the original. This test checks that
/// every case passed and that the library still writes exactly the text that was checked.
#[test]
fn config_round_trip_was_checked_by_diffusers() {
    let path = data_dir().join("diffusers/roundtrip.json");
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let cases = doc["cases"].as_array().unwrap();
    assert!(cases.len() >= 20);
    for case in cases {
        let name = case["name"].as_str().unwrap();
        assert!(case["ok"].as_bool().unwrap(), "{name}: {case}");
        let ours = DdimConfig::load_json_str(case["input"].as_str().unwrap());
        if case["exit_code"] == 0 {
            let text = ours
                .unwrap_or_else(|e| panic!("{name}: {e}"))
                .config
                .to_json_string();
            assert_eq!(
                text,
                case["ours"].as_str().unwrap(),
                "{name}: output changed since the check"
            );
        } else {
            assert!(
                ours.is_err(),
                "{name}: diffusers refused it ({})",
                case["diffusers_error"]
            );
        }
    }
}
