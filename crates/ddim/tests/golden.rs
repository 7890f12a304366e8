//! Parity with the real diffusers 0.42.1 (torch 2.15 CPU, float32): fixtures written by
//! `tools/gen_fixtures.py` into `tests/data/diffusers/`.
//!
//! Timesteps must match exactly. Floats are compared in ulps: diffusers' torch CPU `sqrt` is
//! MKL's, not correctly rounded (about 20% of inputs are 1 ulp off), while this crate uses IEEE
//! `sqrt`; every other operation is the same f32 operation in the same order. Each test prints
//! the largest disagreement it saw (run with `--nocapture`).

mod common;

use common::{config, parity_scheduler, sensitivity, usize_of, usizes, Fixtures, Worst};
use ddim::timesteps::{diffusers_timesteps, inference_timesteps};
use ddim::{StepOptions, TimestepSpacing};
use serde_json::Value;

/// A tolerance in ulps of the largest magnitude in the expected tensor: a 1-ulp difference in
/// a square root, carried through one subtraction that cancels, shows up as a few ulps of the
/// operands, not of the (possibly tiny) result.
fn normwise_ulps(ours: &[f32], theirs: &[f32]) -> f64 {
    let scale = theirs
        .iter()
        .filter(|v| v.is_finite())
        .fold(f32::MIN_POSITIVE, |m, v| m.max(v.abs()));
    let ulp = f64::from(scale) * f64::from(f32::EPSILON);
    ours.iter()
        .zip(theirs)
        .map(|(&a, &b)| {
            if a.is_nan() && b.is_nan() || a == b {
                0.0
            } else {
                f64::from((a - b).abs()) / ulp
            }
        })
        .fold(0.0, f64::max)
}

fn spacing(v: &Value) -> TimestepSpacing {
    v.as_str().unwrap().parse().unwrap()
}

#[test]
fn schedules_match_diffusers() {
    let fx = Fixtures::load();
    let mut exact = Worst::default();
    let (mut zero_snr_betas, mut zero_snr_ac) = (Worst::default(), Worst::default());
    let mut refused = 0;
    for case in fx.section("schedules") {
        let cfg = config(&case["config"]);
        let name = case["name"].as_str().unwrap();
        let their_betas = fx.f32(&case["betas"]);
        let scheduler = match parity_scheduler(cfg.clone()) {
            Ok(s) => s,
            Err(e) => {
                // We refuse β outside [0, 1] (diffusers accepts them and yields NaN); check
                // that is the only reason.
                assert!(
                    their_betas.iter().any(|b| !(0.0..=1.0).contains(b)),
                    "{name}: {e}"
                );
                refused += 1;
                continue;
            }
        };
        let final_ac = case["final_alpha_cumprod"].as_f64().unwrap() as f32;
        let their_ac = fx.f32(&case["alphas_cumprod"]);
        if cfg.rescale_betas_zero_snr {
            zero_snr_betas.compare(scheduler.betas(), their_betas, name);
            zero_snr_ac.compare(scheduler.alphas_cumprod(), their_ac, name);
            zero_snr_ac.compare(&[scheduler.final_alpha_cumprod()], &[final_ac], name);
        } else {
            exact.compare(scheduler.betas(), their_betas, name);
            exact.compare(scheduler.alphas_cumprod(), their_ac, name);
            exact.compare(&[scheduler.final_alpha_cumprod()], &[final_ac], name);
        }
    }
    println!("{refused} schedules with beta outside [0, 1] refused");
    exact.report("betas and alphas_cumprod (no sqrt involved)");
    zero_snr_betas.report("zero-SNR betas (through torch's sqrt)");
    zero_snr_ac.report("zero-SNR alphas_cumprod (through torch's sqrt)");
    assert_eq!(
        exact.max_ulps, 0,
        "schedules without sqrt must be bit-exact"
    );
    // The rescale takes sqrt(ᾱ) and subtracts its last value, so a 1-ulp sqrt difference
    // becomes a relative error of ᾱ near the end (measured: 2.0e-5 for T = 37, 4.3e-6 for
    // T = 1000), which reaches β = 1 − ᾱ_t/ᾱ_{t−1} as an absolute error (measured: 3.9e-6).
    assert!(zero_snr_betas.max_abs < 1e-5, "{zero_snr_betas:?}");
    assert!(zero_snr_ac.max_rel < 5e-5, "{zero_snr_ac:?}");
}

/// Our `n` timesteps against diffusers' raw output: equal where diffusers is valid; where it
/// returns an extra trailing `-1` we return its first `n`; where leading + offset reaches `T`
/// we refuse.
fn check_timesteps(t: usize, spacing: TimestepSpacing, offset: usize, n: usize, theirs: &[i64]) {
    assert_eq!(
        diffusers_timesteps(t, spacing, offset, n).unwrap(),
        theirs,
        "raw T={t} {spacing} o={offset} n={n}"
    );
    let ours = inference_timesteps(t, spacing, offset, n);
    let valid = theirs.len() == n && theirs.iter().all(|&x| (0..t as i64).contains(&x));
    match ours {
        Ok(ours) if valid => {
            assert!(
                ours.iter().zip(theirs).all(|(&a, &b)| a as i64 == b),
                "T={t} {spacing} n={n}"
            )
        }
        Ok(ours) => {
            assert_eq!(theirs.len(), n + 1, "T={t} {spacing} n={n}");
            assert_eq!(theirs[n], -1);
            assert!(ours.iter().zip(theirs).all(|(&a, &b)| a as i64 == b));
        }
        Err(e) => {
            assert!(
                !valid,
                "T={t} {spacing} n={n}: we refused a valid schedule: {e}"
            );
            assert_eq!(theirs[0], t as i64, "T={t} {spacing} n={n}");
        }
    }
}

#[test]
fn timesteps_match_diffusers() {
    let fx = Fixtures::load();
    let mut checked = 0;
    for case in fx.section("timesteps") {
        let n = usize_of(&case["n"]);
        if n == 0 {
            continue; // diffusers' linspace returns [] for n = 0; we refuse n = 0 (below)
        }
        let theirs: Vec<i64> = case["timesteps"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_i64().unwrap())
            .collect();
        let t = usize_of(&case["num_train_timesteps"]);
        check_timesteps(
            t,
            spacing(&case["spacing"]),
            usize_of(&case["steps_offset"]),
            n,
            &theirs,
        );
        checked += 1;
    }
    let (mut anomalies, mut refused) = (0, 0);
    for table in fx.section("timesteps_all") {
        let t = usize_of(&table["num_train_timesteps"]);
        let (sp, offset) = (spacing(&table["spacing"]), usize_of(&table["steps_offset"]));
        let values = fx.i32(&table["values"]);
        let lengths = fx.i32(&table["lengths"]);
        assert_eq!(lengths.len(), t);
        let mut start = 0;
        for (i, &len) in lengths.iter().enumerate() {
            let len = len as usize;
            let theirs: Vec<i64> = values[start..start + len]
                .iter()
                .map(|&v| i64::from(v))
                .collect();
            start += len;
            check_timesteps(t, sp, offset, i + 1, &theirs);
            anomalies += usize::from(len == i + 2);
            refused += usize::from(theirs.first() == Some(&(t as i64)));
            checked += 1;
        }
        assert_eq!(start, values.len());
    }
    println!("{checked} schedules compared; {anomalies} diffusers n+1 outputs; {refused} refused (timestep T)");
    // T = 1000 has 62 anomalous n for trailing and T = 100 has 5 (spec §1.6), each seen with
    // steps_offset 0 and 1.
    assert_eq!(anomalies, 2 * (62 + 5));
    for case in fx.section("set_timesteps_errors") {
        let t = usize_of(&case["num_train_timesteps"]);
        let n = usize_of(&case["n"]);
        let r = inference_timesteps(
            t,
            spacing(&case["spacing"]),
            usize_of(&case["steps_offset"]),
            n,
        );
        assert!(
            r.is_err(),
            "diffusers raised {} for n={n}, we did not",
            case["error"]
        );
    }
}

#[test]
fn variance_matches_diffusers() {
    let fx = Fixtures::load();
    let mut worst = Worst::default();
    for case in fx.section("variance") {
        let mut scheduler = parity_scheduler(config(&case["config"])).unwrap();
        scheduler.set_timesteps(usize_of(&case["n"])).unwrap();
        let t = usize_of(&case["timestep"]);
        let prev = case["prev_timestep"].as_i64().unwrap();
        let ac = scheduler.alphas_cumprod();
        let a_prev = usize::try_from(prev).map_or(scheduler.final_alpha_cumprod(), |p| ac[p]);
        let ours = ddim::StepCoefficients::new(t, usize::try_from(prev).ok(), ac[t], a_prev, 1.0);
        worst.compare(
            &[ours.variance],
            &[case["value"].as_f64().unwrap() as f32],
            "variance",
        );
    }
    worst.report("_get_variance");
    assert!(worst.max_ulps <= 8, "{worst:?}");
}

#[test]
fn steps_match_diffusers() {
    let fx = Fixtures::load();
    let mut worst = Worst::default();
    let mut worst_scaled = 0.0f64;
    let (mut cases, mut skipped, mut sqrt_nan, mut eta_refused) = (0, 0, 0, 0);
    let mut residue_values = 0;
    for case in fx.section("step_cases") {
        let id = case["id"].as_str().unwrap();
        let mut scheduler = parity_scheduler(config(&case["config"])).unwrap();
        let n = usize_of(&case["n"]);
        if let Err(e) = scheduler.set_timesteps(n) {
            // Only leading + steps_offset reaching T (diffusers #10003) is refused.
            let c = scheduler.config();
            let raw =
                diffusers_timesteps(c.num_train_timesteps, c.timestep_spacing, c.steps_offset, n)
                    .unwrap();
            assert_eq!(raw[0], c.num_train_timesteps as i64, "{id}: {e}");
            skipped += 1;
            continue;
        }
        let noise = case["variance_noise"]
            .as_str()
            .map(|_| fx.f32(&case["variance_noise"]));
        let options = StepOptions {
            eta: case["eta"].as_f64().unwrap() as f32,
            use_clipped_model_output: case["use_clipped_model_output"].as_bool().unwrap(),
            variance_noise: noise,
            batch_size: Some(usize_of(&case["batch_size"])),
            ..Default::default()
        };
        let t = usize_of(&case["timestep"]);
        let (m, x) = (fx.f32(&case["model_output"]), fx.f32(&case["sample"]));
        let out = match scheduler.step(m, t, x, &options) {
            Ok(out) => out,
            Err(e) => {
                // η > 1 with σ² > 1 − ᾱ_prev is refused; diffusers returns NaN there.
                assert!(options.eta > 1.0, "{id}: {e}");
                assert!(
                    fx.f32(&case["prev_sample"]).iter().all(|v| v.is_nan()),
                    "{id}: {e}"
                );
                eta_refused += 1;
                continue;
            }
        };
        let c = scheduler.step_coefficients(t, options.eta).unwrap();
        let sens = sensitivity(
            &c,
            scheduler.config().prediction_type,
            options.use_clipped_model_output,
            &[m, x, noise.unwrap_or(&[])],
        );
        // The radicand of the direction coefficient is at rounding level: its sign, and so
        // diffusers' NaN, depends on the last bit of torch's sqrt.
        let rounding_residue = options.eta > 0.0
            && c.alpha_prod_t_prev < 1.0
            && f64::from(c.direction).powi(2)
                <= 8.0 * f64::from(f32::EPSILON) * f64::from(1.0 - c.alpha_prod_t_prev);
        for (ours, key) in [
            (&out.prev_sample, "prev_sample"),
            (&out.pred_original_sample, "pred_original_sample"),
        ] {
            let theirs = fx.f32(&case[key]);
            assert_eq!(ours.len(), theirs.len());
            for (i, (&a, &b)) in ours.iter().zip(theirs).enumerate() {
                if !(a.is_finite() && b.is_finite()) {
                    // With η = 1 and ᾱ_t ≈ 0 (zero terminal SNR, or a cosine schedule's last
                    // step), 1 − ᾱ_prev − σ² is 0 or nearly so and rounds to a tiny negative;
                    // diffusers' √ then gives NaN (diffusers #5969). We use 0.
                    if b.is_nan() && !a.is_nan() && rounding_residue {
                        sqrt_nan += 1;
                        continue;
                    }
                    assert!(
                        a == b || a.is_nan() && b.is_nan(),
                        "{id} {key}[{i}]: {a} vs {b}"
                    );
                    continue;
                }
                let err = f64::from((a - b).abs());
                if rounding_residue {
                    // √ of a radicand at rounding level: up to √(8·ε_f32) of ε̂'s magnitude.
                    let bound =
                        (8.0 * f64::from(f32::EPSILON)).sqrt() * sens.max(f64::from(b.abs()));
                    assert!(
                        err <= bound,
                        "{id} {key}[{i}]: {a} vs {b}, beyond {bound:.3e}"
                    );
                    residue_values += 1;
                    continue;
                }
                let scaled = err / (f64::from(f32::EPSILON) * sens.max(f64::from(b.abs())));
                assert!(
                    scaled <= 8.0,
                    "{id} {key}[{i}]: {a} vs {b}: {scaled:.1} ulps of the sensitivity {sens:.3e}"
                );
                worst_scaled = worst_scaled.max(scaled);
            }
            worst.compare(ours, theirs, id);
        }
        cases += 1;
    }
    worst.report(&format!(
        "step ({cases} cases, {skipped} refused by set_timesteps, {eta_refused} for eta > 1)"
    ));
    println!(
        "step: largest error {worst_scaled:.2} ulps of max|input| x amplification; \
         {residue_values} values through a rounding-level radicand, {sqrt_nan} of them NaN in \
         diffusers (#5969) and not here"
    );
}

#[test]
fn add_noise_and_velocity_match_diffusers() {
    let fx = Fixtures::load();
    let mut worst = Worst::default();
    for (section, a, b) in [
        ("add_noise_cases", "original_samples", "noise"),
        ("velocity_cases", "sample", "noise"),
    ] {
        for case in fx.section(section) {
            let Ok(scheduler) = parity_scheduler(config(&case["config"])) else {
                continue; // β outside [0, 1]: refused, checked in schedules_match_diffusers
            };
            let ts = usizes(&case["timesteps"]);
            let (x, n) = (fx.f32(&case[a]), fx.f32(&case[b]));
            let ours = if section == "add_noise_cases" {
                scheduler.add_noise(x, n, &ts)
            } else {
                scheduler.get_velocity(x, n, &ts)
            }
            .unwrap();
            worst.compare(&ours, fx.f32(&case["expected"]), section);
            assert!(
                normwise_ulps(&ours, fx.f32(&case["expected"])) <= 4.0,
                "{section}"
            );
        }
    }
    worst.report("add_noise / get_velocity");
}

/// The dummy model of diffusers' test suite: `sample * t / (t + 1)` in f32.
fn dummy_model(sample: &[f32], t: usize) -> Vec<f32> {
    let t = t as f32;
    sample.iter().map(|x| x * t / (t + 1.0)).collect()
}

#[test]
fn full_loops_match_diffusers() {
    let fx = Fixtures::load();
    let mut worst = Worst::default();
    let mut worst_rel = 0.0f64;
    for case in fx.section("loops") {
        let id = case["id"].as_str().unwrap();
        assert_eq!(case["model"], "dummy");
        let mut scheduler = parity_scheduler(config(&case["config"])).unwrap();
        scheduler.set_timesteps(usize_of(&case["n"])).unwrap();
        let timesteps = usizes(&case["timesteps"]);
        // The loop ran over our timesteps, or (with-noise loop) over their tail.
        let all = scheduler.timesteps();
        assert!(
            all.ends_with(&timesteps),
            "{id}: {timesteps:?} not a tail of {all:?}"
        );
        let mut x = fx.f32(&case["initial_sample"]).to_vec();
        let noise = case["noise_per_step"]
            .as_str()
            .map(|_| fx.f32(&case["noise_per_step"]));
        let eta = case["eta"].as_f64().unwrap() as f32;
        for (i, &t) in timesteps.iter().enumerate() {
            let m = dummy_model(&x, t);
            let options = StepOptions {
                eta,
                use_clipped_model_output: case["use_clipped_model_output"].as_bool().unwrap(),
                variance_noise: noise.map(|z| &z[i * x.len()..(i + 1) * x.len()]),
                batch_size: Some(usize_of(&case["batch_size"])),
                ..Default::default()
            };
            x = scheduler.step(&m, t, &x, &options).unwrap().prev_sample;
        }
        let theirs = fx.f32(&case["final_sample"]);
        worst.compare(&x, theirs, id);
        assert_eq!(worst.non_finite_mismatches, 0, "{id}");
        let scale = theirs
            .iter()
            .filter(|v| v.is_finite())
            .fold(0.0f32, |m, v| m.max(v.abs()));
        let rel = x
            .iter()
            .zip(theirs)
            .filter(|(a, b)| a.is_finite() && b.is_finite())
            .map(|(a, b)| f64::from((a - b).abs()) / f64::from(scale))
            .fold(0.0, f64::max);
        // Each step can add a few ulps (the sqrt difference); measured worst: see the report.
        assert!(rel < 1e-5, "{id}: {rel:.3e} of the largest value");
        worst_rel = worst_rel.max(rel);
    }
    worst.report("full loops (final samples)");
    println!("full loops: largest error {worst_rel:.3e} of the sample's largest value");
}
