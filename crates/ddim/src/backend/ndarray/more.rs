//! The rest of the slice API on arrays: the in-place step, the inverse scheduler's step,
//! `batch_step_no_noise` and `scale_model_input`.

use ndarray::{Array, ArrayView, ArrayViewMut, Dimension};

use super::{array_from, check_step_inputs, logical, outputs, slice_options, zero};
use crate::backend::{
    batch_of, check_shape, per_item_timesteps, TensorStepOptions, TensorStepOutput,
};
use crate::element::Element;
use crate::error::Result;
use crate::inverse::DdimInverseScheduler;
use crate::scheduler::DdimScheduler;

/// A gathered copy of `a` in logical order when it is not in standard layout (`None` when its
/// memory can be used as it is).
fn gather_if_needed<T: Element, D: Dimension>(a: &ArrayViewMut<'_, T, D>) -> Option<Vec<T>> {
    (!a.is_standard_layout()).then(|| a.iter().copied().collect())
}

/// One DDIM step in place on arrays (see [`DdimScheduler::step_in_place`]): `sample` becomes
/// x_{t_prev} = √ᾱ_prev·x̂₀ + √(1 − ᾱ_prev − σ_t²)·ε̂ + σ_t·z and `model_output` becomes x̂₀
/// (after clipping or thresholding), bit for bit what [`step`](super::step) returns.
///
/// With both arrays in standard layout their memory is stepped as it is and nothing is
/// allocated (below [`PARALLEL_MIN_LEN`](crate::PARALLEL_MIN_LEN) elements, as the slice
/// path); an array in any other layout is gathered in logical order into a temporary buffer,
/// stepped, and written back in logical order. Axis 0 is the batch.
///
/// ```
/// use ddim::backend::{ndarray::step_in_place, TensorStepOptions};
/// let mut scheduler = ddim::DdimScheduler::new(ddim::DdimConfig::default())?;
/// scheduler.set_timesteps(10)?;
/// let mut latents = ndarray::Array4::<f32>::from_elem((2, 4, 8, 8), 0.5);
/// let options = TensorStepOptions::default();
/// for &t in scheduler.timesteps() {
///     let mut eps = latents.mapv(|x| 0.1 * x); // the model's prediction
///     step_in_place(&scheduler, eps.view_mut(), t, latents.view_mut(), &options)?;
///     // `latents` is x_{t_prev}; `eps` now holds x̂₀ (for a preview)
/// }
/// assert!(latents.iter().all(|v| v.is_finite()));
/// # Ok::<(), ddim::Error>(())
/// ```
///
/// # Errors
///
/// [`Error::ShapeMismatch`](crate::Error::ShapeMismatch) when `model_output` or the noise
/// does not have the sample's shape, and the errors of [`DdimScheduler::step_in_place`]. On
/// error neither array is changed.
pub fn step_in_place<T: Element, D: Dimension>(
    scheduler: &DdimScheduler,
    mut model_output: ArrayViewMut<'_, T, D>,
    timestep: usize,
    mut sample: ArrayViewMut<'_, T, D>,
    options: &TensorStepOptions<ArrayView<'_, T, D>>,
) -> Result<()> {
    let batch = batch_of(sample.shape());
    check_step_inputs(sample.shape(), &model_output.view(), options)?;
    let z = options.variance_noise.as_ref().map(logical);
    let slice = slice_options(options, z.as_deref(), batch);
    let (mut m_tmp, mut x_tmp) = (gather_if_needed(&model_output), gather_if_needed(&sample));
    // Standard layout: the arrays' own memory (`as_slice_mut` is `Some` exactly then).
    let m = match m_tmp.as_deref_mut() {
        Some(v) => v,
        None => model_output.as_slice_mut().unwrap_or_default(),
    };
    let x = match x_tmp.as_deref_mut() {
        Some(v) => v,
        None => sample.as_slice_mut().unwrap_or_default(),
    };
    scheduler.step_in_place(m, timestep, x, &slice)?;
    if let Some(v) = m_tmp {
        model_output.iter_mut().zip(v).for_each(|(d, s)| *d = s);
    }
    if let Some(v) = x_tmp {
        sample.iter_mut().zip(v).for_each(|(d, s)| *d = s);
    }
    Ok(())
}

/// One [`DdimInverseScheduler`] step on arrays: x_t = √ᾱ_t·x̂₀ + √(1 − ᾱ_t)·ε̂ from the
/// sample at the source level ᾱ_s, with x̂₀ and ε̂ recovered by the config's prediction type
/// (x̂₀ clipped when `clip_sample`). x_t is in `prev_sample`, x̂₀ in `pred_original_sample`,
/// new arrays of the sample's shape; the numbers of [`DdimInverseScheduler::step`] bit for
/// bit.
///
/// ```
/// let mut inverse = ddim::DdimInverseScheduler::new(ddim::DdimInverseConfig::default())?;
/// inverse.set_timesteps(10)?;
/// let mut x = ndarray::Array4::<f32>::from_elem((1, 4, 2, 2), 0.5); // x₀
/// for &t in inverse.timesteps() {
///     let eps = x.mapv(|v| 0.1 * v); // the model's prediction
///     x = ddim::backend::ndarray::inverse_step(&inverse, eps.view(), t, x.view())?.prev_sample;
/// }
/// assert!(x.iter().all(|v| v.is_finite()));
/// # Ok::<(), ddim::Error>(())
/// ```
///
/// # Errors
///
/// [`Error::ShapeMismatch`](crate::Error::ShapeMismatch) when `model_output` does not have
/// the sample's shape, and the errors of [`DdimInverseScheduler::step`].
pub fn inverse_step<T: Element, D: Dimension>(
    inverse: &DdimInverseScheduler,
    model_output: ArrayView<'_, T, D>,
    timestep: usize,
    sample: ArrayView<'_, T, D>,
) -> Result<TensorStepOutput<Array<T, D>>> {
    check_shape("model_output", sample.shape(), model_output.shape())?;
    let out = inverse.step(&logical(&model_output), timestep, &logical(&sample))?;
    outputs(sample.raw_dim(), out)
}

/// [`DdimScheduler::batch_step_no_noise`] on arrays: item b of axis 0 steps from
/// `timesteps[b]` with η = 0, x_{t_prev} = √ᾱ_prev·x̂₀ + √(1 − ᾱ_prev)·ε̂ (one timestep for
/// every item is accepted too). Returns x_{t_prev} of every item, a new array of the sample's
/// shape, bit for bit the slice path's.
///
/// ```
/// let mut scheduler = ddim::DdimScheduler::new(ddim::DdimConfig::default())?;
/// scheduler.set_timesteps(10)?;
/// let x = ndarray::Array2::<f32>::from_elem((2, 3), 0.5);
/// let eps = ndarray::Array2::<f32>::from_elem((2, 3), 0.1);
/// let prev =
///     ddim::backend::ndarray::batch_step_no_noise(&scheduler, eps.view(), &[900, 0], x.view(), false)?;
/// assert_eq!(prev.shape(), &[2, 3]);
/// assert!(prev[[0, 0]] != prev[[1, 0]]);
/// # Ok::<(), ddim::Error>(())
/// ```
///
/// # Errors
///
/// [`Error::ShapeMismatch`](crate::Error::ShapeMismatch) when `model_output` does not have
/// the sample's shape, [`Error::TimestepCountMismatch`](crate::Error::TimestepCountMismatch)
/// unless there is one timestep or one per item of axis 0, and the errors of
/// [`DdimScheduler::batch_step_no_noise`].
pub fn batch_step_no_noise<T: Element, D: Dimension>(
    scheduler: &DdimScheduler,
    model_output: ArrayView<'_, T, D>,
    timesteps: &[usize],
    sample: ArrayView<'_, T, D>,
    use_clipped_model_output: bool,
) -> Result<Array<T, D>> {
    let shape = sample.shape();
    check_shape("model_output", shape, model_output.shape())?;
    let ts = per_item_timesteps(timesteps, shape)?;
    let (m, x) = (logical(&model_output), logical(&sample));
    let mut prev = vec![zero::<T>(); x.len()];
    scheduler.batch_step_no_noise(&m, &ts, &x, use_clipped_model_output, &mut prev)?;
    array_from(sample.raw_dim(), prev)
}

/// The model input at `timestep`: DDIM does not scale it (x_in = x_t), so this is `sample`
/// itself, the same view; diffusers' `scale_model_input`, so loops written for other
/// schedulers keep their shape.
///
/// ```
/// let scheduler = ddim::DdimScheduler::new(ddim::DdimConfig::default())?;
/// let x = ndarray::Array2::<f64>::ones((1, 4));
/// let input = ddim::backend::ndarray::scale_model_input(&scheduler, x.view(), 999);
/// assert_eq!(input, x.view());
/// # Ok::<(), ddim::Error>(())
/// ```
pub fn scale_model_input<'a, T, D: Dimension>(
    _scheduler: &DdimScheduler,
    sample: ArrayView<'a, T, D>,
    _timestep: usize,
) -> ArrayView<'a, T, D> {
    sample
}
