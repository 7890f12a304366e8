//! `cargo bench -p ddim`: one DDIM step (f32, ε-prediction) per latent shape, with and without
//! thresholding, beside a plain copy of the same bytes (the memory bound), in the same run.
//! `ddim bench` prints the same comparison as a table with GB/s and % of copy.

use ddim::{DdimConfig, DdimScheduler, StepOptions};
use divan::Bencher;

fn main() {
    divan::main();
}

/// (B, C, H, W) as in `ddim bench` (without the larger-than-cache shape, which takes long).
const SHAPES: [[usize; 4]; 4] = [
    [1, 4, 64, 64],
    [1, 4, 128, 128],
    [4, 4, 128, 128],
    [16, 4, 128, 128],
];

fn values(n: usize, seed: u32) -> Vec<f32> {
    let mut state = seed;
    (0..n)
        .map(|_| {
            state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (state >> 8) as f32 / (1u32 << 24) as f32 * 4.0 - 2.0
        })
        .collect()
}

fn step(bencher: Bencher, shape: [usize; 4], thresholding: bool, eta: f32) {
    let n: usize = shape.iter().product();
    let (m, x, z) = (values(n, 1), values(n, 2), values(n, 3));
    let (mut prev, mut x0) = (vec![0.0f32; n], vec![0.0f32; n]);
    let config = DdimConfig {
        clip_sample: false,
        thresholding,
        ..DdimConfig::default()
    };
    let mut scheduler = DdimScheduler::new(config).unwrap();
    scheduler.set_timesteps(50).unwrap();
    let options = StepOptions {
        eta,
        batch_size: Some(shape[0]),
        variance_noise: Some(&z),
        ..Default::default()
    };
    let bytes = (if eta > 0.0 { 5 } else { 4 }) * n * 4;
    bencher
        .counter(divan::counter::BytesCount::new(bytes))
        .bench_local(|| {
            scheduler
                .step_into(&m, 780, &x, &options, &mut prev, &mut x0)
                .unwrap();
        });
}

#[divan::bench(args = SHAPES)]
fn step_eta0(bencher: Bencher, shape: [usize; 4]) {
    step(bencher, shape, false, 0.0);
}

#[divan::bench(args = SHAPES)]
fn step_eta1(bencher: Bencher, shape: [usize; 4]) {
    step(bencher, shape, false, 1.0);
}

#[divan::bench(args = SHAPES)]
fn step_thresholding(bencher: Bencher, shape: [usize; 4]) {
    step(bencher, shape, true, 0.0);
}

/// Copying 2n floats reads and writes the 4n floats an η = 0 step touches.
#[divan::bench(args = SHAPES)]
fn copy_same_bytes(bencher: Bencher, shape: [usize; 4]) {
    let n: usize = shape.iter().product::<usize>() * 2;
    let (src, mut dst) = (values(n, 4), vec![0.0f32; n]);
    bencher
        .counter(divan::counter::BytesCount::new(2 * n * 4))
        .bench_local(|| dst.copy_from_slice(divan::black_box(&src)));
}
