//! Tensor backends: the scheduler's `step`, `add_noise` and `get_velocity`, and the helpers
//! around the step (guidance, torch-seeded noise, the inverse step), on the arrays and tensors
//! that pipelines already hold.
//!
//! | feature | module | types | how |
//! |---|---|---|---|
//! | `ndarray` | `backend::ndarray` | `ArrayView<T, D>` of any dimension, `T` = f32, f64 (and f16, bf16) | standard layout goes straight to the fused slice kernel; other layouts are gathered in logical order, stepped, and scattered back |
//! | `candle` | `backend::candle` | `Tensor` of F16, BF16, F32, F64 on any device | contiguous CPU tensors go through the fused slice kernel; everything else runs candle ops in diffusers' order |
//!
//! | function | ndarray | candle |
//! |---|---|---|
//! | `step`, `add_noise`, `get_velocity` | yes | yes |
//! | `step_into`, `step_in_place` (writing into the caller's arrays) | yes | no: a tensor's clones share its storage |
//! | `step_with_generator`, `randn_latents`, `randn_latents_per_item` (torch-seeded noise) | yes | yes |
//! | `step_with_device_noise`, `randn_like` (the device's generator) | no | yes |
//! | `classifier_free_guidance`, `rescale_noise_cfg`, `guide` | yes | yes (and `guide_with_ops`) |
//! | `inverse_step`, `batch_step_no_noise`, `scale_model_input` | yes | yes |
//!
//! Both take the batch as axis 0: dynamic thresholding and the guidance rescale are per item of
//! axis 0, and `add_noise`/`get_velocity` take one timestep per item of axis 0 (or one for
//! all). The numbers are those of the slice path ([`DdimScheduler::step`](crate::DdimScheduler::step),
//! [`crate::guidance`], [`crate::rng`]), whose parity with diffusers the crate's golden tests
//! measure; `docs/backends.md` lists the measured differences per backend and dtype.

#[cfg(feature = "candle")]
#[cfg_attr(docsrs, doc(cfg(feature = "candle")))]
pub mod candle;
#[cfg(feature = "ndarray")]
#[cfg_attr(docsrs, doc(cfg(feature = "ndarray")))]
pub mod ndarray;

/// Per-call settings of a backend's `step`; `N` is the backend's noise argument (an array
/// view, a `&Tensor`).
///
/// Unlike [`StepOptions`](crate::StepOptions) there is no `batch_size`: the batch is axis 0
/// of the sample.
///
/// ```
/// let options: ddim::backend::TensorStepOptions<()> =
///     ddim::backend::TensorStepOptions { eta: 0.5, ..Default::default() };
/// assert!(options.variance_noise.is_none());
/// # Ok::<(), ddim::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TensorStepOptions<N> {
    /// η: 0 is deterministic DDIM, 1 is DDPM-like ancestral sampling.
    pub eta: f32,
    /// Recompute ε̂ from the clipped or thresholded x̂₀ ("as in Glide").
    pub use_clipped_model_output: bool,
    /// The noise z of σ_t·z, the sample's shape; used only when η > 0.
    pub variance_noise: Option<N>,
    /// Refuse NaN and ±∞ in the inputs with [`Error::NonFinite`](crate::Error::NonFinite)
    /// (the index is in logical, row-major order), as
    /// [`StepOptions::check_finite`](crate::StepOptions::check_finite). Off by default. On
    /// candle tensors off the CPU the check copies the inputs to the host.
    pub check_finite: bool,
}

impl<N> Default for TensorStepOptions<N> {
    fn default() -> Self {
        Self {
            eta: 0.0,
            use_clipped_model_output: false,
            variance_noise: None,
            check_finite: false,
        }
    }
}

/// The result of one backend step, in the sample's shape (and dtype, and device).
#[derive(Debug, Clone, PartialEq)]
pub struct TensorStepOutput<A> {
    /// x_{t_prev}: the sample to feed the model at the next step.
    pub prev_sample: A,
    /// x̂₀ after clipping or thresholding.
    pub pred_original_sample: A,
}

/// The batch size of a sample of this shape: the length of axis 0, or 1 for a scalar or an
/// empty sample (which the slice path steps as one empty item).
#[cfg(any(feature = "ndarray", feature = "candle"))]
pub(crate) fn batch_of(shape: &[usize]) -> usize {
    match shape.first() {
        Some(&b) if b > 0 => b,
        _ => 1,
    }
}

/// Checks that `got` has the sample's shape.
#[cfg(any(feature = "ndarray", feature = "candle"))]
pub(crate) fn check_shape(
    name: &'static str,
    expected: &[usize],
    got: &[usize],
) -> crate::Result<()> {
    if expected == got {
        Ok(())
    } else {
        Err(crate::Error::ShapeMismatch {
            name,
            expected: expected.to_vec(),
            got: got.to_vec(),
        })
    }
}

/// The timesteps of `add_noise`/`get_velocity` expanded to one per batch item: one timestep
/// for all items, or one per item.
#[cfg(any(feature = "ndarray", feature = "candle"))]
pub(crate) fn per_item_timesteps(
    timesteps: &[usize],
    shape: &[usize],
) -> crate::Result<Vec<usize>> {
    let batch = batch_of(shape);
    match timesteps {
        [t] => Ok(vec![*t; batch]),
        ts if ts.len() == batch => Ok(ts.to_vec()),
        ts => Err(crate::Error::TimestepCountMismatch {
            batch_size: batch,
            got: ts.len(),
        }),
    }
}
