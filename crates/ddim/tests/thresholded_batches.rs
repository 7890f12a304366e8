//! Dynamic thresholding is per batch item: a batched step (split over rayon's pool from
//! `PARALLEL_MIN_LEN` elements, serial below) must equal stepping each item on its own, bit
//! for bit, with its own slice of `model_output`, `sample` and `variance_noise`.

use ddim::{DdimConfig, DdimScheduler, StepOptions, PARALLEL_MIN_LEN};

fn values(n: usize, seed: u32) -> Vec<f32> {
    let mut state = seed;
    (0..n)
        .map(|_| {
            state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (state >> 8) as f32 / (1u32 << 24) as f32 * 6.0 - 3.0
        })
        .collect()
}

#[test]
fn batched_thresholded_step_equals_per_item_steps() {
    let mut scheduler = DdimScheduler::new(DdimConfig {
        thresholding: true,
        clip_sample: false,
        ..DdimConfig::default()
    })
    .unwrap();
    scheduler.set_timesteps(50).unwrap();
    let t = scheduler.timesteps()[3];
    // Large enough for the parallel path, and a small batch for the serial one.
    for (batch, per_item) in [(4, PARALLEL_MIN_LEN / 4), (3, 1000)] {
        let n = batch * per_item;
        let (m, x, z) = (values(n, 1), values(n, 2), values(n, 3));
        for eta in [0.0, 1.0] {
            let options = StepOptions {
                eta,
                batch_size: Some(batch),
                variance_noise: Some(&z),
                ..Default::default()
            };
            let (mut prev, mut x0) = (vec![0.0f32; n], vec![0.0f32; n]);
            scheduler
                .step_into(&m, t, &x, &options, &mut prev, &mut x0)
                .unwrap();
            for b in 0..batch {
                let r = b * per_item..(b + 1) * per_item;
                let one = StepOptions {
                    eta,
                    variance_noise: Some(&z[r.clone()]),
                    batch_size: Some(1),
                    ..Default::default()
                };
                let out = scheduler
                    .step(&m[r.clone()], t, &x[r.clone()], &one)
                    .unwrap();
                let same =
                    |a: &[f32], b: &[f32]| a.iter().zip(b).all(|(p, q)| p.to_bits() == q.to_bits());
                assert!(
                    same(&out.prev_sample, &prev[r.clone()]),
                    "{batch} {eta} item {b}"
                );
                assert!(
                    same(&out.pred_original_sample, &x0[r]),
                    "{batch} {eta} item {b} x0"
                );
            }
        }
    }
}
