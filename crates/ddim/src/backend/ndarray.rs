//! The scheduler on [`ndarray`] arrays of any dimension (feature `ndarray`).
//!
//! Free functions that take the scheduler first: [`step`], [`step_into`], [`step_in_place`],
//! [`step_with_generator`] (torch-seeded noise), [`add_noise`], [`get_velocity`]. Around the
//! step: guidance ([`classifier_free_guidance`], [`rescale_noise_cfg`], [`guide`]),
//! torch-seeded latents ([`randn_latents`], [`randn_latents_per_item`]), the inverse
//! scheduler ([`inverse_step`]), [`batch_step_no_noise`] and [`scale_model_input`]. Each
//! computes with the slice function it wraps, so the numbers are the slice path's bit for bit.
//! Arrays are batch-major: axis 0 is the batch (dynamic thresholding and the guidance rescale
//! are per item of axis 0; `add_noise` and `batch_step_no_noise` take one timestep per item of
//! axis 0, or one for all).
//!
//! Layouts: an array in standard (C, row-major) layout is handed to the fused slice kernel as
//! it is, without a copy. Any other layout (transposed, sliced with steps, negative strides,
//! Fortran order) is read in logical order into a contiguous buffer, stepped, and written
//! back in logical order, so the result equals the standard-layout result on the same
//! logical values, element for element. Functions that return arrays return new arrays in
//! standard layout; [`step_into`] and [`step_in_place`] write into the caller's views whatever
//! their layout.
//!
//! Element types: `f32` and `f64` (computed in themselves), and `half::f16`/`half::bf16`
//! (computed in f32, rounded once), as the slice path.
//!
//! ```
//! use ddim::backend::{ndarray::step, TensorStepOptions};
//! use ndarray::Array4;
//!
//! let mut scheduler = ddim::DdimScheduler::new(ddim::DdimConfig::stable_diffusion())?;
//! scheduler.set_timesteps(10)?;
//! let mut latents = Array4::<f32>::from_elem((2, 4, 8, 8), 0.5);
//! for &t in scheduler.timesteps() {
//!     let eps = latents.mapv(|x| 0.1 * x); // the model's prediction
//!     let out = step(&scheduler, eps.view(), t, latents.view(), &TensorStepOptions::default())?;
//!     latents = out.prev_sample;
//! }
//! assert!(latents.iter().all(|v| v.is_finite()));
//! # Ok::<(), ddim::Error>(())
//! ```

mod guidance;
mod more;
mod noise;

pub use guidance::{classifier_free_guidance, guide, rescale_noise_cfg};
pub use more::{batch_step_no_noise, inverse_step, scale_model_input, step_in_place};
pub use noise::{randn_latents, randn_latents_per_item, step_with_generator};

use std::borrow::Cow;

use ndarray::{Array, ArrayView, ArrayViewMut, Dimension};

use super::{check_shape, per_item_timesteps, TensorStepOptions, TensorStepOutput};
use crate::element::{Compute, Element};
use crate::error::{Error, Result};
use crate::scheduler::{DdimScheduler, StepOptions, StepOutput};

/// The array's elements in logical (row-major) order: borrowed in standard layout, gathered
/// otherwise.
fn logical<'a, T: Element, D: Dimension>(a: &'a ArrayView<'_, T, D>) -> Cow<'a, [T]> {
    match a.as_slice() {
        Some(s) => Cow::Borrowed(s),
        None => Cow::Owned(a.iter().copied().collect()),
    }
}

/// An array of `shape` from values in logical order.
fn array_from<T, D: Dimension>(shape: D, values: Vec<T>) -> Result<Array<T, D>> {
    let len = values.len();
    Array::from_shape_vec(shape, values).map_err(|_| Error::LengthMismatch {
        name: "prev_sample",
        expected: len,
        got: len,
    })
}

/// A slice step's two output vectors as arrays of `shape`.
fn outputs<T, D: Dimension>(shape: D, out: StepOutput<T>) -> Result<TensorStepOutput<Array<T, D>>> {
    Ok(TensorStepOutput {
        prev_sample: array_from(shape.clone(), out.prev_sample)?,
        pred_original_sample: array_from(shape, out.pred_original_sample)?,
    })
}

/// `T`'s zero (to fill buffers the slice functions write).
fn zero<T: Element>() -> T {
    T::from_compute(<T::Compute as Compute>::ZERO)
}

fn slice_options<'a, T>(
    options: &TensorStepOptions<ArrayView<'_, T, impl Dimension>>,
    noise: Option<&'a [T]>,
    batch_size: usize,
) -> StepOptions<'a, T> {
    // `..Default::default()` keeps this literal valid when StepOptions gains a field.
    #[allow(clippy::needless_update)]
    StepOptions {
        eta: options.eta,
        use_clipped_model_output: options.use_clipped_model_output,
        variance_noise: noise,
        batch_size: Some(batch_size),
        check_finite: options.check_finite,
    }
}

/// Checks that the model output and the noise (if any) have the sample's `shape`.
fn check_step_inputs<T, D: Dimension>(
    shape: &[usize],
    model_output: &ArrayView<'_, T, D>,
    options: &TensorStepOptions<ArrayView<'_, T, D>>,
) -> Result<()> {
    check_shape("model_output", shape, model_output.shape())?;
    if let Some(z) = &options.variance_noise {
        check_shape("variance_noise", shape, z.shape())?;
    }
    Ok(())
}

/// `add_noise` and `get_velocity`: checks the noise, expands the timesteps to one per item of
/// axis 0, runs `op` (the slice path's function) on the arrays in logical order.
fn combine<T: Element, D: Dimension>(
    x: ArrayView<'_, T, D>,
    noise: ArrayView<'_, T, D>,
    timesteps: &[usize],
    op: impl FnOnce(&[T], &[T], &[usize]) -> Result<Vec<T>>,
) -> Result<Array<T, D>> {
    let shape = x.shape();
    check_shape("noise", shape, noise.shape())?;
    let ts = per_item_timesteps(timesteps, shape)?;
    let out = op(&logical(&x), &logical(&noise), &ts)?;
    array_from(x.raw_dim(), out)
}

/// One DDIM step on arrays (see [`DdimScheduler::step`] for the update):
/// x_{t_prev} = √ᾱ_prev·x̂₀ + √(1 − ᾱ_prev − σ_t²)·ε̂ + σ_t·z, with x̂₀ and ε̂ recovered from
/// `model_output` and `sample` by the config's prediction type and x̂₀ clipped or thresholded.
///
/// `model_output` and the noise must have the sample's shape; axis 0 is the batch. Returns
/// new arrays in standard layout.
///
/// ```
/// use ddim::backend::{ndarray::step, TensorStepOptions};
/// let mut scheduler = ddim::DdimScheduler::new(ddim::DdimConfig::default())?;
/// scheduler.set_timesteps(10)?;
/// let x = ndarray::Array3::<f64>::from_elem((2, 3, 5), 0.5);
/// let eps = ndarray::Array3::<f64>::from_elem((2, 3, 5), 0.1);
/// let out = step(&scheduler, eps.view(), 900, x.view(), &TensorStepOptions::default())?;
/// assert_eq!(out.prev_sample.shape(), &[2, 3, 5]);
/// # Ok::<(), ddim::Error>(())
/// ```
///
/// # Errors
///
/// [`Error::ShapeMismatch`] when `model_output` or the noise does not have the sample's
/// shape, and the errors of [`DdimScheduler::step`].
pub fn step<T: Element, D: Dimension>(
    scheduler: &DdimScheduler,
    model_output: ArrayView<'_, T, D>,
    timestep: usize,
    sample: ArrayView<'_, T, D>,
    options: &TensorStepOptions<ArrayView<'_, T, D>>,
) -> Result<TensorStepOutput<Array<T, D>>> {
    let shape = sample.shape();
    check_step_inputs(shape, &model_output, options)?;
    let (m, x) = (logical(&model_output), logical(&sample));
    let z = options.variance_noise.as_ref().map(logical);
    let batch = super::batch_of(shape);
    let out = scheduler.step(
        &m,
        timestep,
        &x,
        &slice_options(options, z.as_deref(), batch),
    )?;
    outputs(sample.raw_dim(), out)
}

/// Like [`step`], writing x_{t_prev} into `prev_sample` and x̂₀ into `pred_original_sample`
/// (both of the sample's shape, any layout). With every array in standard layout this is the
/// allocation-free [`DdimScheduler::step_into`]; otherwise the inputs are gathered and the
/// outputs scattered in logical order through temporary buffers.
///
/// ```
/// use ddim::backend::{ndarray::step_into, TensorStepOptions};
/// let mut scheduler = ddim::DdimScheduler::new(ddim::DdimConfig::default())?;
/// scheduler.set_timesteps(10)?;
/// let x = ndarray::Array2::<f32>::from_elem((2, 8), 0.5);
/// let eps = ndarray::Array2::<f32>::from_elem((2, 8), 0.1);
/// let (mut prev, mut x0) = (x.clone(), x.clone());
/// let options = TensorStepOptions::default();
/// step_into(&scheduler, eps.view(), 900, x.view(), &options, prev.view_mut(), x0.view_mut())?;
/// assert!(prev[[1, 7]] != 0.5);
/// # Ok::<(), ddim::Error>(())
/// ```
///
/// # Errors
///
/// As [`step`], and [`Error::ShapeMismatch`] for outputs of the wrong shape. On error the
/// outputs are untouched.
pub fn step_into<T: Element, D: Dimension>(
    scheduler: &DdimScheduler,
    model_output: ArrayView<'_, T, D>,
    timestep: usize,
    sample: ArrayView<'_, T, D>,
    options: &TensorStepOptions<ArrayView<'_, T, D>>,
    mut prev_sample: ArrayViewMut<'_, T, D>,
    mut pred_original_sample: ArrayViewMut<'_, T, D>,
) -> Result<()> {
    let shape = sample.shape();
    check_step_inputs(shape, &model_output, options)?;
    check_shape("prev_sample", shape, prev_sample.shape())?;
    check_shape("pred_original_sample", shape, pred_original_sample.shape())?;
    let (m, x) = (logical(&model_output), logical(&sample));
    let z = options.variance_noise.as_ref().map(logical);
    let slice = slice_options(options, z.as_deref(), super::batch_of(shape));
    if let (Some(p), Some(o)) = (
        prev_sample.as_slice_mut(),
        pred_original_sample.as_slice_mut(),
    ) {
        return scheduler.step_into(&m, timestep, &x, &slice, p, o);
    }
    let (mut p, mut o) = (vec![zero::<T>(); m.len()], vec![zero::<T>(); m.len()]);
    scheduler.step_into(&m, timestep, &x, &slice, &mut p, &mut o)?;
    prev_sample.iter_mut().zip(p).for_each(|(d, s)| *d = s);
    pred_original_sample
        .iter_mut()
        .zip(o)
        .for_each(|(d, s)| *d = s);
    Ok(())
}

/// Forward diffusion q(x_t | x₀) on arrays: x_t = √ᾱ_t·x₀ + √(1 − ᾱ_t)·ε, with one timestep
/// per item of axis 0 (or one timestep for every item).
///
/// ```
/// let scheduler = ddim::DdimScheduler::new(ddim::DdimConfig::default())?;
/// let x0 = ndarray::Array2::<f32>::ones((2, 3));
/// let eps = ndarray::Array2::<f32>::zeros((2, 3));
/// let x_t = ddim::backend::ndarray::add_noise(&scheduler, x0.view(), eps.view(), &[0, 999])?;
/// assert!(x_t[[0, 0]] > 0.99 && x_t[[1, 0]] < 0.01);
/// # Ok::<(), ddim::Error>(())
/// ```
///
/// # Errors
///
/// [`Error::ShapeMismatch`], [`Error::TimestepCountMismatch`], [`Error::TimestepOutOfRange`].
pub fn add_noise<T: Element, D: Dimension>(
    scheduler: &DdimScheduler,
    original_samples: ArrayView<'_, T, D>,
    noise: ArrayView<'_, T, D>,
    timesteps: &[usize],
) -> Result<Array<T, D>> {
    combine(original_samples, noise, timesteps, |x, n, ts| {
        scheduler.add_noise(x, n, ts)
    })
}

/// The velocity target on arrays: v_t = √ᾱ_t·ε − √(1 − ᾱ_t)·x₀, with one timestep per item
/// of axis 0 (or one for every item).
///
/// ```
/// let scheduler = ddim::DdimScheduler::new(ddim::DdimConfig::default())?;
/// let x0 = ndarray::Array2::<f64>::ones((2, 3));
/// let eps = ndarray::Array2::<f64>::zeros((2, 3));
/// let v = ddim::backend::ndarray::get_velocity(&scheduler, x0.view(), eps.view(), &[500])?;
/// assert!(v.iter().all(|&v| v < 0.0));
/// # Ok::<(), ddim::Error>(())
/// ```
///
/// # Errors
///
/// As [`add_noise`].
pub fn get_velocity<T: Element, D: Dimension>(
    scheduler: &DdimScheduler,
    sample: ArrayView<'_, T, D>,
    noise: ArrayView<'_, T, D>,
    timesteps: &[usize],
) -> Result<Array<T, D>> {
    combine(sample, noise, timesteps, |x, n, ts| {
        scheduler.get_velocity(x, n, ts)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DdimConfig;
    use ndarray::{Array3, Axis, Slice};

    fn scheduler(thresholding: bool) -> DdimScheduler {
        let config = DdimConfig {
            thresholding,
            ..DdimConfig::default()
        };
        let mut s = DdimScheduler::new(config).unwrap();
        s.set_timesteps(10).unwrap();
        s
    }

    fn values(n: usize, seed: u32) -> Vec<f32> {
        let mut state = seed;
        (0..n)
            .map(|_| {
                state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                (state >> 8) as f32 / (1u32 << 24) as f32 * 8.0 - 4.0
            })
            .collect()
    }

    /// The same logical values in standard layout and as a non-standard view (transposed
    /// storage).
    fn layouts(seed: u32) -> (Array3<f32>, Array3<f32>) {
        let standard = Array3::from_shape_vec((3, 5, 8), values(120, seed)).unwrap();
        let mut transposed = standard
            .view()
            .permuted_axes([0, 2, 1])
            .as_standard_layout()
            .into_owned();
        transposed.swap_axes(1, 2);
        assert!(transposed.as_slice().is_none());
        assert_eq!(transposed, standard);
        (standard, transposed)
    }

    /// Non-standard layouts give the same numbers as standard layout, in `step` and in
    /// `step_into` with non-standard outputs; thresholding is per item of axis 0.
    #[test]
    fn non_standard_layouts_equal_standard() {
        for thresholding in [false, true] {
            let s = scheduler(thresholding);
            let (m, m_t) = layouts(1);
            let (x, x_t) = layouts(2);
            let mut big = Array3::<f32>::zeros((6, 5, 8));
            big.slice_axis_mut(Axis(0), Slice::new(0, None, -2))
                .assign(&x);
            let x_rev = big.slice_axis(Axis(0), Slice::new(0, None, -2));
            assert!(x_rev.as_slice().is_none());
            let opts = TensorStepOptions::default();
            let a = step(&s, m.view(), 700, x.view(), &opts).unwrap();
            let b = step(&s, m_t.view(), 700, x_t.view(), &opts).unwrap();
            let c = step(&s, m_t.view(), 700, x_rev, &opts).unwrap();
            assert_eq!(a, b);
            assert_eq!(a, c);
            let mut prev = Array3::<f32>::zeros((3, 8, 5));
            let mut x0 = Array3::<f32>::zeros((3, 8, 5));
            let (mut pv, mut ov) = (prev.view_mut(), x0.view_mut());
            pv.swap_axes(1, 2);
            ov.swap_axes(1, 2);
            step_into(&s, m_t.view(), 700, x_rev, &opts, pv, ov).unwrap();
            assert_eq!(prev.view().permuted_axes([0, 2, 1]), a.prev_sample);
            assert_eq!(x0.view().permuted_axes([0, 2, 1]), a.pred_original_sample);
            let item = step(
                &s,
                m.index_axis(Axis(0), 1).insert_axis(Axis(0)),
                700,
                x.index_axis(Axis(0), 1).insert_axis(Axis(0)),
                &opts,
            )
            .unwrap();
            assert_eq!(
                item.prev_sample.index_axis(Axis(0), 0),
                a.prev_sample.index_axis(Axis(0), 1)
            );
        }
    }

    #[test]
    fn shape_and_timestep_errors() {
        let s = scheduler(false);
        let x = Array3::<f32>::zeros((2, 3, 4));
        let m = Array3::<f32>::zeros((2, 4, 3));
        let e = step(&s, m.view(), 900, x.view(), &TensorStepOptions::default()).unwrap_err();
        assert!(matches!(
            e,
            Error::ShapeMismatch {
                name: "model_output",
                ..
            }
        ));
        let e = add_noise(&s, x.view(), x.view(), &[1, 2, 3]).unwrap_err();
        assert!(matches!(
            e,
            Error::TimestepCountMismatch {
                batch_size: 2,
                got: 3
            }
        ));
        let one = add_noise(&s, x.view(), x.view(), &[5]).unwrap();
        let two = add_noise(&s, x.view(), x.view(), &[5, 5]).unwrap();
        assert_eq!(one, two);
    }
    /// A 0-d array is one item of one element; an empty batch steps to empty arrays.
    #[test]
    fn scalar_and_empty_arrays() {
        let s = scheduler(true);
        let opts = TensorStepOptions::default();
        let x = ndarray::arr0(0.5f32);
        let m = ndarray::arr0(0.1f32);
        let out = step(&s, m.view(), 700, x.view(), &opts).unwrap();
        let one = crate::StepOptions {
            batch_size: Some(1),
            ..Default::default()
        };
        let flat = s.step(&[0.1f32], 700, &[0.5], &one).unwrap();
        assert_eq!(out.prev_sample.into_scalar(), flat.prev_sample[0]);
        let empty = ndarray::Array2::<f64>::zeros((0, 3));
        let out = step(
            &s,
            empty.view(),
            700,
            empty.view(),
            &TensorStepOptions::default(),
        )
        .unwrap();
        assert_eq!(out.prev_sample.shape(), &[0, 3]);
        let noised = add_noise(&s, empty.view(), empty.view(), &[3]).unwrap();
        assert_eq!(noised.shape(), &[0, 3]);
    }
}
