//! `batch_step_no_noise` against diffusers' `DDIMParallelScheduler` (fixtures written by
//! `tools/gen_parallel_fixtures.py` from the real diffusers 0.42.1; no Python needed here).

use ddim::{BatchFinalAlpha, DdimConfig, DdimScheduler, Error, PrevTimestepRule};
use serde_json::Value;

fn floats(v: &Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|b| f32::from_bits(u32::try_from(b.as_u64().unwrap()).unwrap()))
        .collect()
}

fn cases() -> Vec<Value> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/parallel/cases.json"
    );
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    doc["cases"].as_array().unwrap().clone()
}

/// Runs every case under `rule` against the fixture `key`; returns (values, bit-exact, worst
/// error in ulps of the item's sensitivity).
fn compare(rule: BatchFinalAlpha, key: &str) -> (usize, usize, f64) {
    let (mut values, mut exact, mut worst) = (0, 0, 0.0f64);
    for case in cases() {
        let id = case["id"].as_str().unwrap();
        let config = DdimConfig::from_json_str(&case["config"].to_string()).unwrap();
        let mut scheduler = DdimScheduler::new(config)
            .unwrap()
            .with_batch_final_alpha(rule);
        scheduler
            .set_timesteps(usize::try_from(case["n"].as_u64().unwrap()).unwrap())
            .unwrap();
        let timesteps: Vec<usize> = case["timesteps"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| usize::try_from(t.as_u64().unwrap()).unwrap())
            .collect();
        let (x, m) = (floats(&case["sample"]), floats(&case["model_output"]));
        let theirs = floats(&case[key]);
        let mut ours = vec![0.0f32; x.len()];
        let ucmo = case["use_clipped_model_output"].as_bool().unwrap();
        scheduler
            .batch_step_no_noise(&m, &timesteps, &x, ucmo, &mut ours)
            .unwrap();
        let per_item = x.len() / timesteps.len();
        for (i, (&a, &b)) in ours.iter().zip(&theirs).enumerate() {
            values += 1;
            if a == b {
                exact += 1;
                continue;
            }
            let item = i / per_item;
            let ac = scheduler.alphas_cumprod()[timesteps[item]];
            // The step divides by √ᾱ_t (ε) or √(1 − ᾱ_t) (sample, clipped ε̂): one ulp of a
            // square root is amplified by that much.
            let amplification = f64::from(ac.sqrt().recip().max((1.0 - ac).sqrt().recip()));
            let range = item * per_item..(item + 1) * per_item;
            let magnitude = x[range.clone()]
                .iter()
                .chain(&m[range])
                .fold(0.0f32, |s, v| s.max(v.abs()));
            let ulps = f64::from((a - b).abs())
                / (f64::from(f32::EPSILON) * f64::from(magnitude) * amplification);
            assert!(ulps <= 8.0, "{id}[{i}] {key}: {a} vs {b} ({ulps:.1} ulps)");
            worst = worst.max(ulps);
        }
    }
    println!("{key} under {rule:?}: {values} values, {exact} bit-exact, worst {worst:.2} ulps");
    (values, exact, worst)
}

#[test]
fn diffusers_rule_matches_ddim_parallel_scheduler() {
    let (values, exact, _) = compare(BatchFinalAlpha::Diffusers, "batch_step_no_noise");
    assert!(values > 4000 && exact * 2 > values, "{exact} of {values}");
}

#[test]
fn config_rule_matches_ddim_scheduler_step_per_item() {
    let (values, exact, _) = compare(BatchFinalAlpha::Config, "step_per_item");
    assert!(values > 4000 && exact * 2 > values, "{exact} of {values}");
}

#[test]
fn the_quirk_shows_only_past_the_end_without_set_alpha_to_one() {
    // The two fixtures differ exactly on the items whose step goes past the end, when
    // `set_alpha_to_one` is false: there diffusers' parallel scheduler uses ᾱ = 1.
    let mut differing_items = 0;
    for case in cases() {
        let (a, b) = (
            floats(&case["batch_step_no_noise"]),
            floats(&case["step_per_item"]),
        );
        let config = DdimConfig::from_json_str(&case["config"].to_string()).unwrap();
        let n = usize::try_from(case["n"].as_u64().unwrap()).unwrap();
        let stride = config.num_train_timesteps / n;
        let per_item = a.len() / case["timesteps"].as_array().unwrap().len();
        for (item, t) in case["timesteps"].as_array().unwrap().iter().enumerate() {
            let t = usize::try_from(t.as_u64().unwrap()).unwrap();
            let past_end = t < stride;
            let range = item * per_item..(item + 1) * per_item;
            let differ = a[range.clone()] != b[range];
            assert_eq!(
                differ,
                past_end && !config.set_alpha_to_one,
                "{} item {item} (t = {t})",
                case["id"]
            );
            differing_items += usize::from(differ);
        }
    }
    assert!(differing_items > 0);
}

#[test]
fn errors_leave_the_output_untouched() {
    let mut s = DdimScheduler::new(DdimConfig::default()).unwrap();
    let mut out = [7.0f32; 4];
    let err = s
        .batch_step_no_noise(&[0.0; 4], &[999, 0], &[0.0; 4], false, &mut out)
        .unwrap_err();
    assert!(matches!(err, Error::TimestepsNotSet), "{err}");
    s.set_timesteps(10).unwrap();
    for (timesteps, m_len, out_len) in [
        (&[999usize, 1000][..], 4, 4),
        (&[][..], 4, 4),
        (&[999, 500, 0][..], 4, 4),
        (&[999, 0][..], 3, 4),
    ] {
        let mut out = vec![7.0f32; out_len];
        let r = s.batch_step_no_noise(&vec![0.0; m_len], timesteps, &[0.0; 4], false, &mut out);
        assert!(r.is_err(), "{timesteps:?}");
        assert!(out.iter().all(|&v| v == 7.0));
    }
    // With NextInSchedule, only scheduled timesteps.
    let s = s.with_prev_timestep_rule(PrevTimestepRule::NextInSchedule);
    let err = s
        .batch_step_no_noise(&[0.0; 4], &[999, 901], &[0.0; 4], false, &mut out)
        .unwrap_err();
    assert!(matches!(err, Error::TimestepNotScheduled { .. }), "{err}");
    assert_eq!(out, [7.0; 4]);
}

#[test]
fn each_item_equals_a_single_step() {
    let mut s = DdimScheduler::new(DdimConfig::default())
        .unwrap()
        .with_batch_final_alpha(BatchFinalAlpha::Config);
    s.set_timesteps(20).unwrap();
    let x: Vec<f32> = (0..12).map(|i| (i as f32 * 0.37).sin()).collect();
    let m: Vec<f32> = (0..12).map(|i| (i as f32 * 0.11).cos()).collect();
    let ts = [999, 449, 0];
    let mut out = vec![0.0; 12];
    s.batch_step_no_noise(&m, &ts, &x, true, &mut out).unwrap();
    for (b, &t) in ts.iter().enumerate() {
        let r = b * 4..(b + 1) * 4;
        let options = ddim::StepOptions {
            use_clipped_model_output: true,
            ..Default::default()
        };
        let one = s.step(&m[r.clone()], t, &x[r.clone()], &options).unwrap();
        assert_eq!(one.prev_sample, out[r]);
    }
}
