//! [`DdimScheduler::step_in_place`]: the step that overwrites its inputs instead of allocating.

use crate::coefficients::StepCoefficients;
use crate::element::{Compute, Element};
use crate::error::Result;
use crate::kernel;
use crate::scheduler::{DdimScheduler, NoiseSource, StepOptions};
use crate::threshold;

impl DdimScheduler {
    /// One DDIM step in place: `sample` becomes x_{t_prev} and `model_output` becomes x̂₀
    /// (after clipping or thresholding), bit for bit what [`step`](Self::step) returns.
    ///
    /// This is the loop to write: it allocates nothing below
    /// [`PARALLEL_MIN_LEN`](crate::PARALLEL_MIN_LEN) elements (above it, rayon's tasks) and
    /// reads and writes each buffer once (dynamic thresholding reads them once more to find
    /// its quantile, with no scratch buffer). [`step`](Self::step) instead returns two new
    /// vectors per call, whose fresh pages can cost more than the step itself.
    ///
    /// ```
    /// use ddim::{DdimConfig, DdimScheduler, StepOptions};
    /// let mut scheduler = DdimScheduler::new(DdimConfig::default())?;
    /// scheduler.set_timesteps(10)?;
    /// let mut latents = vec![0.5f32; 8];
    /// for &t in scheduler.timesteps() {
    ///     let mut eps = vec![0.1f32; 8]; // the model's prediction
    ///     scheduler.step_in_place(&mut eps, t, &mut latents, &StepOptions::default())?;
    ///     // `latents` is x_{t_prev}; `eps` now holds x̂₀ (for a preview)
    /// }
    /// assert!(latents.iter().all(|v| v.is_finite()));
    /// # Ok::<(), ddim::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`step`](Self::step). On error neither buffer is changed.
    pub fn step_in_place<T: Element>(
        &self,
        model_output: &mut [T],
        timestep: usize,
        sample: &mut [T],
        options: &StepOptions<'_, T>,
    ) -> Result<()> {
        let c = self.check_step(
            model_output,
            timestep,
            sample,
            options,
            NoiseSource::Options,
        )?;
        self.update_in_place(&c, model_output, sample, options);
        Ok(())
    }

    /// The fused in-place pass of a step with checked coefficients and buffers (both as long
    /// as `sample`, the batch size dividing it; the noise, when used, as long too).
    pub(crate) fn update_in_place<T: Element>(
        &self,
        c: &StepCoefficients,
        model_output: &mut [T],
        sample: &mut [T],
        options: &StepOptions<'_, T>,
    ) {
        if sample.is_empty() {
            return;
        }
        let config = self.config();
        let rule = self.update_rule(c, options);
        let noise = options.variance_noise.filter(|_| options.eta > 0.0);
        if !config.thresholding {
            kernel::ddim_update_in_place(rule, model_output, sample, noise);
            return;
        }
        let per_item = (sample.len() / options.batch()).max(1);
        let k = kernel::scalars(c, <T::Compute as Compute>::ONE);
        let item = |m: &mut [T], x: &mut [T], z: Option<&[T]>| {
            let q = threshold::abs_x0_quantile(
                config.prediction_type,
                &k,
                m,
                x,
                config.dynamic_thresholding_ratio,
            );
            let s = threshold::dynamic_threshold(q, config.sample_max_value);
            kernel::ddim_update_thresholded_in_place(rule, s, m, x, z);
        };
        #[cfg(feature = "rayon")]
        if sample.len() >= kernel::PARALLEL_MIN_LEN && options.batch() > 1 {
            use rayon::iter::Either;
            use rayon::prelude::*;
            let noise_items = match noise {
                Some(z) => Either::Left(z.par_chunks_exact(per_item).map(Some)),
                None => Either::Right(rayon::iter::repeat_n(None, options.batch())),
            };
            model_output
                .par_chunks_exact_mut(per_item)
                .zip(sample.par_chunks_exact_mut(per_item))
                .zip(noise_items)
                .for_each(|((m, x), z)| item(m, x, z));
            return;
        }
        let items = model_output
            .chunks_exact_mut(per_item)
            .zip(sample.chunks_exact_mut(per_item));
        match noise {
            Some(z) => {
                for ((m, x), z) in items.zip(z.chunks_exact(per_item)) {
                    item(m, x, Some(z));
                }
            }
            None => {
                for (m, x) in items {
                    item(m, x, None);
                }
            }
        }
    }
}
