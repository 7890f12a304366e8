//! `step(..., generator=g)`: the DDIM step drawing its noise from torch-compatible generators.

use super::latents::fill_per_item;
use super::{NoiseGenerator, RandnElement};
use crate::element::Compute;
use crate::error::{Error, Result};
use crate::scheduler::check_batch;
use crate::{DdimScheduler, StepOptions, StepOutput};

impl DdimScheduler {
    /// [`step`](Self::step) with diffusers' `generator=g`: when η > 0 the noise z of σ_t·z is
    /// one `torch.randn(sample.shape, generator=g)` over the whole sample (what diffusers'
    /// `randn_tensor` does with one generator); with η = 0 nothing is drawn.
    ///
    /// ```
    /// use ddim::rng::TorchCpuGenerator;
    /// use ddim::{DdimConfig, DdimScheduler, StepOptions};
    /// let mut scheduler = DdimScheduler::new(DdimConfig::default())?;
    /// scheduler.set_timesteps(10)?;
    /// let mut g = TorchCpuGenerator::new(0);
    /// let options = StepOptions { eta: 1.0, ..Default::default() };
    /// let out = scheduler.step_with_generator(&[0.1f32; 32], 900, &[0.5; 32], &options, &mut g)?;
    /// assert_eq!(out.prev_sample.len(), 32);
    /// # Ok::<(), ddim::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`step`](Self::step), and [`Error::NoiseAndGenerator`] when η > 0 and
    /// `options.variance_noise` is also given. Nothing is drawn when the call fails.
    pub fn step_with_generator<T: RandnElement, G: NoiseGenerator + ?Sized>(
        &self,
        model_output: &[T],
        timestep: usize,
        sample: &[T],
        options: &StepOptions<'_, T>,
        generator: &mut G,
    ) -> Result<StepOutput<T>> {
        if options.eta > 0.0 {
            self.check_before_drawing(model_output, timestep, sample, options)?;
            let mut noise = vec![T::from_compute(<T::Compute as Compute>::ZERO); sample.len()];
            T::fill_randn(generator, &mut noise);
            return self.step_with_noise(model_output, timestep, sample, options, &noise);
        }
        self.step(model_output, timestep, sample, options)
    }

    /// [`step`](Self::step) with diffusers' `generator=[g₀, g₁, …]`: when η > 0, item b of the
    /// batch (`options.batch_size` items) gets its noise from its own
    /// `torch.randn((1, *shape[1:]), generator=g_b)`. A list of one generator is used as
    /// [`step_with_generator`](Self::step_with_generator) uses it.
    ///
    /// ```
    /// use ddim::rng::TorchCpuGenerator;
    /// use ddim::{DdimConfig, DdimScheduler, StepOptions};
    /// let mut scheduler = DdimScheduler::new(DdimConfig::default())?;
    /// scheduler.set_timesteps(10)?;
    /// let mut gens = [TorchCpuGenerator::new(1), TorchCpuGenerator::new(2)];
    /// let options = StepOptions { eta: 1.0, batch_size: Some(2), ..Default::default() };
    /// let out = scheduler.step_with_generators(&[0.1f32; 8], 900, &[0.5; 8], &options, &mut gens)?;
    /// assert_eq!(out.prev_sample.len(), 8);
    /// # Ok::<(), ddim::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`step_with_generator`](Self::step_with_generator), and
    /// [`Error::GeneratorCountMismatch`] unless there is one generator or one per batch item.
    pub fn step_with_generators<T: RandnElement, G: NoiseGenerator>(
        &self,
        model_output: &[T],
        timestep: usize,
        sample: &[T],
        options: &StepOptions<'_, T>,
        generators: &mut [G],
    ) -> Result<StepOutput<T>> {
        if options.eta > 0.0 {
            self.check_before_drawing(model_output, timestep, sample, options)?;
            check_generator_count(generators.len(), options.batch_size)?;
            let mut noise = vec![T::from_compute(<T::Compute as Compute>::ZERO); sample.len()];
            fill_per_item(&mut noise, options.batch(), generators)?;
            return self.step_with_noise(model_output, timestep, sample, options, &noise);
        }
        self.step(model_output, timestep, sample, options)
    }

    /// [`step_with_generator`](Self::step_with_generator) in place, as
    /// [`step_in_place`](Self::step_in_place): `sample` becomes x_{t_prev}, `model_output`
    /// becomes x̂₀, and when η > 0 the noise is drawn into the caller's `noise` buffer (as long
    /// as `sample`; left untouched when η = 0). Bit for bit what `step_with_generator` returns,
    /// with the same draws; allocates nothing below [`PARALLEL_MIN_LEN`](crate::PARALLEL_MIN_LEN).
    ///
    /// ```
    /// use ddim::rng::TorchCpuGenerator;
    /// use ddim::{DdimConfig, DdimScheduler, StepOptions};
    /// let mut scheduler = DdimScheduler::new(DdimConfig::default())?;
    /// scheduler.set_timesteps(10)?;
    /// let mut g = TorchCpuGenerator::new(0);
    /// let (mut latents, mut noise) = (vec![0.5f32; 32], vec![0.0f32; 32]);
    /// let options = StepOptions { eta: 1.0, ..Default::default() };
    /// for &t in scheduler.timesteps() {
    ///     let mut eps = vec![0.1f32; 32]; // the model's prediction
    ///     scheduler.step_in_place_with_generator(&mut eps, t, &mut latents, &options, &mut g, &mut noise)?;
    /// }
    /// # Ok::<(), ddim::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`step_with_generator`](Self::step_with_generator), and [`Error::LengthMismatch`]
    /// for a `noise` buffer of the wrong length (η > 0). On error nothing is drawn or changed.
    pub fn step_in_place_with_generator<T: RandnElement, G: NoiseGenerator + ?Sized>(
        &self,
        model_output: &mut [T],
        timestep: usize,
        sample: &mut [T],
        options: &StepOptions<'_, T>,
        generator: &mut G,
        noise: &mut [T],
    ) -> Result<()> {
        if options.eta > 0.0 {
            self.check_before_drawing(model_output, timestep, sample, options)?;
            check_noise_buffer(noise, sample.len())?;
            T::fill_randn(generator, noise);
            let options = StepOptions {
                variance_noise: Some(noise),
                ..*options
            };
            return self.step_in_place(model_output, timestep, sample, &options);
        }
        self.step_in_place(model_output, timestep, sample, options)
    }

    /// [`step_with_generators`](Self::step_with_generators) in place (one generator, or one
    /// per batch item), the noise drawn into the caller's `noise` buffer; see
    /// [`step_in_place_with_generator`](Self::step_in_place_with_generator).
    ///
    /// # Errors
    ///
    /// As [`step_with_generators`](Self::step_with_generators), and
    /// [`Error::LengthMismatch`] for a `noise` buffer of the wrong length (η > 0). On error
    /// nothing is drawn or changed.
    pub fn step_in_place_with_generators<T: RandnElement, G: NoiseGenerator>(
        &self,
        model_output: &mut [T],
        timestep: usize,
        sample: &mut [T],
        options: &StepOptions<'_, T>,
        generators: &mut [G],
        noise: &mut [T],
    ) -> Result<()> {
        if options.eta > 0.0 {
            self.check_before_drawing(model_output, timestep, sample, options)?;
            check_generator_count(generators.len(), options.batch_size)?;
            check_noise_buffer(noise, sample.len())?;
            fill_per_item(noise, options.batch(), generators)?;
            let options = StepOptions {
                variance_noise: Some(noise),
                ..*options
            };
            return self.step_in_place(model_output, timestep, sample, &options);
        }
        self.step_in_place(model_output, timestep, sample, options)
    }

    /// The checks of `step` that do not need the noise, so that a failing call draws nothing.
    fn check_before_drawing<T>(
        &self,
        model_output: &[T],
        timestep: usize,
        sample: &[T],
        options: &StepOptions<'_, T>,
    ) -> Result<()> {
        if options.variance_noise.is_some() {
            return Err(Error::NoiseAndGenerator);
        }
        self.step_coefficients(timestep, options.eta)?;
        if model_output.len() != sample.len() {
            return Err(Error::LengthMismatch {
                name: "model_output",
                expected: sample.len(),
                got: model_output.len(),
            });
        }
        check_batch(options.batch_size, sample.len(), self.config().thresholding)
    }

    fn step_with_noise<T: RandnElement>(
        &self,
        model_output: &[T],
        timestep: usize,
        sample: &[T],
        options: &StepOptions<'_, T>,
        noise: &[T],
    ) -> Result<StepOutput<T>> {
        let options = StepOptions {
            variance_noise: Some(noise),
            ..*options
        };
        self.step(model_output, timestep, sample, &options)
    }
}

fn check_noise_buffer<T>(noise: &[T], len: usize) -> Result<()> {
    if noise.len() == len {
        Ok(())
    } else {
        Err(Error::LengthMismatch {
            name: "noise",
            expected: len,
            got: noise.len(),
        })
    }
}

/// One generator for the whole batch, or one per sample of a given batch size.
fn check_generator_count(generators: usize, batch_size: Option<usize>) -> Result<()> {
    match batch_size {
        _ if generators == 1 => Ok(()),
        None if generators > 1 => Err(Error::BatchSizeRequired {
            needs_it: "there is more than one generator (one per sample)",
        }),
        Some(batch_size) if generators == batch_size => Ok(()),
        batch_size => Err(Error::GeneratorCountMismatch {
            generators,
            batch_size: batch_size.unwrap_or(1),
        }),
    }
}
