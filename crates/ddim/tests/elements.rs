//! Element types (f64, f16, bf16) and threads: each is checked against the f32 single-thread
//! path it must agree with.

mod common;

use common::pseudo_random;
use ddim::half::{bf16, f16};
use ddim::{DdimConfig, DdimScheduler, Element, PredictionType, StepOptions};

fn configs() -> Vec<DdimConfig> {
    let mut out = Vec::new();
    for prediction_type in PredictionType::ALL.iter().copied() {
        for (clip_sample, thresholding) in [(false, false), (true, false), (false, true)] {
            out.push(DdimConfig {
                prediction_type,
                clip_sample,
                thresholding,
                sample_max_value: 1.5,
                ..DdimConfig::default()
            });
        }
    }
    out
}

/// Half-precision steps compute in f32 from the widened inputs and round once: exactly the
/// f32 step of the widened inputs, rounded. (With thresholding the quantile is taken over the
/// half-precision x̂₀, as diffusers' upcast does, so only closeness is required there.)
fn check_half<T: Element<Compute = f32>>(round: fn(f32) -> T, widen: fn(T) -> f32, tolerance: f32) {
    let n = 2 * 3 * 8 * 8;
    let (m, x, z) = (
        pseudo_random(n, 11),
        pseudo_random(n, 12),
        pseudo_random(n, 13),
    );
    let (mh, xh, zh): (Vec<T>, Vec<T>, Vec<T>) = (
        m.iter().map(|&v| round(v)).collect(),
        x.iter().map(|&v| round(v)).collect(),
        z.iter().map(|&v| round(v)).collect(),
    );
    let (mw, xw, zw): (Vec<f32>, Vec<f32>, Vec<f32>) = (
        mh.iter().map(|&v| widen(v)).collect(),
        xh.iter().map(|&v| widen(v)).collect(),
        zh.iter().map(|&v| widen(v)).collect(),
    );
    for config in configs() {
        let thresholding = config.thresholding;
        let mut scheduler = DdimScheduler::new(config).unwrap();
        scheduler.set_timesteps(20).unwrap();
        for (t, eta) in [(950, 0.0), (500, 1.0), (0, 0.3)] {
            let half = StepOptions {
                eta,
                batch_size: Some(2),
                variance_noise: Some(&zh[..]),
                ..Default::default()
            };
            let wide = StepOptions {
                eta,
                batch_size: Some(2),
                variance_noise: Some(&zw[..]),
                ..Default::default()
            };
            let ours = scheduler.step(&mh, t, &xh, &half).unwrap();
            let reference = scheduler.step(&mw, t, &xw, &wide).unwrap();
            for (a, b) in ours.prev_sample.iter().zip(&reference.prev_sample) {
                if thresholding {
                    assert!(
                        (widen(*a) - b).abs() <= tolerance * b.abs().max(1.0),
                        "{a:?} vs {b}"
                    );
                } else {
                    assert_eq!(
                        widen(*a).to_bits(),
                        widen(round(*b)).to_bits(),
                        "{a:?} vs {b}"
                    );
                }
            }
        }
    }
}

#[test]
fn f16_and_bf16_round_once() {
    check_half(f16::from_f32, f16::to_f32, 4e-3);
    check_half(bf16::from_f32, bf16::to_f32, 3e-2);
}

/// f64 buffers compute in f64 with diffusers' f32 coefficients (torch promotes the 0-dim f32
/// coefficient tensors to the f64 sample's type): closer to exact than the f32 path.
#[test]
fn f64_computes_in_f64() {
    let n = 4 * 16;
    let (m, x) = (pseudo_random(n, 21), pseudo_random(n, 22));
    let (m64, x64): (Vec<f64>, Vec<f64>) = (
        m.iter().map(|&v| f64::from(v)).collect(),
        x.iter().map(|&v| f64::from(v)).collect(),
    );
    for config in configs().into_iter().filter(|c| !c.thresholding) {
        let prediction = config.prediction_type;
        let mut scheduler = DdimScheduler::new(config).unwrap();
        scheduler.set_timesteps(10).unwrap();
        let ours = scheduler
            .step(&m64, 500, &x64, &StepOptions::default())
            .unwrap();
        let c = scheduler.step_coefficients(500, 0.0).unwrap();
        let (sa, sb) = (
            f64::from(c.sqrt_alpha_prod_t),
            f64::from(c.sqrt_beta_prod_t),
        );
        for i in 0..n {
            let (mut x0, eps) = match prediction {
                PredictionType::Epsilon => ((x64[i] - sb * m64[i]) / sa, m64[i]),
                PredictionType::Sample => (m64[i], (x64[i] - sa * m64[i]) / sb),
                PredictionType::VPrediction => {
                    (sa * x64[i] - sb * m64[i], sa * m64[i] + sb * x64[i])
                }
            };
            if scheduler.config().clip_sample {
                x0 = x0.clamp(-1.0, 1.0);
            }
            let prev = f64::from(c.sqrt_alpha_prod_t_prev) * x0 + f64::from(c.direction) * eps;
            assert_eq!(ours.prev_sample[i], prev, "{prediction} element {i}");
        }
    }
}

/// Buffers long enough for rayon give the same bits as the single-threaded path.
#[test]
fn parallel_steps_are_bit_identical_to_serial() {
    let per_item = 4 * 128 * 128; // below PARALLEL_MIN_LEN on its own
    let batch = 5; // 5 items: above it together
    assert!(per_item < ddim::PARALLEL_MIN_LEN && batch * per_item >= ddim::PARALLEL_MIN_LEN);
    let n = batch * per_item;
    let (m, x, z) = (
        pseudo_random(n, 31),
        pseudo_random(n, 32),
        pseudo_random(n, 33),
    );
    for config in configs() {
        let mut scheduler = DdimScheduler::new(config).unwrap();
        scheduler.set_timesteps(50).unwrap();
        let options = StepOptions {
            eta: 0.8,
            batch_size: Some(batch),
            variance_noise: Some(&z[..]),
            ..Default::default()
        };
        let whole = scheduler.step(&m, 780, &x, &options).unwrap();
        for b in 0..batch {
            let r = b * per_item..(b + 1) * per_item;
            let one = StepOptions {
                eta: 0.8,
                batch_size: Some(1),
                variance_noise: Some(&z[r.clone()]),
                ..Default::default()
            };
            let item = scheduler
                .step(&m[r.clone()], 780, &x[r.clone()], &one)
                .unwrap();
            assert!(item
                .prev_sample
                .iter()
                .zip(&whole.prev_sample[r.clone()])
                .all(|(a, b)| a.to_bits() == b.to_bits()));
            assert!(item
                .pred_original_sample
                .iter()
                .zip(&whole.pred_original_sample[r])
                .all(|(a, b)| a.to_bits() == b.to_bits()));
        }
    }
}
