//! One guided Stable Diffusion step at 512×512 with this crate's UNet and the ddim scheduler:
//! the Rust half of `tools/bench/run_unet.sh` (the other half is
//! `tools/bench/bench_unet.py`, which also writes the UNet folder this reads).
//!
//! ```text
//! cargo run --release -p ddim-pipeline --example unet_step -- /tmp/sd15-unet [repeats]
//! ```
//!
//! Times, as the Python side does: the UNet on the CFG batch (2×4×64×64, 77×768 text
//! embeddings) — `unet_s`, the median over the repeats after one warm-up — and the rest of a
//! step: classifier-free guidance, `rescale_noise_cfg` and the DDIM step with η = 1 drawing
//! its noise from a torch-compatible generator — `rest_ms`. Prints one JSON object.

use std::path::PathBuf;
use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use ddim::rng::{randn_latents, TorchCpuGenerator};
use ddim::{DdimConfig, DdimScheduler, StepOptions};
use ddim_pipeline::models::{UNet2DConditionModel, UNetConfig};

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let folder = PathBuf::from(
        args.next()
            .ok_or("usage: unet_step UNET_FOLDER [REPEATS]")?,
    );
    let repeats: usize = args.next().map_or(Ok(3), |r| r.parse())?;
    let config_path = folder.join("config.json");
    let config = UNetConfig::from_json_str(&std::fs::read_to_string(&config_path)?, &config_path)?;
    let device = Device::Cpu;
    let loading = Instant::now();
    let unet = UNet2DConditionModel::load(
        &config,
        &[folder.join("diffusion_pytorch_model.safetensors")],
        DType::F32,
        &device,
    )?;
    let load_s = loading.elapsed().as_secs_f64();

    let mut generator = TorchCpuGenerator::new(0);
    let latents: Vec<f32> = randn_latents(&[1, 4, 64, 64], &mut generator)?;
    let embeds: Vec<f32> = randn_latents(&[2, 77, 768], &mut generator)?;
    let embeds = Tensor::from_vec(embeds, (2, 77, 768), &device)?;
    let scheduler_config = DdimConfig::from_json_str(
        r#"{"beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear",
            "steps_offset": 1, "clip_sample": false, "set_alpha_to_one": false}"#,
    )?;
    let mut scheduler = DdimScheduler::new(scheduler_config)?;
    scheduler.set_timesteps(50)?;
    let t = scheduler.timesteps()[10];

    let doubled = Tensor::from_vec(
        [latents.clone(), latents.clone()].concat(),
        (2, 4, 64, 64),
        &device,
    )?;
    unet.forward(&doubled, t, &embeds)?; // warm-up
    let (mut unet_times, mut rest_times) = (Vec::new(), Vec::new());
    for _ in 0..repeats {
        let started = Instant::now();
        let prediction: Vec<f32> = unet
            .forward(&doubled, t, &embeds)?
            .flatten_all()?
            .to_vec1()?;
        unet_times.push(started.elapsed().as_secs_f64());

        let started = Instant::now();
        let (uncond, text) = prediction.split_at(latents.len());
        let mut guided = vec![0.0f32; latents.len()];
        ddim::guidance::classifier_free_guidance(uncond, text, 7.5, &mut guided)?;
        ddim::guidance::rescale_noise_cfg(&mut guided, text, 0.7, 1)?;
        let options = StepOptions {
            eta: 1.0,
            ..StepOptions::default()
        };
        let next = scheduler.step_with_generator(&guided, t, &latents, &options, &mut generator)?;
        std::hint::black_box(next);
        rest_times.push(started.elapsed().as_secs_f64());
    }
    println!(
        "{{\"load_s\": {load_s:.3}, \"unet_s\": {:.4}, \"unet_s_all\": {unet_times:?}, \"rest_ms\": {:.4}, \"threads\": {}}}",
        median(unet_times.clone()),
        1e3 * median(rest_times),
        candle_core::utils::get_num_threads(),
    );
    Ok(())
}
