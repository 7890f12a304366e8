//! `DdimInverseScheduler` against the real diffusers `DDIMInverseScheduler` (fixtures written
//! by `tools/gen_inverse_fixtures.py`), its error paths, and the matching inverse.

use ddim::inverse::diffusers_inverse_timesteps;
use ddim::{
    DdimConfig, DdimInverseConfig, DdimInverseScheduler, DdimScheduler, Error,
    InverseConfigWarning, PrevTimestepRule, StepOptions, TimestepSpacing,
};
use serde_json::{Map, Value};

fn fixtures() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/inverse/inverse.json"
    );
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn list(v: &Value) -> &Vec<Value> {
    v.as_array().unwrap()
}

fn f32s(v: &Value) -> Vec<f32> {
    list(v).iter().map(|x| x.as_f64().unwrap() as f32).collect()
}

fn object(v: &Value) -> Map<String, Value> {
    v.as_object().unwrap().clone()
}

/// The largest |got − want| in units of f32's epsilon times `scale` (the magnitude of the
/// terms that were summed, so that a cancelling sum is not judged by its small result).
fn max_scaled_error(got: &[f32], want: &[f32], scale: &[f32]) -> f64 {
    got.iter()
        .zip(want)
        .zip(scale)
        .map(|((&a, &b), &s)| {
            if a.is_nan() && b.is_nan() {
                0.0
            } else {
                f64::from((a - b).abs()) / (f64::from(f32::EPSILON) * f64::from(s.max(1.0)))
            }
        })
        .fold(0.0, f64::max)
}

fn spacing(name: &str) -> TimestepSpacing {
    name.parse().unwrap()
}

fn inverse_from(config: &Value) -> DdimInverseScheduler {
    let loaded = DdimInverseConfig::load_json_object(&object(config)).unwrap();
    DdimInverseScheduler::new(loaded.config).unwrap()
}

#[test]
fn timesteps_match_diffusers() {
    let doc = fixtures();
    let mut checked = 0;
    for case in list(&doc["timesteps"]) {
        let (t, n, offset) = (
            case["T"].as_u64().unwrap() as usize,
            case["n"].as_u64().unwrap() as usize,
            case["offset"].as_u64().unwrap() as usize,
        );
        let sp = spacing(case["spacing"].as_str().unwrap());
        let want: Vec<i64> = list(&case["timesteps"])
            .iter()
            .map(|v| v.as_i64().unwrap())
            .collect();
        assert_eq!(
            diffusers_inverse_timesteps(t, sp, offset, n).unwrap(),
            want,
            "{case}"
        );
        let config = DdimInverseConfig {
            num_train_timesteps: t,
            timestep_spacing: sp,
            steps_offset: offset,
            ..Default::default()
        };
        let mut inverse = DdimInverseScheduler::new(config).unwrap();
        // diffusers' last n timesteps, where they are all valid: trailing's leading -1 is
        // left out, a leading schedule reaching T is refused.
        let last_n = &want[want.len() - n..];
        match inverse.set_timesteps(n) {
            Ok(()) => {
                let got: Vec<i64> = inverse.timesteps().iter().map(|&x| x as i64).collect();
                assert_eq!(got, last_n, "{case}");
                checked += 1;
            }
            Err(e) => {
                assert!(matches!(e, Error::InvalidStepCount { .. }), "{e}");
                assert_eq!(*last_n.last().unwrap(), t as i64, "{case}");
            }
        }
        if want.len() > n {
            assert_eq!((want.len(), want[0]), (n + 1, -1), "{case}");
        }
    }
    assert!(checked >= 70, "{checked}");
}

#[test]
fn refused_calls_match_diffusers_refusals() {
    let doc = fixtures();
    for case in list(&doc["errors"]) {
        let mut inverse = DdimInverseScheduler::new(DdimInverseConfig {
            timestep_spacing: spacing(case["spacing"].as_str().unwrap()),
            ..Default::default()
        })
        .unwrap();
        let n = case["n"].as_u64().unwrap() as usize;
        let diffusers = case["error"].as_str().unwrap();
        let e = inverse.set_timesteps(n).unwrap_err();
        let text = e.to_string();
        match &e {
            Error::InvalidConfig {
                key: "timestep_spacing",
                ..
            } => {
                assert!(
                    diffusers.contains("linspace is not supported"),
                    "{diffusers}"
                );
                assert!(text.contains("linspace is not supported"), "{text}");
            }
            Error::InvalidStepCount { requested, .. } => assert_eq!(*requested, n),
            other => panic!("{other}"),
        }
        assert!(inverse.num_inference_steps().is_none());
    }
}

#[test]
fn steps_match_diffusers() {
    let doc = fixtures();
    let (mut worst, mut exact) = (0.0f64, 0);
    for case in list(&doc["steps"]) {
        let mut inverse = inverse_from(&case["config"]);
        inverse
            .set_timesteps(case["n"].as_u64().unwrap() as usize)
            .unwrap();
        let t = case["timestep"].as_u64().unwrap() as usize;
        let out = inverse
            .step(&f32s(&case["model_output"]), t, &f32s(&case["sample"]))
            .unwrap();
        let (x, m) = (f32s(&case["sample"]), f32s(&case["model_output"]));
        let x0 = f32s(&case["pred_original_sample"]);
        let scale: Vec<f32> = (0..x.len())
            .map(|i| x[i].abs() + m[i].abs() + x0[i].abs())
            .collect();
        let e = max_scaled_error(&out.prev_sample, &f32s(&case["prev_sample"]), &scale)
            .max(max_scaled_error(&out.pred_original_sample, &x0, &scale));
        // torch's CPU sqrt is not always correctly rounded (e.g. √(1 − ᾱ₄₀₀) is 1 ulp above
        // IEEE's): the results differ by a few ulps of the terms' magnitude.
        // Measured: at most 1.11 ε·scale over the 54 steps; 29 of them bit-identical.
        assert!(e <= 2.0, "{e} eps in {case}");
        worst = worst.max(e);
        if e == 0.0 {
            exact += 1;
        }
    }
    assert!(worst > 0.0 || exact == list(&doc["steps"]).len());
    assert!(exact >= 20, "only {exact} steps bit-identical");
}

#[test]
fn diffusers_full_loops() {
    let doc = fixtures();
    for case in list(&doc["loops"]) {
        let mut inverse = inverse_from(&case["config"]);
        inverse
            .set_timesteps(case["n"].as_u64().unwrap() as usize)
            .unwrap();
        // dummy_sample_deter in (c, h, w, b) order: element i is i/768; the dummy model is
        // x·t/(t + 1) in f32.
        let mut x: Vec<f32> = (0..768).map(|i| i as f32 / 768.0).collect();
        for &t in inverse.timesteps() {
            let tf = t as f32;
            let eps: Vec<f32> = x.iter().map(|&v| v * tf / (tf + 1.0)).collect();
            x = inverse.step(&eps, t, &x).unwrap().prev_sample;
        }
        let sum: f64 = x.iter().map(|v| f64::from(v.abs())).sum();
        let want_sum = case["sum_abs"].as_f64().unwrap();
        assert!(
            (sum - want_sum).abs() < 1e-3,
            "{}: {sum} vs {want_sum}",
            case["name"]
        );
        let mean = sum / 768.0;
        assert!((mean - case["mean_abs"].as_f64().unwrap()).abs() < 1e-5);
        let scale: Vec<f32> = x[..64].iter().map(|v| v.abs()).collect();
        let e = max_scaled_error(&x[..64], &f32s(&case["first"]), &scale);
        // Measured: at most 0.75 ε·|x| after the 10 steps of each loop.
        assert!(e <= 2.0, "{}: {e} eps", case["name"]);
    }
}

#[test]
fn from_config_matches_diffusers() {
    let doc = fixtures();
    for case in list(&doc["configs"]) {
        let loaded = DdimInverseConfig::load_json_object(&object(&case["input"])).unwrap();
        let c = &loaded.config;
        let want = &case["config"];
        assert_eq!(
            c.num_train_timesteps as u64,
            want["num_train_timesteps"].as_u64().unwrap()
        );
        assert_eq!(c.beta_start, want["beta_start"].as_f64().unwrap(), "{case}");
        assert_eq!(c.beta_end, want["beta_end"].as_f64().unwrap());
        assert_eq!(c.beta_schedule.as_str(), want["beta_schedule"]);
        assert_eq!(c.clip_sample, want["clip_sample"]);
        assert_eq!(c.set_alpha_to_one, want["set_alpha_to_one"], "{case}");
        assert_eq!(
            c.steps_offset as u64,
            want["steps_offset"].as_u64().unwrap()
        );
        assert_eq!(c.prediction_type.as_str(), want["prediction_type"]);
        assert_eq!(
            c.clip_sample_range,
            want["clip_sample_range"].as_f64().unwrap()
        );
        assert_eq!(c.timestep_spacing.as_str(), want["timestep_spacing"]);
        assert_eq!(c.rescale_betas_zero_snr, want["rescale_betas_zero_snr"]);
        let inverse = DdimInverseScheduler::new(c.clone()).unwrap();
        assert_eq!(
            f64::from(inverse.initial_alpha_cumprod()),
            case["initial_alpha_cumprod"].as_f64().unwrap(),
            "{case}"
        );
        let warned: Vec<String> = loaded
            .warnings
            .iter()
            .filter_map(|w| match w {
                InverseConfigWarning::UnexpectedKeys { keys } => Some(keys.clone()),
                _ => None,
            })
            .flatten()
            .collect();
        let want_warned: Vec<String> = list(&case["warned_keys"])
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect();
        assert_eq!(warned, want_warned, "{case}");
        let deprecation = loaded
            .warnings
            .iter()
            .any(|w| matches!(w, InverseConfigWarning::DeprecatedSetAlphaToZero { .. }));
        assert_eq!(deprecation, case["deprecation"], "{case}");
    }
}

#[test]
fn forward_config_loads_into_the_inverse() {
    let forward = DdimConfig {
        thresholding: true,
        timestep_spacing: TimestepSpacing::Trailing,
        ..DdimConfig::stable_diffusion()
    };
    let loaded = DdimInverseConfig::load_ddim_config(&forward).unwrap();
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    assert_eq!(loaded.config.extra["_class_name"], "DDIMInverseScheduler");
    assert_eq!(loaded.config.timestep_spacing, TimestepSpacing::Trailing);
    let inverse = DdimInverseScheduler::new(loaded.config).unwrap();
    let forward = DdimScheduler::new(forward).unwrap();
    assert_eq!(inverse.alphas_cumprod(), forward.alphas_cumprod());
    assert_eq!(
        inverse.initial_alpha_cumprod(),
        forward.final_alpha_cumprod()
    );
}

// ---- errors -----------------------------------------------------------------------------

fn one_line(e: &Error) -> String {
    let text = e.to_string();
    assert!(
        !text.contains('\n') && text.chars().next().unwrap().is_lowercase(),
        "{text}"
    );
    text
}

#[test]
fn step_before_set_timesteps_is_an_error() {
    let inverse = DdimInverseScheduler::new(DdimInverseConfig::default()).unwrap();
    let e = inverse.step(&[0.0f32], 0, &[0.0]).unwrap_err();
    assert!(matches!(e, Error::TimestepsNotSet), "{e}");
    assert!(one_line(&e).contains("set_timesteps"));
    assert!(matches!(
        inverse.step_levels(0),
        Err(Error::TimestepsNotSet)
    ));
}

#[test]
fn timestep_out_of_range_is_an_error() {
    let mut inverse = DdimInverseScheduler::new(DdimInverseConfig::default()).unwrap();
    inverse.set_timesteps(10).unwrap();
    let e = inverse.step(&[0.0f32], 1000, &[0.0]).unwrap_err();
    assert!(
        matches!(
            e,
            Error::TimestepOutOfRange {
                timestep: 1000,
                num_train_timesteps: 1000
            }
        ),
        "{e}"
    );
    assert!(one_line(&e).contains("outside [0, 1000)"));
}

#[test]
fn zero_and_too_many_steps_are_errors() {
    let mut inverse = DdimInverseScheduler::new(DdimInverseConfig::default()).unwrap();
    for n in [0, 1001] {
        let e = inverse.set_timesteps(n).unwrap_err();
        assert!(matches!(e, Error::InvalidStepCount { requested, .. } if requested == n));
        one_line(&e);
    }
    let mut matching =
        DdimInverseScheduler::matching(&DdimScheduler::new(DdimConfig::default()).unwrap())
            .unwrap();
    assert!(matches!(
        matching.set_timesteps(0),
        Err(Error::InvalidStepCount { .. })
    ));
}

#[test]
fn configs_the_inverse_cannot_serve_are_errors() {
    let mut inverse = DdimInverseScheduler::new(DdimInverseConfig {
        timestep_spacing: TimestepSpacing::Linspace,
        ..Default::default()
    })
    .unwrap();
    let e = inverse.set_timesteps(10).unwrap_err();
    assert!(matches!(
        e,
        Error::InvalidConfig {
            key: "timestep_spacing",
            ..
        }
    ));
    assert!(one_line(&e).contains("use leading or trailing"));

    let thresholded = DdimScheduler::new(DdimConfig {
        thresholding: true,
        ..Default::default()
    })
    .unwrap();
    let e = DdimInverseScheduler::matching(&thresholded).unwrap_err();
    assert!(matches!(
        e,
        Error::InvalidConfig {
            key: "thresholding",
            ..
        }
    ));
    one_line(&e);

    let e = DdimInverseScheduler::new(DdimInverseConfig {
        num_train_timesteps: 0,
        ..Default::default()
    })
    .unwrap_err();
    assert!(matches!(
        e,
        Error::InvalidConfig {
            key: "num_train_timesteps",
            ..
        }
    ));

    let e = DdimInverseConfig::load_json_str(r#"{"set_alpha_to_zero": "no"}"#).unwrap_err();
    assert!(matches!(e, Error::ConfigParse { .. }), "{e}");
    assert!(e.to_string().contains("set_alpha_to_zero"), "{e}");
    let e = DdimInverseConfig::load_json_str(r#"{"timestep_spacing": "cosine"}"#).unwrap_err();
    assert!(e.to_string().contains("timestep_spacing"), "{e}");
}

#[test]
fn length_mismatches_are_errors() {
    let mut inverse = DdimInverseScheduler::new(DdimInverseConfig::default()).unwrap();
    inverse.set_timesteps(10).unwrap();
    assert!(matches!(
        inverse.step(&[0.0f32; 3], 100, &[0.0; 4]),
        Err(Error::LengthMismatch {
            name: "model_output",
            expected: 4,
            got: 3
        })
    ));
    let (mut a, mut b) = ([0.0f32; 4], [7.0f32; 3]);
    assert!(inverse
        .step_into(&[0.0f32; 4], 100, &[0.0; 4], &mut a, &mut b)
        .is_err());
    assert_eq!(b, [7.0; 3]);
}

// ---- the matching inverse --------------------------------------------------------------

#[test]
fn matching_equals_diffusers_inverse_where_diffusers_is_consistent() {
    // diffusers' inverse steps from t − ⌊T/n⌋ (or the initial ᾱ) to t, the forward stride
    // rule reversed: for leading and trailing the two inverses are the same map.
    for spacing in [TimestepSpacing::Leading, TimestepSpacing::Trailing] {
        for (n, set_alpha_to_one) in [(10, true), (50, false), (7, true)] {
            let config = DdimConfig {
                timestep_spacing: spacing,
                set_alpha_to_one,
                ..Default::default()
            };
            let mut forward = DdimScheduler::new(config.clone()).unwrap();
            forward.set_timesteps(n).unwrap();
            let matching = DdimInverseScheduler::matching(&forward).unwrap();
            let mut plain =
                DdimInverseScheduler::new(DdimInverseConfig::from_ddim_config(&config).unwrap())
                    .unwrap();
            plain.set_timesteps(n).unwrap();
            assert_eq!(matching.timesteps(), plain.timesteps());
            let x = [0.3f32, -0.2, 0.9, -1.4];
            let eps = [0.5f32, 0.1, -0.7, 0.2];
            for &t in plain.timesteps() {
                assert_eq!(
                    matching.step_levels(t).unwrap(),
                    plain.step_levels(t).unwrap()
                );
                assert_eq!(
                    matching.step(&eps, t, &x).unwrap(),
                    plain.step(&eps, t, &x).unwrap()
                );
            }
        }
    }
}

#[test]
fn matching_mirrors_every_forward_step() {
    for rule in [PrevTimestepRule::Stride, PrevTimestepRule::NextInSchedule] {
        for spacing in TimestepSpacing::ALL.iter().copied() {
            let forward = DdimScheduler::new(DdimConfig {
                timestep_spacing: spacing,
                clip_sample: false,
                ..Default::default()
            })
            .unwrap()
            .with_prev_timestep_rule(rule);
            let mut inverse = DdimInverseScheduler::matching(&forward).unwrap();
            assert!(inverse.is_matching());
            inverse.set_timesteps(13).unwrap();
            let mut forward = forward;
            forward.set_timesteps(13).unwrap();
            let reversed: Vec<usize> = forward.timesteps().iter().rev().copied().collect();
            assert_eq!(inverse.timesteps(), reversed);
            for &t in forward.timesteps() {
                // The inverse step at t goes from where the forward step at t lands back to t.
                let levels = inverse.step_levels(t).unwrap();
                let c = forward.step_coefficients(t, 0.0).unwrap();
                assert_eq!(levels.source_timestep, c.prev_timestep);
                assert_eq!(levels.alpha_prod_source, c.alpha_prod_t_prev);
                assert_eq!(levels.alpha_prod_target, c.alpha_prod_t);
                // With ε fixed (a model that does not depend on x), the two steps are inverse
                // maps: forward(inverse(x)) = x up to rounding.
                let x = [0.3f32, -0.2, 0.9, -0.4];
                let eps = [0.5f32, 0.1, -0.7, 0.2];
                let up = inverse.step(&eps, t, &x).unwrap().prev_sample;
                let down = forward
                    .step(&eps, t, &up, &StepOptions::default())
                    .unwrap()
                    .prev_sample;
                for (a, b) in down.iter().zip(&x) {
                    assert!((a - b).abs() < 1e-5, "{spacing} {rule:?} t={t}: {a} vs {b}");
                }
            }
        }
    }
}

#[test]
fn timesteps_before_set_timesteps_are_ascending_training_steps() {
    let inverse = DdimInverseScheduler::new(DdimInverseConfig::default()).unwrap();
    assert_eq!(inverse.timesteps().len(), 1000);
    assert_eq!(inverse.timesteps()[..2], [0, 1]);
    assert_eq!(inverse.order(), 1);
    assert_eq!(inverse.init_noise_sigma(), 1.0);
}

#[test]
fn every_element_type_steps_alike() {
    let mut inverse = DdimInverseScheduler::new(DdimInverseConfig {
        prediction_type: ddim::PredictionType::VPrediction,
        ..Default::default()
    })
    .unwrap();
    inverse.set_timesteps(10).unwrap();
    let x = [0.3f32, -0.2, 0.9, -0.4, 0.05];
    let m = [0.5f32, 0.1, -0.7, 0.2, -1.1];
    let want = inverse.step(&m, 500, &x).unwrap().prev_sample;
    let wide = inverse
        .step(&m.map(f64::from), 500, &x.map(f64::from))
        .unwrap()
        .prev_sample;
    let half = inverse
        .step(
            &m.map(ddim::half::f16::from_f32),
            500,
            &x.map(ddim::half::f16::from_f32),
        )
        .unwrap()
        .prev_sample;
    for i in 0..x.len() {
        assert!((wide[i] as f32 - want[i]).abs() < 1e-6);
        assert!((half[i].to_f32() - want[i]).abs() < 2e-3);
    }
}

#[test]
fn conflict_markers_are_reported_by_the_inverse_loader() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/configs");
    let file = dir.join("waifu_conflicted.json");
    let err = DdimInverseConfig::load_file(&file).unwrap_err();
    assert!(matches!(err, Error::ConfigParse { .. }), "{err}");
    let err = err.to_string();
    assert!(
        err.contains("merge-conflict marker") && err.contains("line 7"),
        "{err}"
    );
    assert!(err.contains("waifu_conflicted.json"), "{err}");
    // The same text loads the same way in both loaders: the forward one names the same line.
    let text = std::fs::read_to_string(&file).unwrap();
    let forward = DdimConfig::load_json_str(&text).unwrap_err().to_string();
    let inverse = DdimInverseConfig::load_json_str(&text)
        .unwrap_err()
        .to_string();
    assert_eq!(inverse, forward);
}

#[test]
fn the_inverse_loader_finds_the_config_of_a_model_folder() {
    let dir = std::env::temp_dir().join(format!("ddim-inverse-folder-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("scheduler")).unwrap();
    std::fs::write(dir.join("scheduler_config.json"), r#"{"steps_offset": 2}"#).unwrap();
    let loaded = DdimInverseConfig::load_file(&dir).unwrap();
    assert_eq!(loaded.config.steps_offset, 2);
    std::fs::write(
        dir.join("scheduler").join("scheduler_config.json"),
        r#"{"steps_offset": 1}"#,
    )
    .unwrap();
    assert_eq!(
        DdimInverseConfig::load_file(&dir)
            .unwrap()
            .config
            .steps_offset,
        1
    );
    std::fs::remove_dir_all(&dir).unwrap();
    let err = DdimInverseConfig::load_file(&dir).unwrap_err();
    assert!(matches!(err, Error::ConfigIo { .. }), "{err}");
}
