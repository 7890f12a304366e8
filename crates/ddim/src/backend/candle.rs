//! The scheduler on [`candle_core::Tensor`]s (feature `candle`): F16, BF16, F32, F64, on any
//! device.
//!
//! Free functions that take the scheduler first: [`step`], [`step_with_device_noise`],
//! [`step_into`], [`add_noise`], [`get_velocity`]; [`CandleBackend`] has the same methods
//! with a choice of [`Dispatch`]. Tensors are batch-major: axis 0 is the batch (dynamic
//! thresholding is per item of axis 0; `add_noise` takes one timestep per item, or one for
//! all).
//!
//! Two implementations, one set of numbers:
//!
//! * **fused**: tensors on the CPU whose layouts are contiguous are read in place (no copy)
//!   and stepped by the crate's fused slice kernel, which writes the outputs once.
//! * **ops**: anything else (CUDA, Metal, strided views) runs candle tensor ops in diffusers'
//!   order: x̂₀ and ε̂ by the prediction type, clip or dynamic thresholding (per-item quantile
//!   by candle's sort), `use_clipped_model_output`, then √ᾱ_prev·x̂₀ + √(1 − ᾱ_prev − σ²)·ε̂
//!   + σ·z. The scalars are the host's f32 coefficients, as in the slice path.
//!
//! Both compute as the slice path does: F32 and F64 in themselves, F16 and BF16 widened to F32
//! and rounded once at the end (with thresholding, x̂₀ is rounded to the element type before
//! its quantile, as the slice path stores it). On the CPU the op path equals the fused path
//! bit for bit for every dtype (measured by the conformance suite; `docs/backends.md`); on
//! other devices the division and the quantile's sort are the device's.
//!
//! Noise for η > 0 ([`step_with_device_noise`], [`randn_like`]) is drawn on the sample's
//! device in the sample's dtype. (candle-transformers' own DDIM always draws F32 noise, which
//! cannot be added to an F16 or BF16 sample.)
//!
//! ```
//! use candle_core::{DType, Device, Tensor};
//! use ddim::backend::{candle::step, TensorStepOptions};
//!
//! let mut scheduler = ddim::DdimScheduler::new(ddim::DdimConfig::stable_diffusion())?;
//! scheduler.set_timesteps(10)?;
//! let mut latents = Tensor::ones((2, 4, 8, 8), DType::F16, &Device::Cpu)?;
//! for &t in scheduler.timesteps() {
//!     let eps = (&latents * 0.1)?; // the model's prediction
//!     let out = step(&scheduler, &eps, t, &latents, &TensorStepOptions::default())?;
//!     latents = out.prev_sample;
//! }
//! assert_eq!(latents.dtype(), DType::F16);
//! # Ok::<(), ddim::Error>(())
//! ```

use candle_core::{DType, Device, Layout, Storage, Tensor, WithDType};

use super::{batch_of, check_shape, per_item_timesteps, TensorStepOptions, TensorStepOutput};
use crate::coefficients::StepCoefficients;
use crate::config::PredictionType;
use crate::element::{Compute, Element};
use crate::error::{Error, Result};
use crate::scheduler::{DdimScheduler, StepOptions};
use crate::threshold;

/// The longest row candle's CUDA sort kernel handles: it sorts a row in shared memory of 4
/// bytes per element, padded to a power of two, and 48 KiB are available by default. Longer
/// rows on CUDA take their quantile on the host (the row is copied there).
const CUDA_SORT_MAX_ROW: usize = 8192;

/// Which implementation a [`CandleBackend`] runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Dispatch {
    /// The fused slice kernel for contiguous CPU tensors, candle ops otherwise.
    #[default]
    Auto,
    /// Candle ops always (what CUDA and Metal run), e.g. to check them on the CPU.
    Ops,
}

/// The candle backend with a choice of implementation; the module's free functions are
/// `CandleBackend::default()`'s methods.
///
/// ```
/// use candle_core::{Device, Tensor};
/// use ddim::backend::candle::{CandleBackend, Dispatch};
/// let mut scheduler = ddim::DdimScheduler::new(ddim::DdimConfig::default())?;
/// scheduler.set_timesteps(10)?;
/// let x = Tensor::new(&[[0.5f32, -0.25], [1.0, 2.0]], &Device::Cpu)?;
/// let eps = (&x * 0.1)?;
/// let options = Default::default();
/// let fused = CandleBackend::default().step(&scheduler, &eps, 900, &x, &options)?;
/// let ops = CandleBackend { dispatch: Dispatch::Ops }.step(&scheduler, &eps, 900, &x, &options)?;
/// assert_eq!(fused.prev_sample.to_vec2::<f32>()?, ops.prev_sample.to_vec2::<f32>()?);
/// # Ok::<(), ddim::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CandleBackend {
    /// Fused kernel where possible, or candle ops always.
    pub dispatch: Dispatch,
}

/// [`CandleBackend::step`] with [`Dispatch::Auto`].
///
/// ```
/// use candle_core::{Device, Tensor};
/// let mut scheduler = ddim::DdimScheduler::new(ddim::DdimConfig::default())?;
/// scheduler.set_timesteps(10)?;
/// let x = Tensor::new(&[0.5f64, -0.25], &Device::Cpu)?;
/// let out = ddim::backend::candle::step(&scheduler, &x, 900, &x, &Default::default())?;
/// assert_eq!(out.prev_sample.dims(), &[2]);
/// # Ok::<(), ddim::Error>(())
/// ```
///
/// # Errors
///
/// As [`CandleBackend::step`].
pub fn step(
    scheduler: &DdimScheduler,
    model_output: &Tensor,
    timestep: usize,
    sample: &Tensor,
    options: &TensorStepOptions<&Tensor>,
) -> Result<TensorStepOutput<Tensor>> {
    CandleBackend::default().step(scheduler, model_output, timestep, sample, options)
}

/// [`CandleBackend::step_with_device_noise`] with [`Dispatch::Auto`].
///
/// ```
/// use candle_core::{Device, Tensor};
/// let mut scheduler = ddim::DdimScheduler::new(ddim::DdimConfig::default())?;
/// scheduler.set_timesteps(10)?;
/// let x = Tensor::new(&[0.5f32, -0.25], &Device::Cpu)?;
/// let options = ddim::backend::TensorStepOptions { eta: 1.0, ..Default::default() };
/// let out = ddim::backend::candle::step_with_device_noise(&scheduler, &x, 900, &x, &options)?;
/// assert_eq!(out.prev_sample.dims(), &[2]);
/// # Ok::<(), ddim::Error>(())
/// ```
///
/// # Errors
///
/// As [`CandleBackend::step_with_device_noise`].
pub fn step_with_device_noise(
    scheduler: &DdimScheduler,
    model_output: &Tensor,
    timestep: usize,
    sample: &Tensor,
    options: &TensorStepOptions<&Tensor>,
) -> Result<TensorStepOutput<Tensor>> {
    CandleBackend::default().step_with_device_noise(
        scheduler,
        model_output,
        timestep,
        sample,
        options,
    )
}

/// [`CandleBackend::step_into`] with [`Dispatch::Auto`].
///
/// ```
/// use candle_core::{Device, Tensor};
/// let mut scheduler = ddim::DdimScheduler::new(ddim::DdimConfig::default())?;
/// scheduler.set_timesteps(10)?;
/// let x = Tensor::new(&[0.5f32, -0.25], &Device::Cpu)?;
/// let (prev, x0) = (x.zeros_like()?, x.zeros_like()?);
/// ddim::backend::candle::step_into(&scheduler, &x, 900, &x, &Default::default(), &prev, &x0)?;
/// assert_ne!(prev.to_vec1::<f32>()?, vec![0.0, 0.0]);
/// # Ok::<(), ddim::Error>(())
/// ```
///
/// # Errors
///
/// As [`CandleBackend::step_into`].
pub fn step_into(
    scheduler: &DdimScheduler,
    model_output: &Tensor,
    timestep: usize,
    sample: &Tensor,
    options: &TensorStepOptions<&Tensor>,
    prev_sample: &Tensor,
    pred_original_sample: &Tensor,
) -> Result<()> {
    CandleBackend::default().step_into(
        scheduler,
        model_output,
        timestep,
        sample,
        options,
        prev_sample,
        pred_original_sample,
    )
}

/// [`CandleBackend::add_noise`] with [`Dispatch::Auto`].
///
/// ```
/// use candle_core::{Device, Tensor};
/// let scheduler = ddim::DdimScheduler::new(ddim::DdimConfig::default())?;
/// let x0 = Tensor::ones((2, 3), candle_core::DType::F32, &Device::Cpu)?;
/// let x_t = ddim::backend::candle::add_noise(&scheduler, &x0, &x0.zeros_like()?, &[0, 999])?;
/// assert!(x_t.to_vec2::<f32>()?[1][0] < 0.01);
/// # Ok::<(), ddim::Error>(())
/// ```
///
/// # Errors
///
/// As [`CandleBackend::add_noise`].
pub fn add_noise(
    scheduler: &DdimScheduler,
    original_samples: &Tensor,
    noise: &Tensor,
    timesteps: &[usize],
) -> Result<Tensor> {
    CandleBackend::default().add_noise(scheduler, original_samples, noise, timesteps)
}

/// [`CandleBackend::get_velocity`] with [`Dispatch::Auto`].
///
/// ```
/// use candle_core::{Device, Tensor};
/// let scheduler = ddim::DdimScheduler::new(ddim::DdimConfig::default())?;
/// let x0 = Tensor::ones((2, 3), candle_core::DType::F64, &Device::Cpu)?;
/// let v = ddim::backend::candle::get_velocity(&scheduler, &x0, &x0.zeros_like()?, &[500])?;
/// assert!(v.to_vec2::<f64>()?[0][0] < 0.0);
/// # Ok::<(), ddim::Error>(())
/// ```
///
/// # Errors
///
/// As [`CandleBackend::get_velocity`].
pub fn get_velocity(
    scheduler: &DdimScheduler,
    sample: &Tensor,
    noise: &Tensor,
    timesteps: &[usize],
) -> Result<Tensor> {
    CandleBackend::default().get_velocity(scheduler, sample, noise, timesteps)
}

/// z ~ N(0, I) of the sample's shape, dtype and device, drawn by the device's generator
/// (seed it with [`Device::set_seed`] where the device supports it).
///
/// ```
/// use candle_core::{DType, Device, Tensor};
/// let x = Tensor::zeros((2, 3), DType::BF16, &Device::Cpu)?;
/// assert_eq!(ddim::backend::candle::randn_like(&x)?.dtype(), DType::BF16);
/// # Ok::<(), ddim::Error>(())
/// ```
///
/// # Errors
///
/// [`Error::UnsupportedDtype`] for a dtype other than F16, BF16, F32, F64; [`Error::Candle`]
/// when the device fails.
pub fn randn_like(sample: &Tensor) -> Result<Tensor> {
    let (shape, device) = (sample.shape(), sample.device());
    Ok(match sample.dtype() {
        DType::F16 => Tensor::randn(half::f16::ZERO, half::f16::ONE, shape, device)?,
        DType::BF16 => Tensor::randn(half::bf16::ZERO, half::bf16::ONE, shape, device)?,
        DType::F32 => Tensor::randn(0f32, 1f32, shape, device)?,
        DType::F64 => Tensor::randn(0f64, 1f64, shape, device)?,
        other => return Err(unsupported("sample", other)),
    })
}

fn unsupported(name: &'static str, dtype: DType) -> Error {
    Error::UnsupportedDtype {
        name,
        expected: "f16, bf16, f32 or f64".into(),
        got: dtype.as_str().into(),
    }
}

/// Checks a companion tensor against the sample: same shape, same dtype.
fn check_like(name: &'static str, sample: &Tensor, other: &Tensor) -> Result<()> {
    check_shape(name, sample.dims(), other.dims())?;
    if other.dtype() != sample.dtype() {
        return Err(Error::UnsupportedDtype {
            name,
            expected: sample.dtype().as_str().into(),
            got: other.dtype().as_str().into(),
        });
    }
    Ok(())
}

fn check_sample_dtype(sample: &Tensor) -> Result<()> {
    match sample.dtype() {
        DType::F16 | DType::BF16 | DType::F32 | DType::F64 => Ok(()),
        other => Err(unsupported("sample", other)),
    }
}

/// The tensor's elements as a slice of its CPU storage, when it is on the CPU and contiguous.
fn cpu_slice<'g, T: WithDType>(storage: &'g Storage, layout: &Layout) -> Option<&'g [T]> {
    match storage {
        Storage::Cpu(cpu) => {
            let (start, end) = layout.contiguous_offsets()?;
            cpu.as_slice::<T>().ok()?.get(start..end)
        }
        _ => None,
    }
}

impl CandleBackend {
    /// One DDIM step on tensors (see [`DdimScheduler::step`] for the update):
    /// x_{t_prev} = √ᾱ_prev·x̂₀ + √(1 − ᾱ_prev − σ_t²)·ε̂ + σ_t·z, with x̂₀ and ε̂ recovered
    /// from `model_output` and `sample` by the config's prediction type and x̂₀ clipped or
    /// thresholded. Outputs have the sample's shape, dtype and device.
    ///
    /// ```
    /// use candle_core::{DType, Device, Tensor};
    /// use ddim::backend::candle::CandleBackend;
    /// let mut scheduler = ddim::DdimScheduler::new(ddim::DdimConfig::default())?;
    /// scheduler.set_timesteps(10)?;
    /// let x = Tensor::ones((1, 4, 2, 2), DType::BF16, &Device::Cpu)?;
    /// let out = CandleBackend::default().step(&scheduler, &x, 900, &x, &Default::default())?;
    /// assert_eq!(out.pred_original_sample.dtype(), DType::BF16);
    /// # Ok::<(), ddim::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::UnsupportedDtype`] for a sample dtype other than F16, BF16, F32, F64, or a
    /// model output or noise of another dtype; [`Error::ShapeMismatch`]; the errors of
    /// [`DdimScheduler::step`]; [`Error::Candle`] when a tensor op fails (e.g. tensors on
    /// different devices).
    pub fn step(
        &self,
        scheduler: &DdimScheduler,
        model_output: &Tensor,
        timestep: usize,
        sample: &Tensor,
        options: &TensorStepOptions<&Tensor>,
    ) -> Result<TensorStepOutput<Tensor>> {
        check_sample_dtype(sample)?;
        check_like("model_output", sample, model_output)?;
        if let Some(z) = options.variance_noise {
            check_like("variance_noise", sample, z)?;
        }
        if self.dispatch == Dispatch::Auto {
            let fused = match sample.dtype() {
                DType::F16 => {
                    fused_step::<half::f16>(scheduler, model_output, timestep, sample, options)
                }
                DType::BF16 => {
                    fused_step::<half::bf16>(scheduler, model_output, timestep, sample, options)
                }
                DType::F32 => fused_step::<f32>(scheduler, model_output, timestep, sample, options),
                _ => fused_step::<f64>(scheduler, model_output, timestep, sample, options),
            }?;
            if let Some(out) = fused {
                return Ok(out);
            }
        }
        let c = scheduler.step_coefficients(timestep, options.eta)?;
        let noise = if options.eta > 0.0 {
            Some(
                options
                    .variance_noise
                    .ok_or(Error::MissingNoise { eta: options.eta })?,
            )
        } else {
            None
        };
        if sample.elem_count() == 0 {
            return Ok(TensorStepOutput {
                prev_sample: sample.zeros_like()?,
                pred_original_sample: sample.zeros_like()?,
            });
        }
        let (prev, x0) = if sample.dtype() == DType::F64 {
            ops_step::<f64>(scheduler, &c, model_output, sample, noise, options)?
        } else {
            ops_step::<f32>(scheduler, &c, model_output, sample, noise, options)?
        };
        Ok(TensorStepOutput {
            prev_sample: prev,
            pred_original_sample: x0,
        })
    }

    /// Like [`step`](Self::step), drawing z ~ N(0, I) with [`randn_like`] (the sample's
    /// dtype and device) when η > 0; nothing is drawn when η = 0, as in diffusers.
    ///
    /// ```
    /// use candle_core::{DType, Device, Tensor};
    /// use ddim::backend::{candle::CandleBackend, TensorStepOptions};
    /// let mut scheduler = ddim::DdimScheduler::new(ddim::DdimConfig::default())?;
    /// scheduler.set_timesteps(10)?;
    /// let x = Tensor::ones((2, 3), DType::F16, &Device::Cpu)?;
    /// let options = TensorStepOptions { eta: 1.0, ..Default::default() };
    /// let out = CandleBackend::default().step_with_device_noise(&scheduler, &x, 900, &x, &options)?;
    /// assert_eq!(out.prev_sample.dtype(), DType::F16);
    /// # Ok::<(), ddim::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`step`](Self::step), and [`Error::NoiseAndGenerator`] when η > 0 and
    /// `options.variance_noise` is also given. Every check runs before the draw.
    pub fn step_with_device_noise(
        &self,
        scheduler: &DdimScheduler,
        model_output: &Tensor,
        timestep: usize,
        sample: &Tensor,
        options: &TensorStepOptions<&Tensor>,
    ) -> Result<TensorStepOutput<Tensor>> {
        if options.eta > 0.0 {
            if options.variance_noise.is_some() {
                return Err(Error::NoiseAndGenerator);
            }
            check_sample_dtype(sample)?;
            check_like("model_output", sample, model_output)?;
            scheduler.step_coefficients(timestep, options.eta)?;
            let z = randn_like(sample)?;
            let options = TensorStepOptions {
                variance_noise: Some(&z),
                ..*options
            };
            return self.step(scheduler, model_output, timestep, sample, &options);
        }
        self.step(scheduler, model_output, timestep, sample, options)
    }

    /// Like [`step`](Self::step), writing x_{t_prev} into `prev_sample` and x̂₀ into
    /// `pred_original_sample`, which must be contiguous tensors of the sample's shape and
    /// dtype on its device. The results are computed as by `step` and copied in (candle
    /// tensors cannot be written in place otherwise without `unsafe`).
    ///
    /// ```
    /// use candle_core::{Device, Tensor};
    /// use ddim::backend::candle::CandleBackend;
    /// let mut scheduler = ddim::DdimScheduler::new(ddim::DdimConfig::default())?;
    /// scheduler.set_timesteps(10)?;
    /// let x = Tensor::new(&[0.5f32, -0.25], &Device::Cpu)?;
    /// let (prev, x0) = (x.zeros_like()?, x.zeros_like()?);
    /// CandleBackend::default().step_into(&scheduler, &x, 900, &x, &Default::default(), &prev, &x0)?;
    /// assert_ne!(x0.to_vec1::<f32>()?, vec![0.0, 0.0]);
    /// # Ok::<(), ddim::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`step`](Self::step), [`Error::ShapeMismatch`] or [`Error::UnsupportedDtype`] for
    /// outputs unlike the sample, and [`Error::Candle`] for non-contiguous outputs. On error
    /// the outputs are untouched.
    #[allow(clippy::too_many_arguments)]
    pub fn step_into(
        &self,
        scheduler: &DdimScheduler,
        model_output: &Tensor,
        timestep: usize,
        sample: &Tensor,
        options: &TensorStepOptions<&Tensor>,
        prev_sample: &Tensor,
        pred_original_sample: &Tensor,
    ) -> Result<()> {
        check_like("prev_sample", sample, prev_sample)?;
        check_like("pred_original_sample", sample, pred_original_sample)?;
        for out in [prev_sample, pred_original_sample] {
            if !out.is_contiguous() {
                return Err(candle_core::Error::RequiresContiguous { op: "step_into" }.into());
            }
        }
        let out = self.step(scheduler, model_output, timestep, sample, options)?;
        prev_sample
            .flatten_all()?
            .slice_set(&out.prev_sample.flatten_all()?, 0, 0)?;
        pred_original_sample.flatten_all()?.slice_set(
            &out.pred_original_sample.flatten_all()?,
            0,
            0,
        )?;
        Ok(())
    }

    /// Forward diffusion q(x_t | x₀) on tensors: x_t = √ᾱ_t·x₀ + √(1 − ᾱ_t)·ε, with one
    /// timestep per item of axis 0 (or one timestep for every item).
    ///
    /// ```
    /// use candle_core::{DType, Device, Tensor};
    /// use ddim::backend::candle::{CandleBackend, Dispatch};
    /// let scheduler = ddim::DdimScheduler::new(ddim::DdimConfig::default())?;
    /// let x0 = Tensor::ones((2, 3), DType::F32, &Device::Cpu)?;
    /// let ops = CandleBackend { dispatch: Dispatch::Ops };
    /// let x_t = ops.add_noise(&scheduler, &x0, &x0.zeros_like()?, &[0, 999])?;
    /// assert!(x_t.to_vec2::<f32>()?[0][0] > 0.99);
    /// # Ok::<(), ddim::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::UnsupportedDtype`], [`Error::ShapeMismatch`],
    /// [`Error::TimestepCountMismatch`], [`Error::TimestepOutOfRange`], [`Error::Candle`].
    pub fn add_noise(
        &self,
        scheduler: &DdimScheduler,
        original_samples: &Tensor,
        noise: &Tensor,
        timesteps: &[usize],
    ) -> Result<Tensor> {
        self.combine(
            scheduler,
            original_samples,
            noise,
            timesteps,
            Combination::AddNoise,
        )
    }

    /// The velocity target on tensors: v_t = √ᾱ_t·ε − √(1 − ᾱ_t)·x₀, with one timestep per
    /// item of axis 0 (or one for every item).
    ///
    /// ```
    /// use candle_core::{DType, Device, Tensor};
    /// let scheduler = ddim::DdimScheduler::new(ddim::DdimConfig::default())?;
    /// let x0 = Tensor::ones((2, 3), DType::F16, &Device::Cpu)?;
    /// let backend = ddim::backend::candle::CandleBackend::default();
    /// let v = backend.get_velocity(&scheduler, &x0, &x0.zeros_like()?, &[500, 10])?;
    /// assert_eq!(v.dtype(), DType::F16);
    /// # Ok::<(), ddim::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`add_noise`](Self::add_noise).
    pub fn get_velocity(
        &self,
        scheduler: &DdimScheduler,
        sample: &Tensor,
        noise: &Tensor,
        timesteps: &[usize],
    ) -> Result<Tensor> {
        self.combine(scheduler, sample, noise, timesteps, Combination::Velocity)
    }

    fn combine(
        &self,
        scheduler: &DdimScheduler,
        x: &Tensor,
        noise: &Tensor,
        timesteps: &[usize],
        which: Combination,
    ) -> Result<Tensor> {
        check_sample_dtype(x)?;
        check_like("noise", x, noise)?;
        let ts = per_item_timesteps(timesteps, x.dims())?;
        if self.dispatch == Dispatch::Auto {
            let fused = match x.dtype() {
                DType::F16 => fused_combine::<half::f16>(scheduler, x, noise, &ts, which),
                DType::BF16 => fused_combine::<half::bf16>(scheduler, x, noise, &ts, which),
                DType::F32 => fused_combine::<f32>(scheduler, x, noise, &ts, which),
                _ => fused_combine::<f64>(scheduler, x, noise, &ts, which),
            }?;
            if let Some(out) = fused {
                return Ok(out);
            }
        }
        let ac = scheduler.alphas_cumprod();
        let alphas = ts
            .iter()
            .map(|&t| {
                ac.get(t).copied().ok_or(Error::TimestepOutOfRange {
                    timestep: i64::try_from(t).unwrap_or(i64::MAX),
                    num_train_timesteps: ac.len(),
                })
            })
            .collect::<Result<Vec<f32>>>()?;
        if x.dtype() == DType::F64 {
            ops_combine::<f64>(x, noise, &alphas, which)
        } else {
            ops_combine::<f32>(x, noise, &alphas, which)
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Combination {
    AddNoise,
    Velocity,
}

/// The fused slice kernel on CPU tensors in place; `None` when a tensor is not a contiguous
/// CPU tensor.
fn fused_step<T: Element + WithDType>(
    scheduler: &DdimScheduler,
    model_output: &Tensor,
    timestep: usize,
    sample: &Tensor,
    options: &TensorStepOptions<&Tensor>,
) -> Result<Option<TensorStepOutput<Tensor>>> {
    let out = {
        let (m_storage, m_layout) = model_output.storage_and_layout();
        let (x_storage, x_layout) = sample.storage_and_layout();
        let z_guard = options.variance_noise.map(|z| z.storage_and_layout());
        let (Some(m), Some(x)) = (
            cpu_slice::<T>(&m_storage, m_layout),
            cpu_slice::<T>(&x_storage, x_layout),
        ) else {
            return Ok(None);
        };
        let z = match &z_guard {
            Some((storage, layout)) => match cpu_slice::<T>(storage, layout) {
                Some(z) => Some(z),
                None => return Ok(None),
            },
            None => None,
        };
        let slice_options = StepOptions {
            eta: options.eta,
            use_clipped_model_output: options.use_clipped_model_output,
            variance_noise: z,
            batch_size: batch_of(sample.dims()),
            ..Default::default()
        };
        scheduler.step(m, timestep, x, &slice_options)?
    };
    let (shape, device) = (sample.shape(), sample.device());
    Ok(Some(TensorStepOutput {
        prev_sample: Tensor::from_vec(out.prev_sample, shape, device)?,
        pred_original_sample: Tensor::from_vec(out.pred_original_sample, shape, device)?,
    }))
}

fn fused_combine<T: Element + WithDType>(
    scheduler: &DdimScheduler,
    x: &Tensor,
    noise: &Tensor,
    timesteps: &[usize],
    which: Combination,
) -> Result<Option<Tensor>> {
    let out = {
        let (x_storage, x_layout) = x.storage_and_layout();
        let (z_storage, z_layout) = noise.storage_and_layout();
        let (Some(xs), Some(zs)) = (
            cpu_slice::<T>(&x_storage, x_layout),
            cpu_slice::<T>(&z_storage, z_layout),
        ) else {
            return Ok(None);
        };
        match which {
            Combination::AddNoise => scheduler.add_noise(xs, zs, timesteps)?,
            Combination::Velocity => scheduler.get_velocity(xs, zs, timesteps)?,
        }
    };
    Ok(Some(Tensor::from_vec(out, x.shape(), x.device())?))
}

/// The compute types of the op path: f32 (for F16, BF16, F32 samples) and f64.
trait Float: Element<Compute = Self> + Compute + WithDType {}
impl Float for f32 {}
impl Float for f64 {}

/// A scalar of the compute type on `device`, for broadcasting.
fn scalar<C: Float>(value: C, device: &Device) -> Result<Tensor> {
    Ok(Tensor::new(value, device)?)
}

/// Per-item values as a tensor of shape `[B, 1, …, 1]` (the sample's rank), for broadcasting.
fn per_item<C: WithDType>(values: Vec<C>, dims: &[usize], device: &Device) -> Result<Tensor> {
    let mut shape = vec![1; dims.len()];
    if let Some(first) = shape.first_mut() {
        *first = values.len();
    }
    Ok(Tensor::from_vec(values, shape, device)?)
}

/// torch's `clamp(x, lo, hi)` with tensor bounds broadcast to x: NaN passes through.
fn clamp_keep_nan(x: &Tensor, lo: &Tensor, hi: &Tensor) -> Result<Tensor> {
    let (lo, hi) = (lo.broadcast_as(x.shape())?, hi.broadcast_as(x.shape())?);
    let x = x.lt(&lo)?.where_cond(&lo, x)?;
    Ok(x.gt(&hi)?.where_cond(&hi, &x)?)
}

/// The DDIM step with candle ops, computing in `C` (f32 for F16/BF16/F32 samples, f64 for
/// F64) in diffusers' order; returns (x_{t_prev}, x̂₀) in the sample's dtype.
fn ops_step<C: Float>(
    scheduler: &DdimScheduler,
    c: &StepCoefficients,
    model_output: &Tensor,
    sample: &Tensor,
    noise: Option<&Tensor>,
    options: &TensorStepOptions<&Tensor>,
) -> Result<(Tensor, Tensor)> {
    let (dtype, device) = (sample.dtype(), sample.device());
    let config = scheduler.config();
    let m = model_output.to_dtype(C::DTYPE)?;
    let x = sample.to_dtype(C::DTYPE)?;
    let k = |v: f32| scalar(<C as Compute>::from_f32(v), device);
    let (sa, sb) = (k(c.sqrt_alpha_prod_t)?, k(c.sqrt_beta_prod_t)?);
    let (x0, eps) = match config.prediction_type {
        PredictionType::Epsilon => (
            x.sub(&m.broadcast_mul(&sb)?)?.broadcast_div(&sa)?,
            m.clone(),
        ),
        PredictionType::Sample => (
            m.clone(),
            x.sub(&m.broadcast_mul(&sa)?)?.broadcast_div(&sb)?,
        ),
        PredictionType::VPrediction => (
            x.broadcast_mul(&sa)?.sub(&m.broadcast_mul(&sb)?)?,
            m.broadcast_mul(&sa)?.add(&x.broadcast_mul(&sb)?)?,
        ),
    };
    let x0 = if config.thresholding {
        // The slice path stores x̂₀ in the element type before taking its quantile.
        let x0 = if dtype == C::DTYPE {
            x0
        } else {
            x0.to_dtype(dtype)?.to_dtype(C::DTYPE)?
        };
        let s = thresholds::<C>(
            &x0,
            config.dynamic_thresholding_ratio,
            config.sample_max_value,
            !(device.is_cuda() && x0.elem_count() / batch_of(x0.dims()) > CUDA_SORT_MAX_ROW),
        )?;
        let s = per_item(s, x0.dims(), device)?;
        clamp_keep_nan(&x0, &s.neg()?, &s)?.broadcast_div(&s)?
    } else if config.clip_sample {
        let r = <C as Compute>::from_f64(config.clip_sample_range);
        clamp_keep_nan(&x0, &scalar(-r, device)?, &scalar(r, device)?)?
    } else {
        x0
    };
    let eps = if options.use_clipped_model_output {
        x.sub(&x0.broadcast_mul(&sa)?)?.broadcast_div(&sb)?
    } else {
        eps
    };
    let prev = x0
        .broadcast_mul(&k(c.sqrt_alpha_prod_t_prev)?)?
        .add(&eps.broadcast_mul(&k(c.direction)?)?)?;
    let prev = match noise {
        Some(z) => prev.add(&z.to_dtype(C::DTYPE)?.broadcast_mul(&k(c.std_dev_t)?)?)?,
        None => prev,
    };
    Ok((prev.to_dtype(dtype)?, x0.to_dtype(dtype)?))
}

/// The dynamic threshold of each batch item: s = clamp(quantile_q(|x̂₀|), 1, max), the
/// quantile being torch's linear interpolation between two order statistics. With
/// `device_sort`, the order statistics come from candle's sort on the device (two values per
/// item are copied back); otherwise the rows are copied to the host and selected there.
fn thresholds<C: Float>(
    x0: &Tensor,
    ratio: f64,
    sample_max_value: f64,
    device_sort: bool,
) -> Result<Vec<C>> {
    let batch = batch_of(x0.dims());
    let n = x0.elem_count() / batch;
    let rows = x0.reshape((batch, n))?.abs()?;
    let q = Compute::to_f64(<C as Compute>::from_f64(ratio));
    let quantiles: Vec<C> = if device_sort {
        // Rank q·(n − 1) between order statistics lo and hi, in f64 as torch does.
        #[allow(clippy::cast_precision_loss)]
        let rank = q * n.saturating_sub(1) as f64;
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let (lo, hi) = (rank.floor() as usize, rank.ceil() as usize);
        let weight = rank - rank.floor();
        let nan = rows.ne(&rows)?;
        let has_nan = nan.max_keepdim(1)?.flatten_all()?.to_vec1::<u8>()?;
        // candle's CPU sort panics on NaN: those rows' thresholds are NaN anyway.
        let rows = nan.where_cond(&rows.zeros_like()?, &rows)?;
        let (sorted, _) = rows.sort_last_dim(true)?;
        let lo_values = sorted.narrow(1, lo, 1)?.flatten_all()?.to_vec1::<C>()?;
        let hi_values = sorted.narrow(1, hi, 1)?.flatten_all()?.to_vec1::<C>()?;
        has_nan
            .iter()
            .zip(lo_values.iter().zip(&hi_values))
            .map(|(&nan, (l, h))| {
                if nan != 0 {
                    <C as Compute>::from_f64(f64::NAN)
                } else {
                    let (l, h) = (Compute::to_f64(*l), Compute::to_f64(*h));
                    <C as Compute>::from_f64(l + weight * (h - l))
                }
            })
            .collect()
    } else {
        let values = rows.flatten_all()?.to_vec1::<C>()?;
        let mut scratch = vec![<C as Compute>::ZERO; n];
        values
            .chunks_exact(n.max(1))
            .map(|row| threshold::abs_quantile(row, q, &mut scratch))
            .collect()
    };
    Ok(quantiles
        .into_iter()
        .map(|quantile| threshold::dynamic_threshold(quantile, sample_max_value))
        .collect())
}

/// `add_noise`/`get_velocity` with candle ops: √ᾱ and √(1 − ᾱ) per item in `C` (ᾱ cast to
/// the compute type before the roots, as diffusers casts it to the sample's dtype).
fn ops_combine<C: Float>(
    x: &Tensor,
    noise: &Tensor,
    alphas: &[f32],
    which: Combination,
) -> Result<Tensor> {
    let (dtype, device, dims) = (x.dtype(), x.device(), x.dims());
    let a: Vec<C> = alphas
        .iter()
        .map(|&a| <C as Compute>::from_f32(a))
        .collect();
    let sa = per_item(a.iter().map(|&a| a.sqrt()).collect(), dims, device)?;
    let sb = per_item(
        a.iter()
            .map(|&a| (<C as Compute>::ONE - a).sqrt())
            .collect(),
        dims,
        device,
    )?;
    let (x, z) = (x.to_dtype(C::DTYPE)?, noise.to_dtype(C::DTYPE)?);
    let out = match which {
        Combination::AddNoise => x.broadcast_mul(&sa)?.add(&z.broadcast_mul(&sb)?)?,
        Combination::Velocity => z.broadcast_mul(&sa)?.sub(&x.broadcast_mul(&sb)?)?,
    };
    Ok(out.to_dtype(dtype)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The host selection (CUDA's path for long rows) and candle's sort give the same
    /// thresholds, NaN rows included.
    #[test]
    fn device_sort_and_host_selection_agree() {
        let values: Vec<f32> = (0..3 * 1000)
            .map(|i| ((i * 7919 % 1000) as f32 / 250.0 - 2.0) * if i % 3 == 0 { 3.0 } else { 1.0 })
            .collect();
        let mut with_nan = values.clone();
        with_nan[1500] = f32::NAN;
        for (data, ratio, max) in [(values, 0.995, 2.5), (with_nan, 0.9, 10.0)] {
            let x0 = Tensor::from_vec(data, (3, 10, 100), &Device::Cpu).unwrap();
            let a = thresholds::<f32>(&x0, ratio, max, true).unwrap();
            let b = thresholds::<f32>(&x0, ratio, max, false).unwrap();
            assert_eq!(a.len(), 3);
            for (a, b) in a.iter().zip(&b) {
                assert!(a == b || a.is_nan() && b.is_nan(), "{a} vs {b}");
            }
        }
    }

    #[test]
    fn dtype_and_shape_errors() {
        let mut scheduler = DdimScheduler::new(crate::DdimConfig::default()).unwrap();
        scheduler.set_timesteps(10).unwrap();
        let x = Tensor::zeros((2, 3), DType::F32, &Device::Cpu).unwrap();
        let ints = Tensor::zeros((2, 3), DType::U32, &Device::Cpu).unwrap();
        let half = Tensor::zeros((2, 3), DType::F16, &Device::Cpu).unwrap();
        let opts = TensorStepOptions::default();
        assert!(matches!(
            step(&scheduler, &ints, 900, &ints, &opts),
            Err(Error::UnsupportedDtype { name: "sample", .. })
        ));
        assert!(matches!(
            step(&scheduler, &half, 900, &x, &opts),
            Err(Error::UnsupportedDtype {
                name: "model_output",
                ..
            })
        ));
        assert!(matches!(
            step(&scheduler, &x.t().unwrap(), 900, &x, &opts),
            Err(Error::ShapeMismatch {
                name: "model_output",
                ..
            })
        ));
        let eta = TensorStepOptions {
            eta: 0.5,
            ..Default::default()
        };
        for backend in [
            CandleBackend::default(),
            CandleBackend {
                dispatch: Dispatch::Ops,
            },
        ] {
            assert!(matches!(
                backend.step(&scheduler, &x, 900, &x, &eta),
                Err(Error::MissingNoise { .. })
            ));
            let with_noise = TensorStepOptions {
                variance_noise: Some(&x),
                ..eta
            };
            assert!(matches!(
                backend.step_with_device_noise(&scheduler, &x, 900, &x, &with_noise),
                Err(Error::NoiseAndGenerator)
            ));
            assert!(matches!(
                backend.add_noise(&scheduler, &x, &x, &[1000]),
                Err(Error::TimestepOutOfRange { .. })
            ));
        }
    }
}
