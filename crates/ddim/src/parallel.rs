//! [`DdimScheduler::batch_step_no_noise`]: one deterministic step for a batch whose items each
//! have their own timestep (diffusers' `DDIMParallelScheduler.batch_step_no_noise`, used by
//! ParaDiGMS-style parallel sampling).

use crate::element::{Compute, Element};
use crate::error::{Error, Result};
use crate::policy::BatchFinalAlpha;
use crate::scheduler::{DdimScheduler, StepOptions};

impl DdimScheduler {
    /// One η = 0 step per batch item, item `b` from `timesteps[b]`: writes x_{t_prev} of every
    /// item into `prev_sample`. Buffers are batch-major; `timesteps.len()` is the batch size.
    ///
    /// Each item gets the update of [`step`](Self::step) with η = 0,
    /// x_{t_prev} = √ᾱ_prev·x̂₀ + √(1 − ᾱ_prev)·ε̂, with t_prev from the scheduler's
    /// [`PrevTimestepRule`](crate::PrevTimestepRule) and its own clipping or thresholding.
    /// Past the end of the schedule ᾱ_prev is 1 under [`BatchFinalAlpha::Diffusers`] (the
    /// default: `DDIMParallelScheduler` ignores `set_alpha_to_one` here, unlike its own `step`)
    /// and [`final_alpha_cumprod`](Self::final_alpha_cumprod) under
    /// [`BatchFinalAlpha::Config`].
    ///
    /// ```
    /// let mut scheduler = ddim::DdimScheduler::new(ddim::DdimConfig::default())?;
    /// scheduler.set_timesteps(10)?;
    /// let (x, eps) = ([0.5f32, -0.5, 0.2, 0.1], [0.1f32, 0.2, -0.3, 0.0]);
    /// let mut out = [0.0f32; 4];
    /// scheduler.batch_step_no_noise(&eps, &[900, 0], &x, false, &mut out)?;
    /// // The first item is exactly what `step` gives.
    /// let one = scheduler.step(&eps[..2], 900, &x[..2], &ddim::StepOptions::default())?;
    /// assert_eq!(out[..2], one.prev_sample[..]);
    /// # Ok::<(), ddim::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::TimestepsNotSet`], [`Error::TimestepOutOfRange`] (and, with
    /// `NextInSchedule`, [`Error::TimestepNotScheduled`]) for any item,
    /// [`Error::BatchSizeMismatch`] when `timesteps` is empty or its length does not divide
    /// the sample, [`Error::LengthMismatch`] for the other buffers. On error `prev_sample` is
    /// untouched.
    pub fn batch_step_no_noise<T: Element>(
        &self,
        model_output: &[T],
        timesteps: &[usize],
        sample: &[T],
        use_clipped_model_output: bool,
        prev_sample: &mut [T],
    ) -> Result<()> {
        let len = sample.len();
        for (name, got) in [
            ("model_output", model_output.len()),
            ("prev_sample", prev_sample.len()),
        ] {
            if got != len {
                return Err(Error::LengthMismatch {
                    name,
                    expected: len,
                    got,
                });
            }
        }
        if timesteps.is_empty() || len % timesteps.len() != 0 {
            return Err(Error::BatchSizeMismatch {
                batch_size: timesteps.len(),
                len,
            });
        }
        let final_alpha = match self.batch_final_alpha() {
            BatchFinalAlpha::Diffusers => 1.0,
            BatchFinalAlpha::Config => self.final_alpha_cumprod(),
        };
        // Every item's coefficients before any output is written.
        let coefficients = timesteps
            .iter()
            .map(|&t| {
                let prev = self.prev_timestep(t)?;
                self.coefficients_to(t, prev, final_alpha, 0.0)
            })
            .collect::<Result<Vec<_>>>()?;
        if len == 0 {
            return Ok(());
        }
        let per_item = len / timesteps.len();
        let options = StepOptions {
            use_clipped_model_output,
            ..Default::default()
        };
        // diffusers returns only x_{t_prev}; x̂₀ of one item at a time goes to scratch.
        let mut x0 = vec![T::from_compute(<T::Compute as Compute>::ZERO); per_item];
        for (((c, m), x), p) in coefficients
            .iter()
            .zip(model_output.chunks_exact(per_item))
            .zip(sample.chunks_exact(per_item))
            .zip(prev_sample.chunks_exact_mut(per_item))
        {
            self.update_into(c, m, x, &options, p, &mut x0);
        }
        Ok(())
    }
}
