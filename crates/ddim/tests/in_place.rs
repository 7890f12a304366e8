//! `step_in_place` (forward, inverse, torch-generator) gives bit for bit what the allocating
//! `step` gives, in every mode and element type, over every golden step fixture; and changes
//! nothing on error.

mod common;

use common::{config, parity_scheduler, pseudo_random, usize_of, Fixtures};
use ddim::half::{bf16, f16};
use ddim::rng::TorchCpuGenerator;
use ddim::{
    DdimConfig, DdimInverseConfig, DdimInverseScheduler, DdimScheduler, Element, PredictionType,
    StepOptions,
};

/// Bitwise equality that treats NaN payloads alike.
fn same_bits<T: Element>(a: &[T], b: &[T]) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|(x, y)| {
            use ddim::element::Compute;
            let (x, y) = (x.to_compute().to_f64(), y.to_compute().to_f64());
            x.to_bits() == y.to_bits() || (x.is_nan() && y.is_nan())
        })
}

/// Compares `step` and `step_in_place` for one scheduler and options; returns whether the
/// step succeeded.
fn check<T: Element>(
    scheduler: &DdimScheduler,
    m: &[T],
    t: usize,
    x: &[T],
    options: &StepOptions<'_, T>,
    what: &str,
) -> bool {
    let want = scheduler.step(m, t, x, options);
    let (mut m2, mut x2) = (m.to_vec(), x.to_vec());
    let got = scheduler.step_in_place(&mut m2, t, &mut x2, options);
    match want {
        Ok(want) => {
            got.unwrap();
            assert!(same_bits(&x2, &want.prev_sample), "{what}: prev_sample");
            assert!(
                same_bits(&m2, &want.pred_original_sample),
                "{what}: pred_original_sample"
            );
            true
        }
        Err(e) => {
            assert_eq!(got.unwrap_err().to_string(), e.to_string(), "{what}");
            assert!(
                same_bits(&m2, m) && same_bits(&x2, x),
                "{what}: changed on error"
            );
            false
        }
    }
}

#[test]
fn every_golden_step_case_is_bit_identical_in_place() {
    let fx = Fixtures::load();
    let mut compared = 0;
    for case in fx.section("step_cases") {
        let id = case["id"].as_str().unwrap();
        let mut scheduler = parity_scheduler(config(&case["config"])).unwrap();
        if scheduler.set_timesteps(usize_of(&case["n"])).is_err() {
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
        compared += usize::from(check(&scheduler, m, t, x, &options, id));
    }
    eprintln!("{compared} golden step cases: in place == step, bit for bit");
    assert!(compared > 50, "{compared}");
}

fn convert<T: Element>(v: &[f32]) -> Vec<T> {
    v.iter()
        .map(|&x| T::from_compute(<T::Compute as ddim::element::Compute>::from_f32(x)))
        .collect()
}

/// Every mode combination, element type and a few lengths and batch sizes (long enough for
/// the sampled-pivot quantile, and above `PARALLEL_MIN_LEN` for the parallel split).
fn every_mode<T: Element>(long: bool) {
    let mut cases = 0;
    // The parallel sizes for f32 and f64 only: the debug build of CI steps them slowly.
    let sizes: &[(usize, usize)] = if long {
        &[(7, 1), (64, 2), (3 * 4096, 3), (1 << 17, 2), (150_000, 1)]
    } else {
        &[(7, 1), (64, 2), (3 * 4096, 3)]
    };
    for &(len, batch) in sizes {
        let (m, x, z) = (
            convert::<T>(&pseudo_random(len, 11)),
            convert::<T>(&pseudo_random(len, 12)),
            convert::<T>(&pseudo_random(len, 13)),
        );
        let base = DdimConfig {
            clip_sample_range: 0.9,
            ..DdimConfig::default()
        };
        for (mode, scheduler) in common::mode_schedulers(&base, 20) {
            for (eta, ucmo) in [(0.0, false), (0.0, true), (1.0, false), (0.7, true)] {
                let options = StepOptions {
                    eta,
                    use_clipped_model_output: ucmo,
                    variance_noise: Some(&z),
                    batch_size: Some(batch),
                    ..Default::default()
                };
                for t in [951, 501, 1] {
                    let what = format!(
                        "{} len={len} b={batch} {mode} eta={eta} ucmo={ucmo} t={t}",
                        std::any::type_name::<T>()
                    );
                    assert!(check(&scheduler, &m, t, &x, &options, &what), "{what}");
                    cases += 1;
                }
            }
        }
    }
    eprintln!(
        "{}: {cases} cases bit-identical",
        std::any::type_name::<T>()
    );
}

#[test]
fn every_mode_f32() {
    every_mode::<f32>(true);
}

#[test]
fn every_mode_f64() {
    every_mode::<f64>(true);
}

#[test]
fn every_mode_f16() {
    every_mode::<f16>(false);
}

#[test]
fn every_mode_bf16() {
    every_mode::<bf16>(false);
}

/// Data that defeats the sampled pivots or holds few distinct values: the quantile without
/// scratch still equals the out-of-place one (hence torch's).
#[test]
fn thresholding_quantile_on_hostile_data() {
    let n = 40_000;
    let datasets: Vec<Vec<f32>> = vec![
        vec![0.75; n],
        (0..n).map(|i| (i % 2) as f32 * 1e30).collect(),
        (0..n).map(|i| if i < n / 2 { 0.0 } else { 5.0 }).collect(),
        (0..n).map(|i| (i % 3) as f32 - 1.0).collect(),
        (0..n).map(|i| i as f32 / n as f32).collect(),
        (0..n).map(|i| if i == 1234 { 1e6 } else { 0.5 }).collect(),
        (0..n)
            .map(|i| ((i as f32 * 0.37).sin()).powi(9) * 100.0)
            .collect(),
        (0..n)
            .map(|i| if i % 997 == 0 { f32::INFINITY } else { 1.5 })
            .collect(),
        (0..n)
            .map(|i| if i == 77 { f32::NAN } else { 1.5 })
            .collect(),
    ];
    let zeros = vec![0.0f32; n];
    for ratio in [0.995, 0.5, 0.0, 1.0, 0.9999] {
        for prediction_type in [PredictionType::Sample, PredictionType::Epsilon] {
            let config = DdimConfig {
                prediction_type,
                thresholding: true,
                dynamic_thresholding_ratio: ratio,
                sample_max_value: 1e38,
                ..DdimConfig::default()
            };
            let mut scheduler = DdimScheduler::new(config).unwrap();
            scheduler.set_timesteps(10).unwrap();
            for (d, m) in datasets.iter().enumerate() {
                for batch in [1, 2] {
                    let options = StepOptions {
                        batch_size: Some(batch),
                        ..Default::default()
                    };
                    let what = format!("dataset {d} ratio {ratio} {prediction_type} b={batch}");
                    assert!(check(&scheduler, m, 901, &zeros, &options, &what));
                }
            }
        }
    }
}

#[test]
fn errors_change_nothing() {
    let mut scheduler = DdimScheduler::new(DdimConfig::default()).unwrap();
    let (m, x) = (pseudo_random(8, 1), pseudo_random(8, 2));
    let o = StepOptions::default();
    // Timesteps not set.
    assert!(!check(&scheduler, &m, 901, &x, &o, "unset"));
    scheduler.set_timesteps(10).unwrap();
    assert!(!check(&scheduler, &m[..7], 901, &x, &o, "length"));
    assert!(!check(&scheduler, &m, 5000, &x, &o, "timestep"));
    let eta = StepOptions { eta: 1.0, ..o };
    assert!(!check(&scheduler, &m, 901, &x, &eta, "missing noise"));
    let batch = StepOptions {
        batch_size: Some(3),
        ..o
    };
    assert!(!check(&scheduler, &m, 901, &x, &batch, "batch"));
    let mut bad = m.clone();
    bad[3] = f32::NAN;
    let finite = StepOptions {
        check_finite: true,
        ..o
    };
    assert!(!check(&scheduler, &bad, 901, &x, &finite, "non-finite"));
}

#[test]
fn generator_step_in_place_equals_step_with_generator() {
    let len = 2 * 4 * 8 * 8;
    let (m, x) = (pseudo_random(len, 5), pseudo_random(len, 6));
    let mut scheduler = DdimScheduler::new(DdimConfig::default()).unwrap();
    scheduler.set_timesteps(10).unwrap();
    for eta in [0.0f32, 1.0] {
        let options = StepOptions {
            eta,
            batch_size: Some(2),
            ..Default::default()
        };
        let (mut g1, mut g2) = (TorchCpuGenerator::new(42), TorchCpuGenerator::new(42));
        let (mut gs1, mut gs2) = (
            [TorchCpuGenerator::new(1), TorchCpuGenerator::new(2)],
            [TorchCpuGenerator::new(1), TorchCpuGenerator::new(2)],
        );
        let (mut xa, mut xb) = (x.clone(), x.clone());
        let (mut xc, mut xd) = (x.clone(), x.clone());
        let mut noise = vec![0.0f32; len];
        for &t in scheduler.timesteps() {
            xa = scheduler
                .step_with_generator(&m, t, &xa, &options, &mut g1)
                .unwrap()
                .prev_sample;
            let mut m2 = m.clone();
            scheduler
                .step_in_place_with_generator(&mut m2, t, &mut xb, &options, &mut g2, &mut noise)
                .unwrap();
            xc = scheduler
                .step_with_generators(&m, t, &xc, &options, &mut gs1)
                .unwrap()
                .prev_sample;
            let mut m3 = m.clone();
            scheduler
                .step_in_place_with_generators(&mut m3, t, &mut xd, &options, &mut gs2, &mut noise)
                .unwrap();
        }
        assert!(same_bits(&xa, &xb), "eta {eta}");
        assert!(same_bits(&xc, &xd), "eta {eta}");
        if eta > 0.0 {
            assert!(!same_bits(&xa, &xc));
        }
        // The generators advanced identically.
        let (mut a, mut b) = ([0.0f32; 4], [0.0f32; 4]);
        use ddim::rng::NoiseGenerator;
        g1.fill_randn_f32(&mut a);
        g2.fill_randn_f32(&mut b);
        assert_eq!(a, b);
    }
    // A wrong noise buffer is refused before anything is drawn or changed.
    let options = StepOptions {
        eta: 1.0,
        ..Default::default()
    };
    let (mut g, mut fresh) = (TorchCpuGenerator::new(3), TorchCpuGenerator::new(3));
    let (mut m2, mut x2, mut short) = (m.clone(), x.clone(), vec![0.0f32; 3]);
    assert!(scheduler
        .step_in_place_with_generator(&mut m2, 901, &mut x2, &options, &mut g, &mut short)
        .is_err());
    assert!(same_bits(&m2, &m) && same_bits(&x2, &x));
    use ddim::rng::NoiseGenerator;
    let (mut a, mut b) = ([0.0f32; 4], [0.0f32; 4]);
    g.fill_randn_f32(&mut a);
    fresh.fill_randn_f32(&mut b);
    assert_eq!(a, b);
}

#[test]
fn inverse_step_in_place_equals_step() {
    let len = 300;
    let (m, x) = (pseudo_random(len, 8), pseudo_random(len, 9));
    for prediction_type in PredictionType::ALL.iter().copied() {
        for clip_sample in [false, true] {
            let config = DdimInverseConfig {
                prediction_type,
                clip_sample,
                ..DdimInverseConfig::default()
            };
            let mut inverse = DdimInverseScheduler::new(config).unwrap();
            inverse.set_timesteps(10).unwrap();
            for &t in inverse.timesteps() {
                let want = inverse.step(&m, t, &x).unwrap();
                let (mut m2, mut x2) = (m.clone(), x.clone());
                inverse.step_in_place(&mut m2, t, &mut x2).unwrap();
                assert!(same_bits(&x2, &want.prev_sample));
                assert!(same_bits(&m2, &want.pred_original_sample));
            }
            let (mut m2, mut x2) = (m[..10].to_vec(), x.clone());
            assert!(inverse.step_in_place(&mut m2, 0, &mut x2).is_err());
            assert!(same_bits(&x2, &x));
        }
    }
}
