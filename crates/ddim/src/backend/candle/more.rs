//! The rest of the slice API on tensors: the inverse scheduler's step, `batch_step_no_noise`
//! and `scale_model_input`.
//!
//! Contiguous CPU tensors are read in place and computed by the slice functions (the same
//! bits); tensors elsewhere (another device, a strided view) are gathered to a contiguous
//! host copy first and the result is moved back to the sample's device (a round trip per call
//! off the CPU).

use candle_core::{DType, Device, Tensor, WithDType};

use super::kernels::cpu_slice;
use super::{check_like, check_sample_dtype, unsupported};
use crate::backend::{per_item_timesteps, TensorStepOutput};
use crate::element::{Compute, Element};
use crate::error::Result;
use crate::inverse::DdimInverseScheduler;
use crate::scheduler::DdimScheduler;

/// Calls `f` on the elements of `tensors` as host slices of `T` (contiguous copies where
/// needed) and returns its vectors as tensors of `like`'s shape on its device.
fn on_host<T: Element + WithDType, const I: usize, const N: usize>(
    tensors: [&Tensor; I],
    like: &Tensor,
    f: impl FnOnce([&[T]; I]) -> Result<[Vec<T>; N]>,
) -> Result<[Tensor; N]> {
    let host = tensors
        .iter()
        .map(|t| t.to_device(&Device::Cpu)?.contiguous())
        .collect::<candle_core::Result<Vec<_>>>()?;
    let guards: Vec<_> = host.iter().map(|t| t.storage_and_layout()).collect();
    let mut slices = Vec::with_capacity(guards.len());
    for (storage, layout) in &guards {
        // Contiguous CPU tensors of dtype `T`: the slice exists (checked by the callers).
        slices.push(cpu_slice::<T>(storage, layout).unwrap_or(&[]));
    }
    let slices = <[&[T]; I]>::try_from(slices)
        .map_err(|_| candle_core::Error::Msg("internal: input count".into()))?;
    let out = f(slices)?;
    drop(guards);
    let mut tensors = Vec::with_capacity(N);
    for v in out {
        tensors.push(Tensor::from_vec(v, like.shape(), &Device::Cpu)?.to_device(like.device())?);
    }
    tensors
        .try_into()
        .map_err(|_| candle_core::Error::Msg("internal: output count".into()).into())
}

fn inverse_typed<T: Element + WithDType>(
    inverse: &DdimInverseScheduler,
    model_output: &Tensor,
    timestep: usize,
    sample: &Tensor,
) -> Result<TensorStepOutput<Tensor>> {
    let [prev, x0] = on_host::<T, 2, 2>([model_output, sample], sample, |[m, x]| {
        let out = inverse.step(m, timestep, x)?;
        Ok([out.prev_sample, out.pred_original_sample])
    })?;
    Ok(TensorStepOutput {
        prev_sample: prev,
        pred_original_sample: x0,
    })
}

/// One [`DdimInverseScheduler`] step on tensors (F16, BF16, F32, F64): x_t in `prev_sample`,
/// the clipped x̂₀ in `pred_original_sample`, in the sample's shape, dtype and device; the
/// numbers of [`DdimInverseScheduler::step`] bit for bit.
///
/// ```
/// use candle_core::{DType, Device, Tensor};
/// let mut inverse = ddim::DdimInverseScheduler::new(ddim::DdimInverseConfig::default())?;
/// inverse.set_timesteps(10)?;
/// let mut x = Tensor::ones((1, 4, 2, 2), DType::F32, &Device::Cpu)?; // x₀
/// for &t in inverse.timesteps() {
///     let eps = (&x * 0.1)?; // the model's prediction
///     x = ddim::backend::candle::inverse_step(&inverse, &eps, t, &x)?.prev_sample;
/// }
/// # Ok::<(), ddim::Error>(())
/// ```
///
/// # Errors
///
/// [`Error::UnsupportedDtype`](crate::Error::UnsupportedDtype),
/// [`Error::ShapeMismatch`](crate::Error::ShapeMismatch), the errors of
/// [`DdimInverseScheduler::step`], [`Error::Candle`](crate::Error::Candle).
pub fn inverse_step(
    inverse: &DdimInverseScheduler,
    model_output: &Tensor,
    timestep: usize,
    sample: &Tensor,
) -> Result<TensorStepOutput<Tensor>> {
    check_sample_dtype(sample)?;
    check_like("model_output", sample, model_output)?;
    by_dtype!(
        "sample",
        sample.dtype(),
        inverse_typed,
        inverse,
        model_output,
        timestep,
        sample
    )
}

fn batch_typed<T: Element + WithDType>(
    scheduler: &DdimScheduler,
    model_output: &Tensor,
    timesteps: &[usize],
    sample: &Tensor,
    use_clipped_model_output: bool,
) -> Result<Tensor> {
    let [prev] = on_host::<T, 2, 1>([model_output, sample], sample, |[m, x]| {
        let zero = T::from_compute(<T::Compute as Compute>::ZERO);
        let mut prev = vec![zero; x.len()];
        scheduler.batch_step_no_noise(m, timesteps, x, use_clipped_model_output, &mut prev)?;
        Ok([prev])
    })?;
    Ok(prev)
}

/// [`DdimScheduler::batch_step_no_noise`] on tensors: item b of axis 0 steps from
/// `timesteps[b]` with η = 0 (one timestep for every item when `timesteps` has one); returns
/// x_{t_prev} of every item (the sample's shape, dtype and device), bit for bit the slice
/// path's.
///
/// ```
/// use candle_core::{DType, Device, Tensor};
/// let mut scheduler = ddim::DdimScheduler::new(ddim::DdimConfig::default())?;
/// scheduler.set_timesteps(10)?;
/// let x = Tensor::ones((2, 3), DType::F32, &Device::Cpu)?;
/// let prev = ddim::backend::candle::batch_step_no_noise(&scheduler, &x, &[900, 0], &x, false)?;
/// assert_eq!(prev.dims(), &[2, 3]);
/// # Ok::<(), ddim::Error>(())
/// ```
///
/// # Errors
///
/// As [`DdimScheduler::batch_step_no_noise`],
/// [`Error::TimestepCountMismatch`](crate::Error::TimestepCountMismatch) unless there is one
/// timestep or one per item of axis 0, and
/// [`Error::UnsupportedDtype`](crate::Error::UnsupportedDtype),
/// [`Error::ShapeMismatch`](crate::Error::ShapeMismatch), [`Error::Candle`](crate::Error::Candle).
pub fn batch_step_no_noise(
    scheduler: &DdimScheduler,
    model_output: &Tensor,
    timesteps: &[usize],
    sample: &Tensor,
    use_clipped_model_output: bool,
) -> Result<Tensor> {
    check_sample_dtype(sample)?;
    check_like("model_output", sample, model_output)?;
    // One timestep per item of axis 0 (or one for all): the slice path alone would take the
    // number of timesteps as the batch size, and threshold other items than axis 0's.
    let timesteps = per_item_timesteps(timesteps, sample.dims())?;
    by_dtype!(
        "sample",
        sample.dtype(),
        batch_typed,
        scheduler,
        model_output,
        &timesteps,
        sample,
        use_clipped_model_output
    )
}

/// The model input at `timestep`: DDIM does not scale it, so this is `sample` itself (a
/// cheap handle to the same storage), for any dtype and device; diffusers'
/// `scale_model_input`, so loops written for other schedulers keep their shape.
///
/// ```
/// use candle_core::{DType, Device, Tensor};
/// let scheduler = ddim::DdimScheduler::new(ddim::DdimConfig::default())?;
/// let x = Tensor::ones((1, 4), DType::BF16, &Device::Cpu)?;
/// let input = ddim::backend::candle::scale_model_input(&scheduler, &x, 999);
/// assert_eq!(input.dtype(), DType::BF16);
/// # Ok::<(), ddim::Error>(())
/// ```
pub fn scale_model_input(_scheduler: &DdimScheduler, sample: &Tensor, _timestep: usize) -> Tensor {
    sample.clone()
}
