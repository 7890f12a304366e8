//! Classifier-free guidance and `rescale_noise_cfg` on arrays (see [`crate::guidance`]): the
//! slice functions on the arrays' values in logical order, so the numbers are theirs (and
//! diffusers') bit for bit. Arrays in standard layout are read in place; the result is one new
//! array in standard layout.

use ndarray::{Array, ArrayView, Axis, Dimension};

use super::{array_from, logical, zero};
use crate::backend::{batch_of, check_shape};
use crate::element::Element;
use crate::error::{Error, Result};
use crate::guidance as slices;

/// The length of axis 0, which guidance arrays must have.
fn batch_axis<T, D: Dimension>(name: &'static str, a: &ArrayView<'_, T, D>) -> Result<usize> {
    a.shape()
        .first()
        .copied()
        .ok_or_else(|| Error::InvalidShape {
            shape: a.shape().to_vec(),
            reason: format!("has no batch axis (axis 0), which `{name}` needs"),
        })
}

/// Classifier-free guidance, then the rescale against `text` when `rescale > 0`.
fn guided<T: Element, D: Dimension>(
    uncond: &ArrayView<'_, T, D>,
    text: &ArrayView<'_, T, D>,
    scale: f32,
    rescale: f32,
) -> Result<Array<T, D>> {
    let (u, t) = (logical(uncond), logical(text));
    let mut out = vec![zero::<T>(); u.len()];
    slices::classifier_free_guidance(&u, &t, scale, &mut out)?;
    if rescale > 0.0 {
        slices::rescale_noise_cfg(&mut out, &t, rescale, batch_of(text.shape()))?;
    }
    array_from(uncond.raw_dim(), out)
}

/// ε_uncond + w·(ε_text − ε_uncond) on two arrays of one shape, as diffusers' pipelines
/// compute it; see [`crate::guidance::classifier_free_guidance`] for the numerics.
///
/// ```
/// let uncond = ndarray::arr2(&[[0.1f32, -0.2]]);
/// let text = ndarray::arr2(&[[0.2f32, -0.1]]);
/// let guided = ddim::backend::ndarray::classifier_free_guidance(uncond.view(), text.view(), 7.5)?;
/// assert_eq!(guided[[0, 0]], 0.1 + 7.5 * (0.2f32 - 0.1));
/// # Ok::<(), ddim::Error>(())
/// ```
///
/// # Errors
///
/// [`Error::ShapeMismatch`] when the two shapes differ; [`Error::InvalidStepOption`] for a
/// scale that is not finite.
pub fn classifier_free_guidance<T: Element, D: Dimension>(
    noise_pred_uncond: ArrayView<'_, T, D>,
    noise_pred_text: ArrayView<'_, T, D>,
    guidance_scale: f32,
) -> Result<Array<T, D>> {
    check_shape(
        "noise_pred_text",
        noise_pred_uncond.shape(),
        noise_pred_text.shape(),
    )?;
    guided(&noise_pred_uncond, &noise_pred_text, guidance_scale, 0.0)
}

/// Rescales the guided prediction towards the spread of the text prediction, per item of
/// axis 0 (diffusers' `rescale_noise_cfg`):
/// ε = φ·ε_cfg·(σ(ε_text)/σ(ε_cfg)) + (1 − φ)·ε_cfg, with σ the unbiased standard deviation
/// of each item and φ = `guidance_rescale`; see [`crate::guidance::rescale_noise_cfg`] for
/// the numerics. Returns a new array.
///
/// ```
/// let cfg = ndarray::arr2(&[[0.1f32, -0.3, 0.2, 0.0]]);
/// let text = ndarray::arr2(&[[0.2f32, -0.2, 0.1, 0.3]]);
/// let rescaled = ddim::backend::ndarray::rescale_noise_cfg(cfg.view(), text.view(), 0.7)?;
/// assert_eq!(rescaled.shape(), &[1, 4]);
/// # Ok::<(), ddim::Error>(())
/// ```
///
/// # Errors
///
/// As [`crate::guidance::rescale_noise_cfg`] (a constant item is [`Error::ZeroStdCfg`], an
/// item of fewer than 2 elements [`Error::SampleTooSmall`]), and [`Error::ShapeMismatch`]
/// when the two shapes differ, [`Error::InvalidShape`] for a 0-d array.
pub fn rescale_noise_cfg<T: Element, D: Dimension>(
    noise_cfg: ArrayView<'_, T, D>,
    noise_pred_text: ArrayView<'_, T, D>,
    guidance_rescale: f32,
) -> Result<Array<T, D>> {
    check_shape(
        "noise_pred_text",
        noise_cfg.shape(),
        noise_pred_text.shape(),
    )?;
    let batch = batch_axis("noise_cfg", &noise_cfg)?.max(1);
    let mut out = logical(&noise_cfg).into_owned();
    slices::rescale_noise_cfg(
        &mut out,
        &logical(&noise_pred_text),
        guidance_rescale,
        batch,
    )?;
    array_from(noise_cfg.raw_dim(), out)
}

/// The guided prediction of a model run on the batch `[uncond; text]` (axis 0 holds 2·B
/// items, the unconditional half first, as diffusers' `noise_pred.chunk(2)`):
/// ε = ε_uncond + w·(ε_text − ε_uncond), then, when `guidance_rescale > 0`,
/// [`rescale_noise_cfg`] against the text half. Returns B items. diffusers applies the
/// rescale only when guidance is on (w > 1); pass `guidance_rescale = 0` to skip it.
///
/// ```
/// let noise_pred = ndarray::Array4::<f32>::from_shape_fn((2, 4, 8, 8), |(b, c, h, w)| {
///     (b + c) as f32 * 0.1 - (h * w) as f32 * 0.01
/// }); // [uncond; text]
/// let eps = ddim::backend::ndarray::guide(noise_pred.view(), 7.5, 0.7)?;
/// assert_eq!(eps.shape(), &[1, 4, 8, 8]);
/// # Ok::<(), ddim::Error>(())
/// ```
///
/// # Errors
///
/// [`Error::InvalidShape`] when axis 0 is missing or of odd length, and the errors of
/// [`classifier_free_guidance`] and [`rescale_noise_cfg`].
pub fn guide<T: Element, D: Dimension>(
    noise_pred: ArrayView<'_, T, D>,
    guidance_scale: f32,
    guidance_rescale: f32,
) -> Result<Array<T, D>> {
    let two_b = batch_axis("noise_pred", &noise_pred)?;
    if two_b % 2 != 0 {
        return Err(Error::InvalidShape {
            shape: noise_pred.shape().to_vec(),
            reason: format!(
                "must hold [uncond; text] on axis 0, an even count; got {two_b} for `noise_pred`"
            ),
        });
    }
    let (uncond, text) = noise_pred.split_at(Axis(0), two_b / 2);
    guided(&uncond, &text, guidance_scale, guidance_rescale)
}
