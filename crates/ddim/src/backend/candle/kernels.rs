//! The two implementations behind [`CandleBackend`](super::CandleBackend): the fused slice
//! kernel on CPU storage read in place, and the DDIM update with candle ops.

use candle_core::{Device, Layout, Storage, Tensor, WithDType};

use super::super::{batch_of, TensorStepOptions, TensorStepOutput};
use crate::coefficients::StepCoefficients;
use crate::config::PredictionType;
use crate::element::{Compute, Element};
use crate::error::Result;
use crate::scheduler::{DdimScheduler, StepOptions};
use crate::threshold;

/// The longest row candle's CUDA sort kernel handles: it sorts a row in shared memory of 4
/// bytes per element, padded to a power of two, and 48 KiB are available by default. Longer
/// rows on CUDA take their quantile on the host (the row is copied there).
const CUDA_SORT_MAX_ROW: usize = 8192;

/// The tensor's elements as a slice of its CPU storage, when it is on the CPU and contiguous.
pub(super) fn cpu_slice<'g, T: WithDType>(
    storage: &'g Storage,
    layout: &Layout,
) -> Option<&'g [T]> {
    match storage {
        Storage::Cpu(cpu) => {
            let (start, end) = layout.contiguous_offsets()?;
            cpu.as_slice::<T>().ok()?.get(start..end)
        }
        _ => None,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Combination {
    AddNoise,
    Velocity,
}

/// The fused slice kernel on CPU tensors in place; `None` when a tensor is not a contiguous
/// CPU tensor.
pub(super) fn fused_step<T: Element + WithDType>(
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
            batch_size: Some(batch_of(sample.dims())),
            check_finite: options.check_finite,
        };
        scheduler.step(m, timestep, x, &slice_options)?
    };
    let (shape, device) = (sample.shape(), sample.device());
    Ok(Some(TensorStepOutput {
        prev_sample: Tensor::from_vec(out.prev_sample, shape, device)?,
        pred_original_sample: Tensor::from_vec(out.pred_original_sample, shape, device)?,
    }))
}

pub(super) fn fused_combine<T: Element + WithDType>(
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
pub(super) trait Float: Element<Compute = Self> + Compute + WithDType {}
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
pub(super) fn ops_step<C: Float>(
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
pub(super) fn ops_combine<C: Float>(
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
}
