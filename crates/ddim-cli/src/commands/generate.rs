//! `ddim generate`: Stable Diffusion text-to-image, img2img (`--init-image`) and DDIM
//! inversion (`--invert`) on a diffusers model folder or a cached model id, with the ddim
//! scheduler, giving diffusers' image for the same prompt and seed.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use candle_core::{DType, Device};
use ddim_pipeline::folder::{Component, PipelineFolder};
use ddim_pipeline::{Generated, LoadOptions, Request, StableDiffusion};

use super::sample::progress_bar;
use crate::config_args::ConfigOverrides;
use crate::policy_args::PolicyArgs;

/// The dtype the networks compute in (diffusers' `torch_dtype`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum DtypeArg {
    F32,
    F16,
    Bf16,
}

impl DtypeArg {
    fn dtype(self) -> DType {
        match self {
            Self::F32 => DType::F32,
            Self::F16 => DType::F16,
            Self::Bf16 => DType::BF16,
        }
    }
}

/// Arguments of `ddim generate`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// A diffusers Stable Diffusion folder (model_index.json, unet/, vae/, text_encoder/,
    /// tokenizer/, scheduler/), or a model id (`org/name`) in the local Hugging Face cache.
    #[arg(long, value_name = "PATH_OR_ID")]
    model: String,
    /// The revision of a cached model id: a branch, tag or commit hash (default: main).
    #[arg(long, value_name = "REV")]
    revision: Option<String>,
    /// The prompt.
    #[arg(long)]
    prompt: String,
    /// The negative prompt (default: "" when guidance is on).
    #[arg(long)]
    negative_prompt: Option<String>,
    /// Number of inference steps (num_inference_steps).
    #[arg(long, short = 'n', default_value_t = 50, value_parser = crate::bounds::steps)]
    steps: usize,
    /// Classifier-free guidance scale w; guidance runs when w > 1.
    #[arg(long, default_value_t = 7.5, value_parser = parse_finite)]
    guidance_scale: f32,
    /// guidance_rescale φ (Lin et al. 2023): 0 is off, 0.7 the paper's choice.
    #[arg(long, default_value_t = 0.0, value_parser = parse_non_negative)]
    guidance_rescale: f32,
    /// η: 0 is deterministic DDIM, 1 is DDPM-like; its noise comes from the seed.
    #[arg(long, default_value_t = 0.0, value_parser = crate::bounds::eta)]
    eta: f32,
    /// Seed of torch.Generator("cpu").manual_seed(seed), handed to the pipeline.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Image height in pixels, a multiple of 8 (default: the UNet's sample_size × the VAE's
    /// scale factor).
    #[arg(long, value_parser = parse_side)]
    height: Option<usize>,
    /// Image width in pixels, a multiple of 8 (default as for --height).
    #[arg(long, value_parser = parse_side)]
    width: Option<usize>,
    /// Images made from the prompt, in one batch (num_images_per_prompt).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=256))]
    num_images_per_prompt: u16,
    /// The PNG to write; with several images, NAME-0.png, NAME-1.png, ….
    #[arg(long, short = 'o', default_value = "ddim-generate.png", value_parser = crate::atomic::parse_output)]
    output: PathBuf,
    /// Also write the final latents (f32, B×C×h×w, tensor `latents`) as safetensors.
    #[arg(long, value_name = "FILE.safetensors", value_parser = crate::atomic::parse_output)]
    latents_out: Option<PathBuf>,
    /// img2img: start from this image (PNG or JPEG) instead of pure noise.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["height", "width", "invert"])]
    init_image: Option<PathBuf>,
    /// img2img: how much of the way from image to noise to go back, in (0, 1].
    #[arg(long, default_value_t = 0.8, value_parser = parse_strength, requires = "init_image")]
    strength: f64,
    /// DDIM inversion: invert this image to x_T with the prompt, regenerate it with η = 0 and
    /// no guidance, and report the round trip's PSNR.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["height", "width", "num_images_per_prompt"])]
    invert: Option<PathBuf>,
    /// The dtype the networks compute in.
    #[arg(long, value_enum, default_value_t = DtypeArg::F32)]
    dtype: DtypeArg,
    /// Read the weights variant files (e.g. fp16: *.fp16.safetensors).
    #[arg(long, value_name = "NAME")]
    variant: Option<String>,
    #[command(flatten)]
    overrides: ConfigOverrides,
    #[command(flatten)]
    policy: PolicyArgs,
}

fn parse_finite(text: &str) -> Result<f32, String> {
    match text.parse::<f64>() {
        Ok(v) if v.is_finite() && v.abs() <= f64::from(f32::MAX) => Ok(v as f32),
        Ok(_) => Err(format!(
            "must be a finite number within f32's range, got {text}"
        )),
        Err(e) => Err(e.to_string()),
    }
}

fn parse_non_negative(text: &str) -> Result<f32, String> {
    match parse_finite(text)? {
        v if v >= 0.0 => Ok(v),
        _ => Err(format!("must be a finite number >= 0, got {text}")),
    }
}

fn parse_strength(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(v) if v > 0.0 && v <= 1.0 => Ok(v),
        Ok(_) => Err(format!("must be in (0, 1], got {text}")),
        Err(e) => Err(e.to_string()),
    }
}

fn parse_side(text: &str) -> Result<usize, String> {
    let max = ddim_pipeline::MAX_IMAGE_SIDE;
    match text.parse::<usize>() {
        Ok(v) if v > 0 && v % 8 == 0 && v <= max => Ok(v),
        Ok(v) => Err(format!(
            "must be a positive multiple of 8 up to {max}, got {v}"
        )),
        Err(e) => Err(e.to_string()),
    }
}

pub(crate) fn run(args: &Args, out: &mut impl Write) -> anyhow::Result<()> {
    let started = Instant::now();
    let outputs = output_paths(&args.output, usize::from(args.num_images_per_prompt));
    for path in outputs.iter().chain(&args.latents_out) {
        crate::atomic::check_writable(path)?;
    }
    let init = match args.init_image.as_ref().or(args.invert.as_ref()) {
        Some(path) => Some(ddim_pipeline::image::load_image(path)?),
        None => None,
    };

    let folder = PipelineFolder::open_or_cached(&args.model, args.revision.as_deref())
        .with_context(|| format!("cannot load --model {}", args.model))?;
    // The scheduler first: a config it refuses fails before the networks load.
    let (path, _) = folder.config_text(Component::Scheduler)?;
    let loaded = ddim::DdimConfig::load_file(&path)?;
    let mut config = loaded.config;
    args.overrides.apply(&mut config);
    let scheduler = args.policy.scheduler(config, args.steps)?;

    let options = LoadOptions {
        dtype: args.dtype.dtype(),
        device: Device::Cpu,
        variant: args.variant.clone(),
    };
    let loading = Instant::now();
    let pipe = StableDiffusion::load(&folder, &options)?;
    let load_time = loading.elapsed();
    for warning in pipe.scheduler_warnings() {
        eprintln!("warning: {warning}");
    }

    let request = Request {
        prompt: args.prompt.clone(),
        negative_prompt: args.negative_prompt.clone(),
        guidance_scale: args.guidance_scale,
        guidance_rescale: args.guidance_rescale,
        eta: args.eta,
        height: args.height,
        width: args.width,
        num_images_per_prompt: usize::from(args.num_images_per_prompt),
        seed: args.seed,
    };
    let steps = scheduler.timesteps().len();
    let bar = progress_bar(steps as u64, "steps");
    let mut progress = |done: usize, total: usize| {
        bar.set_length(total as u64);
        bar.set_position(done as u64);
    };
    let (generated, inversion) = match (&args.init_image, &args.invert, &init) {
        (Some(_), _, Some(image)) => (
            pipe.image_to_image(&scheduler, &request, image, args.strength, &mut progress)?,
            None,
        ),
        (_, Some(_), Some(image)) => {
            let inversion = pipe.invert(&scheduler, image, &args.prompt, &mut progress)?;
            (inversion.reconstruction.clone(), Some(inversion))
        }
        _ => (
            pipe.text_to_image(&scheduler, &request, &mut progress)?,
            None,
        ),
    };
    bar.finish_and_clear();
    for warning in &generated.warnings {
        eprintln!("warning: {warning}");
    }
    write_outputs(&generated, &outputs, args.latents_out.as_deref())?;

    let (height, width) = generated
        .images
        .first()
        .map_or((0, 0), |image| (image.height(), image.width()));
    writeln!(
        out,
        "ddim generate: {} image(s) {width}x{height}, {steps} steps, guidance {}{}, η = {}, seed {}, {}",
        generated.images.len(),
        args.guidance_scale,
        if args.guidance_rescale > 0.0 {
            format!(" (rescale {})", args.guidance_rescale)
        } else {
            String::new()
        },
        args.eta,
        args.seed,
        format!("{:?}", args.dtype).to_lowercase(),
    )?;
    if let Some(inversion) = &inversion {
        writeln!(
            out,
            "inversion round trip: PSNR {:.2} dB against the input, {:.2} dB against the VAE's own round trip",
            inversion.psnr_db, inversion.psnr_vs_vae_db
        )?;
    }
    let times = inversion.as_ref().map_or(generated.times, |i| i.times);
    let rows = [
        ("loading", load_time),
        ("text encoding", times.text_encoding),
        ("image encoding", times.image_encoding),
        ("denoising: UNet", times.unet),
        (
            "denoising: scheduler + guidance",
            times.scheduler_and_guidance,
        ),
        ("decoding", times.decoding),
    ];
    for (stage, time) in rows {
        if !time.is_zero() {
            writeln!(out, "{stage:<34} {}", seconds(time))?;
        }
    }
    for path in &outputs {
        writeln!(out, "wrote {}", path.display())?;
    }
    if let Some(path) = &args.latents_out {
        writeln!(out, "wrote {}", path.display())?;
    }
    writeln!(out, "wall time: {}", seconds(started.elapsed()))?;
    Ok(())
}

/// `out.png` for one image; `out-0.png`, `out-1.png`, … for several.
fn output_paths(output: &Path, count: usize) -> Vec<PathBuf> {
    if count <= 1 {
        return vec![output.to_path_buf()];
    }
    let stem = output
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let extension = output.extension().map(|e| e.to_string_lossy().into_owned());
    (0..count)
        .map(|i| {
            let name = match &extension {
                Some(ext) => format!("{stem}-{i}.{ext}"),
                None => format!("{stem}-{i}"),
            };
            output.with_file_name(name)
        })
        .collect()
}

fn write_outputs(
    generated: &Generated,
    outputs: &[PathBuf],
    latents_out: Option<&Path>,
) -> anyhow::Result<()> {
    for (image, path) in generated.images.iter().zip(outputs) {
        let png = ddim_pipeline::image::encode_png(image)?;
        crate::atomic::write(path, &png)?;
    }
    if let Some(path) = latents_out {
        let bytes = generated.latents.to_safetensors()?;
        crate::atomic::write(path, &bytes)?;
    }
    Ok(())
}

fn seconds(time: Duration) -> String {
    format!("{:.3} s", time.as_secs_f64())
}
