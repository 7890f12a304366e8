//! img2img strength against the real `StableDiffusionImg2ImgPipeline.get_timesteps` of
//! diffusers 0.42.1 (fixtures from `tools/gen_guidance_fixtures.py`).

use ddim::img2img::{img2img_timesteps, skipped_steps};
use ddim::{DdimConfig, DdimScheduler, Error, TimestepSpacing};
use serde_json::Value;

fn cases() -> Vec<Value> {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/img2img/cases.json");
    let manifest: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    manifest["cases"].as_array().unwrap().clone()
}

fn usizes(v: &Value) -> Vec<usize> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_u64().unwrap() as usize)
        .collect()
}

fn scheduler(case: &Value) -> DdimScheduler {
    let spacing = match case["spacing"].as_str().unwrap() {
        "leading" => TimestepSpacing::Leading,
        "trailing" => TimestepSpacing::Trailing,
        "linspace" => TimestepSpacing::Linspace,
        other => panic!("spacing {other}"),
    };
    let config = DdimConfig {
        timestep_spacing: spacing,
        steps_offset: case["steps_offset"].as_u64().unwrap() as usize,
        ..DdimConfig::stable_diffusion()
    };
    let mut scheduler = DdimScheduler::new(config).unwrap();
    scheduler
        .set_timesteps(case["num_inference_steps"].as_u64().unwrap() as usize)
        .unwrap();
    scheduler
}

#[test]
fn matches_diffusers_get_timesteps() {
    let cases = cases();
    let (mut kept, mut refused) = (0, 0);
    for case in &cases {
        let scheduler = scheduler(case);
        let n = case["num_inference_steps"].as_u64().unwrap() as usize;
        assert_eq!(scheduler.timesteps(), usizes(&case["full_timesteps"]));
        assert_eq!(case["order"].as_u64().unwrap() as usize, scheduler.order());
        assert_eq!(case["has_set_begin_index"], false, "DDIM has no step index");
        for result in case["results"].as_array().unwrap() {
            let strength = result["strength"].as_f64().unwrap();
            let expected = usizes(&result["timesteps"]);
            let steps = result["returned_num_inference_steps"].as_u64().unwrap() as usize;
            let what = format!("{} n={n} strength={strength}", case["spacing"]);
            match img2img_timesteps(&scheduler, strength) {
                Ok(plan) => {
                    kept += 1;
                    assert_eq!(plan.timesteps, expected, "{what}");
                    assert_eq!(plan.num_inference_steps, steps, "{what}");
                    assert_eq!(plan.begin_index, n - expected.len(), "{what}");
                    let latent = result["latent_timestep"].as_u64().unwrap() as usize;
                    assert_eq!(plan.noise_timestep, latent, "{what}");
                }
                Err(e) => {
                    refused += 1;
                    // Only where diffusers keeps nothing and its pipeline then fails.
                    assert!(expected.is_empty() && steps == 0, "{what}: {e}");
                    assert_eq!(result["add_noise_error"], "IndexError", "{what}");
                    assert!(
                        matches!(e, Error::InvalidStepCount { requested, .. } if requested == n),
                        "{what}: {e}"
                    );
                }
            }
        }
    }
    println!(
        "{} schedules: {kept} strengths match diffusers, {refused} refused where diffusers keeps no step",
        cases.len()
    );
    assert!(kept > 400 && refused > 50, "{kept} / {refused}");
}

#[test]
fn strength_is_python_float_arithmetic() {
    // int(50 * 0.7) = 35 in double; 0.7 rounded to f32 first would give 34.
    assert_eq!(skipped_steps(50, 0.7).unwrap(), 15);
    // int(10 * 0.3) = int(3.0000000000000004) = 3
    assert_eq!(skipped_steps(10, 0.3).unwrap(), 7);
    assert_eq!(skipped_steps(7, 1.0).unwrap(), 0);
    assert_eq!(skipped_steps(3, 0.34).unwrap(), 2);
}

#[test]
fn bad_strengths_are_errors() {
    for bad in [-0.1, 1.0001, f64::NAN, f64::INFINITY] {
        let e = skipped_steps(50, bad).unwrap_err();
        assert!(
            matches!(
                e,
                Error::InvalidStepOption {
                    name: "strength",
                    ..
                }
            ),
            "{e}"
        );
        assert!(e.to_string().contains("[0, 1]"), "{e}");
    }
    let e = skipped_steps(50, 0.01).unwrap_err();
    assert!(
        matches!(e, Error::InvalidStepCount { requested: 50, .. }),
        "{e}"
    );
    assert!(e.to_string().contains("= 0"), "{e}");
    assert!(skipped_steps(0, 1.0).is_err());
    let unset = DdimScheduler::new(DdimConfig::stable_diffusion()).unwrap();
    assert!(matches!(
        img2img_timesteps(&unset, 0.5),
        Err(Error::TimestepsNotSet)
    ));
}
