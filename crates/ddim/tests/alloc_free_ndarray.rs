//! The ndarray backend's `step_in_place` and `step_into` make no heap allocation on arrays in
//! standard layout below the parallel size (every prediction type × clip / threshold / none ×
//! η with noise), counted by a counting global allocator; other layouts go through
//! temporaries, which the counter sees.
#![cfg(feature = "ndarray")]

mod common;

use common::pseudo_random;
use ddim::backend::{ndarray as dn, TensorStepOptions};
use ddim::{DdimConfig, DdimScheduler};
use ndarray::{Array4, ShapeBuilder};

const SHAPE: (usize, usize, usize, usize) = (2, 4, 64, 64);

fn array(seed: u32) -> Array4<f32> {
    let len = SHAPE.0 * SHAPE.1 * SHAPE.2 * SHAPE.3;
    Array4::from_shape_vec(SHAPE, pseudo_random(len, seed)).unwrap()
}

#[test]
fn step_in_place_on_standard_arrays_does_not_allocate() {
    assert!(SHAPE.0 * SHAPE.1 * SHAPE.2 * SHAPE.3 < ddim::PARALLEL_MIN_LEN);
    let (m, x, z) = (array(1), array(2), array(3));
    let (mut prev, mut x0) = (Array4::<f32>::zeros(SHAPE), Array4::<f32>::zeros(SHAPE));
    for (mode, scheduler) in common::mode_schedulers(&DdimConfig::default(), 50) {
        for (eta, ucmo) in [(0.0, false), (1.0, true), (0.5, false)] {
            let options = TensorStepOptions {
                eta,
                use_clipped_model_output: ucmo,
                variance_noise: Some(z.view()),
                ..Default::default()
            };
            let (mut m2, mut x2) = (m.clone(), x.clone());
            let info = allocation_counter::measure(|| {
                for &t in &scheduler.timesteps()[..3] {
                    dn::step_in_place(&scheduler, m2.view_mut(), t, x2.view_mut(), &options)
                        .unwrap();
                    dn::step_into(
                        &scheduler,
                        m.view(),
                        t,
                        x.view(),
                        &options,
                        prev.view_mut(),
                        x0.view_mut(),
                    )
                    .unwrap();
                }
            });
            assert_eq!(info.count_total, 0, "{mode} eta={eta}: {info:?}");
            assert!(x2 != x);
            assert!(prev.iter().any(|v| *v != 0.0));
        }
    }
}

#[test]
fn the_counter_sees_the_temporaries_of_other_layouts() {
    let mut scheduler = DdimScheduler::new(DdimConfig::default()).unwrap();
    scheduler.set_timesteps(10).unwrap();
    let mut m = array(1);
    let mut x = Array4::<f32>::zeros(SHAPE.f());
    x.assign(&array(2));
    let info = allocation_counter::measure(|| {
        dn::step_in_place(
            &scheduler,
            m.view_mut(),
            901,
            x.view_mut(),
            &TensorStepOptions::default(),
        )
        .unwrap();
    });
    // The gathered copy of the Fortran-ordered sample.
    assert!(info.count_total > 0, "{info:?}");
}
