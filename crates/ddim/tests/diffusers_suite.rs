//! diffusers' own DDIM tests (`tests/schedulers/test_scheduler_ddim.py`, diffusers 0.42.1),
//! ported with their hard-coded numbers and tolerances. The fixtures `dummy_sample_deter`,
//! `dummy_noise_deter` and the dummy model are rebuilt as `tests/schedulers/test_schedulers.py`
//! defines them.

use ddim::{
    BetaSchedule, DdimConfig, DdimScheduler, PredictionType, StepOptions, TimestepSpacing,
    ZeroSnrGuard,
};

const B: usize = 4;
const C: usize = 3;
const H: usize = 8;
const W: usize = 8;
const N: usize = B * C * H * W;

/// `torch.arange(N).reshape(C, H, W, B) / N` permuted to (B, C, H, W), flattened batch-major:
/// `sample[b, c, h, w] = f32(c·256 + h·32 + w·4 + b) / f32(768)`.
fn deterministic(flip: bool) -> Vec<f32> {
    let mut out = Vec::with_capacity(N);
    for b in 0..B {
        for c in 0..C {
            for h in 0..H {
                for w in 0..W {
                    let i = c * (H * W * B) + h * (W * B) + w * B + b;
                    let i = if flip { N - 1 - i } else { i };
                    out.push(i as f32 / N as f32);
                }
            }
        }
    }
    out
}

/// The dummy model: `sample * t / (t + 1)` in f32.
fn dummy_model(sample: &[f32], t: usize) -> Vec<f32> {
    let t = t as f32;
    sample.iter().map(|x| x * t / (t + 1.0)).collect()
}

/// `get_scheduler_config()`: linear β from 1e-4 to 0.02 over 1000 steps, clipping on.
fn test_config() -> DdimConfig {
    DdimConfig {
        num_train_timesteps: 1000,
        beta_start: 0.0001,
        beta_end: 0.02,
        beta_schedule: BetaSchedule::Linear,
        clip_sample: true,
        ..DdimConfig::default()
    }
}

fn full_loop(config: DdimConfig) -> Vec<f32> {
    let mut scheduler = DdimScheduler::new(config).unwrap();
    scheduler.set_timesteps(10).unwrap();
    let mut x = deterministic(false);
    for &t in scheduler.timesteps() {
        let m = dummy_model(&x, t);
        x = scheduler
            .step(&m, t, &x, &StepOptions::default())
            .unwrap()
            .prev_sample;
    }
    x
}

fn abs_sum_mean(x: &[f32]) -> (f64, f64) {
    let sum: f64 = x.iter().map(|v| f64::from(v.abs())).sum();
    (sum, sum / x.len() as f64)
}

fn assert_loop(x: &[f32], sum: f64, mean: f64) {
    let (s, m) = abs_sum_mean(x);
    println!("sum {s:.6} (diffusers {sum}), mean {m:.8} (diffusers {mean})");
    assert!((s - sum).abs() < 1e-2, "sum {s} vs {sum}");
    assert!((m - mean).abs() < 1e-3, "mean {m} vs {mean}");
}

#[test]
fn test_full_loop_no_noise() {
    assert_loop(&full_loop(test_config()), 172.0067, 0.223967);
}

#[test]
fn test_full_loop_with_v_prediction() {
    let config = DdimConfig {
        prediction_type: PredictionType::VPrediction,
        ..test_config()
    };
    assert_loop(&full_loop(config), 52.5302, 0.0684);
}

#[test]
fn test_full_loop_with_set_alpha_to_one() {
    let config = DdimConfig {
        set_alpha_to_one: true,
        beta_start: 0.01,
        ..test_config()
    };
    assert_loop(&full_loop(config), 149.8295, 0.1951);
}

#[test]
fn test_full_loop_with_no_set_alpha_to_one() {
    let config = DdimConfig {
        set_alpha_to_one: false,
        beta_start: 0.01,
        ..test_config()
    };
    assert_loop(&full_loop(config), 149.0784, 0.1941);
}

#[test]
fn test_full_loop_with_noise() {
    let mut scheduler = DdimScheduler::new(test_config()).unwrap();
    scheduler.set_timesteps(10).unwrap();
    let t_start = 8 * scheduler.order();
    let timesteps = scheduler.timesteps()[t_start..].to_vec();
    assert_eq!(timesteps, [100, 0]);
    let mut x = scheduler
        .add_noise(&deterministic(false), &deterministic(true), &timesteps[..1])
        .unwrap();
    for &t in &timesteps {
        let m = dummy_model(&x, t);
        x = scheduler
            .step(&m, t, &x, &StepOptions::default())
            .unwrap()
            .prev_sample;
    }
    assert_loop(&x, 354.5418, 0.4616);
}

#[test]
fn test_variance() {
    let mut scheduler = DdimScheduler::new(test_config()).unwrap();
    scheduler.set_timesteps(50).unwrap();
    let ac = scheduler.alphas_cumprod();
    // `_get_variance(t, prev)` is the coefficient at η = 1 with explicit ᾱ_t and ᾱ_prev.
    for (t, prev, want) in [
        (0, 0, 0.0),
        (420, 400, 0.14771),
        (980, 960, 0.32460),
        (487, 486, 0.00979),
        (999, 998, 0.02),
    ] {
        let c = ddim::StepCoefficients::new(t, Some(prev), ac[t], ac[prev], 1.0);
        assert!(
            (c.variance - want).abs() < 1e-5,
            "({t}, {prev}): {}",
            c.variance
        );
    }
    // Through the scheduler's own stride rule (T/n = 20): 980 → 960.
    assert!((scheduler.step_coefficients(980, 0.0).unwrap().variance - 0.32460).abs() < 1e-5);
}

#[test]
fn test_steps_offset() {
    let mut scheduler = DdimScheduler::new(DdimConfig {
        steps_offset: 1,
        ..test_config()
    })
    .unwrap();
    scheduler.set_timesteps(5).unwrap();
    assert_eq!(scheduler.timesteps(), [801, 601, 401, 201, 1]);
}

#[test]
fn test_default_timesteps() {
    // SchedulerCommonTest's default_timestep / default_timestep_2 for DDIM.
    let mut scheduler = DdimScheduler::new(test_config()).unwrap();
    scheduler.set_timesteps(50).unwrap();
    assert_eq!(scheduler.timesteps()[..2], [980, 960]);
}

/// `check_over_configs` / `check_over_forward`: a scheduler rebuilt from its saved config
/// steps identically (sum of |difference| < 1e-5). The configs are those of the Python tests.
#[test]
fn test_save_load_self_consistency() {
    let mut configs = Vec::new();
    for t in [100, 500, 1000] {
        configs.push(DdimConfig {
            num_train_timesteps: t,
            ..test_config()
        });
    }
    for o in [0, 1] {
        configs.push(DdimConfig {
            steps_offset: o,
            ..test_config()
        });
    }
    for (s, e) in [(0.0001, 0.002), (0.001, 0.02), (0.01, 0.2)] {
        configs.push(DdimConfig {
            beta_start: s,
            beta_end: e,
            ..test_config()
        });
    }
    for beta_schedule in [BetaSchedule::Linear, BetaSchedule::SquaredcosCapV2] {
        configs.push(DdimConfig {
            beta_schedule,
            ..test_config()
        });
    }
    for prediction_type in [PredictionType::Epsilon, PredictionType::VPrediction] {
        configs.push(DdimConfig {
            prediction_type,
            ..test_config()
        });
    }
    for clip_sample in [true, false] {
        configs.push(DdimConfig {
            clip_sample,
            ..test_config()
        });
    }
    for timestep_spacing in [TimestepSpacing::Trailing, TimestepSpacing::Leading] {
        configs.push(DdimConfig {
            timestep_spacing,
            ..test_config()
        });
    }
    for rescale_betas_zero_snr in [true, false] {
        configs.push(DdimConfig {
            rescale_betas_zero_snr,
            ..test_config()
        });
    }
    for sample_max_value in [0.5, 1.0, 2.0] {
        for prediction_type in [PredictionType::Epsilon, PredictionType::VPrediction] {
            configs.push(DdimConfig {
                thresholding: true,
                sample_max_value,
                prediction_type,
                ..test_config()
            });
        }
    }
    // check_over_configs steps at timestep 0 with 50 steps and η = 0.
    let runs: Vec<(DdimConfig, usize, usize, f32)> =
        configs.into_iter().map(|c| (c, 0, 50, 0.0)).collect();
    // check_over_forward: test_time_indices, test_inference_steps and test_eta.
    let forward = [
        (1, 50, 0.0),
        (10, 50, 0.0),
        (49, 50, 0.0),
        (1, 10, 0.0),
        (50, 500, 0.0),
    ]
    .into_iter()
    .chain([(1, 50, 0.0), (10, 50, 0.5), (49, 50, 1.0)])
    .map(|(t, n, eta)| (test_config(), t, n, eta));
    let sample = deterministic(false);
    let residual: Vec<f32> = sample.iter().map(|x| 0.1 * x).collect();
    let noise = deterministic(true);
    for (config, t, n, eta) in runs.into_iter().chain(forward) {
        let reloaded = DdimConfig::from_json_str(&config.to_json_string()).unwrap();
        let mut a = DdimScheduler::new(config)
            .unwrap()
            .with_zero_snr_guard(ZeroSnrGuard::Off);
        let mut b = DdimScheduler::new(reloaded)
            .unwrap()
            .with_zero_snr_guard(ZeroSnrGuard::Off);
        // Reloading adds `_class_name` and `_diffusers_version`; saving again is idempotent.
        assert_eq!(a.config().to_json_string(), b.config().to_json_string());
        a.set_timesteps(n).unwrap();
        b.set_timesteps(n).unwrap();
        let options = StepOptions {
            eta,
            batch_size: Some(B),
            variance_noise: Some(&noise),
            ..Default::default()
        };
        let out_a = a.step(&residual, t, &sample, &options).unwrap();
        let out_b = b.step(&residual, t, &sample, &options).unwrap();
        let diff: f32 = out_a
            .prev_sample
            .iter()
            .zip(&out_b.prev_sample)
            .map(|(x, y)| (x - y).abs())
            .sum();
        assert!(diff < 1e-5, "{:?} t={t} n={n}: {diff}", a.config());
    }
}

/// `test_trained_betas`: trained betas survive a save/load round trip exactly.
#[test]
fn test_trained_betas_round_trip() {
    let config = DdimConfig {
        num_train_timesteps: 2,
        trained_betas: Some(vec![0.1, 0.3]),
        ..test_config()
    };
    let reloaded = DdimConfig::from_json_str(&config.to_json_string()).unwrap();
    let a = DdimScheduler::new(config).unwrap();
    let b = DdimScheduler::new(reloaded).unwrap();
    assert_eq!(a.betas(), b.betas());
    assert_eq!(a.betas(), [0.1f32, 0.3]);
}
