//! DDIM inversion round trips with the exact model: encode exact samples with the matching
//! inverse, decode with η = 0 DDIM, and check that the reconstruction error falls with the
//! number of steps (the DDIM paper's Table 2).

use ddim::{DdimConfig, DdimInverseScheduler, DdimScheduler, PredictionType, TimestepSpacing};
use ddim_exact::{ddim_decode, ddim_invert, rms_error, Dataset, Error, InversionLevel};
use rand::SeedableRng;

/// The per-dimension RMS reconstruction error of `n` exact samples (seed 7).
fn round_trip(
    dataset: Dataset,
    config: &DdimConfig,
    steps: usize,
    level: InversionLevel,
    n: usize,
) -> f64 {
    let mixture = dataset.mixture();
    let x0 = mixture.sample(n, &mut rand::rngs::StdRng::seed_from_u64(7));
    let mut forward = DdimScheduler::new(config.clone()).unwrap();
    forward.set_timesteps(steps).unwrap();
    let inverse = DdimInverseScheduler::matching(&forward).unwrap();
    let latents = ddim_invert(&mixture, &inverse, &x0, level, |_, _| {}).unwrap();
    assert!(latents.iter().all(|v| v.is_finite()));
    let back = ddim_decode(&mixture, &forward, &latents, |_, _| {}).unwrap();
    rms_error(&x0, &back).unwrap()
}

#[test]
fn ring_error_falls_with_steps() {
    let config = DdimConfig::default();
    let errors: Vec<f64> = [10, 100, 1000]
        .iter()
        .map(|&s| round_trip(Dataset::Ring, &config, s, InversionLevel::Source, 64))
        .collect();
    // Measured (64 samples, seed 7): 0.1040, 0.01642, 0.003176. At S = T the steps are the
    // training grid's, so the error stops at the grid's own discretisation error.
    assert!(errors[0] > 0.08 && errors[0] < 0.13, "{errors:?}");
    assert!(errors[1] > 0.012 && errors[1] < 0.021, "{errors:?}");
    assert!(errors[2] < 0.004, "{errors:?}");
    assert!(errors[0] > 5.0 * errors[1] && errors[1] > 4.0 * errors[2]);
}

#[test]
fn glyph_images_round_trip() {
    let config = DdimConfig::default();
    let e10 = round_trip(Dataset::Glyphs, &config, 10, InversionLevel::Source, 16);
    let e200 = round_trip(Dataset::Glyphs, &config, 200, InversionLevel::Source, 16);
    // Measured (16 samples): 0.0539 and 0.0117 per pixel, on pixels of ±0.75.
    assert!(e10 > 0.04 && e10 < 0.07, "{e10}");
    assert!(e200 < 0.015, "{e200}");
}

#[test]
fn the_target_level_convention_also_converges() {
    // diffusers' inversion pipelines evaluate the model at the step's target timestep.
    let config = DdimConfig::default();
    let e10 = round_trip(Dataset::Ring, &config, 10, InversionLevel::Target, 64);
    let e1000 = round_trip(Dataset::Ring, &config, 1000, InversionLevel::Target, 64);
    // Measured: 0.0612 and 0.001769.
    assert!(e10 > 0.04 && e10 < 0.08, "{e10}");
    assert!(e1000 < 0.0025, "{e1000}");
}

#[test]
fn zero_terminal_snr_with_v_prediction_inverts() {
    // The last inverse step lands on ᾱ_{T−1} = 0: x_T = ε̂, pure noise, and decoding from
    // there still returns the samples.
    let config = DdimConfig {
        rescale_betas_zero_snr: true,
        prediction_type: PredictionType::VPrediction,
        timestep_spacing: TimestepSpacing::Trailing,
        ..DdimConfig::default()
    };
    let e50 = round_trip(Dataset::Ring, &config, 50, InversionLevel::Source, 64);
    let e500 = round_trip(Dataset::Ring, &config, 500, InversionLevel::Source, 64);
    // Measured: 0.0303 and 0.00572.
    assert!(e50 > 0.02 && e50 < 0.04, "{e50}");
    assert!(e500 < 0.0075, "{e500}");
}

#[test]
fn bad_inputs_are_errors() {
    let ring = Dataset::Ring.mixture();
    let forward = DdimScheduler::new(DdimConfig::default()).unwrap();
    let inverse = DdimInverseScheduler::matching(&forward).unwrap();
    let level = InversionLevel::Source;
    assert!(matches!(
        ddim_invert(&ring, &inverse, &[0.1, 0.2], level, |_, _| {}),
        Err(Error::Scheduler(ddim::Error::TimestepsNotSet))
    ));
    assert!(matches!(
        ddim_decode(&ring, &forward, &[0.1, 0.2], |_, _| {}),
        Err(Error::Scheduler(ddim::Error::TimestepsNotSet))
    ));
    let mut forward = forward;
    forward.set_timesteps(5).unwrap();
    let inverse = DdimInverseScheduler::matching(&forward).unwrap();
    assert!(matches!(
        ddim_invert(&ring, &inverse, &[0.1, 0.2, 0.3], level, |_, _| {}),
        Err(Error::LengthMismatch { .. })
    ));
    assert!(matches!(
        ddim_invert(&ring, &inverse, &[], level, |_, _| {}),
        Err(Error::ZeroCount(_))
    ));
    assert!(matches!(
        rms_error(&[0.0], &[0.0, 1.0]),
        Err(Error::LengthMismatch { .. })
    ));
}

#[test]
fn linspace_with_the_next_in_schedule_rule_round_trips() {
    // diffusers' inverse refuses linspace; the matching inverse serves it, with either rule.
    let mixture = Dataset::Ring.mixture();
    let x0 = mixture.sample(64, &mut rand::rngs::StdRng::seed_from_u64(7));
    let config = DdimConfig {
        timestep_spacing: TimestepSpacing::Linspace,
        ..DdimConfig::default()
    };
    let mut errors = Vec::new();
    for rule in [
        ddim::PrevTimestepRule::Stride,
        ddim::PrevTimestepRule::NextInSchedule,
    ] {
        let mut forward = DdimScheduler::new(config.clone())
            .unwrap()
            .with_prev_timestep_rule(rule);
        forward.set_timesteps(100).unwrap();
        let inverse = DdimInverseScheduler::matching(&forward).unwrap();
        let level = InversionLevel::Source;
        let latents = ddim_invert(&mixture, &inverse, &x0, level, |_, _| {}).unwrap();
        let back = ddim_decode(&mixture, &forward, &latents, |_, _| {}).unwrap();
        errors.push(rms_error(&x0, &back).unwrap());
    }
    // Measured: 0.01643 (stride) and 0.01642 (next in schedule); leading gives 0.01642.
    assert!(errors.iter().all(|&e| e < 0.02), "{errors:?}");
}
