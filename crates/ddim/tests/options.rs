//! The options beyond diffusers (crate `policy`): each default is diffusers' behaviour, each
//! other choice does what its docs say. Where diffusers has the behaviour (NaN for η > 1), the
//! fixtures of the real diffusers are the reference.

mod common;

use common::{config, pseudo_random, Fixtures};
use ddim::{
    timesteps::quad_timesteps, DdimConfig, DdimScheduler, Error, EtaPolicy, PredictionType,
    PrevTimestepRule, SpacingOverride, StepOptions, TimestepSpacing, VarianceKind, ZeroSnrGuard,
};

fn scheduler(config: DdimConfig, n: usize) -> DdimScheduler {
    let mut s = DdimScheduler::new(config).unwrap();
    s.set_timesteps(n).unwrap();
    s
}

fn zero_snr(spacing: TimestepSpacing, prediction: PredictionType) -> DdimConfig {
    DdimConfig {
        rescale_betas_zero_snr: true,
        timestep_spacing: spacing,
        prediction_type: prediction,
        clip_sample: false,
        ..DdimConfig::default()
    }
}

// ---------------------------------------------------------------------------------------------
// EtaPolicy

#[test]
#[allow(clippy::needless_update)] // StepOptions literals end with `..Default::default()`
fn diffusers_eta_policy_gives_diffusers_nan_where_strict_refuses() {
    let fx = Fixtures::load();
    let mut refused = 0;
    for case in fx.section("step_cases") {
        let eta = case["eta"].as_f64().unwrap() as f32;
        if eta <= 1.0 {
            continue;
        }
        let n = case["n"].as_u64().unwrap() as usize;
        let Ok(strict) = DdimScheduler::new(config(&case["config"])).and_then(|mut s| {
            s.set_timesteps(n)?;
            Ok(s)
        }) else {
            continue;
        };
        let t = case["timestep"].as_u64().unwrap() as usize;
        let noise = fx.f32(&case["variance_noise"]);
        let options = StepOptions {
            eta,
            variance_noise: Some(noise),
            batch_size: Some(case["batch_size"].as_u64().unwrap() as usize),
            use_clipped_model_output: case["use_clipped_model_output"].as_bool().unwrap(),
            ..Default::default()
        };
        let (m, x) = (fx.f32(&case["model_output"]), fx.f32(&case["sample"]));
        let theirs = fx.f32(&case["prev_sample"]);
        let Err(e) = strict.step(m, t, x, &options) else {
            continue;
        };
        assert!(
            matches!(e, Error::InvalidStepOption { name: "eta", .. }),
            "{e}"
        );
        let parity = strict.clone().with_eta_policy(EtaPolicy::Diffusers);
        let ours = parity.step(m, t, x, &options).unwrap().prev_sample;
        assert!(theirs.iter().all(|v| v.is_nan()));
        assert!(ours.iter().all(|v| v.is_nan()), "{}", case["id"]);
        // Clamped: finite, with no direction term left.
        let clamped = strict.clone().with_eta_policy(EtaPolicy::ClampSigma);
        let out = clamped.step(m, t, x, &options).unwrap().prev_sample;
        assert!(out.iter().all(|v| v.is_finite()), "{}", case["id"]);
        assert_eq!(clamped.step_coefficients(t, eta).unwrap().direction, 0.0);
        refused += 1;
    }
    assert!(
        refused > 0,
        "the fixtures hold η > 1 cases diffusers turns into NaN"
    );
}

#[test]
fn clamp_sigma_is_the_strict_step_wherever_sigma_is_below_the_limit() {
    for spacing in TimestepSpacing::ALL.iter().copied() {
        let base = scheduler(
            DdimConfig {
                timestep_spacing: spacing,
                set_alpha_to_one: false,
                ..DdimConfig::default()
            },
            30,
        );
        let clamped = base.clone().with_eta_policy(EtaPolicy::ClampSigma);
        for &t in base.timesteps() {
            for eta in [0.0, 0.5, 1.0] {
                assert_eq!(
                    base.step_coefficients(t, eta).unwrap(),
                    clamped.step_coefficients(t, eta).unwrap(),
                    "{spacing} t={t} eta={eta}"
                );
            }
            // Beyond the limit σ is the limit, and the total variance of x_{t_prev} given x̂₀
            // is still 1 − ᾱ_prev (direction² + σ² up to rounding).
            let c = clamped.step_coefficients(t, 4.0).unwrap();
            let limit = (1.0 - c.alpha_prod_t_prev).sqrt();
            assert!(c.std_dev_t <= limit, "{t}");
            let total = c.direction * c.direction + c.std_dev_t * c.std_dev_t;
            assert!((total - limit * limit).abs() <= 4.0 * f32::EPSILON, "{t}");
        }
    }
}

#[test]
fn zero_snr_residue_is_zero_except_under_the_diffusers_policy() {
    // η = 1 at t = T − 1 of a zero-SNR schedule: the radicand is 0 in exact arithmetic.
    let s = scheduler(
        zero_snr(TimestepSpacing::Trailing, PredictionType::VPrediction),
        10,
    );
    let mut residues = 0;
    for &t in s.timesteps() {
        let strict = s.step_coefficients(t, 1.0).unwrap();
        let parity = s
            .clone()
            .with_eta_policy(EtaPolicy::Diffusers)
            .step_coefficients(t, 1.0)
            .unwrap();
        let raw = (1.0 - strict.alpha_prod_t_prev) - strict.std_dev_t * strict.std_dev_t;
        if raw < 0.0 {
            residues += 1;
            assert_eq!(strict.direction, 0.0);
            assert!(parity.direction.is_nan());
        } else {
            assert_eq!(strict, parity);
        }
    }
    println!("{residues} rounding residues on this schedule");
}

// ---------------------------------------------------------------------------------------------
// VarianceKind

#[test]
fn ddpm_larger_variance_is_ddpm_posterior_mean_plus_larger_noise() {
    let base = scheduler(
        DdimConfig {
            clip_sample: false,
            ..DdimConfig::default()
        },
        10,
    );
    let larger = base.clone().with_variance_kind(VarianceKind::DdpmLarger);
    let (x, eps) = (pseudo_random(64, 1), pseudo_random(64, 2));
    for &t in base.timesteps() {
        let c = larger.step_coefficients(t, 1.0).unwrap();
        let (a, ap) = (f64::from(c.alpha_prod_t), f64::from(c.alpha_prod_t_prev));
        // σ̂ = √(1 − ᾱ_t/ᾱ_prev) and the direction of DDIM at η = 1.
        assert!((f64::from(c.std_dev_t) - (1.0 - a / ap).sqrt()).abs() < 1e-6);
        assert_eq!(
            c.direction,
            base.step_coefficients(t, 1.0).unwrap().direction
        );
        // With zero noise the step is DDPM's posterior mean
        // μ = (√ᾱ_prev·β̂·x̂₀ + √(1 − β̂)·(1 − ᾱ_prev)·x_t)/(1 − ᾱ_t), β̂ = 1 − ᾱ_t/ᾱ_prev.
        let zeros = vec![0.0f32; 64];
        let options = StepOptions {
            eta: 1.0,
            variance_noise: Some(&zeros),
            ..Default::default()
        };
        let out = larger.step(&eps, t, &x, &options).unwrap();
        let beta = 1.0 - a / ap;
        for ((&x0, &xt), &got) in out
            .pred_original_sample
            .iter()
            .zip(&x)
            .zip(&out.prev_sample)
        {
            let (x0, xt, got) = (f64::from(x0), f64::from(xt), f64::from(got));
            let mu = (ap.sqrt() * beta * x0 + (1.0 - beta).sqrt() * (1.0 - ap) * xt) / (1.0 - a);
            assert!(
                (got - mu).abs() < 2e-5 * (1.0 + mu.abs()),
                "t={t}: {got} vs {mu}"
            );
        }
        // With unit noise it adds exactly σ̂ more.
        let ones = vec![1.0f32; 64];
        let noisy = larger
            .step(
                &eps,
                t,
                &x,
                &StepOptions {
                    eta: 1.0,
                    variance_noise: Some(&ones),
                    ..Default::default()
                },
            )
            .unwrap();
        for (&noisy, &mean) in noisy.prev_sample.iter().zip(&out.prev_sample) {
            let d = noisy - mean;
            assert!((d - c.std_dev_t).abs() <= 4.0 * f32::EPSILON * (1.0 + mean.abs()));
        }
    }
    // η = 0: DDIM itself.
    assert_eq!(
        larger.step_coefficients(500, 0.0).unwrap(),
        base.step_coefficients(500, 0.0).unwrap()
    );
}

// ---------------------------------------------------------------------------------------------
// ZeroSnrGuard

#[test]
fn zero_snr_guard_refuses_epsilon_at_zero_alpha_bar_and_names_the_fix() {
    for spacing in [TimestepSpacing::Trailing, TimestepSpacing::Linspace] {
        let mut s = DdimScheduler::new(zero_snr(spacing, PredictionType::Epsilon))
            .unwrap()
            .with_zero_snr_guard(ZeroSnrGuard::Refuse);
        let err = s.set_timesteps(10).unwrap_err();
        assert!(
            matches!(err, Error::ZeroTerminalSnr { timestep: 999 }),
            "{err}"
        );
        let text = err.to_string();
        assert!(
            text.contains("v_prediction") && text.contains("ZeroSnrGuard::Off"),
            "{text}"
        );
        // Unchanged by the refusal.
        assert_eq!(s.num_inference_steps(), None);
        assert!(s.set_timesteps_custom(&[999, 500]).is_err());
        s.set_timesteps_custom(&[998, 500]).unwrap();
        // Off (the explicit opt-out) is diffusers: the schedule is set and x̂₀ is not finite.
        let mut parity = DdimScheduler::new(zero_snr(spacing, PredictionType::Epsilon))
            .unwrap()
            .with_zero_snr_guard(ZeroSnrGuard::Off);
        parity.set_timesteps(10).unwrap();
        let out = parity
            .step(&[0.5f32; 4], 999, &[1.0; 4], &StepOptions::default())
            .unwrap();
        assert!(out.pred_original_sample.iter().all(|v| !v.is_finite()));
    }
    // v and sample prediction divide by √(1 − ᾱ_t) = 1 there: allowed, finite.
    for prediction in [PredictionType::VPrediction, PredictionType::Sample] {
        let mut s = DdimScheduler::new(zero_snr(TimestepSpacing::Trailing, prediction))
            .unwrap()
            .with_zero_snr_guard(ZeroSnrGuard::Refuse);
        s.set_timesteps(10).unwrap();
        let out = s
            .step(&[0.5f32; 4], 999, &[1.0; 4], &StepOptions::default())
            .unwrap();
        assert!(out.prev_sample.iter().all(|v| v.is_finite()));
    }
    // leading with 10 steps never reaches T − 1.
    let mut s = DdimScheduler::new(zero_snr(TimestepSpacing::Leading, PredictionType::Epsilon))
        .unwrap()
        .with_zero_snr_guard(ZeroSnrGuard::Refuse);
    s.set_timesteps(10).unwrap();
}

// ---------------------------------------------------------------------------------------------
// Quad and custom timesteps

#[test]
fn quad_override_sets_quad_timesteps_and_steps_along_them() {
    let mut s = DdimScheduler::new(DdimConfig::default())
        .unwrap()
        .with_spacing_override(SpacingOverride::Quad);
    assert_eq!(s.prev_timestep_rule(), PrevTimestepRule::Stride);
    s.set_timesteps(20).unwrap();
    assert_eq!(s.timesteps(), quad_timesteps(1000, 0, 20).unwrap());
    let ts = s.timesteps().to_vec();
    for w in ts.windows(2) {
        assert_eq!(s.prev_timestep(w[0]).unwrap(), Some(w[1]));
    }
    assert_eq!(s.prev_timestep(0).unwrap(), None);
    // Back to the config's spacing: the stride rule applies again.
    let mut s = s.with_spacing_override(SpacingOverride::Config);
    s.set_timesteps(20).unwrap();
    assert_eq!(s.prev_timestep(950).unwrap(), Some(900));
    let err = DdimScheduler::new(DdimConfig::default())
        .unwrap()
        .with_spacing_override(SpacingOverride::Quad)
        .set_timesteps(1001)
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::InvalidStepCount {
                requested: 1001,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn custom_timesteps_are_validated_and_followed() {
    let mut s = DdimScheduler::new(DdimConfig {
        set_alpha_to_one: false,
        ..DdimConfig::default()
    })
    .unwrap();
    for (bad, needle) in [
        (&[][..], "empty"),
        (&[1000, 10][..], "timesteps[0] = 1000 is outside [0, 1000)"),
        (
            &[900, 900][..],
            "timesteps[0] = 900 then timesteps[1] = 900",
        ),
        (
            &[900, 100, 200][..],
            "timesteps[1] = 100 then timesteps[2] = 200",
        ),
    ] {
        let err = s.set_timesteps_custom(bad).unwrap_err();
        assert!(matches!(err, Error::InvalidTimesteps { .. }), "{err}");
        assert!(err.to_string().contains(needle), "{err}");
        assert_eq!(s.num_inference_steps(), None);
    }
    s.set_timesteps_custom(&[999, 600, 10]).unwrap();
    assert_eq!(
        (s.timesteps(), s.num_inference_steps()),
        (&[999, 600, 10][..], Some(3))
    );
    // The next scheduled timestep, whatever the stride would say (1000/3 = 333).
    assert_eq!(s.prev_timestep(600).unwrap(), Some(10));
    assert_eq!(s.prev_timestep(10).unwrap(), None);
    assert!(matches!(
        s.prev_timestep(500).unwrap_err(),
        Error::TimestepNotScheduled { timestep: 500, .. }
    ));
    let c = s.step_coefficients(10, 0.0).unwrap();
    assert_eq!(c.alpha_prod_t_prev, s.final_alpha_cumprod());
    // A later set_timesteps(n) returns to diffusers' spacing and rule.
    s.set_timesteps(10).unwrap();
    assert_eq!(s.prev_timestep(950).unwrap(), Some(850));
}

#[test]
fn next_in_schedule_walks_the_schedule_for_every_spacing() {
    for spacing in TimestepSpacing::ALL.iter().copied() {
        for n in [7, 15, 30, 60] {
            let s = scheduler(
                DdimConfig {
                    timestep_spacing: spacing,
                    ..DdimConfig::default()
                },
                n,
            )
            .with_prev_timestep_rule(PrevTimestepRule::NextInSchedule);
            let ts = s.timesteps().to_vec();
            for (i, &t) in ts.iter().enumerate() {
                assert_eq!(s.prev_timestep(t).unwrap(), ts.get(i + 1).copied());
            }
        }
    }
}
