//! Classifier-free guidance and `rescale_noise_cfg` on tensors (see [`crate::guidance`]).
//!
//! On the CPU the tensors' storage is read in place and the slice functions of
//! [`crate::guidance`] compute the result, so the numbers are those of the slice path (and of
//! diffusers) bit for bit; one tensor is allocated for the result. On other devices candle
//! ops compute the same expressions in the same order (F16 and BF16 widened to F32 and rounded
//! once at the end); the guidance itself is then bit-equal too, while the rescale's standard
//! deviation is the device's reduction (a few ulps from torch's CPU `std`).

use candle_core::{DType, Device, Tensor, WithDType};

use super::{check_like, check_sample_dtype, unsupported};
use crate::element::Element;
use crate::error::{Error, Result};
use crate::guidance as slices;

/// Reads `tensors` (all of `first`'s dtype) as CPU slices of `T` and calls `f`; `None`
/// when one is not on the CPU. Non-contiguous CPU tensors are made contiguous first.
fn with_cpu_slices<T: Element + WithDType, R, const N: usize>(
    tensors: [&Tensor; N],
    f: impl FnOnce([&[T]; N]) -> Result<R>,
) -> Result<Option<R>> {
    if tensors.iter().any(|t| !t.device().is_cpu()) {
        return Ok(None);
    }
    let owned = tensors
        .iter()
        .map(|t| t.contiguous())
        .collect::<candle_core::Result<Vec<_>>>()?;
    let guards: Vec<_> = owned.iter().map(|t| t.storage_and_layout()).collect();
    let mut slices = Vec::with_capacity(guards.len());
    for (storage, layout) in &guards {
        match super::kernels::cpu_slice::<T>(storage, layout) {
            Some(s) => slices.push(s),
            None => return Ok(None),
        }
    }
    match <[&[T]; N]>::try_from(slices) {
        Ok(slices) => f(slices).map(Some),
        Err(_) => Ok(None), // one slice per tensor was pushed
    }
}

/// The batch (axis 0) of a guidance tensor, which must have at least one axis.
fn batch_of(name: &'static str, t: &Tensor) -> Result<usize> {
    t.dims().first().copied().ok_or(Error::InvalidShape {
        shape: t.dims().to_vec(),
        reason: format!("{name} needs a batch axis (axis 0); got a scalar"),
    })
}

/// ε_uncond + w·(ε_text − ε_uncond) on tensors of one shape and dtype (F16, BF16, F32, F64),
/// as diffusers' pipelines compute it; see [`crate::guidance::classifier_free_guidance`].
///
/// ```
/// use candle_core::{Device, Tensor};
/// let uncond = Tensor::new(&[[0.1f32, -0.2]], &Device::Cpu)?;
/// let text = Tensor::new(&[[0.2f32, -0.1]], &Device::Cpu)?;
/// let guided = ddim::backend::candle::classifier_free_guidance(&uncond, &text, 7.5)?;
/// assert_eq!(guided.to_vec2::<f32>()?[0][0], 0.1 + 7.5 * (0.2f32 - 0.1));
/// # Ok::<(), ddim::Error>(())
/// ```
///
/// # Errors
///
/// [`Error::UnsupportedDtype`], [`Error::ShapeMismatch`], [`Error::InvalidStepOption`] for a
/// scale that is not finite, [`Error::Candle`] when a tensor op fails.
pub fn classifier_free_guidance(
    noise_pred_uncond: &Tensor,
    noise_pred_text: &Tensor,
    guidance_scale: f32,
) -> Result<Tensor> {
    check_sample_dtype(noise_pred_uncond)?;
    check_like("noise_pred_text", noise_pred_uncond, noise_pred_text)?;
    by_dtype!(
        "noise_pred",
        noise_pred_uncond.dtype(),
        cfg_typed,
        noise_pred_uncond,
        noise_pred_text,
        guidance_scale,
        0.0
    )
}

/// Rescales the guided prediction towards the spread of the text prediction, per item of
/// axis 0 (diffusers' `rescale_noise_cfg`); see [`crate::guidance::rescale_noise_cfg`] for
/// the equation, the numerics and the errors (a constant sample is [`Error::ZeroStdCfg`]).
///
/// ```
/// use candle_core::{Device, Tensor};
/// let cfg = Tensor::new(&[[0.1f32, -0.3, 0.2, 0.0]], &Device::Cpu)?;
/// let text = Tensor::new(&[[0.2f32, -0.2, 0.1, 0.3]], &Device::Cpu)?;
/// let rescaled = ddim::backend::candle::rescale_noise_cfg(&cfg, &text, 0.7)?;
/// assert_eq!(rescaled.dims(), &[1, 4]);
/// # Ok::<(), ddim::Error>(())
/// ```
///
/// # Errors
///
/// As [`crate::guidance::rescale_noise_cfg`], and [`Error::UnsupportedDtype`],
/// [`Error::ShapeMismatch`], [`Error::InvalidShape`] for a scalar, [`Error::Candle`].
pub fn rescale_noise_cfg(
    noise_cfg: &Tensor,
    noise_pred_text: &Tensor,
    guidance_rescale: f32,
) -> Result<Tensor> {
    check_sample_dtype(noise_cfg)?;
    check_like("noise_pred_text", noise_cfg, noise_pred_text)?;
    by_dtype!(
        "noise_pred",
        noise_cfg.dtype(),
        rescale_typed,
        noise_cfg,
        noise_pred_text,
        guidance_rescale
    )
}

/// The guided prediction of a model run on the batch `[uncond; text]` (axis 0 holds 2·B
/// items, the unconditional half first, as diffusers' `noise_pred.chunk(2)`): classifier-free
/// guidance with `guidance_scale`, then, when `guidance_rescale > 0`, `rescale_noise_cfg`
/// against the text half. Returns B items. diffusers applies the rescale only when guidance
/// is on (scale > 1); pass `guidance_rescale = 0` to skip it.
///
/// ```
/// use candle_core::{Device, Tensor};
/// let noise_pred = Tensor::randn(0f32, 1.0, (2, 4, 8, 8), &Device::Cpu)?; // [uncond; text]
/// let eps = ddim::backend::candle::guide(&noise_pred, 7.5, 0.7)?;
/// assert_eq!(eps.dims(), &[1, 4, 8, 8]);
/// # Ok::<(), ddim::Error>(())
/// ```
///
/// # Errors
///
/// [`Error::InvalidShape`] when axis 0 is missing or odd, and the errors of
/// [`classifier_free_guidance`] and [`rescale_noise_cfg`].
pub fn guide(noise_pred: &Tensor, guidance_scale: f32, guidance_rescale: f32) -> Result<Tensor> {
    check_sample_dtype(noise_pred)?;
    let (uncond, text) = halves(noise_pred)?;
    by_dtype!(
        "noise_pred",
        noise_pred.dtype(),
        cfg_typed,
        &uncond,
        &text,
        guidance_scale,
        guidance_rescale
    )
}

/// CFG, then the rescale when `rescale > 0`, in element type `T`.
fn cfg_typed<T: Element + WithDType>(
    uncond: &Tensor,
    text: &Tensor,
    scale: f32,
    rescale: f32,
) -> Result<Tensor> {
    let batch = batch_of("noise_pred_text", text).unwrap_or(1).max(1);
    let fused = with_cpu_slices::<T, _, 2>([uncond, text], |[u, t]| {
        let zero = T::from_compute(<T::Compute as crate::element::Compute>::ZERO);
        let mut out = vec![zero; u.len()];
        slices::classifier_free_guidance(u, t, scale, &mut out)?;
        if rescale > 0.0 {
            slices::rescale_noise_cfg(&mut out, t, rescale, batch)?;
        }
        Ok(out)
    })?;
    if let Some(out) = fused {
        return Ok(Tensor::from_vec(out, uncond.shape(), uncond.device())?);
    }
    ops_guide::<T>(uncond, text, scale, rescale)
}

/// [`cfg_typed`] with candle ops: each result rounded to `T` as the slice path stores it.
fn ops_guide<T: Element + WithDType>(
    uncond: &Tensor,
    text: &Tensor,
    scale: f32,
    rescale: f32,
) -> Result<Tensor> {
    let cfg = if T::DTYPE == DType::F64 {
        ops::cfg::<f64>(uncond, text, scale)?
    } else {
        ops::cfg::<f32>(uncond, text, scale)?
    };
    let cfg = cfg.to_dtype(T::DTYPE)?;
    if rescale > 0.0 {
        return rescale_ops::<T>(&cfg, text, rescale);
    }
    Ok(cfg)
}

fn rescale_typed<T: Element + WithDType>(
    noise_cfg: &Tensor,
    text: &Tensor,
    rescale: f32,
) -> Result<Tensor> {
    let batch = batch_of("noise_cfg", noise_cfg)?.max(1);
    let fused = with_cpu_slices::<T, _, 2>([noise_cfg, text], |[cfg, text]| {
        let mut out = cfg.to_vec();
        slices::rescale_noise_cfg(&mut out, text, rescale, batch)?;
        Ok(out)
    })?;
    if let Some(out) = fused {
        return Ok(Tensor::from_vec(
            out,
            noise_cfg.shape(),
            noise_cfg.device(),
        )?);
    }
    rescale_ops::<T>(noise_cfg, text, rescale)
}

/// [`rescale_typed`] with candle ops, computing in `T`'s compute type.
fn rescale_ops<T: Element + WithDType>(
    noise_cfg: &Tensor,
    text: &Tensor,
    rescale: f32,
) -> Result<Tensor> {
    let c = if T::DTYPE == DType::F64 {
        DType::F64
    } else {
        DType::F32
    };
    let (cfg, text) = (noise_cfg.to_dtype(c)?, text.to_dtype(c)?);
    let out = if c == DType::F64 {
        ops::rescale::<f64>(&cfg, &text, rescale)?
    } else {
        ops::rescale::<f32>(&cfg, &text, rescale)?
    };
    Ok(out.to_dtype(T::DTYPE)?)
}

/// The candle-op forms (devices other than the CPU), computing in `C`.
pub(super) mod ops {
    use super::*;
    use crate::element::Compute;

    fn scalar<C: Compute + WithDType>(v: C, device: &Device) -> Result<Tensor> {
        Ok(Tensor::new(v, device)?)
    }

    /// u + w·(t − u), widened to `C`.
    pub(crate) fn cfg<C: Compute + WithDType>(u: &Tensor, t: &Tensor, w: f32) -> Result<Tensor> {
        if !w.is_finite() {
            return Err(Error::InvalidStepOption {
                name: "guidance_scale",
                reason: format!("must be finite, got {w}"),
            });
        }
        let (u, t) = (u.to_dtype(C::DTYPE)?, t.to_dtype(C::DTYPE)?);
        let w = scalar(<C as Compute>::from_f32(w), u.device())?;
        Ok(u.add(&(t.sub(&u)?).broadcast_mul(&w)?)?)
    }

    /// φ·(cfg·σ_text/σ_cfg) + (1 − φ)·cfg per item of axis 0, in `C`.
    pub(crate) fn rescale<C: Compute + WithDType>(
        cfg: &Tensor,
        text: &Tensor,
        phi: f32,
    ) -> Result<Tensor> {
        if !phi.is_finite() {
            return Err(Error::InvalidStepOption {
                name: "guidance_rescale",
                reason: format!("must be finite, got {phi}"),
            });
        }
        let b = batch_of("noise_cfg", cfg)?;
        let n = cfg.elem_count() / b.max(1);
        if n < 2 {
            return Err(Error::SampleTooSmall {
                per_sample: n,
                minimum: 2,
            });
        }
        let std = |x: &Tensor| -> Result<Tensor> {
            let flat = x.reshape((b, n))?;
            let mean = flat.mean_keepdim(1)?;
            let dev = flat.broadcast_sub(&mean)?;
            #[allow(clippy::cast_precision_loss)] // element counts are far below 2^53
            let denom = scalar(<C as Compute>::from_f64((n - 1) as f64), x.device())?;
            Ok(dev.sqr()?.sum_keepdim(1)?.broadcast_div(&denom)?.sqrt()?)
        };
        let (s_text, s_cfg) = (std(text)?, std(cfg)?);
        if let Some(i) = s_cfg
            .to_dtype(DType::F64)?
            .flatten_all()?
            .to_vec1::<f64>()?
            .iter()
            .position(|&s| s == 0.0)
        {
            return Err(Error::ZeroStdCfg { sample: i });
        }
        let mut shape = vec![1; cfg.rank()];
        if let Some(first) = shape.first_mut() {
            *first = b;
        }
        let ratio = s_text.div(&s_cfg)?.reshape(shape)?;
        let phi_t = scalar(<C as Compute>::from_f32(phi), cfg.device())?;
        let one_minus = scalar(<C as Compute>::from_f64(1.0 - f64::from(phi)), cfg.device())?;
        let rescaled = cfg.broadcast_mul(&ratio)?;
        Ok(rescaled
            .broadcast_mul(&phi_t)?
            .add(&cfg.broadcast_mul(&one_minus)?)?)
    }
}

/// [`guide`] computed with candle ops whatever the device (what other devices run), e.g. to
/// check the op path on the CPU. The guidance is bit-equal to [`guide`]'s; the rescale's
/// standard deviation is candle's reduction (a few ulps from torch's CPU `std`).
///
/// ```
/// use candle_core::{Device, Tensor};
/// let noise_pred = Tensor::randn(0f32, 1.0, (2, 4, 8, 8), &Device::Cpu)?;
/// let fused = ddim::backend::candle::guide(&noise_pred, 7.5, 0.0)?;
/// let ops = ddim::backend::candle::guide_with_ops(&noise_pred, 7.5, 0.0)?;
/// assert_eq!(fused.flatten_all()?.to_vec1::<f32>()?, ops.flatten_all()?.to_vec1::<f32>()?);
/// # Ok::<(), ddim::Error>(())
/// ```
///
/// # Errors
///
/// As [`guide`].
pub fn guide_with_ops(
    noise_pred: &Tensor,
    guidance_scale: f32,
    guidance_rescale: f32,
) -> Result<Tensor> {
    check_sample_dtype(noise_pred)?;
    let (uncond, text) = halves(noise_pred)?;
    by_dtype!(
        "noise_pred",
        noise_pred.dtype(),
        ops_guide,
        &uncond,
        &text,
        guidance_scale,
        guidance_rescale
    )
}

/// The `[uncond; text]` halves of axis 0.
fn halves(noise_pred: &Tensor) -> Result<(Tensor, Tensor)> {
    let two_b = batch_of("noise_pred", noise_pred)?;
    if two_b % 2 != 0 {
        return Err(Error::InvalidShape {
            shape: noise_pred.dims().to_vec(),
            reason: format!(
                "noise_pred must hold [uncond; text] on axis 0, an even count; got {two_b}"
            ),
        });
    }
    let b = two_b / 2;
    Ok((noise_pred.narrow(0, 0, b)?, noise_pred.narrow(0, b, b)?))
}
