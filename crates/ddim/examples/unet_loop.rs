//! A complete Stable-Diffusion-style denoising loop on candle, with candle-transformers' real
//! `UNet2DConditionModel` (a tiny config, deterministic random weights, no download),
//! classifier-free guidance with `guidance_rescale = 0.7`, and the scheduler config of the
//! seed's example (diffusers' DDIMScheduler docs): `rescale_betas_zero_snr`, `trailing`
//! spacing, `v_prediction`.
//!
//! Then the same loop where candle-transformers' own DDIM scheduler can follow: it has no
//! zero-SNR rescale (nor `set_alpha_to_one`, clipping or thresholding), so that comparison
//! drops `rescale_betas_zero_snr` and keeps trailing + v_prediction. It prints the largest
//! difference between the two final latents and fails if it passes `--tolerance` (relative to
//! the latents' largest magnitude; default 1e-4 for f32, 2e-2 for f16).
//!
//! Measured (10 steps, 1×4×8×8): f32 1.9e-6 of the largest latent (candle computes ᾱ and the
//! step's scalars in f64, this crate in f32 as diffusers); f16 4.4e-3 (candle rounds every
//! op of the step to f16, this crate computes in f32 and rounds once).
//!
//! ```text
//! cargo run -p ddim --example unet_loop --features candle -- [--steps 10] [--size 8] [--dtype f32|f16]
//! ```

use std::error::Error;

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use candle_transformers::models::stable_diffusion::ddim::DDIMSchedulerConfig;
use candle_transformers::models::stable_diffusion::schedulers::{
    BetaSchedule, PredictionType as CandlePrediction, SchedulerConfig,
    TimestepSpacing as CandleSpacing,
};
use candle_transformers::models::stable_diffusion::unet_2d::{
    BlockConfig, UNet2DConditionModel, UNet2DConditionModelConfig,
};
use ddim::backend::{candle as backend, TensorStepOptions};
use ddim::guidance::{classifier_free_guidance, rescale_noise_cfg};
use ddim::{DdimConfig, DdimScheduler, PredictionType, TimestepSpacing};

const GUIDANCE_SCALE: f32 = 7.5;
const GUIDANCE_RESCALE: f32 = 0.7;
const LATENT_CHANNELS: usize = 4;
const CROSS_ATTENTION_DIM: usize = 16;
const TEXT_TOKENS: usize = 4;

struct Args {
    steps: usize,
    size: usize,
    dtype: DType,
    /// Relative to the latents' largest magnitude; default by dtype.
    tolerance: Option<f64>,
}

fn parse_args() -> Result<Args, Box<dyn Error>> {
    let mut args = Args {
        steps: 10,
        size: 8,
        dtype: DType::F32,
        tolerance: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or(format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--steps" => args.steps = value.parse()?,
            "--size" => args.size = value.parse()?,
            "--tolerance" => args.tolerance = Some(value.parse()?),
            "--dtype" => {
                args.dtype = match value.as_str() {
                    "f16" => DType::F16,
                    "f32" => DType::F32,
                    // candle's CPU matmul has no BF16 and its group norm no F64.
                    other => return Err(format!("unknown dtype {other} (f32 or f16)").into()),
                }
            }
            other => return Err(format!("unknown flag {other}").into()),
        }
    }
    Ok(args)
}

/// Deterministic standard-normal values (a fixed LCG and Box–Muller), so every run sees the
/// same weights, prompt embeddings and initial latents.
fn normals(n: usize, seed: u64) -> Vec<f32> {
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut uniform = move || {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((state >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    };
    (0..n)
        .map(|_| {
            let (u, v) = (uniform(), uniform());
            ((-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()) as f32
        })
        .collect()
}

fn unet_config() -> UNet2DConditionModelConfig {
    UNet2DConditionModelConfig {
        blocks: vec![
            BlockConfig {
                out_channels: 32,
                use_cross_attn: Some(1),
                attention_head_dim: 8,
            },
            BlockConfig {
                out_channels: 64,
                use_cross_attn: None,
                attention_head_dim: 8,
            },
        ],
        layers_per_block: 1,
        norm_num_groups: 8,
        cross_attention_dim: CROSS_ATTENTION_DIM,
        ..UNet2DConditionModelConfig::default()
    }
}

/// candle-transformers' SD UNet at toy width: two blocks (32 channels with cross-attention,
/// 64 without), one layer each, deterministic random weights scaled by 1/√fan_in.
fn tiny_unet(device: &Device, dtype: DType) -> Result<UNet2DConditionModel, Box<dyn Error>> {
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, device);
    let unet =
        UNet2DConditionModel::new(vb, LATENT_CHANNELS, LATENT_CHANNELS, false, unet_config())?;
    // VarMap initialises from the device's unseeded generator: overwrite every weight and
    // bias with deterministic values (norm scales keep their constant init).
    let vars = varmap.data().lock().map_err(|_| "poisoned var map")?;
    let mut names: Vec<&String> = vars.keys().collect();
    names.sort();
    for (i, name) in names.into_iter().enumerate() {
        let var = &vars[name];
        let dims = var.dims();
        if dims.len() < 2 && !name.ends_with("bias") {
            continue; // norm scales: constant init
        }
        let fan_in: usize = dims.iter().skip(1).product::<usize>().max(dims[0]);
        let values: Vec<f32> = normals(var.elem_count(), i as u64 + 1)
            .into_iter()
            .map(|v| v / (fan_in as f32).sqrt())
            .collect();
        var.set(&Tensor::from_vec(values, dims, device)?)?;
    }
    drop(vars);
    if dtype == DType::F32 {
        return Ok(unet);
    }
    // The same weights on the model's dtype.
    let weights = varmap
        .data()
        .lock()
        .map_err(|_| "poisoned var map")?
        .iter()
        .map(|(name, var)| Ok((name.clone(), var.as_tensor().to_dtype(dtype)?)))
        .collect::<Result<std::collections::HashMap<_, _>, candle_core::Error>>()?;
    let vb = VarBuilder::from_tensors(weights, dtype, device);
    Ok(UNet2DConditionModel::new(
        vb,
        LATENT_CHANNELS,
        LATENT_CHANNELS,
        false,
        unet_config(),
    )?)
}

/// The guided noise prediction at `t`: the UNet on `[latents; latents]` with
/// `[uncond; text]` embeddings, combined by classifier-free guidance and rescaled by
/// `guidance_rescale`, as diffusers' SD pipeline does (`ddim::guidance`, on the host).
fn guided_prediction(
    unet: &UNet2DConditionModel,
    latents: &Tensor,
    t: usize,
    embeddings: &Tensor,
) -> Result<Tensor, Box<dyn Error>> {
    let input = Tensor::cat(&[latents, latents], 0)?;
    let prediction = unet.forward(&input, t as f64, embeddings)?;
    let values = prediction
        .to_dtype(DType::F32)?
        .flatten_all()?
        .to_vec1::<f32>()?;
    let (uncond, text) = values.split_at(values.len() / 2);
    let mut guided = vec![0.0f32; uncond.len()];
    classifier_free_guidance(uncond, text, GUIDANCE_SCALE, &mut guided)?;
    rescale_noise_cfg(&mut guided, text, GUIDANCE_RESCALE, latents.dims()[0])?;
    Ok(Tensor::from_vec(guided, latents.shape(), latents.device())?.to_dtype(latents.dtype())?)
}

/// The loop with this crate's scheduler (candle backend).
fn denoise_with_ddim(
    unet: &UNet2DConditionModel,
    config: DdimConfig,
    steps: usize,
    initial: &Tensor,
    embeddings: &Tensor,
) -> Result<Tensor, Box<dyn Error>> {
    let mut scheduler = DdimScheduler::new(config)?;
    scheduler.set_timesteps(steps)?;
    let mut latents = (initial * f64::from(scheduler.init_noise_sigma()))?;
    for &t in scheduler.timesteps() {
        let noise_pred = guided_prediction(unet, &latents, t, embeddings)?;
        let options = TensorStepOptions::default();
        latents = backend::step(&scheduler, &noise_pred, t, &latents, &options)?.prev_sample;
    }
    Ok(latents)
}

/// The same loop with candle-transformers' DDIM scheduler.
fn denoise_with_candle_ddim(
    unet: &UNet2DConditionModel,
    config: DDIMSchedulerConfig,
    steps: usize,
    initial: &Tensor,
    embeddings: &Tensor,
) -> Result<Tensor, Box<dyn Error>> {
    let mut scheduler = config.build(steps)?;
    let mut latents = (initial * scheduler.init_noise_sigma())?;
    let timesteps = scheduler.timesteps().to_vec();
    for t in timesteps {
        let noise_pred = guided_prediction(unet, &latents, t, embeddings)?;
        latents = scheduler.step(&noise_pred, t, &latents)?;
    }
    Ok(latents)
}

fn max_abs(t: &Tensor) -> Result<f64, Box<dyn Error>> {
    Ok(t.to_dtype(DType::F64)?
        .abs()?
        .flatten_all()?
        .max(0)?
        .to_scalar::<f64>()?)
}

fn main() -> Result<(), Box<dyn Error>> {
    let args = parse_args()?;
    let device = Device::Cpu;
    let unet = tiny_unet(&device, args.dtype)?;
    let shape = (1, LATENT_CHANNELS, args.size, args.size);
    let n = LATENT_CHANNELS * args.size * args.size;
    let initial = Tensor::from_vec(normals(n, 1000), shape, &device)?.to_dtype(args.dtype)?;
    let text_shape = (2, TEXT_TOKENS, CROSS_ATTENTION_DIM);
    let embeddings = Tensor::from_vec(
        normals(2 * TEXT_TOKENS * CROSS_ATTENTION_DIM, 2000),
        text_shape,
        &device,
    )?
    .to_dtype(args.dtype)?;

    // The seed's config: SD's schedule with zero terminal SNR, trailing, v-prediction.
    let seed_config = DdimConfig {
        rescale_betas_zero_snr: true,
        timestep_spacing: TimestepSpacing::Trailing,
        prediction_type: PredictionType::VPrediction,
        ..DdimConfig::stable_diffusion()
    };
    let ours = denoise_with_ddim(
        &unet,
        seed_config.clone(),
        args.steps,
        &initial,
        &embeddings,
    )?;
    println!(
        "ddim (zero-SNR, trailing, v_prediction, CFG {GUIDANCE_SCALE}, rescale {GUIDANCE_RESCALE}), \
         {} steps, {:?} {:?}: max |latent| = {:.6}",
        args.steps,
        shape,
        args.dtype,
        max_abs(&ours)?
    );
    if ours
        .to_dtype(DType::F32)?
        .flatten_all()?
        .to_vec1::<f32>()?
        .iter()
        .any(|v| !v.is_finite())
    {
        return Err("the zero-SNR loop produced a non-finite latent".into());
    }

    // Where candle's DDIM overlaps: no zero-SNR rescale.
    let overlap = DdimConfig {
        rescale_betas_zero_snr: false,
        ..seed_config
    };
    let candle_config = DDIMSchedulerConfig {
        beta_start: overlap.beta_start,
        beta_end: overlap.beta_end,
        beta_schedule: BetaSchedule::ScaledLinear,
        eta: 0.0,
        steps_offset: overlap.steps_offset,
        prediction_type: CandlePrediction::VPrediction,
        train_timesteps: overlap.num_train_timesteps,
        timestep_spacing: CandleSpacing::Trailing,
    };
    let ours = denoise_with_ddim(&unet, overlap, args.steps, &initial, &embeddings)?;
    let theirs = denoise_with_candle_ddim(&unet, candle_config, args.steps, &initial, &embeddings)?;
    let scale = max_abs(&theirs)?;
    let diff = max_abs(&(ours.to_dtype(DType::F64)? - theirs.to_dtype(DType::F64)?)?)?;
    println!(
        "ddim vs candle-transformers' DDIM (trailing, v_prediction, no zero-SNR): \
         max |difference| = {diff:.3e}, {:.3e} of max |latent| = {scale:.6}",
        diff / scale
    );
    let tolerance = args
        .tolerance
        .unwrap_or(if args.dtype == DType::F16 { 2e-2 } else { 1e-4 });
    if diff.is_nan() || diff > tolerance * scale {
        return Err(format!(
            "the two schedulers differ by {:.3e} of the latents' scale, beyond {:.1e}",
            diff / scale,
            tolerance
        )
        .into());
    }
    Ok(())
}
