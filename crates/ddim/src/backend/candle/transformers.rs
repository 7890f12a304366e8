//! candle-transformers' Stable Diffusion scheduler traits for this DDIM (feature
//! `candle-transformers`): candle's own SD code switches to this scheduler by one line.
//!
//! candle's example builds its scheduler with `sd_config.build_scheduler(n_steps)?`, a
//! `Box<dyn Scheduler>`; replace that line with
//!
//! ```ignore
//! let mut scheduler = ddim::backend::candle::TransformersDdim::from_config(
//!     ddim::DdimConfig::from_file("model/scheduler/scheduler_config.json")?, n_steps)?.boxed();
//! ```
//!
//! and the rest of the loop (`scheduler.timesteps()`, `scale_model_input`, `step`,
//! `add_noise`, `init_noise_sigma`) runs on this crate's DDIM, with diffusers' numbers,
//! its config keys, every element type, and torch-seeded η > 0 noise.

use std::fmt;

use candle_core::Tensor;
use candle_transformers::models::stable_diffusion::schedulers::{Scheduler, SchedulerConfig};

use super::CandleBackend;
use crate::backend::TensorStepOptions;
use crate::config::DdimConfig;
use crate::error::Result;
use crate::rng::TorchCpuGenerator;
use crate::scheduler::DdimScheduler;

/// A [`DdimScheduler`] with its timesteps set, its η and (for η > 0) a torch CPU generator:
/// what candle-transformers' [`Scheduler`] trait needs.
///
/// ```
/// use candle_core::{DType, Device, Tensor};
/// use candle_transformers::models::stable_diffusion::schedulers::Scheduler;
/// use ddim::backend::candle::TransformersDdim;
/// let mut scheduler = TransformersDdim::from_config(ddim::DdimConfig::stable_diffusion(), 10)?;
/// let mut latents = Tensor::ones((1, 4, 8, 8), DType::F32, &Device::Cpu)?;
/// for t in scheduler.timesteps().to_vec() {
///     let eps = (&latents * 0.1)?; // the UNet
///     latents = scheduler.step(&eps, t, &latents)?;
/// }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct TransformersDdim {
    scheduler: DdimScheduler,
    eta: f32,
    generator: TorchCpuGenerator,
    backend: CandleBackend,
}

impl TransformersDdim {
    /// Wraps a scheduler whose timesteps are set (η = 0, generator seed 0).
    pub fn new(scheduler: DdimScheduler) -> Self {
        Self {
            scheduler,
            eta: 0.0,
            generator: TorchCpuGenerator::new(0),
            backend: CandleBackend::default(),
        }
    }

    /// Builds the scheduler from a config and sets `inference_steps` timesteps.
    ///
    /// # Errors
    ///
    /// The errors of [`DdimScheduler::new`] and [`DdimScheduler::set_timesteps`].
    pub fn from_config(config: DdimConfig, inference_steps: usize) -> Result<Self> {
        let mut scheduler = DdimScheduler::new(config)?;
        scheduler.set_timesteps(inference_steps)?;
        Ok(Self::new(scheduler))
    }

    /// η for every step and the seed of the torch CPU generator its noise is drawn from
    /// (diffusers' `generator=torch.Generator("cpu").manual_seed(seed)`).
    pub fn with_eta(mut self, eta: f32, seed: u64) -> Self {
        self.eta = eta;
        self.generator = TorchCpuGenerator::new(seed);
        self
    }

    /// As a `Box<dyn Scheduler>`, what `StableDiffusionConfig::build_scheduler` returns.
    pub fn boxed(self) -> Box<dyn Scheduler> {
        Box::new(self)
    }

    /// The wrapped scheduler.
    pub fn scheduler(&self) -> &DdimScheduler {
        &self.scheduler
    }
}

impl Scheduler for TransformersDdim {
    fn timesteps(&self) -> &[usize] {
        self.scheduler.timesteps()
    }

    fn add_noise(
        &self,
        original: &Tensor,
        noise: Tensor,
        timestep: usize,
    ) -> candle_core::Result<Tensor> {
        Ok(self
            .backend
            .add_noise(&self.scheduler, original, &noise, &[timestep])?)
    }

    fn init_noise_sigma(&self) -> f64 {
        f64::from(self.scheduler.init_noise_sigma())
    }

    fn scale_model_input(&self, sample: Tensor, _timestep: usize) -> candle_core::Result<Tensor> {
        Ok(sample)
    }

    fn step(
        &mut self,
        model_output: &Tensor,
        timestep: usize,
        sample: &Tensor,
    ) -> candle_core::Result<Tensor> {
        let options = TensorStepOptions {
            eta: self.eta,
            ..Default::default()
        };
        let out = self.backend.step_with_generator(
            &self.scheduler,
            model_output,
            timestep,
            sample,
            &options,
            &mut self.generator,
        )?;
        Ok(out.prev_sample)
    }
}

/// A [`DdimConfig`] (and η, seed) as candle-transformers' [`SchedulerConfig`], for code that
/// builds its scheduler from a config: `build(n)` is a [`TransformersDdim`] with `n` steps.
///
/// ```
/// use candle_transformers::models::stable_diffusion::schedulers::SchedulerConfig;
/// let config = ddim::backend::candle::TransformersDdimConfig::new(ddim::DdimConfig::stable_diffusion());
/// let scheduler = config.build(50)?;
/// assert_eq!(scheduler.timesteps()[0], 981);
/// # Ok::<(), candle_core::Error>(())
/// ```
#[derive(Clone)]
pub struct TransformersDdimConfig {
    /// The scheduler config.
    pub config: DdimConfig,
    /// η of every step.
    pub eta: f32,
    /// The seed of the torch CPU generator of the η > 0 noise.
    pub seed: u64,
}

impl TransformersDdimConfig {
    /// η = 0, seed 0.
    pub fn new(config: DdimConfig) -> Self {
        Self {
            config,
            eta: 0.0,
            seed: 0,
        }
    }
}

impl fmt::Debug for TransformersDdimConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TransformersDdimConfig")
            .field("config", &self.config)
            .field("eta", &self.eta)
            .field("seed", &self.seed)
            .finish()
    }
}

impl SchedulerConfig for TransformersDdimConfig {
    fn build(&self, inference_steps: usize) -> candle_core::Result<Box<dyn Scheduler>> {
        Ok(
            TransformersDdim::from_config(self.config.clone(), inference_steps)?
                .with_eta(self.eta, self.seed)
                .boxed(),
        )
    }
}
