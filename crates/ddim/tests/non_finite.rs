//! NaN and ±∞ in a step's inputs: they propagate by default (as in torch), and
//! `StepOptions::check_finite` turns them into `Error::NonFinite` naming the first one.

use ddim::{DdimConfig, DdimScheduler, Error, StepOptions};

fn scheduler(config: DdimConfig) -> DdimScheduler {
    let mut s = DdimScheduler::new(config).unwrap();
    s.set_timesteps(50).unwrap();
    s
}

#[test]
fn nan_and_inf_propagate_by_default() {
    let s = scheduler(DdimConfig {
        clip_sample: false,
        ..DdimConfig::default()
    });
    let x = [0.5f32, -0.25, 0.75, 1.0];
    let m = [0.1f32, f32::NAN, 0.3, f32::INFINITY];
    let out = s.step(&m, 980, &x, &StepOptions::default()).unwrap();
    assert!(out.prev_sample[1].is_nan() && out.pred_original_sample[1].is_nan());
    assert!(out.prev_sample[3].is_infinite() || out.prev_sample[3].is_nan());
    assert!(out.prev_sample[0].is_finite() && out.prev_sample[2].is_finite());
    // clip_sample clamps ±∞ in x̂₀ to the bound (torch's clamp) but keeps NaN.
    let clipped = scheduler(DdimConfig::default());
    let out = clipped.step(&m, 980, &x, &StepOptions::default()).unwrap();
    assert_eq!(out.pred_original_sample[3], -1.0);
    assert!(out.pred_original_sample[1].is_nan());
    // Dynamic thresholding: a NaN makes its batch item's threshold NaN, so the whole item
    // (and only that item) is NaN, as torch.quantile does.
    let th = scheduler(DdimConfig {
        thresholding: true,
        ..DdimConfig::default()
    });
    let m2 = [0.1f32, f32::NAN, 0.3, 0.4];
    let o = StepOptions {
        batch_size: Some(2),
        ..Default::default()
    };
    let out = th.step(&m2, 980, &x, &o).unwrap();
    assert!(out.pred_original_sample[..2].iter().all(|v| v.is_nan()));
    assert!(out.pred_original_sample[2..].iter().all(|v| v.is_finite()));
}

#[test]
fn check_finite_names_buffer_index_value_and_timestep() {
    let s = scheduler(DdimConfig::default());
    let x = [0.5f32, -0.25, 0.75, 1.0];
    let m = [0.1f32, 0.2, 0.3, 0.4];
    let z = [0.0f32, 0.0, f32::NEG_INFINITY, f32::NAN];
    let checked = StepOptions {
        check_finite: true,
        ..Default::default()
    };
    // Finite inputs pass, with the same result as unchecked.
    assert_eq!(
        s.step(&m, 980, &x, &checked).unwrap(),
        s.step(&m, 980, &x, &StepOptions::default()).unwrap()
    );
    // The noise is checked when η > 0 uses it …
    let noisy = StepOptions {
        eta: 1.0,
        variance_noise: Some(&z[..]),
        ..checked
    };
    match s.step(&m, 960, &x, &noisy) {
        Err(Error::NonFinite {
            buffer,
            index,
            value,
            timestep,
        }) => {
            assert_eq!(
                (buffer, index, value, timestep),
                ("variance_noise", 2, f64::NEG_INFINITY, 960)
            );
        }
        other => panic!("{other:?}"),
    }
    // … and not at η = 0, where it is unused.
    let unused = StepOptions {
        variance_noise: Some(&z[..]),
        ..checked
    };
    assert!(s.step(&m, 960, &x, &unused).is_ok());
    // The model output is checked before the sample; f64 and f16 buffers too.
    let both_bad = [f32::NAN; 4];
    let e = s.step(&both_bad, 980, &both_bad, &checked).unwrap_err();
    assert!(
        matches!(
            e,
            Error::NonFinite {
                buffer: "model_output",
                index: 0,
                ..
            }
        ),
        "{e}"
    );
    let x64: Vec<f64> = x.iter().map(|&v| f64::from(v)).collect();
    let m64 = [0.1, 0.2, 0.3, f64::INFINITY];
    let c64 = StepOptions {
        check_finite: true,
        ..Default::default()
    };
    let e = s.step(&m64, 980, &x64, &c64).unwrap_err();
    assert!(matches!(e, Error::NonFinite { index: 3, .. }), "{e}");
    let h: Vec<ddim::half::f16> = [0.5f32, 70000.0, 0.1, 0.2] // 70000 overflows f16 to ∞
        .iter()
        .map(|&v| ddim::half::f16::from_f32(v))
        .collect();
    let ch = StepOptions {
        check_finite: true,
        ..Default::default()
    };
    let e = s.step(&h, 980, &h, &ch).unwrap_err();
    assert_eq!(
        e.to_string(),
        "non-finite input: `model_output`[1] is inf at timestep 980"
    );
}

#[test]
fn failed_check_leaves_outputs_untouched_and_draws_no_noise() {
    use rand::{Rng, SeedableRng};
    let s = scheduler(DdimConfig::default());
    let x = [0.5f32, f32::NAN, 0.75, 1.0];
    let m = [0.1f32, 0.2, 0.3, 0.4];
    let checked = StepOptions {
        check_finite: true,
        ..Default::default()
    };
    let (mut p, mut o) = ([7.0f32; 4], [7.0f32; 4]);
    assert!(s.step_into(&m, 980, &x, &checked, &mut p, &mut o).is_err());
    assert_eq!((p, o), ([7.0; 4], [7.0; 4]));
    let mut rng = rand::rngs::StdRng::seed_from_u64(3);
    let mut fresh = rand::rngs::StdRng::seed_from_u64(3);
    let with_rng = StepOptions {
        eta: 1.0,
        ..checked
    };
    let e = s
        .step_with_rng(&m, 980, &x, &with_rng, &mut rng)
        .unwrap_err();
    assert!(matches!(
        e,
        Error::NonFinite {
            buffer: "sample",
            index: 1,
            ..
        }
    ));
    assert_eq!(rng.next_u64(), fresh.next_u64());
}
