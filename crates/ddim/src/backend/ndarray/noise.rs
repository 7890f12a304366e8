//! torch-seeded noise as arrays: diffusers' `randn_tensor(shape, generator=g)` latents and the
//! η > 0 step's `generator=g` noise, drawn by [`crate::rng`] generators (bit for bit
//! `torch.Generator("cpu")`, or the CUDA Philox model) in logical (row-major) order, as torch
//! fills a contiguous tensor.

use ndarray::{Array, ArrayView, Dimension, IntoDimension};

use super::{array_from, check_step_inputs, logical, outputs, slice_options};
use crate::backend::{batch_of, TensorStepOptions, TensorStepOutput};
use crate::error::{Error, Result};
use crate::rng::{self, NoiseGenerator, RandnElement};
use crate::scheduler::DdimScheduler;

/// diffusers' `randn_tensor(shape, generator=g)` with one generator: one `torch.randn(shape)`
/// z ~ N(0, I) over the whole array, in standard layout. For DDIM `init_noise_sigma` is 1, so
/// these are the initial latents. `shape` is anything ndarray takes as a shape: a tuple
/// (`(1, 4, 64, 64)` gives an `Array4`), an array, or a `&[usize]` (an `ArrayD`).
///
/// ```
/// use ddim::rng::TorchCpuGenerator;
/// let mut g = TorchCpuGenerator::new(0);
/// let latents: ndarray::Array4<f32> = ddim::backend::ndarray::randn_latents((1, 4, 64, 64), &mut g)?;
/// assert_eq!(latents[[0, 0, 0, 0]].to_bits(), 0xbf90_1b85);
/// # Ok::<(), ddim::Error>(())
/// ```
///
/// # Errors
///
/// As [`crate::rng::randn_latents`]: [`Error::InvalidShape`] for a 0-d shape (no batch axis)
/// or one whose size overflows `usize`, [`Error::OutOfMemory`].
pub fn randn_latents<T: RandnElement, Sh: IntoDimension, G: NoiseGenerator + ?Sized>(
    shape: Sh,
    generator: &mut G,
) -> Result<Array<T, Sh::Dim>> {
    let dim = shape.into_dimension();
    let values = rng::randn_latents(dim.slice(), generator)?;
    array_from(dim, values)
}

/// `randn_tensor(shape, generator=[g₀, g₁, …])`: item b of axis 0 is z_b ~ N(0, I) from its
/// own generator, `torch.randn((1, *shape[1:]), generator=g_b)` (see
/// [`crate::rng::randn_latents_per_item`]); a list of one generator draws the whole array as
/// [`randn_latents`] does.
///
/// ```
/// use ddim::rng::TorchCpuGenerator;
/// let mut gens = [TorchCpuGenerator::new(7), TorchCpuGenerator::new(8)];
/// let latents: ndarray::Array4<f32> =
///     ddim::backend::ndarray::randn_latents_per_item((2, 4, 8, 8), &mut gens)?;
/// let second: ndarray::Array4<f32> =
///     ddim::backend::ndarray::randn_latents((1, 4, 8, 8), &mut TorchCpuGenerator::new(8))?;
/// assert_eq!(latents.slice(ndarray::s![1..2, .., .., ..]), second);
/// # Ok::<(), ddim::Error>(())
/// ```
///
/// # Errors
///
/// As [`randn_latents`], and [`Error::GeneratorCountMismatch`] unless there is one generator
/// or one per item of axis 0.
pub fn randn_latents_per_item<T: RandnElement, Sh: IntoDimension, G: NoiseGenerator>(
    shape: Sh,
    generators: &mut [G],
) -> Result<Array<T, Sh::Dim>> {
    let dim = shape.into_dimension();
    let values = rng::randn_latents_per_item(dim.slice(), generators)?;
    array_from(dim, values)
}

/// [`step`](super::step) with diffusers' `generator=g`: when η > 0 the noise z of
/// x_{t_prev} = √ᾱ_prev·x̂₀ + √(1 − ᾱ_prev − σ_t²)·ε̂ + σ_t·z is one
/// `torch.randn(sample.shape, generator=g)` in the sample's element type, in logical order
/// (the array form of [`DdimScheduler::step_with_generator`], bit for bit); with η = 0
/// nothing is drawn.
///
/// ```
/// use ddim::backend::{ndarray::step_with_generator, TensorStepOptions};
/// use ddim::rng::TorchCpuGenerator;
/// let mut scheduler = ddim::DdimScheduler::new(ddim::DdimConfig::default())?;
/// scheduler.set_timesteps(10)?;
/// let mut g = TorchCpuGenerator::new(0);
/// let mut x: ndarray::Array2<f32> = ddim::backend::ndarray::randn_latents((2, 4), &mut g)?;
/// let options = TensorStepOptions { eta: 1.0, ..Default::default() };
/// for &t in scheduler.timesteps() {
///     let eps = x.mapv(|v| 0.1 * v); // the model's prediction
///     x = step_with_generator(&scheduler, eps.view(), t, x.view(), &options, &mut g)?.prev_sample;
/// }
/// assert!(x.iter().all(|v| v.is_finite()));
/// # Ok::<(), ddim::Error>(())
/// ```
///
/// # Errors
///
/// As [`step`](super::step), and [`Error::NoiseAndGenerator`] when η > 0 and
/// `options.variance_noise` is also given. Every check runs before the draw: a failing call
/// draws nothing.
pub fn step_with_generator<T: RandnElement, D: Dimension, G: NoiseGenerator + ?Sized>(
    scheduler: &DdimScheduler,
    model_output: ArrayView<'_, T, D>,
    timestep: usize,
    sample: ArrayView<'_, T, D>,
    options: &TensorStepOptions<ArrayView<'_, T, D>>,
    generator: &mut G,
) -> Result<TensorStepOutput<Array<T, D>>> {
    if options.eta > 0.0 && options.variance_noise.is_some() {
        return Err(Error::NoiseAndGenerator);
    }
    let shape = sample.shape();
    check_step_inputs(shape, &model_output, options)?;
    let (m, x) = (logical(&model_output), logical(&sample));
    let z = options.variance_noise.as_ref().map(logical);
    let slice = slice_options(options, z.as_deref(), batch_of(shape));
    let out = scheduler.step_with_generator(&m, timestep, &x, &slice, generator)?;
    outputs(sample.raw_dim(), out)
}
