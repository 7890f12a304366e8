//! Every error path of the public API returns the documented error with a clear one-line
//! message, and never panics.

use ddim::{DdimConfig, DdimScheduler, Error, PrevTimestepRule, StepOptions, TimestepSpacing};
use rand::SeedableRng;

fn scheduler(n: usize) -> DdimScheduler {
    let mut s = DdimScheduler::new(DdimConfig::default()).unwrap();
    s.set_timesteps(n).unwrap();
    s
}

fn one_line(e: &Error) -> String {
    let text = e.to_string();
    assert!(!text.contains('\n') && !text.is_empty(), "{text:?}");
    assert!(text.chars().next().unwrap().is_lowercase(), "{text:?}");
    text
}

#[test]
fn step_before_set_timesteps() {
    let s = DdimScheduler::new(DdimConfig::default()).unwrap();
    let e = s
        .step(&[0.0f32], 10, &[0.0], &StepOptions::default())
        .unwrap_err();
    assert!(matches!(e, Error::TimestepsNotSet));
    assert!(one_line(&e).contains("set_timesteps"));
}

#[test]
fn timestep_outside_the_training_range() {
    let e = scheduler(10)
        .step(&[0.0f32], 1000, &[0.0], &StepOptions::default())
        .unwrap_err();
    assert!(matches!(
        e,
        Error::TimestepOutOfRange {
            timestep: 1000,
            num_train_timesteps: 1000
        }
    ));
    assert_eq!(one_line(&e), "timestep 1000 is outside [0, 1000)");
    assert!(scheduler(10).add_noise(&[0.0f32], &[0.0], &[1000]).is_err());
}

#[test]
fn mismatched_lengths() {
    let s = scheduler(10);
    let e = s
        .step(&[0.0f32; 3], 900, &[0.0; 4], &StepOptions::default())
        .unwrap_err();
    assert!(matches!(
        e,
        Error::LengthMismatch {
            name: "model_output",
            expected: 4,
            got: 3
        }
    ));
    one_line(&e);
    let noise = [0.0f32; 2];
    let options = StepOptions {
        eta: 0.5,
        variance_noise: Some(&noise),
        ..Default::default()
    };
    let e = s.step(&[0.0f32; 4], 900, &[0.0; 4], &options).unwrap_err();
    assert!(matches!(
        e,
        Error::LengthMismatch {
            name: "variance_noise",
            ..
        }
    ));
    let (mut p, mut o) = (vec![0.0f32; 4], vec![0.0f32; 5]);
    let e = s
        .step_into(
            &[0.0f32; 4],
            900,
            &[0.0; 4],
            &StepOptions::default(),
            &mut p,
            &mut o,
        )
        .unwrap_err();
    assert!(matches!(
        e,
        Error::LengthMismatch {
            name: "pred_original_sample",
            ..
        }
    ));
    assert!(matches!(
        s.add_noise(&[0.0f32; 4], &[0.0; 3], &[1]).unwrap_err(),
        Error::LengthMismatch { name: "noise", .. }
    ));
}

#[test]
fn batch_size_must_divide_the_length() {
    let s = scheduler(10);
    for batch_size in [0, 3] {
        let options = StepOptions {
            batch_size: Some(batch_size),
            ..Default::default()
        };
        let e = s.step(&[0.0f32; 4], 900, &[0.0; 4], &options).unwrap_err();
        assert!(matches!(e, Error::BatchSizeMismatch { len: 4, .. }));
        one_line(&e);
    }
    assert!(matches!(
        s.get_velocity(&[0.0f32; 4], &[0.0; 4], &[1, 2, 3])
            .unwrap_err(),
        Error::BatchSizeMismatch {
            batch_size: 3,
            len: 4
        }
    ));
    assert!(s.add_noise(&[0.0f32; 4], &[0.0; 4], &[]).is_err());
}

#[test]
fn noise_and_generator_conflict_and_missing_noise() {
    let s = scheduler(10);
    let noise = [0.1f32; 4];
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let both = StepOptions {
        eta: 1.0,
        variance_noise: Some(&noise),
        ..Default::default()
    };
    let e = s
        .step_with_rng(&[0.0f32; 4], 900, &[0.0; 4], &both, &mut rng)
        .unwrap_err();
    assert!(matches!(e, Error::NoiseAndGenerator));
    one_line(&e);
    let neither = StepOptions {
        eta: 1.0,
        ..Default::default()
    };
    let e = s.step(&[0.0f32; 4], 900, &[0.0; 4], &neither).unwrap_err();
    assert!(matches!(e, Error::MissingNoise { .. }));
    assert_eq!(
        e.to_string(),
        "eta = 1 > 0 needs noise: pass variance_noise, or draw it with step_with_generator \
         (torch-compatible; slices and backend::candle), step_with_rng (slices) or \
         step_with_device_noise (backend::candle)"
    );
    // With η = 0 noise and generator are ignored, as in diffusers, and no number is drawn.
    let zero = StepOptions {
        eta: 0.0,
        variance_noise: Some(&noise),
        ..Default::default()
    };
    let a = s
        .step_with_rng(&[0.0f32; 4], 900, &[0.3; 4], &zero, &mut rng)
        .unwrap();
    let b = s
        .step(&[0.0f32; 4], 900, &[0.3; 4], &StepOptions::default())
        .unwrap();
    assert_eq!(a, b);
}

#[test]
fn generator_noise_is_reproducible_and_used() {
    let s = scheduler(10);
    let options = StepOptions {
        eta: 1.0,
        ..Default::default()
    };
    let run = |seed| {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        s.step_with_rng(&[0.1f32; 64], 500, &[0.2; 64], &options, &mut rng)
            .unwrap()
    };
    assert_eq!(run(1), run(1));
    assert_ne!(run(1).prev_sample, run(2).prev_sample);
}

#[test]
fn bad_eta() {
    let s = scheduler(10);
    for eta in [-0.1, f32::NAN, f32::INFINITY] {
        let options = StepOptions {
            eta,
            ..Default::default()
        };
        let e = s.step(&[0.0f32], 900, &[0.0], &options).unwrap_err();
        assert!(
            matches!(e, Error::InvalidStepOption { name: "eta", .. }),
            "{eta}"
        );
    }
    // η > 1 is accepted while σ² ≤ 1 − ᾱ_prev, refused beyond.
    let noise = [0.0f32];
    let big = StepOptions {
        eta: 50.0,
        variance_noise: Some(&noise),
        ..Default::default()
    };
    let e = s.step(&[0.0f32], 900, &[0.0], &big).unwrap_err();
    assert!(one_line(&e).contains("too large"), "{e}");
}

#[test]
fn bad_step_counts() {
    let mut s = DdimScheduler::new(DdimConfig::default()).unwrap();
    assert!(matches!(
        s.set_timesteps(0).unwrap_err(),
        Error::InvalidStepCount { requested: 0, .. }
    ));
    assert!(matches!(
        s.set_timesteps(1001).unwrap_err(),
        Error::InvalidStepCount {
            requested: 1001,
            ..
        }
    ));
    let mut sd = DdimScheduler::new(DdimConfig::stable_diffusion()).unwrap();
    let e = sd.set_timesteps(1000).unwrap_err();
    assert!(one_line(&e).contains("#10003"));
    assert_eq!(
        s.num_inference_steps(),
        None,
        "a failed set_timesteps changes nothing"
    );
}

#[test]
fn bad_configs() {
    let cases = [
        (
            DdimConfig {
                num_train_timesteps: 0,
                ..DdimConfig::default()
            },
            "num_train_timesteps",
        ),
        (
            DdimConfig {
                beta_end: f64::NAN,
                ..DdimConfig::default()
            },
            "beta_end",
        ),
        (
            DdimConfig {
                beta_start: -1.0,
                ..DdimConfig::default()
            },
            "beta_start",
        ),
        (
            DdimConfig {
                beta_end: 2.0,
                ..DdimConfig::default()
            },
            "beta_end",
        ),
        (
            DdimConfig {
                trained_betas: Some(vec![0.1; 3]),
                ..DdimConfig::default()
            },
            "trained_betas",
        ),
        (
            DdimConfig {
                dynamic_thresholding_ratio: 1.5,
                ..DdimConfig::default()
            },
            "dynamic_thresholding_ratio",
        ),
        (
            DdimConfig {
                clip_sample_range: 0.0,
                ..DdimConfig::default()
            },
            "clip_sample_range",
        ),
        (
            DdimConfig {
                sample_max_value: -1.0,
                ..DdimConfig::default()
            },
            "sample_max_value",
        ),
    ];
    for (config, key) in cases {
        let e = DdimScheduler::new(config).unwrap_err();
        assert!(
            matches!(e, Error::InvalidConfig { key: k, .. } if k == key),
            "{e}"
        );
        assert!(one_line(&e).contains(key));
    }
}

#[test]
fn next_in_schedule_rule() {
    let config = DdimConfig {
        timestep_spacing: TimestepSpacing::Linspace,
        ..DdimConfig::default()
    };
    let mut s = DdimScheduler::new(config)
        .unwrap()
        .with_prev_timestep_rule(PrevTimestepRule::NextInSchedule);
    s.set_timesteps(10).unwrap();
    assert_eq!(s.timesteps()[..2], [999, 888]);
    // diffusers' stride rule would step 999 → 899; the schedule says 888.
    assert_eq!(s.prev_timestep(999).unwrap(), Some(888));
    assert_eq!(s.prev_timestep(0).unwrap(), None);
    assert!(matches!(
        s.prev_timestep(500).unwrap_err(),
        Error::TimestepNotScheduled { timestep: 500, .. }
    ));
    let stride = DdimScheduler::new(DdimConfig {
        timestep_spacing: TimestepSpacing::Linspace,
        ..DdimConfig::default()
    });
    let mut stride = stride.unwrap();
    stride.set_timesteps(10).unwrap();
    assert_eq!(stride.prev_timestep(999).unwrap(), Some(899));
}
