//! The pipeline helpers: classifier-free guidance and `rescale_noise_cfg` with arbitrary values,
//! scales and batch sizes; img2img with arbitrary strength and n; custom timesteps; quad
//! spacing; `batch_step_no_noise` with arbitrary per-item timesteps.
//! Invariants: no panic; a refused call leaves its output untouched; accepted custom and quad
//! timesteps are strictly decreasing and in [0, T); img2img keeps min(⌊n·s⌋, n) ≥ 1 steps, a
//! tail of the schedule; `batch_step_no_noise` with one timestep per item gives, item by item,
//! what `step` gives.
#![no_main]

use arbitrary::Arbitrary;
use ddim::guidance::{classifier_free_guidance, rescale_noise_cfg};
use ddim::img2img::{img2img_timesteps, skipped_steps};
use ddim::{BatchFinalAlpha, DdimScheduler, SpacingOverride, StepOptions, ZeroSnrGuard};
use libfuzzer_sys::fuzz_target;

#[derive(Debug, Arbitrary)]
struct Input {
    config: ddim_fuzz::FuzzConfig,
    uncond: Vec<f32>,
    text: Vec<f32>,
    guidance_scale: f32,
    guidance_rescale: f32,
    batch_size: u8,
    wide: bool,
    num_inference_steps: u16,
    strength: f64,
    custom: Vec<u16>,
    quad: bool,
    item_timesteps: Vec<u16>,
    use_clipped_model_output: bool,
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

fn guidance(input: &Input) {
    let mut text = input.text.clone();
    text.resize(input.uncond.len(), 0.5);
    let batch = usize::from(input.batch_size);
    if input.wide {
        let u: Vec<f64> = input.uncond.iter().map(|&v| f64::from(v)).collect();
        let t: Vec<f64> = text.iter().map(|&v| f64::from(v)).collect();
        let mut out = vec![0f64; u.len()];
        if classifier_free_guidance(&u, &t, input.guidance_scale, &mut out).is_ok() {
            let _ = rescale_noise_cfg(&mut out, &t, input.guidance_rescale, batch);
        }
        return;
    }
    let mut out = vec![0f32; input.uncond.len()];
    match classifier_free_guidance(&input.uncond, &text, input.guidance_scale, &mut out) {
        Ok(()) => assert!(input.guidance_scale.is_finite()),
        Err(_) => assert!(out.iter().all(|&v| v == 0.0)),
    }
    let before = bits(&out);
    if rescale_noise_cfg(&mut out, &text, input.guidance_rescale, batch).is_err() {
        assert_eq!(bits(&out), before, "a refused rescale changed its output");
    } else {
        assert!(batch > 0 && out.len() % batch == 0 && out.len() / batch >= 2);
    }
    // Raw lengths too (text not resized).
    let mut raw = input.uncond.clone();
    let _ = rescale_noise_cfg(&mut raw, &input.text, input.guidance_rescale, batch);
}

fn scheduler_parts(input: &Input) {
    let Ok(scheduler) = DdimScheduler::new(input.config.to_config()) else {
        return;
    };
    let t = scheduler.config().num_train_timesteps;
    let mut scheduler = scheduler.with_zero_snr_guard(ZeroSnrGuard::Off);
    let n = usize::from(input.num_inference_steps) % (ddim_fuzz::MAX_T + 2);

    // img2img: the number of steps alone, then on a scheduler.
    match skipped_steps(n, input.strength) {
        Ok(skip) => {
            assert!((0.0..=1.0).contains(&input.strength));
            assert!(skip < n);
        }
        Err(_) => {}
    }

    // Custom timesteps.
    let custom: Vec<usize> = input
        .custom
        .iter()
        .take(64)
        .map(|&v| usize::from(v))
        .collect();
    let mut with_custom = scheduler.clone();
    match with_custom.set_timesteps_custom(&custom) {
        Ok(()) => {
            assert!(!custom.is_empty());
            assert!(custom.iter().all(|&v| v < t), "{custom:?} outside [0, {t})");
            assert!(
                custom.windows(2).all(|w| w[0] > w[1]),
                "{custom:?} not decreasing"
            );
            assert_eq!(with_custom.timesteps(), custom);
            for &ts in &custom {
                with_custom.prev_timestep(ts).unwrap();
            }
        }
        Err(_) => assert_eq!(with_custom.num_inference_steps(), None),
    }

    if input.quad {
        scheduler = scheduler.with_spacing_override(SpacingOverride::Quad);
    }
    if scheduler.set_timesteps(n).is_err() {
        return;
    }
    let ts = scheduler.timesteps().to_vec();
    assert_eq!(ts.len(), n);
    assert!(ts.iter().all(|&v| v < t), "{ts:?} outside [0, {t})");
    if input.quad {
        assert!(ts.windows(2).all(|w| w[0] > w[1]), "{ts:?} not decreasing");
    }

    if let Ok(run) = img2img_timesteps(&scheduler, input.strength) {
        assert!(!run.timesteps.is_empty());
        assert_eq!(run.timesteps, &ts[run.begin_index..]);
        assert_eq!(run.noise_timestep, run.timesteps[0]);
        assert_eq!(run.num_inference_steps, run.timesteps.len());
    }

    // batch_step_no_noise: one timestep per item (indices into the schedule or raw values).
    let items: Vec<usize> = input
        .item_timesteps
        .iter()
        .take(8)
        .map(|&v| {
            if v % 2 == 0 {
                ts[usize::from(v / 2) % ts.len()]
            } else {
                usize::from(v / 2)
            }
        })
        .collect();
    let sample: Vec<f32> = input.uncond.iter().take(256).copied().collect();
    let mut model_output = input.text.clone();
    model_output.resize(sample.len(), 0.1);
    let mut out = vec![7.0f32; sample.len()];
    // With the scheduler's own final ᾱ (not diffusers' 1), every item is what `step` gives.
    let scheduler = scheduler.with_batch_final_alpha(BatchFinalAlpha::Config);
    match scheduler.batch_step_no_noise(
        &model_output,
        &items,
        &sample,
        input.use_clipped_model_output,
        &mut out,
    ) {
        Ok(()) => {
            let per = sample.len() / items.len();
            for (k, &ts) in items.iter().enumerate() {
                let range = k * per..(k + 1) * per;
                let options = StepOptions {
                    use_clipped_model_output: input.use_clipped_model_output,
                    ..Default::default()
                };
                let one = scheduler
                    .step(
                        &model_output[range.clone()],
                        ts,
                        &sample[range.clone()],
                        &options,
                    )
                    .unwrap();
                assert_eq!(bits(&one.prev_sample), bits(&out[range]));
            }
        }
        Err(_) => assert!(out.iter().all(|&v| v == 7.0), "a refused batch step wrote"),
    }
}

fuzz_target!(|input: Input| {
    guidance(&input);
    scheduler_parts(&input);
});
