//! add_noise and get_velocity with arbitrary lengths, values and timesteps.
//! Invariants: no panic; on success the output is as long as the sample.
#![no_main]

use arbitrary::Arbitrary;
use ddim::DdimScheduler;
use libfuzzer_sys::fuzz_target;

#[derive(Debug, Arbitrary)]
struct Input {
    config: ddim_fuzz::FuzzConfig,
    sample: Vec<f32>,
    noise: Vec<f32>,
    timesteps: Vec<u32>,
    same_lengths: bool,
    wide: bool,
}

fuzz_target!(|input: Input| {
    let Ok(scheduler) = DdimScheduler::new(input.config.to_config()) else {
        return;
    };
    let mut noise = input.noise.clone();
    if input.same_lengths {
        noise.resize(input.sample.len(), 1.0);
    }
    let timesteps: Vec<usize> = input.timesteps.iter().map(|&t| t as usize).collect();
    if input.wide {
        let x: Vec<f64> = input.sample.iter().map(|&v| f64::from(v)).collect();
        let z: Vec<f64> = noise.iter().map(|&v| f64::from(v)).collect();
        if let Ok(out) = scheduler.add_noise(&x, &z, &timesteps) {
            assert_eq!(out.len(), x.len());
        }
        if let Ok(out) = scheduler.get_velocity(&x, &z, &timesteps) {
            assert_eq!(out.len(), x.len());
        }
    } else {
        if let Ok(out) = scheduler.add_noise(&input.sample, &noise, &timesteps) {
            assert_eq!(out.len(), input.sample.len());
        }
        if let Ok(out) = scheduler.get_velocity(&input.sample, &noise, &timesteps) {
            assert_eq!(out.len(), input.sample.len());
        }
    }
});
