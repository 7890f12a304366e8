//! Torch-compatible random numbers: the same seed gives the same noise as a Python pipeline.
//!
//! diffusers draws its initial latents with `randn_tensor(shape, generator)` and, when η > 0,
//! one more `randn` of the sample's shape in every `step`. This module reproduces both
//! generators torch offers:
//!
//! | type | reproduces | how close |
//! |---|---|---|
//! | [`TorchCpuGenerator`] | `torch.Generator('cpu')`: MT19937, `randn` (f32, f64, f16, bf16) and `rand` | bit for bit (x86-64 wheels; [`CpuKernel::Scalar`] for non-AVX2 builds) |
//! | [`TorchCudaGenerator`] | `torch.Generator('cuda')`: Philox4x32-10 with torch's launch geometry ([`GpuProperties`]) | same structure; values within ~1e-6, since the GPU's `__sincosf` is a hardware approximation |
//!
//! Both implement [`NoiseGenerator`]; one call of [`NoiseGenerator::fill_randn`] is one
//! `torch.randn(n, generator=g)` of `n = out.len()` values (which path torch takes depends on
//! `n`). On top of them:
//!
//! * [`randn_latents`] / [`randn_latents_per_item`]: diffusers' `randn_tensor`, with one
//!   generator or one per batch item;
//! * [`DdimScheduler::step_with_generator`](crate::DdimScheduler::step_with_generator) and
//!   [`step_with_generators`](crate::DdimScheduler::step_with_generators): `step(...,
//!   generator=g)` with η > 0.
//!
//! `docs/torch-rng.md` describes the algorithms, the checks and the figures.
//!
//! ```
//! use ddim::rng::{randn_latents, TorchCpuGenerator};
//! use ddim::{DdimConfig, DdimScheduler, StepOptions};
//!
//! let mut scheduler = DdimScheduler::new(DdimConfig::default())?;
//! scheduler.set_timesteps(10)?;
//! // generator = torch.Generator().manual_seed(42)
//! let mut generator = TorchCpuGenerator::new(42);
//! let mut latents: Vec<f32> = randn_latents(&[1, 4, 8, 8], &mut generator)?;
//! let options = StepOptions { eta: 1.0, ..Default::default() };
//! for &t in scheduler.timesteps() {
//!     let eps = vec![0.0f32; latents.len()]; // your model here
//!     latents = scheduler
//!         .step_with_generator(&eps, t, &latents, &options, &mut generator)?
//!         .prev_sample;
//! }
//! # Ok::<(), ddim::Error>(())
//! ```

use half::{bf16, f16};

use crate::Element;

mod cpu;
mod cuda;
pub(crate) mod dispatch;
mod latents;
mod mathfun;
mod mt19937;
mod philox;
mod step;

pub use cpu::{CpuDispatch, CpuKernel, TorchCpuGenerator};
pub use cuda::{GpuProperties, TorchCudaGenerator};
pub use latents::{randn_latents, randn_latents_per_item};
pub use philox::philox4x32_10;

/// A source of standard normal noise with torch's semantics: each `fill_randn_*` call is one
/// `torch.randn(out.len(), generator=self, dtype=…)` on a contiguous tensor.
///
/// ```
/// use ddim::rng::{NoiseGenerator, TorchCpuGenerator};
/// fn noise(g: &mut dyn NoiseGenerator, n: usize) -> Vec<f32> {
///     let mut v = vec![0.0; n];
///     g.fill_randn_f32(&mut v);
///     v
/// }
/// let v = noise(&mut TorchCpuGenerator::new(0), 20);
/// assert_eq!(v[0], -1.1258398);
/// # Ok::<(), ddim::Error>(())
/// ```
pub trait NoiseGenerator {
    /// `torch.randn(n, dtype=torch.float32)`.
    fn fill_randn_f32(&mut self, out: &mut [f32]);
    /// `torch.randn(n, dtype=torch.float64)`.
    fn fill_randn_f64(&mut self, out: &mut [f64]);
    /// `torch.randn(n, dtype=torch.float16)`.
    fn fill_randn_f16(&mut self, out: &mut [f16]);
    /// `torch.randn(n, dtype=torch.bfloat16)`.
    fn fill_randn_bf16(&mut self, out: &mut [bf16]);

    /// `torch.randn(n, dtype=T)` for any of the four element types.
    ///
    /// ```
    /// use ddim::rng::{NoiseGenerator, TorchCpuGenerator};
    /// let mut x = [0f64; 4];
    /// TorchCpuGenerator::new(0).fill_randn(&mut x);
    /// assert_eq!(x[0], 1.5409961082440433);
    /// # Ok::<(), ddim::Error>(())
    /// ```
    fn fill_randn<T: RandnElement>(&mut self, out: &mut [T])
    where
        Self: Sized,
    {
        T::fill_randn(self, out);
    }
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for f32 {}
    impl Sealed for f64 {}
    impl Sealed for half::f16 {}
    impl Sealed for half::bf16 {}
}

/// An [`Element`] torch can draw random numbers in: `f32`, `f64`, `f16`, `bf16`.
pub trait RandnElement: Element + sealed::Sealed {
    /// `torch.randn(out.len(), generator, dtype=Self)`.
    fn fill_randn<G: NoiseGenerator + ?Sized>(generator: &mut G, out: &mut [Self]);
    /// `torch.rand(out.len(), generator, dtype=Self)` on a CPU generator.
    fn fill_rand_torch_cpu(generator: &mut TorchCpuGenerator, out: &mut [Self]);
}

macro_rules! randn_element {
    ($t:ty, $randn:ident, $rand:ident) => {
        impl RandnElement for $t {
            #[inline]
            fn fill_randn<G: NoiseGenerator + ?Sized>(generator: &mut G, out: &mut [Self]) {
                generator.$randn(out);
            }
            #[inline]
            fn fill_rand_torch_cpu(generator: &mut TorchCpuGenerator, out: &mut [Self]) {
                generator.$rand(out);
            }
        }
    };
}
randn_element!(f32, fill_randn_f32, rand_f32);
randn_element!(f64, fill_randn_f64, rand_f64);
randn_element!(f16, fill_randn_f16, rand_f16);
randn_element!(bf16, fill_randn_bf16, rand_bf16);

impl<G: NoiseGenerator + ?Sized> NoiseGenerator for &mut G {
    fn fill_randn_f32(&mut self, out: &mut [f32]) {
        (**self).fill_randn_f32(out);
    }
    fn fill_randn_f64(&mut self, out: &mut [f64]) {
        (**self).fill_randn_f64(out);
    }
    fn fill_randn_f16(&mut self, out: &mut [f16]) {
        (**self).fill_randn_f16(out);
    }
    fn fill_randn_bf16(&mut self, out: &mut [bf16]) {
        (**self).fill_randn_bf16(out);
    }
}
