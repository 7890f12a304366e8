//! Regressions of issue 15 (an adversarial probe): sizes that panicked or aborted, the
//! quadratic next-in-schedule lookup, the unbounded config read, `-0` in a config.

use ddim::rng::{GpuProperties, TorchCudaGenerator};
use ddim::{DdimConfig, DdimScheduler, Error, PrevTimestepRule, SpacingOverride, TimestepSpacing};

#[test]
fn launch_threads_never_returns_zero() {
    let gpu = GpuProperties::new(132, 2048).unwrap();
    // ⌈numel/256⌉·256 wrapped to 0 near u64::MAX (and a window then divided by 0).
    assert_eq!(gpu.launch_threads(u64::MAX), 132 * 2048);
    assert_eq!(gpu.launch_threads(u64::MAX - 100), 132 * 2048);
    assert_eq!(gpu.launch_threads(1), 256);
    let mut g = TorchCudaGenerator::new(0, gpu);
    g.randn_window_f32(u64::MAX, 0, &mut []).unwrap();
    let mut out = [0.0f32; 4];
    g.randn_window_f32(u64::MAX, u64::MAX - 4, &mut out)
        .unwrap();
    assert!(out.iter().all(|v| v.is_finite()));
}

#[test]
fn user_sized_allocations_are_errors_not_panics() {
    use ddim::schedule::{alphas_cumprod, cosine_betas, linspace_f32};
    for result in [linspace_f32(0.0, 1.0, usize::MAX), cosine_betas(usize::MAX)] {
        assert!(
            matches!(result, Err(Error::OutOfMemory { .. })),
            "{result:?}"
        );
    }
    assert_eq!(alphas_cumprod(&[0.5, 0.5]).unwrap(), [0.5, 0.25]);
    let latents = ddim::rng::randn_latents::<f32, _>(
        &[4, usize::MAX / 8],
        &mut ddim::rng::TorchCpuGenerator::new(0),
    );
    assert!(matches!(
        latents,
        Err(Error::OutOfMemory {
            what: "latents",
            ..
        })
    ));
}

/// The next scheduled timestep, by a linear scan (the old lookup).
fn next_by_scan(ts: &[usize], t: usize) -> Option<Option<usize>> {
    let i = ts.iter().position(|&s| s == t)?;
    Some(ts.get(i + 1).copied())
}

#[test]
fn next_in_schedule_lookup_matches_a_scan() {
    for (spacing, offset, n, over) in [
        (TimestepSpacing::Leading, 1, 50, SpacingOverride::Config),
        (TimestepSpacing::Linspace, 0, 999, SpacingOverride::Config),
        (TimestepSpacing::Linspace, 0, 1000, SpacingOverride::Config),
        (TimestepSpacing::Trailing, 0, 7, SpacingOverride::Config),
        (TimestepSpacing::Leading, 0, 1000, SpacingOverride::Quad),
        (TimestepSpacing::Leading, 0, 3, SpacingOverride::Quad),
    ] {
        let config = DdimConfig {
            timestep_spacing: spacing,
            steps_offset: offset,
            ..DdimConfig::default()
        };
        let mut s = DdimScheduler::new(config)
            .unwrap()
            .with_prev_timestep_rule(PrevTimestepRule::NextInSchedule)
            .with_spacing_override(over);
        s.set_timesteps(n).unwrap();
        let ts = s.timesteps().to_vec();
        for t in 0..1000 {
            match (s.prev_timestep(t), next_by_scan(&ts, t)) {
                (Ok(ours), Some(scan)) => assert_eq!(ours, scan, "{spacing:?} n={n} t={t}"),
                (Err(Error::TimestepNotScheduled { .. }), None) => {}
                (other, scan) => panic!("{spacing:?} n={n} t={t}: {other:?} vs {scan:?}"),
            }
        }
    }
    // Custom timesteps.
    let mut s = DdimScheduler::new(DdimConfig::default()).unwrap();
    s.set_timesteps_custom(&[900, 500, 20, 3]).unwrap();
    assert_eq!(s.prev_timestep(500).unwrap(), Some(20));
    assert_eq!(s.prev_timestep(3).unwrap(), None);
    assert!(s.prev_timestep(501).is_err());
}

#[test]
fn a_long_quad_schedule_walks_in_n_log_n() {
    // T = n = 200,000 with quad spacing stepping along the schedule: every step's t_prev is
    // looked up. A linear scan per step made this 2·10¹⁰ comparisons (minutes); a binary
    // search makes it ~3.5·10⁶. Not timed: a regression would show as a hung test.
    let config = DdimConfig {
        num_train_timesteps: 200_000,
        ..DdimConfig::default()
    };
    let mut s = DdimScheduler::new(config)
        .unwrap()
        .with_spacing_override(SpacingOverride::Quad)
        .with_prev_timestep_rule(PrevTimestepRule::NextInSchedule)
        // ᾱ underflows to 0 near T = 200,000: the guard would refuse epsilon prediction.
        .with_zero_snr_guard(ddim::ZeroSnrGuard::Off);
    s.set_timesteps(200_000).unwrap();
    let ts = s.timesteps().to_vec();
    assert_eq!(ts.len(), 200_000);
    let mut steps = 0usize;
    for pair in ts.windows(2) {
        assert_eq!(s.prev_timestep(pair[0]).unwrap(), Some(pair[1]));
        steps += 1;
    }
    assert_eq!(steps, 199_999);
}

#[test]
fn minus_zero_counts_are_read_as_zero_as_python_does() {
    let loaded = DdimConfig::load_json_str(r#"{"steps_offset": -0}"#).unwrap();
    assert_eq!(loaded.config.steps_offset, 0);
    let err = DdimConfig::load_json_str(r#"{"steps_offset": -1}"#).unwrap_err();
    assert!(err.to_string().contains("non-negative integer"), "{err}");
}

#[cfg(unix)]
#[test]
fn an_endless_config_stream_is_refused_at_the_cap() {
    let err = DdimConfig::load_file(std::path::Path::new("/dev/zero")).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "cannot read /dev/zero: more than {} bytes, the most a config file may hold",
            ddim::config::load::CONFIG_MAX_BYTES
        )
    );
}

#[test]
fn decreasing_betas_warn_where_alpha_bar_reaches_zero() {
    // diffusers 0.42.1: DDIMScheduler(beta_start=0.5, beta_end=0.1).alphas_cumprod is 0 from
    // t = 164 on (checked with the venv's diffusers when this test was written).
    let loaded = DdimConfig::load_json_str(r#"{"beta_start": 0.5, "beta_end": 0.1}"#).unwrap();
    assert!(matches!(
        loaded.warnings.as_slice(),
        [ddim::ConfigWarning::DecreasingBetas {
            alpha_bar_zero_at: Some(164),
            ..
        }]
    ));
    let s = DdimScheduler::new(loaded.config).unwrap();
    assert_eq!(s.alphas_cumprod()[163..165], [s.alphas_cumprod()[163], 0.0]);
    assert!(s.alphas_cumprod()[163] > 0.0);
}
