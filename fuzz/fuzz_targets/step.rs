//! Config + set_timesteps + step with arbitrary numbers: NaN, ±∞, huge, zero, negative and
//! empty buffers, arbitrary timesteps, batch sizes, η, thresholding on and off, every element
//! type. Invariants: no panic; on success both outputs are as long as the sample; with
//! `check_finite`, success means every input was finite.
#![no_main]

use arbitrary::Arbitrary;
use ddim::element::Compute;
use ddim::{DdimScheduler, Element, PrevTimestepRule, StepOptions};
use libfuzzer_sys::fuzz_target;

#[derive(Debug, Arbitrary)]
struct Input {
    config: ddim_fuzz::FuzzConfig,
    num_inference_steps: u16,
    next_in_schedule: bool,
    /// Even: the `timestep_index`-th scheduled timestep; odd: `timestep_index` itself.
    timestep_kind: u8,
    timestep_index: u32,
    eta: f32,
    use_clipped_model_output: bool,
    batch_size: u8,
    check_finite: bool,
    element: u8,
    model_output: Vec<f32>,
    sample: Vec<f32>,
    noise: Option<Vec<f32>>,
    /// Make `model_output` and `noise` as long as `sample` (else the lengths stay arbitrary).
    same_lengths: bool,
    seed: u64,
}

fn run<E: Element>(
    input: &Input,
    scheduler: &DdimScheduler,
    timestep: usize,
    convert: fn(f32) -> E,
) {
    let conv = |v: &[f32]| v.iter().map(|&x| convert(x)).collect::<Vec<E>>();
    let sample = conv(&input.sample);
    let mut model_output = conv(&input.model_output);
    let mut noise = input.noise.as_deref().map(conv);
    if input.same_lengths {
        model_output.resize(sample.len(), convert(0.5));
        if let Some(z) = noise.as_mut() {
            z.resize(sample.len(), convert(-0.25));
        }
    }
    let options = StepOptions {
        eta: input.eta,
        use_clipped_model_output: input.use_clipped_model_output,
        variance_noise: noise.as_deref(),
        batch_size: usize::from(input.batch_size),
        check_finite: input.check_finite,
        ..Default::default()
    };
    match scheduler.step(&model_output, timestep, &sample, &options) {
        Ok(out) => {
            assert_eq!(out.prev_sample.len(), sample.len());
            assert_eq!(out.pred_original_sample.len(), sample.len());
            if input.check_finite {
                let finite = |v: &[E]| v.iter().all(|x| x.to_compute().to_f64().is_finite());
                assert!(finite(&sample) && finite(&model_output));
            }
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
}

/// The generator path (f32) checks the same things before drawing.
fn run_with_rng(input: &Input, scheduler: &DdimScheduler, timestep: usize) {
    use rand::SeedableRng;
    let mut rng = rand::rngs::StdRng::seed_from_u64(input.seed);
    let options = StepOptions {
        eta: input.eta,
        use_clipped_model_output: input.use_clipped_model_output,
        batch_size: usize::from(input.batch_size),
        check_finite: input.check_finite,
        ..Default::default()
    };
    let (m, x) = (&input.model_output, &input.sample);
    if let Ok(out) = scheduler.step_with_rng(m, timestep, x, &options, &mut rng) {
        assert_eq!(out.prev_sample.len(), x.len());
    }
}

fuzz_target!(|input: Input| {
    let config = input.config.to_config();
    let Ok(scheduler) = DdimScheduler::new(config) else {
        return;
    };
    let rule = if input.next_in_schedule {
        PrevTimestepRule::NextInSchedule
    } else {
        PrevTimestepRule::Stride
    };
    let mut scheduler = scheduler.with_prev_timestep_rule(rule);
    if input.num_inference_steps > 0 {
        let n = usize::from(input.num_inference_steps);
        if scheduler.set_timesteps(n).is_ok() {
            let (ts, t) = (
                scheduler.timesteps(),
                scheduler.config().num_train_timesteps,
            );
            assert!(ts.len() == n && ts.iter().all(|&s| s < t), "{ts:?}");
        }
    }
    let index = input.timestep_index as usize;
    let timestep = if input.timestep_kind % 2 == 0 {
        let ts = scheduler.timesteps();
        if ts.is_empty() {
            0
        } else {
            ts[index % ts.len()]
        }
    } else {
        index
    };
    let _ = scheduler.step_coefficients(timestep, input.eta);
    match input.element % 5 {
        0 => run::<f32>(&input, &scheduler, timestep, |x| x),
        1 if input.noise.is_none() => run_with_rng(&input, &scheduler, timestep),
        1 | 4 => run::<f64>(&input, &scheduler, timestep, f64::from),
        2 => run::<ddim::half::f16>(&input, &scheduler, timestep, ddim::half::f16::from_f32),
        _ => run::<ddim::half::bf16>(&input, &scheduler, timestep, ddim::half::bf16::from_f32),
    }
});
