//! The DDIM inverse scheduler: a config from arbitrary JSON (`DdimInverseConfig`) or the mirror
//! (`DdimInverseScheduler::matching`) of an arbitrary forward scheduler, `set_timesteps` with an
//! arbitrary n, and `step_levels`/`step` at arbitrary timesteps with arbitrary numbers.
//! Invariants: no panic; accepted timesteps are n, strictly increasing and in [0, T) (for
//! `matching`, the forward timesteps reversed); step outputs are as long as the sample.
#![no_main]

use arbitrary::Arbitrary;
use ddim::{
    DdimInverseConfig, DdimInverseScheduler, DdimScheduler, PrevTimestepRule, SpacingOverride,
};
use libfuzzer_sys::fuzz_target;

#[derive(Debug, Arbitrary)]
struct Input {
    /// Some: the inverse config is this JSON text; None: `matching` of `config`.
    json: Option<String>,
    config: ddim_fuzz::FuzzConfig,
    next_in_schedule: bool,
    quad: bool,
    /// Set the forward scheduler's timesteps before `matching` (else after, on the inverse).
    forward_first: bool,
    num_inference_steps: u16,
    /// Even: the `timestep_index`-th inverse timestep; odd: `timestep_index` itself.
    timestep_kind: u8,
    timestep_index: u32,
    model_output: Vec<f32>,
    sample: Vec<f32>,
    same_lengths: bool,
    wide: bool,
}

fn check_timesteps(inverse: &DdimInverseScheduler, n: usize) {
    let t = inverse.config().num_train_timesteps;
    let ts = inverse.timesteps();
    assert_eq!(ts.len(), n);
    assert!(ts.iter().all(|&x| x < t), "{ts:?} outside [0, {t})");
    assert!(ts.windows(2).all(|w| w[0] < w[1]), "{ts:?} not increasing");
}

fn step(input: &Input, inverse: &DdimInverseScheduler) {
    let ts = inverse.timesteps();
    let timestep = if input.timestep_kind % 2 == 0 && !ts.is_empty() {
        ts[input.timestep_index as usize % ts.len()]
    } else {
        input.timestep_index as usize
    };
    if let Ok(levels) = inverse.step_levels(timestep) {
        assert_eq!(levels.timestep, timestep);
    }
    let mut model_output = input.model_output.clone();
    if input.same_lengths {
        model_output.resize(input.sample.len(), 0.25);
    }
    if input.wide {
        let x: Vec<f64> = input.sample.iter().map(|&v| f64::from(v)).collect();
        let m: Vec<f64> = model_output.iter().map(|&v| f64::from(v)).collect();
        if let Ok(out) = inverse.step(&m, timestep, &x) {
            assert_eq!(out.prev_sample.len(), x.len());
            assert_eq!(out.pred_original_sample.len(), x.len());
        }
    } else if let Ok(out) = inverse.step(&model_output, timestep, &input.sample) {
        assert_eq!(out.prev_sample.len(), input.sample.len());
        assert_eq!(out.pred_original_sample.len(), input.sample.len());
    }
}

fuzz_target!(|input: Input| {
    let n = usize::from(input.num_inference_steps) % (ddim_fuzz::MAX_T + 2);
    if let Some(json) = &input.json {
        let Ok(loaded) = DdimInverseConfig::load_json_str(json) else {
            return;
        };
        if loaded.config.num_train_timesteps > ddim_fuzz::MAX_T {
            return;
        }
        let Ok(mut inverse) = DdimInverseScheduler::new(loaded.config) else {
            return;
        };
        if inverse.set_timesteps(n).is_ok() {
            check_timesteps(&inverse, n);
        }
        step(&input, &inverse);
        return;
    }
    let Ok(forward) = DdimScheduler::new(input.config.to_config()) else {
        return;
    };
    let mut forward = forward.with_zero_snr_guard(ddim::ZeroSnrGuard::Off);
    if input.next_in_schedule {
        forward = forward.with_prev_timestep_rule(PrevTimestepRule::NextInSchedule);
    }
    if input.quad {
        forward = forward.with_spacing_override(SpacingOverride::Quad);
    }
    if input.forward_first && forward.set_timesteps(n).is_err() {
        return;
    }
    let Ok(mut inverse) = DdimInverseScheduler::matching(&forward) else {
        assert!(forward.config().thresholding);
        return;
    };
    assert!(inverse.is_matching());
    if input.forward_first {
        let mut reversed = forward.timesteps().to_vec();
        reversed.reverse();
        assert_eq!(inverse.timesteps(), reversed);
    } else if inverse.set_timesteps(n).is_ok() {
        check_timesteps(&inverse, n);
    }
    step(&input, &inverse);
});
