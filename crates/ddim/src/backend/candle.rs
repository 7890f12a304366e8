//! The scheduler on [`candle_core::Tensor`]s (feature `candle`): F16, BF16, F32, F64, on any
//! device.
//!
//! Free functions that take the scheduler first: [`step`], [`step_in_place`], [`step_with_generator`]
//! (torch-seeded noise), [`step_with_device_noise`], [`add_noise`], [`get_velocity`];
//! [`CandleBackend`] has the same methods with a choice of [`Dispatch`]. Around the step:
//! guidance ([`classifier_free_guidance`], [`rescale_noise_cfg`], [`guide`]), torch-seeded
//! latents ([`randn_latents`]), the inverse scheduler ([`inverse_step`]),
//! [`batch_step_no_noise`] and [`scale_model_input`]. A `ddim::Error` converts into a
//! `candle_core::Error`, so `?` works in candle code.
//!
//! [`step`] returns fresh tensors, as candle's own ops do; for contiguous CPU tensors it reads
//! the inputs in place and allocates just the two outputs. [`step_in_place`] writes x_{t_prev}
//! into the sample and x̂₀ into the model output through candle's in-place op API and
//! allocates nothing on the CPU; like candle's `slice_set`, it changes every clone and view of
//! those tensors. Tensors are batch-major: axis 0 is the batch (dynamic thresholding is per
//! item of axis 0; `add_noise` takes one timestep per item, or one for all).
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

/// `$f::<T>(args…)` with `T` the element type of `$dtype` (f16, bf16, f32, f64); any other
/// dtype is refused naming the tensor `$name`. Used by the submodules declared below.
macro_rules! by_dtype {
    ($name:literal, $dtype:expr, $f:ident, $($arg:expr),*) => {
        match $dtype {
            DType::F16 => $f::<half::f16>($($arg),*),
            DType::BF16 => $f::<half::bf16>($($arg),*),
            DType::F32 => $f::<f32>($($arg),*),
            DType::F64 => $f::<f64>($($arg),*),
            other => Err(unsupported($name, other)),
        }
    };
}

mod guidance;
mod in_place;
mod kernels;
mod more;
mod noise;
#[cfg(feature = "candle-transformers")]
mod transformers;

pub use guidance::{classifier_free_guidance, guide, guide_with_ops, rescale_noise_cfg};
pub use in_place::step_in_place;
pub use more::{batch_step_no_noise, inverse_step, scale_model_input};
pub use noise::{randn_latents, randn_latents_per_item, step_with_generator};
#[cfg(feature = "candle-transformers")]
pub use transformers::{TransformersDdim, TransformersDdimConfig};

use candle_core::{DType, Tensor};

use self::kernels::{fused_combine, fused_step, ops_combine, ops_step, Combination};
use super::{check_shape, per_item_timesteps, TensorStepOptions, TensorStepOutput};
use crate::error::{Error, Result};
use crate::scheduler::DdimScheduler;

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
/// (seed it with [`candle_core::Device::set_seed`] where the device supports it).
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

/// Checks a step's inputs: a supported sample dtype, and a model output and noise (if any)
/// like the sample.
fn check_step_inputs(
    sample: &Tensor,
    model_output: &Tensor,
    options: &TensorStepOptions<&Tensor>,
) -> Result<()> {
    check_sample_dtype(sample)?;
    check_like("model_output", sample, model_output)?;
    if let Some(z) = options.variance_noise {
        check_like("variance_noise", sample, z)?;
    }
    Ok(())
}

/// [`TensorStepOptions::check_finite`] for tensors the fused path does not read: each input
/// copied to the host as f64 (exact for every supported dtype) and checked there.
fn check_finite_on_host(
    model_output: &Tensor,
    sample: &Tensor,
    options: &TensorStepOptions<&Tensor>,
    timestep: usize,
) -> Result<()> {
    let noise = options.variance_noise.filter(|_| options.eta > 0.0);
    for (name, t) in [
        ("model_output", Some(model_output)),
        ("sample", Some(sample)),
        ("variance_noise", noise),
    ] {
        if let Some(t) = t {
            let values = t.to_dtype(DType::F64)?.flatten_all()?.to_vec1::<f64>()?;
            crate::finite::check_finite(name, &values, timestep)?;
        }
    }
    Ok(())
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
        check_step_inputs(sample, model_output, options)?;
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
        if options.check_finite {
            check_finite_on_host(model_output, sample, options, timestep)?;
        }
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
            check_step_inputs(sample, model_output, options)?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// The fused path (where it applies) and the op path.
    const BOTH: [CandleBackend; 2] = [
        CandleBackend {
            dispatch: Dispatch::Auto,
        },
        CandleBackend {
            dispatch: Dispatch::Ops,
        },
    ];

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
        for backend in BOTH {
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
    /// Empty and 0-d tensors, on both paths.
    #[test]
    fn scalar_and_empty() {
        let mut scheduler = DdimScheduler::new(crate::DdimConfig::default()).unwrap();
        scheduler.set_timesteps(10).unwrap();
        let opts = TensorStepOptions::default();
        for backend in BOTH {
            let x = Tensor::new(0.5f32, &Device::Cpu).unwrap();
            let out = backend.step(&scheduler, &x, 900, &x, &opts).unwrap();
            assert_eq!(out.prev_sample.dims(), &[] as &[usize]);
            let empty = Tensor::zeros((0, 4), DType::BF16, &Device::Cpu).unwrap();
            let out = backend
                .step(&scheduler, &empty, 900, &empty, &opts)
                .unwrap();
            assert_eq!(out.prev_sample.dims(), &[0, 4]);
        }
    }
}
