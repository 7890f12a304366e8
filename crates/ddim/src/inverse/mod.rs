//! DDIM inversion: [`DdimInverseScheduler`] runs the deterministic (η = 0) DDIM map backwards,
//! from a clean sample x₀ towards its latent x_T (Song et al. 2020, §4.3 and §5.4).
//!
//! One inverse step goes from the *source* level ᾱ_s (the sample's) up to the *target*
//! level ᾱ_t (the loop's timestep `t`):
//!
//! x̂₀ and ε̂ from the model output at ᾱ_s (see [`PredictionType`](crate::PredictionType)),
//! x̂₀ clamped when `clip_sample`,
//! x_t = √ᾱ_t·x̂₀ + √(1 − ᾱ_t)·ε̂.
//!
//! It is the forward step x_s = √ᾱ_s·x̂₀ + √(1 − ᾱ_s)·ε̂ solved for x_t with ε̂ taken at the
//! known end (x_s, ᾱ_s) instead of the unknown one: exact as the steps shrink, with an error
//! that falls with the number of steps (the DDIM paper's Table 2).
//!
//! Two ways to choose the levels:
//!
//! * [`DdimInverseScheduler::new`]: diffusers 0.42.1's `DDIMInverseScheduler`, numbers and
//!   quirks (listed on the type);
//! * [`DdimInverseScheduler::matching`]: the exact mirror of a forward [`DdimScheduler`]: its
//!   timesteps reversed, each step from the forward step's landing level back to its starting
//!   level, whatever its spacing and [`PrevTimestepRule`](crate::PrevTimestepRule). Sampling
//!   with η = 0 then retraces the inversion's levels one for one.

mod config;

use crate::coefficients::StepCoefficients;
use crate::config::TimestepSpacing;
use crate::element::{Compute, Element};
use crate::error::{Error, Result};
use crate::kernel::{self, UpdateRule, X0Bound};
use crate::scheduler::{DdimScheduler, StepOutput};
use crate::timesteps::{diffusers_timesteps, inference_timesteps};

pub use config::{DdimInverseConfig, InverseConfigWarning, LoadedInverseConfig};

/// The levels of one inverse step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct InverseStep {
    /// The loop's timestep t: the level the step lands on.
    pub timestep: usize,
    /// The timestep the sample is at before the step; `None` for the clean end, whose ᾱ is
    /// [`DdimInverseScheduler::initial_alpha_cumprod`].
    pub source_timestep: Option<usize>,
    /// ᾱ_s: the level of the sample entering the step (where an exact model is evaluated).
    pub alpha_prod_source: f32,
    /// ᾱ_t: the level of the sample leaving the step.
    pub alpha_prod_target: f32,
}

/// Where the step levels come from.
#[derive(Debug, Clone)]
enum Levels {
    /// diffusers' rule: source = t − ⌊T/n⌋.
    Diffusers,
    /// The mirror of this forward scheduler (its timesteps kept in step with ours).
    Matching(Box<DdimScheduler>),
}

/// The inverse of η = 0 DDIM sampling, with the behaviour of diffusers'
/// `DDIMInverseScheduler` (0.42.1, torch CPU, float32), or the exact mirror of a forward
/// scheduler ([`matching`](Self::matching)).
///
/// Each step (see the [module docs](self)): x_t = √ᾱ_t·x̂₀ + √(1 − ᾱ_t)·ε̂, with x̂₀ and ε̂
/// recovered at the source level ᾱ_s.
///
/// ```
/// use ddim::{DdimInverseConfig, DdimInverseScheduler};
/// let mut inverse = DdimInverseScheduler::new(DdimInverseConfig::default())?;
/// inverse.set_timesteps(10)?;
/// assert_eq!(inverse.timesteps()[..3], [0, 100, 200]);
/// let mut x = vec![0.5f32; 4]; // x₀
/// for &t in inverse.timesteps() {
///     let mut eps = vec![0.1f32; 4]; // the model's prediction
///     inverse.step_in_place(&mut eps, t, &mut x)?; // x is now x_t
/// }
/// # Ok::<(), ddim::Error>(())
/// ```
///
/// # diffusers' quirks, reproduced
///
/// * **Levels.** A step at loop timestep t starts from source s = t − ⌊T/n⌋ and lands on t;
///   for s < 0 the source ᾱ is `initial_alpha_cumprod` (1 with `set_alpha_to_one`, else ᾱ₀;
///   the class docstring's "fixed to 0 … step T − 1" is wrong). The `min(s, T − 1)` diffusers
///   applies never binds. diffusers' pipelines feed the network `(x, t)`, the sample's source
///   latent with the *target* label; an exact model is evaluated at ᾱ_s
///   ([`step_levels`](Self::step_levels)).
/// * **Where it ends.** Leading spacing starts at 0 and ends at (n − 1)·⌊T/n⌋ + offset (900 for
///   n = 10), not at T − 1; trailing ends at T − 1.
/// * **Any timestep is accepted** by `step`, scheduled or not (only the stride is used).
/// * **`sample` prediction with `set_alpha_to_one`**: the first step divides by √(1 − 1) = 0
///   and gives ±∞ or NaN, as in diffusers.
/// * **`set_alpha_to_zero`** (deprecated) decides the initial ᾱ while the config still says
///   `set_alpha_to_one` (see [`DdimInverseConfig`]).
///
/// # Where this crate differs on purpose
///
/// * **`linspace`** is refused, as in diffusers, but by an [`Error::InvalidConfig`] naming the
///   key instead of a `ValueError` (and [`matching`](Self::matching) serves it).
/// * **trailing's extra `-1`**: for some n (61 for T = 1000) diffusers' float `arange`
///   overshoots and its inverse schedule *starts* with −1, whose step targets ᾱ[−1] = ᾱ_{T−1}
///   (pure noise) and ruins the inversion. Here the schedule is diffusers' last n timesteps
///   (the mirror of [`DdimScheduler`]'s); [`diffusers_inverse_timesteps`] keeps the raw list.
/// * **`n = 0`** is [`Error::InvalidStepCount`] (diffusers divides by zero), and `leading` with
///   `steps_offset` reaching T is refused by `set_timesteps` (diffusers indexes out of range
///   in `step`).
/// * **`step` before `set_timesteps`** is [`Error::TimestepsNotSet`] (diffusers: `TypeError`).
#[derive(Debug, Clone)]
pub struct DdimInverseScheduler {
    config: DdimInverseConfig,
    betas: Vec<f32>,
    alphas_cumprod: Vec<f32>,
    initial_alpha_cumprod: f32,
    num_inference_steps: Option<usize>,
    timesteps: Vec<usize>,
    levels: Levels,
}

/// diffusers' `DDIMInverseScheduler.set_timesteps` output, bugs included: ascending, and for
/// trailing possibly starting with `-1` (n + 1 values).
///
/// ```
/// use ddim::{inverse::diffusers_inverse_timesteps, TimestepSpacing};
/// let t = diffusers_inverse_timesteps(1000, TimestepSpacing::Trailing, 0, 61)?;
/// assert_eq!(t[..3], [-1, 15, 32]);
/// # Ok::<(), ddim::Error>(())
/// ```
///
/// # Errors
///
/// [`Error::InvalidConfig`] for `linspace`, which diffusers' inverse does not support; the
/// errors of [`diffusers_timesteps`] (`n > T`, a `T` or `leading` offset beyond `i64`).
pub fn diffusers_inverse_timesteps(
    num_train_timesteps: usize,
    spacing: TimestepSpacing,
    steps_offset: usize,
    n: usize,
) -> Result<Vec<i64>> {
    refuse_linspace(spacing)?;
    let mut t = diffusers_timesteps(num_train_timesteps, spacing, steps_offset, n)?;
    t.reverse();
    Ok(t)
}

fn refuse_linspace(spacing: TimestepSpacing) -> Result<()> {
    if spacing == TimestepSpacing::Linspace {
        return Err(Error::InvalidConfig {
            key: "timestep_spacing",
            reason: "linspace is not supported by the DDIM inverse (diffusers' \
                     DDIMInverseScheduler supports leading and trailing only); use leading or \
                     trailing, or DdimInverseScheduler::matching to invert a linspace schedule"
                .into(),
        });
    }
    Ok(())
}

impl DdimInverseScheduler {
    /// The solver order, 1.
    pub const ORDER: usize = 1;

    /// Builds diffusers' `DDIMInverseScheduler`: β, ᾱ and the initial ᾱ (1 if
    /// [`initial_alpha_is_one`](DdimInverseConfig::initial_alpha_is_one), else ᾱ₀). Before
    /// `set_timesteps`, [`timesteps`](Self::timesteps) is `0, …, T−1`, as in diffusers.
    ///
    /// # Errors
    ///
    /// The errors of [`DdimScheduler::new`] for the same schedule keys.
    pub fn new(config: DdimInverseConfig) -> Result<Self> {
        let forward = DdimScheduler::new(config.to_ddim_config())?;
        Ok(Self::from_parts(config, &forward, Levels::Diffusers))
    }

    /// The exact mirror of `forward`: the same β, ᾱ, prediction type and clipping; its
    /// timesteps reversed (set now if `forward`'s are set, else by
    /// [`set_timesteps`](Self::set_timesteps)); each step from the level `forward`'s step
    /// from t lands on (its [`prev_timestep`](DdimScheduler::prev_timestep), or the final ᾱ)
    /// back up to t. Any spacing and [`PrevTimestepRule`](crate::PrevTimestepRule) is served.
    ///
    /// ```
    /// let mut forward = ddim::DdimScheduler::new(ddim::DdimConfig {
    ///     timestep_spacing: ddim::TimestepSpacing::Linspace, ..Default::default()
    /// })?;
    /// forward.set_timesteps(7)?;
    /// let inverse = ddim::DdimInverseScheduler::matching(&forward)?;
    /// assert_eq!(inverse.timesteps(), [0, 166, 333, 500, 666, 832, 999]);
    /// // diffusers' forward stride rule steps from 166 to 166 − ⌊1000/7⌋ = 24, not to 0:
    /// assert_eq!(inverse.step_levels(166)?.source_timestep, Some(24));
    /// # Ok::<(), ddim::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] for a forward config with `thresholding` (a thresholded step
    /// has no inverse; diffusers' inverse has no thresholding either).
    pub fn matching(forward: &DdimScheduler) -> Result<Self> {
        if forward.config().thresholding {
            return Err(Error::InvalidConfig {
                key: "thresholding",
                reason: "must be false to invert a forward scheduler: dynamic thresholding \
                         rescales x̂₀ per sample and has no inverse (DDIMInverseScheduler has \
                         none either)"
                    .into(),
            });
        }
        let config = DdimInverseConfig::from_shared_keys(forward.config());
        let mut inverse =
            Self::from_parts(config, forward, Levels::Matching(Box::new(forward.clone())));
        if let Some(n) = forward.num_inference_steps() {
            inverse.num_inference_steps = Some(n);
            inverse.timesteps = forward.timesteps().iter().rev().copied().collect();
        }
        Ok(inverse)
    }

    fn from_parts(config: DdimInverseConfig, forward: &DdimScheduler, levels: Levels) -> Self {
        Self {
            initial_alpha_cumprod: forward.final_alpha_cumprod(),
            betas: forward.betas().to_vec(),
            alphas_cumprod: forward.alphas_cumprod().to_vec(),
            num_inference_steps: None,
            timesteps: (0..config.num_train_timesteps).collect(),
            config,
            levels,
        }
    }

    /// Whether this is the mirror of a forward scheduler ([`matching`](Self::matching)).
    pub fn is_matching(&self) -> bool {
        matches!(self.levels, Levels::Matching(_))
    }

    /// The config (for [`matching`](Self::matching), the forward config's 12 shared keys).
    pub fn config(&self) -> &DdimInverseConfig {
        &self.config
    }

    /// β_t for t in `0..T`.
    pub fn betas(&self) -> &[f32] {
        &self.betas
    }

    /// ᾱ_t for t in `0..T`.
    pub fn alphas_cumprod(&self) -> &[f32] {
        &self.alphas_cumprod
    }

    /// The ᾱ of the clean end, before the first step: 1 or ᾱ₀.
    pub fn initial_alpha_cumprod(&self) -> f32 {
        self.initial_alpha_cumprod
    }

    /// The standard deviation of the initial noise: 1, as in diffusers.
    pub fn init_noise_sigma(&self) -> f32 {
        1.0
    }

    /// The solver order, 1.
    pub fn order(&self) -> usize {
        Self::ORDER
    }

    /// The model input: not scaled, so `sample` itself.
    pub fn scale_model_input<'a, T: Element>(&self, sample: &'a [T], _timestep: usize) -> &'a [T] {
        sample
    }

    /// The number of inference steps, once set.
    pub fn num_inference_steps(&self) -> Option<usize> {
        self.num_inference_steps
    }

    /// The inference timesteps, ascending (the loop's order).
    pub fn timesteps(&self) -> &[usize] {
        &self.timesteps
    }

    /// Sets `n` inference timesteps: diffusers' (leading or trailing, ascending, trailing's
    /// extra −1 left out) or, for [`matching`](Self::matching), the forward scheduler's
    /// reversed.
    ///
    /// ```
    /// let mut inverse = ddim::DdimInverseScheduler::new(ddim::DdimInverseConfig {
    ///     steps_offset: 1, ..Default::default()
    /// })?;
    /// inverse.set_timesteps(5)?;
    /// assert_eq!(inverse.timesteps(), [1, 201, 401, 601, 801]); // diffusers' test_steps_offset
    /// # Ok::<(), ddim::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::InvalidStepCount`] for `n = 0`, `n > T`, or a `leading` schedule pushed to T
    /// by `steps_offset`; [`Error::InvalidConfig`] for `linspace` (not matching).
    pub fn set_timesteps(&mut self, n: usize) -> Result<()> {
        let timesteps = match &mut self.levels {
            Levels::Diffusers => {
                let c = &self.config;
                refuse_linspace(c.timestep_spacing)?;
                inference_timesteps(c.num_train_timesteps, c.timestep_spacing, c.steps_offset, n)?
            }
            Levels::Matching(forward) => {
                forward.set_timesteps(n)?;
                forward.timesteps().to_vec()
            }
        };
        self.timesteps = timesteps.into_iter().rev().collect();
        self.num_inference_steps = Some(n);
        Ok(())
    }

    /// The levels of the step at loop timestep `timestep`: where the sample is (ᾱ_s, and the
    /// timestep an exact model should be evaluated at) and where the step takes it (ᾱ_t).
    ///
    /// ```
    /// let mut inverse = ddim::DdimInverseScheduler::new(ddim::DdimInverseConfig::default())?;
    /// inverse.set_timesteps(10)?;
    /// let first = inverse.step_levels(0)?;
    /// assert_eq!((first.source_timestep, first.alpha_prod_source), (None, 1.0));
    /// assert_eq!(inverse.step_levels(900)?.source_timestep, Some(800));
    /// # Ok::<(), ddim::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::TimestepsNotSet`] before `set_timesteps`; [`Error::TimestepOutOfRange`] for
    /// `timestep ≥ T`; for [`matching`](Self::matching) with
    /// [`PrevTimestepRule::NextInSchedule`](crate::PrevTimestepRule::NextInSchedule),
    /// [`Error::TimestepNotScheduled`].
    pub fn step_levels(&self, timestep: usize) -> Result<InverseStep> {
        let n = self.num_inference_steps.ok_or(Error::TimestepsNotSet)?;
        let t_train = self.config.num_train_timesteps;
        let alpha_prod_target =
            *self
                .alphas_cumprod
                .get(timestep)
                .ok_or(Error::TimestepOutOfRange {
                    timestep: i64::try_from(timestep).unwrap_or(i64::MAX),
                    num_train_timesteps: t_train,
                })?;
        let source_timestep = match &self.levels {
            // diffusers: min(t − T // n, T − 1), negative → the initial ᾱ.
            Levels::Diffusers => timestep
                .checked_sub(t_train / n)
                .map(|s| s.min(t_train - 1)),
            Levels::Matching(forward) => forward.prev_timestep(timestep)?,
        };
        let alpha_prod_source = match source_timestep {
            None => self.initial_alpha_cumprod,
            Some(s) => *self
                .alphas_cumprod
                .get(s)
                .ok_or(Error::TimestepOutOfRange {
                    timestep: i64::try_from(s).unwrap_or(i64::MAX),
                    num_train_timesteps: t_train,
                })?,
        };
        Ok(InverseStep {
            timestep,
            source_timestep,
            alpha_prod_source,
            alpha_prod_target,
        })
    }

    /// One inverse step at loop timestep `timestep`: x_t from the sample at ᾱ_s and the model
    /// output, in new buffers (`prev_sample` holds x_t, `pred_original_sample` the clipped x̂₀).
    /// Two vectors per call: in a loop, [`step_in_place`](Self::step_in_place) gives the same
    /// bits without allocating.
    ///
    /// # Errors
    ///
    /// As [`step_levels`](Self::step_levels), and [`Error::LengthMismatch`] when
    /// `model_output` is not as long as `sample`.
    pub fn step<T: Element>(
        &self,
        model_output: &[T],
        timestep: usize,
        sample: &[T],
    ) -> Result<StepOutput<T>> {
        let zero = T::from_compute(<T::Compute as Compute>::ZERO);
        let mut out = StepOutput {
            prev_sample: vec![zero; sample.len()],
            pred_original_sample: vec![zero; sample.len()],
        };
        self.step_into(
            model_output,
            timestep,
            sample,
            &mut out.prev_sample,
            &mut out.pred_original_sample,
        )?;
        Ok(out)
    }

    /// The allocation-free [`step`](Self::step): x_t into `next_sample`, x̂₀ into
    /// `pred_original_sample` (both as long as `sample`). On error the outputs are untouched.
    ///
    /// # Errors
    ///
    /// As [`step`](Self::step), and [`Error::LengthMismatch`] for outputs of the wrong length.
    pub fn step_into<T: Element>(
        &self,
        model_output: &[T],
        timestep: usize,
        sample: &[T],
        next_sample: &mut [T],
        pred_original_sample: &mut [T],
    ) -> Result<()> {
        let levels = self.step_levels(timestep)?;
        for (name, len) in [
            ("model_output", model_output.len()),
            ("next_sample", next_sample.len()),
            ("pred_original_sample", pred_original_sample.len()),
        ] {
            if len != sample.len() {
                return Err(Error::LengthMismatch {
                    name,
                    expected: sample.len(),
                    got: len,
                });
            }
        }
        let c = inverse_coefficients(&levels);
        let rule = self.update_rule(&c);
        kernel::ddim_update(
            rule,
            model_output,
            sample,
            None,
            next_sample,
            pred_original_sample,
        );
        Ok(())
    }

    /// One inverse step in place: `sample` becomes x_t and `model_output` becomes the
    /// clipped x̂₀, bit for bit what [`step`](Self::step) returns; allocates nothing below
    /// [`PARALLEL_MIN_LEN`](crate::PARALLEL_MIN_LEN). [`step`](Self::step) returns two new
    /// vectors instead, whose fresh pages can cost more than the step.
    ///
    /// ```
    /// use ddim::{DdimInverseConfig, DdimInverseScheduler};
    /// let mut inverse = DdimInverseScheduler::new(DdimInverseConfig::default())?;
    /// inverse.set_timesteps(10)?;
    /// let mut x = vec![0.5f32; 4]; // x₀
    /// for &t in inverse.timesteps() {
    ///     let mut eps = vec![0.1f32; 4]; // the model's prediction
    ///     inverse.step_in_place(&mut eps, t, &mut x)?;
    /// }
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
    ) -> Result<()> {
        let levels = self.step_levels(timestep)?;
        if model_output.len() != sample.len() {
            return Err(Error::LengthMismatch {
                name: "model_output",
                expected: sample.len(),
                got: model_output.len(),
            });
        }
        let c = inverse_coefficients(&levels);
        kernel::ddim_update_in_place(self.update_rule(&c), model_output, sample, None);
        Ok(())
    }

    /// The settings of the shared fused kernel for an inverse step.
    fn update_rule<'c>(&self, c: &'c StepCoefficients) -> UpdateRule<'c> {
        UpdateRule {
            prediction: self.config.prediction_type,
            coefficients: c,
            bound: if self.config.clip_sample {
                X0Bound::Clip(self.config.clip_sample_range)
            } else {
                X0Bound::None
            },
            use_clipped_model_output: false,
            add_noise: false,
        }
    }
}

/// The scalars of the shared fused kernel for an inverse step, in diffusers' f32 order:
/// the kernel's "t" is the source level, its "prev" the target, and its direction
/// coefficient √(1 − ᾱ_t) (η = 0, no variance: diffusers' inverse computes none, and the
/// forward's σ² would be NaN at a source ᾱ of 1).
fn inverse_coefficients(levels: &InverseStep) -> StepCoefficients {
    let a = levels.alpha_prod_source;
    let a_next = levels.alpha_prod_target;
    let beta = 1.0 - a;
    StepCoefficients {
        timestep: levels.source_timestep.unwrap_or(0),
        prev_timestep: Some(levels.timestep),
        alpha_prod_t: a,
        alpha_prod_t_prev: a_next,
        beta_prod_t: beta,
        sqrt_alpha_prod_t: a.sqrt(),
        sqrt_beta_prod_t: beta.sqrt(),
        sqrt_alpha_prod_t_prev: a_next.sqrt(),
        variance: 0.0,
        std_dev_t: 0.0,
        direction: (1.0 - a_next).sqrt(),
        eta: 0.0,
    }
}
