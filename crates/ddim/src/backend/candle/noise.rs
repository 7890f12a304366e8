//! torch-seeded noise as tensors: diffusers' `randn_tensor(shape, generator=g)` latents and the
//! η > 0 step's `generator=g` noise, drawn by [`crate::rng`] generators (bit for bit
//! `torch.Generator("cpu")`, or the CUDA Philox model) and placed on any device.

use candle_core::{DType, Device, Tensor, WithDType};

use super::{check_step_inputs, unsupported, CandleBackend};
use crate::backend::{TensorStepOptions, TensorStepOutput};
use crate::element::Compute;
use crate::error::{Error, Result};
use crate::rng::{self, NoiseGenerator, RandnElement};
use crate::scheduler::DdimScheduler;

/// candle's own error for a ddim error, so `?` works in functions returning
/// `candle_core::Result` ([`Error::Candle`] gives back the candle error it holds).
impl From<Error> for candle_core::Error {
    fn from(e: Error) -> Self {
        match e {
            Error::Candle(inner) => inner,
            other => candle_core::Error::wrap(other),
        }
    }
}

macro_rules! by_dtype {
    ($dtype:expr, $f:ident, $($arg:expr),*) => {
        match $dtype {
            DType::F16 => $f::<half::f16, _>($($arg),*),
            DType::BF16 => $f::<half::bf16, _>($($arg),*),
            DType::F32 => $f::<f32, _>($($arg),*),
            DType::F64 => $f::<f64, _>($($arg),*),
            other => Err(unsupported("dtype", other)),
        }
    };
}

fn latents_typed<T: RandnElement + WithDType, G: NoiseGenerator + ?Sized>(
    shape: &[usize],
    device: &Device,
    generator: &mut G,
) -> Result<Tensor> {
    let values: Vec<T> = rng::randn_latents(shape, generator)?;
    Ok(Tensor::from_vec(values, shape, &Device::Cpu)?.to_device(device)?)
}

fn latents_per_item_typed<T: RandnElement + WithDType, G: NoiseGenerator>(
    shape: &[usize],
    device: &Device,
    generators: &mut [G],
) -> Result<Tensor> {
    let values: Vec<T> = rng::randn_latents_per_item(shape, generators)?;
    Ok(Tensor::from_vec(values, shape, &Device::Cpu)?.to_device(device)?)
}

/// diffusers' `randn_tensor(shape, generator=g, dtype, device)` with one generator: one
/// `torch.randn(shape)` drawn on the host (as diffusers does with a CPU generator) in `dtype`
/// (F16, BF16, F32, F64), then moved to `device`. For DDIM, `init_noise_sigma` is 1, so these
/// are the initial latents.
///
/// ```
/// use candle_core::{DType, Device};
/// use ddim::rng::TorchCpuGenerator;
/// let mut g = TorchCpuGenerator::new(0);
/// let latents = ddim::backend::candle::randn_latents(&[1, 4, 64, 64], DType::F32, &Device::Cpu, &mut g)?;
/// assert_eq!(latents.flatten_all()?.to_vec1::<f32>()?[0].to_bits(), 0xbf90_1b85);
/// # Ok::<(), ddim::Error>(())
/// ```
///
/// # Errors
///
/// [`Error::InvalidShape`] for an empty or overflowing shape, [`Error::UnsupportedDtype`],
/// [`Error::Candle`] when the device fails.
pub fn randn_latents<G: NoiseGenerator + ?Sized>(
    shape: &[usize],
    dtype: DType,
    device: &Device,
    generator: &mut G,
) -> Result<Tensor> {
    by_dtype!(dtype, latents_typed, shape, device, generator)
}

/// `randn_tensor(shape, generator=[g₀, g₁, …])`: item b of axis 0 from its own generator
/// (see [`crate::rng::randn_latents_per_item`]), as a tensor on `device`.
///
/// # Errors
///
/// As [`randn_latents`], and [`Error::GeneratorCountMismatch`] unless there is one generator
/// or one per item.
pub fn randn_latents_per_item<G: NoiseGenerator>(
    shape: &[usize],
    dtype: DType,
    device: &Device,
    generators: &mut [G],
) -> Result<Tensor> {
    by_dtype!(dtype, latents_per_item_typed, shape, device, generators)
}

fn noise_like_typed<T: RandnElement + WithDType, G: NoiseGenerator + ?Sized>(
    sample: &Tensor,
    generator: &mut G,
) -> Result<Tensor> {
    let zero = T::from_compute(<T::Compute as Compute>::ZERO);
    let mut noise = vec![zero; sample.elem_count()];
    T::fill_randn(generator, &mut noise);
    Ok(Tensor::from_vec(noise, sample.shape(), &Device::Cpu)?.to_device(sample.device())?)
}

/// [`CandleBackend::step_with_generator`] with the default dispatch.
///
/// # Errors
///
/// As [`CandleBackend::step_with_generator`].
pub fn step_with_generator<G: NoiseGenerator + ?Sized>(
    scheduler: &DdimScheduler,
    model_output: &Tensor,
    timestep: usize,
    sample: &Tensor,
    options: &TensorStepOptions<&Tensor>,
    generator: &mut G,
) -> Result<TensorStepOutput<Tensor>> {
    CandleBackend::default().step_with_generator(
        scheduler,
        model_output,
        timestep,
        sample,
        options,
        generator,
    )
}

impl CandleBackend {
    /// [`step`](Self::step) with diffusers' `generator=g`: when η > 0 the noise z of σ_t·z is
    /// one `torch.randn(sample.shape, generator=g)` in the sample's dtype, drawn on the host
    /// and moved to the sample's device (the tensor form of
    /// [`DdimScheduler::step_with_generator`], bit for bit on the CPU); with η = 0 nothing is
    /// drawn.
    ///
    /// ```
    /// use candle_core::{DType, Device, Tensor};
    /// use ddim::backend::{candle::CandleBackend, TensorStepOptions};
    /// use ddim::rng::TorchCpuGenerator;
    /// let mut scheduler = ddim::DdimScheduler::new(ddim::DdimConfig::default())?;
    /// scheduler.set_timesteps(10)?;
    /// let x = Tensor::ones((2, 4), DType::F32, &Device::Cpu)?;
    /// let options = TensorStepOptions { eta: 1.0, ..Default::default() };
    /// let mut g = TorchCpuGenerator::new(0);
    /// let out = CandleBackend::default().step_with_generator(&scheduler, &x, 900, &x, &options, &mut g)?;
    /// assert_eq!(out.prev_sample.dims(), &[2, 4]);
    /// # Ok::<(), ddim::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`step`](Self::step), and [`Error::NoiseAndGenerator`] when η > 0 and
    /// `options.variance_noise` is also given. Every check runs before the draw.
    pub fn step_with_generator<G: NoiseGenerator + ?Sized>(
        &self,
        scheduler: &DdimScheduler,
        model_output: &Tensor,
        timestep: usize,
        sample: &Tensor,
        options: &TensorStepOptions<&Tensor>,
        generator: &mut G,
    ) -> Result<TensorStepOutput<Tensor>> {
        if options.eta > 0.0 {
            if options.variance_noise.is_some() {
                return Err(Error::NoiseAndGenerator);
            }
            check_step_inputs(sample, model_output, options)?;
            scheduler.step_coefficients(timestep, options.eta)?;
            let z = by_dtype!(sample.dtype(), noise_like_typed, sample, generator)?;
            let options = TensorStepOptions {
                variance_noise: Some(&z),
                ..*options
            };
            return self.step(scheduler, model_output, timestep, sample, &options);
        }
        self.step(scheduler, model_output, timestep, sample, options)
    }
}
