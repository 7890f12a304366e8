//! Inputs the fuzz targets (fuzz/, `tools/fuzz.sh`) crashed on, inlined, one test each, so
//! the fixes stay fixed in the normal test suite. Each test names its target and the date;
//! RELIABILITY.md lists them.

use ddim::{DdimConfig, DdimScheduler, StepOptions};

/// `step` (2026-11-27): thresholding, η = 0 and a `variance_noise` shorter than the sample.
/// With η = 0 the noise is unused (so its length is not checked, as in diffusers), but the
/// thresholded path sliced it per batch item: "range end index 10 out of range for slice of
/// length 3".
#[test]
fn thresholding_ignores_short_noise_when_eta_is_zero() {
    let config = DdimConfig {
        num_train_timesteps: 778,
        thresholding: true,
        rescale_betas_zero_snr: true,
        ..DdimConfig::stable_diffusion()
    };
    let mut scheduler = DdimScheduler::new(config).unwrap();
    scheduler.set_timesteps(87).unwrap();
    let t = scheduler.timesteps()[1];
    let model_output = [
        1e-45,
        237100830000000.0,
        -1948986200.0,
        -22051638.0,
        -26711958.0,
        -26711958.0,
        -26711958.0,
        -26711958.0,
        -26646422.0,
        236770120000000.0,
    ];
    let sample = [
        1.3454404e22,
        -2.0337267e-34,
        -2.0392198e-34,
        -2.0392198e-34,
        -2.0392198e-34,
        1.5651012e-32,
        236665580000000.0,
        236770120000000.0,
        -2.0412071e-34,
        1.4349734e-20,
    ];
    let noise = [1.509e-41, 362087450000000.0, 230173050000000.0];
    let one = StepOptions {
        batch_size: Some(1),
        ..Default::default()
    };
    let with_noise = StepOptions {
        variance_noise: Some(&noise[..]),
        ..one
    };
    let out = scheduler
        .step(&model_output, t, &sample, &with_noise)
        .unwrap();
    // The unused noise changes nothing.
    let without = scheduler.step(&model_output, t, &sample, &one).unwrap();
    assert_eq!(out, without);
}

/// Found while writing docs/errors.md (2026-11-27): `steps_offset = 2^64 − 1` (valid JSON)
/// wrapped to −1 in diffusers' i64 formula, so `set_timesteps(1)` returned timestep
/// 2^64 − 1, and `steps_offset = 2^63` gave timesteps far above T. Now refused by `validate`.
#[test]
fn huge_steps_offset_is_refused_not_wrapped() {
    for text in [
        r#"{"steps_offset": 18446744073709551615}"#,
        r#"{"steps_offset": 9223372036854775808}"#,
    ] {
        let config = DdimConfig::from_json_str(text).unwrap();
        let err = DdimScheduler::new(config).unwrap_err();
        assert!(
            err.to_string()
                .contains("`steps_offset` must be at most 2147483647"),
            "{err}"
        );
    }
    // The largest accepted offset cannot overflow either: leading refuses it, the other
    // spacings ignore it.
    for spacing in ddim::TimestepSpacing::ALL {
        let mut s = DdimScheduler::new(DdimConfig {
            steps_offset: i32::MAX as usize,
            timestep_spacing: *spacing,
            ..DdimConfig::default()
        })
        .unwrap();
        for n in [1, 2, 999, 1000] {
            if s.set_timesteps(n).is_ok() {
                assert!(s.timesteps().iter().all(|&t| t < 1000), "{spacing} {n}");
            }
        }
    }
}

/// Found by the property tests (2026-11-27): `rescale_betas_zero_snr` with
/// `num_train_timesteps = 1` divides by √ᾱ₀ − √ᾱ₀ = 0 and gave β = NaN, reported as a bad
/// `beta_end`. Now refused naming the real cause.
#[test]
fn zero_snr_rescale_with_one_timestep_is_refused() {
    let err = DdimScheduler::new(DdimConfig {
        num_train_timesteps: 1,
        rescale_betas_zero_snr: true,
        ..DdimConfig::default()
    })
    .unwrap_err();
    assert!(
        err.to_string().contains("`rescale_betas_zero_snr` needs"),
        "{err}"
    );
}

/// Issue 9 (2026-11-27): the public `timesteps::inference_timesteps`, `diffusers_timesteps`
/// and `quad_timesteps` computed `i·⌊T/n⌋ + steps_offset` unchecked, so a direct call (not
/// through `DdimScheduler`, whose `validate` bounds the offset) with `steps_offset` near
/// `usize::MAX / 2` overflowed: a panic in debug builds, wrapped timesteps in release. Now an
/// `InvalidConfig` naming `steps_offset` and its limit (quad: the usual out-of-range error).
#[test]
fn public_timestep_functions_refuse_an_overflowing_steps_offset() {
    use ddim::timesteps::{diffusers_timesteps, inference_timesteps, quad_timesteps};
    use ddim::{Error, TimestepSpacing::*};
    for n in [1, 2, 10, 1000] {
        // The largest i64 timestep (n − 1)·⌊T/n⌋ + offset allows.
        let top = (n - 1) * (1000 / n);
        let limit = i64::MAX as usize - top;
        // usize::MAX / 2 = i64::MAX, the issue's case, overflows for n ≥ 2.
        let overflowing = [usize::MAX / 2, limit + 1, usize::MAX];
        for offset in overflowing.into_iter().filter(|&o| o > limit) {
            let raw = diffusers_timesteps(1000, Leading, offset, n);
            let ours = inference_timesteps(1000, Leading, offset, n);
            for err in [raw.unwrap_err(), ours.unwrap_err()] {
                let msg = err.to_string();
                assert!(
                    matches!(
                        err,
                        Error::InvalidConfig {
                            key: "steps_offset",
                            ..
                        }
                    ),
                    "{n} {offset}: {msg}"
                );
                assert!(
                    msg.contains(&format!("`steps_offset` must be at most {limit}"))
                        && msg.contains(&format!("got {offset}")),
                    "{msg}"
                );
            }
            let err = quad_timesteps(1000, offset, n).unwrap_err();
            // quad refuses its first timestep, offset + 0 ≥ T, before any sum can overflow.
            assert!(
                matches!(
                    err,
                    Error::InvalidConfig {
                        key: "steps_offset",
                        ..
                    } | Error::InvalidStepCount { .. }
                ),
                "{err}"
            );
        }
    }
    // The largest offset that fits is still computed (and refused as outside [0, T) by
    // inference_timesteps, as diffusers issue #10003).
    let top = 999; // (n − 1)·⌊T/n⌋ for n = T = 1000
    let offset = i64::MAX as usize - top;
    let raw = diffusers_timesteps(1000, Leading, offset, 1000).unwrap();
    assert_eq!((raw[0], raw[999]), (i64::MAX, offset as i64));
    let err = inference_timesteps(1000, Leading, offset, 1000).unwrap_err();
    assert!(matches!(err, Error::InvalidStepCount { .. }), "{err}");
    // The spacings that ignore the offset are unaffected.
    for spacing in [Linspace, Trailing] {
        assert_eq!(
            inference_timesteps(1000, spacing, usize::MAX, 10).unwrap(),
            inference_timesteps(1000, spacing, 0, 10).unwrap()
        );
    }
    // n beyond T was an unbounded allocation (capacity overflow panic) in quad_timesteps.
    assert!(quad_timesteps(1000, 0, usize::MAX).is_err());
    assert!(diffusers_timesteps(1000, Leading, 0, usize::MAX).is_err());
}
