//! `step_into` and `step_in_place` (forward, inverse, torch-generator) make no heap allocation for latents below the parallel size, in every mode
//! (prediction type × clip / threshold / none × η with noise × use_clipped_model_output),
//! counted by a counting global allocator.

mod common;

use common::pseudo_random;
use ddim::{DdimConfig, DdimScheduler, StepOptions};

#[test]
fn step_into_does_not_allocate() {
    // 2 × 4 × 64 × 64 and 1 × 4 × 128 × 128: the shapes of real latents, below PARALLEL_MIN_LEN.
    for (batch, len) in [(2, 2 * 4 * 64 * 64), (1, 4 * 128 * 128)] {
        assert!(len < ddim::PARALLEL_MIN_LEN);
        let (m, x, z) = (
            pseudo_random(len, 1),
            pseudo_random(len, 2),
            pseudo_random(len, 3),
        );
        let (mut prev, mut x0) = (vec![0.0f32; len], vec![0.0f32; len]);
        for (mode, scheduler) in common::mode_schedulers(&DdimConfig::default(), 50) {
            for (eta, ucmo) in [(0.0, false), (1.0, true), (0.5, false)] {
                let options = StepOptions {
                    eta,
                    use_clipped_model_output: ucmo,
                    variance_noise: Some(&z),
                    batch_size: Some(batch),
                    ..Default::default()
                };
                let info = allocation_counter::measure(|| {
                    for &t in &scheduler.timesteps()[..3] {
                        scheduler
                            .step_into(&m, t, &x, &options, &mut prev, &mut x0)
                            .unwrap();
                    }
                });
                assert_eq!(info.count_total, 0, "{mode} eta={eta}: {info:?}");
                assert!(prev.iter().any(|v| *v != 0.0));
                // The in-place step, on copies made outside the measurement.
                let (mut m2, mut x2) = (m.clone(), x.clone());
                let info = allocation_counter::measure(|| {
                    for &t in &scheduler.timesteps()[..3] {
                        scheduler
                            .step_in_place(&mut m2, t, &mut x2, &options)
                            .unwrap();
                    }
                });
                assert_eq!(info.count_total, 0, "in place: {mode} eta={eta}: {info:?}");
                assert!(x2 != x);
            }
        }
    }
}

#[test]
fn inverse_and_generator_steps_in_place_do_not_allocate() {
    use ddim::rng::TorchCpuGenerator;
    let len = 4 * 128 * 128;
    let (mut m, mut x, mut noise) = (
        pseudo_random(len, 1),
        pseudo_random(len, 2),
        vec![0.0f32; len],
    );
    let mut inverse = ddim::DdimInverseScheduler::new(ddim::DdimInverseConfig::default()).unwrap();
    inverse.set_timesteps(10).unwrap();
    let mut scheduler = DdimScheduler::new(DdimConfig::default()).unwrap();
    scheduler.set_timesteps(10).unwrap();
    let mut g = TorchCpuGenerator::new(0);
    let mut gs = [TorchCpuGenerator::new(1), TorchCpuGenerator::new(2)];
    let options = StepOptions {
        eta: 1.0,
        batch_size: Some(2),
        ..Default::default()
    };
    let info = allocation_counter::measure(|| {
        for &t in &inverse.timesteps()[..3] {
            inverse.step_in_place(&mut m, t, &mut x).unwrap();
        }
        for &t in &scheduler.timesteps()[..3] {
            scheduler
                .step_in_place_with_generator(&mut m, t, &mut x, &options, &mut g, &mut noise)
                .unwrap();
            scheduler
                .step_in_place_with_generators(&mut m, t, &mut x, &options, &mut gs, &mut noise)
                .unwrap();
        }
    });
    assert_eq!(info.count_total, 0, "{info:?}");
    assert!(noise.iter().any(|v| *v != 0.0));
}

#[test]
fn the_counter_counts() {
    // The assertion above can fail: an allocating step is seen.
    let scheduler = {
        let mut s = DdimScheduler::new(DdimConfig::default()).unwrap();
        s.set_timesteps(10).unwrap();
        s
    };
    let info = allocation_counter::measure(|| {
        let out = scheduler
            .step(&[0.1f32; 8], 900, &[0.2f32; 8], &StepOptions::default())
            .unwrap();
        assert_eq!(out.prev_sample.len(), 8);
    });
    assert_eq!(info.count_total, 2);
}

/// The candle backend's `step_in_place` on contiguous CPU tensors allocates no buffer: only
/// the small list of axes candle's in-place op API sorts to check the destination for
/// overlap (`Layout::has_internal_overlap`), once per locked tensor, two per step.
#[cfg(feature = "candle")]
#[test]
fn candle_step_in_place_does_not_allocate() {
    use candle_core::{Device, Tensor};
    use ddim::backend::{candle::step_in_place, TensorStepOptions};
    let len = 2 * 4 * 64 * 64;
    let tensor =
        |seed| Tensor::from_vec(pseudo_random(len, seed), (2, 4, 64, 64), &Device::Cpu).unwrap();
    for thresholding in [false, true] {
        let config = DdimConfig {
            thresholding,
            ..DdimConfig::default()
        };
        let mut scheduler = DdimScheduler::new(config).unwrap();
        scheduler.set_timesteps(50).unwrap();
        let (m, x, z) = (tensor(1), tensor(2), tensor(3));
        let options = TensorStepOptions {
            eta: 1.0,
            variance_noise: Some(&z),
            ..Default::default()
        };
        let info = allocation_counter::measure(|| {
            for &t in &scheduler.timesteps()[..3] {
                step_in_place(&scheduler, &m, t, &x, &options).unwrap();
            }
        });
        let steps = 3;
        assert!(
            info.count_total <= 2 * steps && info.bytes_max <= 4 * 16,
            "thresholding={thresholding}: {info:?}"
        );
    }
}
