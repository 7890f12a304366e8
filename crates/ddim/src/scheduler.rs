//! [`DdimScheduler`]: set_timesteps, per-step coefficients, step, add_noise, get_velocity.

use rand::Rng;
use rand_distr::{Distribution, StandardNormal};

use crate::coefficients::StepCoefficients;
use crate::config::DdimConfig;
use crate::config::PredictionType;
use crate::element::{Compute, Element};
use crate::error::{Error, Result};
use crate::kernel::{self, UpdateRule, X0Bound};
use crate::policy::{BatchFinalAlpha, EtaPolicy, SpacingOverride, VarianceKind, ZeroSnrGuard};
use crate::schedule::NoiseSchedule;
use crate::threshold;
use crate::timesteps::{check_custom_timesteps, inference_timesteps, quad_timesteps};

/// How `step` finds the timestep it steps to.
///
/// ```
/// use ddim::{DdimConfig, DdimScheduler, PrevTimestepRule, TimestepSpacing};
/// let config = DdimConfig { timestep_spacing: TimestepSpacing::Linspace, ..DdimConfig::default() };
/// let mut s = DdimScheduler::new(config)?;
/// s.set_timesteps(7)?; // 999, 832, 666, 500, 333, 166, 0
/// assert_eq!(s.prev_timestep(999)?, Some(857)); // 999 − 1000/7: not scheduled
/// let s = s.with_prev_timestep_rule(PrevTimestepRule::NextInSchedule);
/// assert_eq!(s.prev_timestep(999)?, Some(832));
/// # Ok::<(), ddim::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[non_exhaustive]
pub enum PrevTimestepRule {
    /// diffusers' rule, `t_prev = t − ⌊T/n⌋`, whatever the spacing (parity; the default).
    /// For `linspace`, and for `trailing` when `n` does not divide `T`, this is not the next
    /// scheduled timestep (diffusers issues #12633, #11347, #9261).
    #[default]
    Stride,
    /// The next entry of [`DdimScheduler::timesteps`] (what DDPM and the DDIM paper do);
    /// `step` then only accepts scheduled timesteps.
    NextInSchedule,
}

/// Per-call settings of [`DdimScheduler::step`]; `T` is the element type of the buffers.
///
/// ```
/// let options: ddim::StepOptions = ddim::StepOptions { eta: 0.5, batch_size: Some(2), ..Default::default() };
/// assert!(!options.use_clipped_model_output);
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepOptions<'a, T = f32> {
    /// η: 0 is deterministic DDIM, 1 is DDPM-like ancestral sampling.
    pub eta: f32,
    /// Recompute ε̂ from the clipped or thresholded x̂₀ ("as in Glide").
    pub use_clipped_model_output: bool,
    /// The noise z of σ_t·z, one value per element; used only when η > 0.
    pub variance_noise: Option<&'a [T]>,
    /// How many samples the buffers hold, batch-major. Required where it changes the result:
    /// with dynamic thresholding (its quantile is per sample) and with one generator per
    /// sample; a step without it is then refused with [`Error::BatchSizeRequired`] rather
    /// than thresholding the whole batch as one sample. Elsewhere `None` steps the buffers
    /// as one sample, which gives the same numbers as any batch size.
    pub batch_size: Option<usize>,
    /// Refuse NaN and ±∞ in `model_output`, `sample` and (when used) `variance_noise` with
    /// [`Error::NonFinite`], naming the buffer, the first bad index, its value and the
    /// timestep. Off by default: like torch, a step then propagates NaN and ∞ to its outputs
    /// (one pass over the inputs when on).
    pub check_finite: bool,
}

impl<T> Default for StepOptions<'_, T> {
    fn default() -> Self {
        Self {
            eta: 0.0,
            use_clipped_model_output: false,
            variance_noise: None,
            batch_size: None,
            check_finite: false,
        }
    }
}

impl<T> StepOptions<'_, T> {
    /// The number of samples in the buffers, once checked: the given batch size, or one.
    pub(crate) fn batch(&self) -> usize {
        self.batch_size.unwrap_or(1)
    }
}

/// The result of one step.
#[derive(Debug, Clone, PartialEq)]
pub struct StepOutput<T = f32> {
    /// x_{t_prev}: the sample to feed the model at the next step.
    pub prev_sample: Vec<T>,
    /// x̂₀ after clipping or thresholding.
    pub pred_original_sample: Vec<T>,
}

/// The DDIM sampler of Song, Meng & Ermon (2020), with the behaviour of diffusers'
/// `DDIMScheduler` (0.42.1, torch CPU, float32).
///
/// One step, from x_t and the model output, recovers x̂₀ and ε̂ (see
/// [`PredictionType`](crate::PredictionType)), bounds x̂₀ (clip or dynamic thresholding), and
/// moves to t_prev:
///
/// x_{t_prev} = √ᾱ_prev·x̂₀ + √(1 − ᾱ_prev − σ_t²)·ε̂ + σ_t·z,
/// σ_t = η·√((1 − ᾱ_prev)/(1 − ᾱ_t) · (1 − ᾱ_t/ᾱ_prev)).
///
/// Buffers are flat, batch-major `f32` slices. `step` takes `&self`: one scheduler can serve
/// many threads.
///
/// ```
/// use ddim::{DdimConfig, DdimScheduler, StepOptions};
/// let mut scheduler = DdimScheduler::new(DdimConfig::default())?;
/// scheduler.set_timesteps(10)?;
/// let mut x = vec![0.5f32; 8];
/// for &t in scheduler.timesteps() {
///     let mut eps = vec![0.1f32; 8]; // the model's prediction
///     scheduler.step_in_place(&mut eps, t, &mut x, &StepOptions::default())?;
/// }
/// assert!(x.iter().all(|v| v.is_finite()));
/// # Ok::<(), ddim::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct DdimScheduler {
    config: DdimConfig,
    schedule: NoiseSchedule,
    final_alpha_cumprod: f32,
    num_inference_steps: Option<usize>,
    timesteps: Vec<usize>,
    /// Whether the timesteps are diffusers' spacing or ours (quad, custom).
    source: TimestepSource,
    prev_rule: PrevTimestepRule,
    spacing_override: SpacingOverride,
    eta_policy: EtaPolicy,
    variance_kind: VarianceKind,
    zero_snr_guard: ZeroSnrGuard,
    batch_final_alpha: BatchFinalAlpha,
}

/// Where the current timesteps came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TimestepSource {
    /// A diffusers spacing (or none set yet): the configured [`PrevTimestepRule`] applies.
    Diffusers,
    /// Quad or caller-given: no stride exists, `step` goes to the next scheduled timestep.
    Own,
}

impl DdimScheduler {
    /// The solver order (DDIM is a first-order method), as diffusers' `order`.
    pub const ORDER: usize = 1;

    /// Builds the scheduler: β, ᾱ and the final ᾱ (1 if `set_alpha_to_one`, else ᾱ₀).
    /// Before [`set_timesteps`](Self::set_timesteps), [`timesteps`](Self::timesteps) is
    /// `T−1, …, 0`, as in diffusers.
    ///
    /// # Errors
    ///
    /// The errors of [`DdimConfig::validate`], and [`Error::InvalidConfig`] for a β outside
    /// `[0, 1]` (diffusers accepts those and produces NaN).
    pub fn new(config: DdimConfig) -> Result<Self> {
        config.validate()?;
        let schedule = NoiseSchedule::from_config(&config)?;
        if let Some((i, b)) = schedule
            .betas
            .iter()
            .enumerate()
            .find(|(_, b)| !(0.0..=1.0).contains(*b))
        {
            return Err(Error::InvalidConfig {
                key: if config.trained_betas.is_some() {
                    "trained_betas"
                } else {
                    "beta_end"
                },
                reason: format!("gives beta[{i}] = {b}, outside [0, 1]"),
            });
        }
        let final_alpha_cumprod = if config.set_alpha_to_one {
            1.0
        } else {
            // `validate` refuses T = 0, so ᾱ_0 exists; the error only restates that rule.
            *schedule
                .alphas_cumprod
                .first()
                .ok_or_else(|| Error::InvalidConfig {
                    key: "num_train_timesteps",
                    reason: "must be at least 1, got 0".into(),
                })?
        };
        let t = config.num_train_timesteps;
        let timesteps = crate::alloc::collect((0..t).rev(), t, "timesteps")?;
        Ok(Self {
            config,
            schedule,
            final_alpha_cumprod,
            num_inference_steps: None,
            timesteps,
            source: TimestepSource::Diffusers,
            prev_rule: PrevTimestepRule::default(),
            spacing_override: SpacingOverride::default(),
            eta_policy: EtaPolicy::default(),
            variance_kind: VarianceKind::default(),
            zero_snr_guard: ZeroSnrGuard::default(),
            batch_final_alpha: BatchFinalAlpha::default(),
        })
    }

    /// Chooses how `step` finds t_prev (default: diffusers' stride rule).
    ///
    /// ```
    /// let mut s = ddim::DdimScheduler::new(ddim::DdimConfig::default())?
    ///     .with_prev_timestep_rule(ddim::PrevTimestepRule::NextInSchedule);
    /// s.set_timesteps(10)?;
    /// assert_eq!(s.prev_timestep(900)?, Some(800));
    /// # Ok::<(), ddim::Error>(())
    /// ```
    pub fn with_prev_timestep_rule(mut self, rule: PrevTimestepRule) -> Self {
        self.prev_rule = rule;
        self
    }

    /// The rule `step` uses to find t_prev.
    pub fn prev_timestep_rule(&self) -> PrevTimestepRule {
        self.prev_rule
    }

    /// Chooses where `set_timesteps(n)` takes its timesteps from (default: the config's
    /// spacing). Takes effect at the next `set_timesteps`.
    ///
    /// ```
    /// let mut s = ddim::DdimScheduler::new(ddim::DdimConfig::default())?
    ///     .with_spacing_override(ddim::SpacingOverride::Quad);
    /// s.set_timesteps(10)?;
    /// assert_eq!(s.timesteps(), ddim::timesteps::quad_timesteps(1000, 0, 10)?);
    /// # Ok::<(), ddim::Error>(())
    /// ```
    pub fn with_spacing_override(mut self, spacing: SpacingOverride) -> Self {
        self.spacing_override = spacing;
        self
    }

    /// Where `set_timesteps(n)` takes its timesteps from.
    pub fn spacing_override(&self) -> SpacingOverride {
        self.spacing_override
    }

    /// Chooses what a step does where σ_t² > 1 − ᾱ_prev (default: [`EtaPolicy::Strict`]).
    ///
    /// ```
    /// let mut s = ddim::DdimScheduler::new(ddim::DdimConfig::default())?;
    /// s.set_timesteps(10)?;
    /// assert!(s.step_coefficients(900, 3.0).is_err());
    /// let s = s.with_eta_policy(ddim::EtaPolicy::Diffusers);
    /// assert!(s.step_coefficients(900, 3.0)?.direction.is_nan());
    /// # Ok::<(), ddim::Error>(())
    /// ```
    pub fn with_eta_policy(mut self, policy: EtaPolicy) -> Self {
        self.eta_policy = policy;
        self
    }

    /// What a step does where σ_t² > 1 − ᾱ_prev.
    pub fn eta_policy(&self) -> EtaPolicy {
        self.eta_policy
    }

    /// Chooses σ_t: DDIM's (default) or DDPM's larger σ̂_t.
    ///
    /// ```
    /// let mut s = ddim::DdimScheduler::new(ddim::DdimConfig::default())?
    ///     .with_variance_kind(ddim::VarianceKind::DdpmLarger);
    /// s.set_timesteps(10)?;
    /// let c = s.step_coefficients(500, 1.0)?;
    /// assert_eq!(c.std_dev_t, (1.0 - c.alpha_prod_t / c.alpha_prod_t_prev).sqrt());
    /// # Ok::<(), ddim::Error>(())
    /// ```
    pub fn with_variance_kind(mut self, kind: VarianceKind) -> Self {
        self.variance_kind = kind;
        self
    }

    /// The kind of σ_t a step uses.
    pub fn variance_kind(&self) -> VarianceKind {
        self.variance_kind
    }

    /// Chooses whether `set_timesteps` refuses ε-prediction at ᾱ_t = 0 (default: off, as
    /// diffusers). Takes effect at the next `set_timesteps`.
    ///
    /// ```
    /// let config = ddim::DdimConfig {
    ///     rescale_betas_zero_snr: true,
    ///     timestep_spacing: ddim::TimestepSpacing::Linspace,
    ///     ..ddim::DdimConfig::default()
    /// };
    /// let mut s = ddim::DdimScheduler::new(config)?.with_zero_snr_guard(ddim::ZeroSnrGuard::Refuse);
    /// assert!(matches!(s.set_timesteps(5), Err(ddim::Error::ZeroTerminalSnr { timestep: 999 })));
    /// # Ok::<(), ddim::Error>(())
    /// ```
    pub fn with_zero_snr_guard(mut self, guard: ZeroSnrGuard) -> Self {
        self.zero_snr_guard = guard;
        self
    }

    /// Whether `set_timesteps` refuses ε-prediction at ᾱ_t = 0.
    pub fn zero_snr_guard(&self) -> ZeroSnrGuard {
        self.zero_snr_guard
    }

    /// Chooses the final ᾱ of [`batch_step_no_noise`](Self::batch_step_no_noise) (default:
    /// 1, as diffusers' `DDIMParallelScheduler`).
    ///
    /// ```
    /// let config = ddim::DdimConfig { set_alpha_to_one: false, ..ddim::DdimConfig::default() };
    /// let mut s = ddim::DdimScheduler::new(config)?
    ///     .with_batch_final_alpha(ddim::BatchFinalAlpha::Config);
    /// s.set_timesteps(10)?;
    /// let mut out = [0.0f32; 2];
    /// s.batch_step_no_noise(&[0.1f32, 0.2], &[0], &[0.5, 0.4], false, &mut out)?;
    /// let one = s.step(&[0.1f32, 0.2], 0, &[0.5, 0.4], &ddim::StepOptions::default())?;
    /// assert_eq!(out[..], one.prev_sample[..]);
    /// # Ok::<(), ddim::Error>(())
    /// ```
    pub fn with_batch_final_alpha(mut self, rule: BatchFinalAlpha) -> Self {
        self.batch_final_alpha = rule;
        self
    }

    /// The final ᾱ rule of [`batch_step_no_noise`](Self::batch_step_no_noise).
    pub fn batch_final_alpha(&self) -> BatchFinalAlpha {
        self.batch_final_alpha
    }

    /// The config the scheduler was built from.
    pub fn config(&self) -> &DdimConfig {
        &self.config
    }

    /// β_t for t in `0..T`.
    pub fn betas(&self) -> &[f32] {
        &self.schedule.betas
    }

    /// ᾱ_t = ∏_{s≤t}(1 − β_s) for t in `0..T`.
    pub fn alphas_cumprod(&self) -> &[f32] {
        &self.schedule.alphas_cumprod
    }

    /// The ᾱ used past the last step: 1 if `set_alpha_to_one`, else ᾱ₀.
    pub fn final_alpha_cumprod(&self) -> f32 {
        self.final_alpha_cumprod
    }

    /// The standard deviation of the initial noise: 1 for DDIM.
    pub fn init_noise_sigma(&self) -> f32 {
        1.0
    }

    /// The solver order, 1.
    pub fn order(&self) -> usize {
        Self::ORDER
    }

    /// The model input at `timestep`: DDIM does not scale it, so this is `sample` itself.
    pub fn scale_model_input<'a, T: Element>(&self, sample: &'a [T], _timestep: usize) -> &'a [T] {
        sample
    }

    /// The number of inference steps, once set.
    pub fn num_inference_steps(&self) -> Option<usize> {
        self.num_inference_steps
    }

    /// The inference timesteps, descending.
    pub fn timesteps(&self) -> &[usize] {
        &self.timesteps
    }

    /// Sets `n` inference timesteps with the config's spacing (see
    /// [`timesteps::inference_timesteps`](crate::timesteps::inference_timesteps): exactly `n`
    /// valid timesteps, identical to diffusers wherever diffusers' own are valid).
    ///
    /// ```
    /// let mut scheduler = ddim::DdimScheduler::new(ddim::DdimConfig::stable_diffusion())?;
    /// scheduler.set_timesteps(50)?;
    /// assert_eq!(&scheduler.timesteps()[..3], [981, 961, 941]);
    /// # Ok::<(), ddim::Error>(())
    /// ```
    ///
    /// With [`SpacingOverride::Quad`] the timesteps are
    /// [`quad_timesteps`](crate::timesteps::quad_timesteps) instead, and `step` then goes to
    /// the next scheduled timestep whatever the [`PrevTimestepRule`].
    ///
    /// # Errors
    ///
    /// [`Error::InvalidStepCount`] for `n = 0`, `n > T`, or a `leading` (or quad) schedule
    /// pushed to `T` by `steps_offset`; [`Error::ZeroTerminalSnr`] under
    /// [`ZeroSnrGuard::Refuse`]. On error the scheduler is unchanged.
    pub fn set_timesteps(&mut self, n: usize) -> Result<()> {
        let c = &self.config;
        let (timesteps, source) = match self.spacing_override {
            SpacingOverride::Config => (
                inference_timesteps(c.num_train_timesteps, c.timestep_spacing, c.steps_offset, n)?,
                TimestepSource::Diffusers,
            ),
            SpacingOverride::Quad => (
                quad_timesteps(c.num_train_timesteps, c.steps_offset, n)?,
                TimestepSource::Own,
            ),
        };
        self.install(timesteps, source)
    }

    /// Sets caller-given inference timesteps (e.g. from a paper's schedule). They are used as
    /// given; `step` goes from each to the next (the last to the final ᾱ), whatever the
    /// [`PrevTimestepRule`], since no stride describes them. diffusers' `DDIMScheduler` has no
    /// such method.
    ///
    /// ```
    /// let mut scheduler = ddim::DdimScheduler::new(ddim::DdimConfig::default())?;
    /// scheduler.set_timesteps_custom(&[999, 700, 300, 0])?;
    /// assert_eq!(scheduler.prev_timestep(700)?, Some(300));
    /// assert!(scheduler.set_timesteps_custom(&[10, 20]).is_err());
    /// # Ok::<(), ddim::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::InvalidTimesteps`] for an empty list, a timestep ≥ T, or a list that is not
    /// strictly decreasing; [`Error::ZeroTerminalSnr`] under [`ZeroSnrGuard::Refuse`]. On error
    /// the scheduler is unchanged.
    pub fn set_timesteps_custom(&mut self, timesteps: &[usize]) -> Result<()> {
        check_custom_timesteps(self.config.num_train_timesteps, timesteps)?;
        self.install(timesteps.to_vec(), TimestepSource::Own)
    }

    fn install(&mut self, timesteps: Vec<usize>, source: TimestepSource) -> Result<()> {
        if self.zero_snr_guard == ZeroSnrGuard::Refuse
            && self.config.prediction_type == PredictionType::Epsilon
        {
            let ac = &self.schedule.alphas_cumprod;
            if let Some(&t) = timesteps
                .iter()
                .find(|&&t| ac.get(t).is_some_and(|&a| a <= 0.0))
            {
                return Err(Error::ZeroTerminalSnr { timestep: t });
            }
        }
        self.num_inference_steps = Some(timesteps.len());
        self.timesteps = timesteps;
        self.source = source;
        Ok(())
    }

    /// ᾱ_t of a training timestep, [`Error::TimestepOutOfRange`] outside `[0, T)`.
    fn alpha_cumprod(&self, timestep: usize) -> Result<f32> {
        self.check_timestep(timestep)?;
        self.schedule
            .alphas_cumprod
            .get(timestep)
            .copied()
            .ok_or(Error::TimestepOutOfRange {
                timestep: i64::try_from(timestep).unwrap_or(i64::MAX),
                num_train_timesteps: self.config.num_train_timesteps,
            })
    }

    fn check_timestep(&self, timestep: usize) -> Result<()> {
        let t = self.config.num_train_timesteps;
        if timestep >= t {
            return Err(Error::TimestepOutOfRange {
                // Saturates only for a timestep beyond i64::MAX (still out of range).
                timestep: i64::try_from(timestep).unwrap_or(i64::MAX),
                num_train_timesteps: t,
            });
        }
        Ok(())
    }

    /// The timestep a step from `timestep` lands on; `None` past the end of the schedule.
    ///
    /// # Errors
    ///
    /// [`Error::TimestepsNotSet`] before `set_timesteps`; [`Error::TimestepOutOfRange`];
    /// with [`PrevTimestepRule::NextInSchedule`], [`Error::TimestepNotScheduled`].
    pub fn prev_timestep(&self, timestep: usize) -> Result<Option<usize>> {
        let n = self.num_inference_steps.ok_or(Error::TimestepsNotSet)?;
        self.check_timestep(timestep)?;
        let rule = match self.source {
            TimestepSource::Diffusers => self.prev_rule,
            TimestepSource::Own => PrevTimestepRule::NextInSchedule,
        };
        match rule {
            PrevTimestepRule::Stride => {
                Ok(timestep.checked_sub(self.config.num_train_timesteps / n))
            }
            PrevTimestepRule::NextInSchedule => {
                // The timesteps descend (set_timesteps and check_custom_timesteps ensure
                // it): a binary search, O(log n) per step rather than a scan.
                let i = self.timesteps.partition_point(|&s| s > timestep);
                if self.timesteps.get(i) != Some(&timestep) {
                    return Err(Error::TimestepNotScheduled {
                        timestep,
                        num_inference_steps: n,
                    });
                }
                Ok(self.timesteps.get(i + 1).copied())
            }
        }
    }

    /// The scalars of a step from `timestep` with this η (ᾱ_t, ᾱ_prev, σ_t, …).
    ///
    /// ```
    /// let mut scheduler = ddim::DdimScheduler::new(ddim::DdimConfig::default())?;
    /// scheduler.set_timesteps(50)?;
    /// let c = scheduler.step_coefficients(980, 1.0)?;
    /// assert_eq!(c.prev_timestep, Some(960));
    /// assert!((c.variance - 0.32460).abs() < 1e-5); // diffusers' test_variance
    /// # Ok::<(), ddim::Error>(())
    /// ```
    ///
    /// The scheduler's [`VarianceKind`] and [`EtaPolicy`] apply.
    ///
    /// # Errors
    ///
    /// As [`prev_timestep`](Self::prev_timestep), and [`Error::InvalidStepOption`] for η
    /// negative or not finite, or (under [`EtaPolicy::Strict`]) so large (η > 1) that σ_t²
    /// exceeds 1 − ᾱ_prev.
    pub fn step_coefficients(&self, timestep: usize, eta: f32) -> Result<StepCoefficients> {
        if !(eta.is_finite() && eta >= 0.0) {
            return Err(Error::InvalidStepOption {
                name: "eta",
                reason: format!("must be a finite number >= 0, got {eta}"),
            });
        }
        let prev = self.prev_timestep(timestep)?;
        self.coefficients_to(timestep, prev, self.final_alpha_cumprod, eta)
    }

    /// The coefficients of a step from `timestep` (checked in range) to `prev`, or to
    /// `final_alpha` past the end.
    pub(crate) fn coefficients_to(
        &self,
        timestep: usize,
        prev: Option<usize>,
        final_alpha: f32,
        eta: f32,
    ) -> Result<StepCoefficients> {
        let ac = &self.schedule.alphas_cumprod;
        let alpha = |t: usize| {
            ac.get(t).copied().ok_or(Error::TimestepOutOfRange {
                timestep: i64::try_from(t).unwrap_or(i64::MAX),
                num_train_timesteps: ac.len(),
            })
        };
        let alpha_prev = match prev {
            Some(p) => alpha(p)?,
            None => final_alpha,
        };
        let c = StepCoefficients::with_policy(
            timestep,
            prev,
            alpha(timestep)?,
            alpha_prev,
            eta,
            self.variance_kind,
            self.eta_policy,
        );
        if self.eta_policy == EtaPolicy::Strict && c.direction.is_nan() && !c.variance.is_nan() {
            return Err(Error::InvalidStepOption {
                name: "eta",
                reason: format!(
                    "{eta} is too large at timestep {timestep}: sigma_t^2 = {} exceeds \
                     1 - alpha_bar_prev = {}, so the direction coefficient is undefined",
                    c.std_dev_t * c.std_dev_t,
                    1.0 - alpha_prev
                ),
            });
        }
        Ok(c)
    }

    /// One DDIM step from `timestep`, returning x_{t_prev} and x̂₀ in new buffers.
    ///
    /// What it costs: two vectors as long as `sample` per call. For latents of a few hundred
    /// kB the allocator hands out fresh pages (mmap, or a heap trimmed after the last free),
    /// and their page faults and zeroing can cost several times the step itself (measured in
    /// `BENCHMARKS.md`). In a loop use [`step_in_place`](Self::step_in_place), which
    /// overwrites its inputs, or [`step_into`](Self::step_into), which writes into the
    /// caller's buffers; both give the same bits.
    ///
    /// With η > 0 the noise comes from `options.variance_noise` (see
    /// [`step_with_rng`](Self::step_with_rng) to draw it from a generator instead).
    ///
    /// # Errors
    ///
    /// [`Error::TimestepsNotSet`], [`Error::TimestepOutOfRange`], [`Error::LengthMismatch`]
    /// when `model_output` or the noise is not as long as `sample`,
    /// [`Error::BatchSizeMismatch`], [`Error::InvalidStepOption`] for a bad η, and
    /// [`Error::MissingNoise`] when η > 0 and no noise was given; with
    /// [`StepOptions::check_finite`], [`Error::NonFinite`] for NaN or ±∞ in an input.
    pub fn step<T: Element>(
        &self,
        model_output: &[T],
        timestep: usize,
        sample: &[T],
        options: &StepOptions<'_, T>,
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
            options,
            &mut out.prev_sample,
            &mut out.pred_original_sample,
        )?;
        Ok(out)
    }

    /// Like [`step`](Self::step), drawing the noise z ~ N(0, I) from `rng` when η > 0
    /// (no random numbers are drawn when η = 0, as in diffusers).
    ///
    /// ```
    /// use rand::SeedableRng;
    /// let mut scheduler = ddim::DdimScheduler::new(ddim::DdimConfig::default())?;
    /// scheduler.set_timesteps(10)?;
    /// let mut rng = rand::rngs::StdRng::seed_from_u64(0);
    /// let options = ddim::StepOptions { eta: 1.0, ..Default::default() };
    /// let out = scheduler.step_with_rng(&[0.1; 4], 900, &[0.5; 4], &options, &mut rng)?;
    /// assert_eq!(out.prev_sample.len(), 4);
    /// # Ok::<(), ddim::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`step`](Self::step), and [`Error::NoiseAndGenerator`] when η > 0 and
    /// `options.variance_noise` is also given.
    pub fn step_with_rng<T: Element, R: Rng + ?Sized>(
        &self,
        model_output: &[T],
        timestep: usize,
        sample: &[T],
        options: &StepOptions<'_, T>,
        rng: &mut R,
    ) -> Result<StepOutput<T>>
    where
        StandardNormal: Distribution<T::Compute>,
    {
        if options.eta > 0.0 {
            if options.variance_noise.is_some() {
                return Err(Error::NoiseAndGenerator);
            }
            // Check everything before drawing, so an error consumes no random numbers.
            self.check_step(
                model_output,
                timestep,
                sample,
                options,
                NoiseSource::Generator,
            )?;
            let noise: Vec<T> = (0..sample.len())
                .map(|_| T::from_compute(StandardNormal.sample(rng)))
                .collect();
            let options = StepOptions {
                variance_noise: Some(&noise),
                ..*options
            };
            return self.step(model_output, timestep, sample, &options);
        }
        self.step(model_output, timestep, sample, options)
    }

    pub(crate) fn check_step<T: Element>(
        &self,
        model_output: &[T],
        timestep: usize,
        sample: &[T],
        options: &StepOptions<'_, T>,
        noise_source: NoiseSource,
    ) -> Result<StepCoefficients> {
        let coefficients = self.step_coefficients(timestep, options.eta)?;
        check_len("model_output", sample.len(), model_output.len())?;
        if options.eta > 0.0 && noise_source == NoiseSource::Options {
            let noise = options
                .variance_noise
                .ok_or(Error::MissingNoise { eta: options.eta })?;
            check_len("variance_noise", sample.len(), noise.len())?;
        }
        check_batch(options.batch_size, sample.len(), self.config.thresholding)?;
        if options.check_finite {
            crate::finite::check_finite("model_output", model_output, timestep)?;
            crate::finite::check_finite("sample", sample, timestep)?;
            if options.eta > 0.0 {
                if let Some(noise) = options.variance_noise {
                    crate::finite::check_finite("variance_noise", noise, timestep)?;
                }
            }
        }
        Ok(coefficients)
    }

    /// The allocation-free step: writes x_{t_prev} into `prev_sample` and x̂₀ into
    /// `pred_original_sample` (both as long as `sample`). Dynamic thresholding uses
    /// `prev_sample` as scratch space for its O(n) quantile selection.
    ///
    /// # Errors
    ///
    /// As [`step`](Self::step), and [`Error::LengthMismatch`] for output buffers of the wrong
    /// length. On error the outputs are untouched.
    pub fn step_into<T: Element>(
        &self,
        model_output: &[T],
        timestep: usize,
        sample: &[T],
        options: &StepOptions<'_, T>,
        prev_sample: &mut [T],
        pred_original_sample: &mut [T],
    ) -> Result<()> {
        let c = self.check_step(
            model_output,
            timestep,
            sample,
            options,
            NoiseSource::Options,
        )?;
        check_len("prev_sample", sample.len(), prev_sample.len())?;
        check_len(
            "pred_original_sample",
            sample.len(),
            pred_original_sample.len(),
        )?;
        self.update_into(
            &c,
            model_output,
            sample,
            options,
            prev_sample,
            pred_original_sample,
        );
        Ok(())
    }

    /// What the fused pass of a step does: the prediction type, the coefficients, the x̂₀
    /// bound, and whether ε̂ is recomputed from the bounded x̂₀ and noise is added.
    pub(crate) fn update_rule<'c, T>(
        &self,
        c: &'c StepCoefficients,
        options: &StepOptions<'_, T>,
    ) -> UpdateRule<'c> {
        UpdateRule {
            prediction: self.config.prediction_type,
            coefficients: c,
            bound: if self.config.clip_sample {
                X0Bound::Clip(self.config.clip_sample_range)
            } else {
                X0Bound::None
            },
            use_clipped_model_output: options.use_clipped_model_output,
            add_noise: options.eta > 0.0,
        }
    }

    /// The fused pass of a step with checked coefficients and buffers (all as long as
    /// `sample`, the batch size dividing it).
    pub(crate) fn update_into<T: Element>(
        &self,
        c: &StepCoefficients,
        model_output: &[T],
        sample: &[T],
        options: &StepOptions<'_, T>,
        prev_sample: &mut [T],
        pred_original_sample: &mut [T],
    ) {
        if sample.is_empty() {
            return;
        }
        let config = &self.config;
        let rule = self.update_rule(c, options);
        // Only an η > 0 step uses (and length-checks) the noise.
        let noise = options.variance_noise.filter(|_| options.eta > 0.0);
        if !config.thresholding {
            kernel::ddim_update(
                rule,
                model_output,
                sample,
                noise,
                prev_sample,
                pred_original_sample,
            );
            return;
        }
        // Thresholding, per item: x̂₀ into its output while the quantile of |x̂₀| is found
        // (with the x_{t_prev} buffer as scratch), then the fused pass with the threshold.
        // A batch size of at least 1 dividing the non-empty sample: items of ≥ 1 element.
        let per_item = (sample.len() / options.batch()).max(1);
        let k = kernel::scalars(c, <T::Compute as Compute>::ONE);
        let item = |m: &[T], x: &[T], z: Option<&[T]>, p: &mut [T], o: &mut [T]| {
            let q = threshold::recover_x0_and_quantile(
                config.prediction_type,
                &k,
                m,
                x,
                o,
                config.dynamic_thresholding_ratio,
                p,
            );
            let s = threshold::dynamic_threshold(q, config.sample_max_value);
            kernel::ddim_update_thresholded(rule, s, m, x, z, p, o);
        };
        #[cfg(feature = "rayon")]
        if sample.len() >= kernel::PARALLEL_MIN_LEN && options.batch() > 1 {
            use rayon::iter::Either;
            use rayon::prelude::*;
            // The noise of each item, or `None` for every item when there is none.
            let noise_items = match noise {
                Some(z) => Either::Left(z.par_chunks_exact(per_item).map(Some)),
                None => Either::Right(rayon::iter::repeat_n(None, options.batch())),
            };
            prev_sample
                .par_chunks_exact_mut(per_item)
                .zip(pred_original_sample.par_chunks_exact_mut(per_item))
                .zip(model_output.par_chunks_exact(per_item))
                .zip(sample.par_chunks_exact(per_item))
                .zip(noise_items)
                .for_each(|((((p, o), m), x), z)| item(m, x, z, p, o));
            return;
        }
        let items = prev_sample
            .chunks_exact_mut(per_item)
            .zip(pred_original_sample.chunks_exact_mut(per_item))
            .zip(model_output.chunks_exact(per_item))
            .zip(sample.chunks_exact(per_item));
        match noise {
            Some(z) => {
                for ((((p, o), m), x), z) in items.zip(z.chunks_exact(per_item)) {
                    item(m, x, Some(z), p, o);
                }
            }
            None => {
                for (((p, o), m), x) in items {
                    item(m, x, None, p, o);
                }
            }
        }
    }

    /// Forward diffusion q(x_t | x₀): x_t = √ᾱ_t·x₀ + √(1 − ᾱ_t)·ε, one timestep per batch
    /// item (`timesteps.len()` is the batch size).
    ///
    /// ```
    /// let scheduler = ddim::DdimScheduler::new(ddim::DdimConfig::default())?;
    /// let x_t = scheduler.add_noise(&[1.0, 1.0], &[0.0, 0.0], &[0, 999])?;
    /// assert!(x_t[0] > 0.99 && x_t[1] < 0.01);
    /// # Ok::<(), ddim::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::LengthMismatch`], [`Error::BatchSizeMismatch`] (no timesteps, or a count that
    /// does not divide the length), [`Error::TimestepOutOfRange`].
    pub fn add_noise<T: Element>(
        &self,
        original_samples: &[T],
        noise: &[T],
        timesteps: &[usize],
    ) -> Result<Vec<T>> {
        self.per_item_combination(original_samples, noise, timesteps, |sa, sb, x0, eps| {
            sa * x0 + sb * eps
        })
    }

    /// The velocity target v_t = √ᾱ_t·ε − √(1 − ᾱ_t)·x₀ (Salimans & Ho 2022), one timestep
    /// per batch item.
    ///
    /// # Errors
    ///
    /// As [`add_noise`](Self::add_noise).
    pub fn get_velocity<T: Element>(
        &self,
        sample: &[T],
        noise: &[T],
        timesteps: &[usize],
    ) -> Result<Vec<T>> {
        self.per_item_combination(sample, noise, timesteps, |sa, sb, x0, eps| {
            sa * eps - sb * x0
        })
    }

    fn per_item_combination<T: Element>(
        &self,
        sample: &[T],
        noise: &[T],
        timesteps: &[usize],
        combine: impl Fn(T::Compute, T::Compute, T::Compute, T::Compute) -> T::Compute,
    ) -> Result<Vec<T>> {
        check_len("noise", sample.len(), noise.len())?;
        check_batch(Some(timesteps.len()), sample.len(), false)?;
        let alphas = timesteps
            .iter()
            .map(|&t| self.alpha_cumprod(t))
            .collect::<Result<Vec<f32>>>()?;
        let mut out = Vec::with_capacity(sample.len());
        if sample.is_empty() {
            return Ok(out);
        }
        // The batch size (≥ 1) divides the non-empty sample: items of ≥ 1 element.
        let per_item = (sample.len() / timesteps.len()).max(1);
        let items = sample
            .chunks_exact(per_item)
            .zip(noise.chunks_exact(per_item));
        for ((xs, es), &alpha) in items.zip(&alphas) {
            // diffusers casts ᾱ to the sample's dtype before the square roots.
            let a = T::Compute::from_f32(alpha);
            let (sa, sb) = (a.sqrt(), (T::Compute::ONE - a).sqrt());
            out.extend(
                xs.iter().zip(es).map(|(&x, &e)| {
                    T::from_compute(combine(sa, sb, x.to_compute(), e.to_compute()))
                }),
            );
        }
        Ok(out)
    }
}

/// Where the noise of an η > 0 step comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NoiseSource {
    /// `StepOptions::variance_noise`, which must then be present.
    Options,
    /// A generator, drawn after the checks.
    Generator,
}

fn check_len(name: &'static str, expected: usize, got: usize) -> Result<()> {
    if expected == got {
        Ok(())
    } else {
        Err(Error::LengthMismatch {
            name,
            expected,
            got,
        })
    }
}

/// Checks a step's batch size: one that divides the buffer into equal samples, and one given
/// at all when `thresholding` (a per-sample quantile) makes the result depend on it.
pub(crate) fn check_batch(batch_size: Option<usize>, len: usize, thresholding: bool) -> Result<()> {
    match batch_size {
        None if thresholding => Err(Error::BatchSizeRequired {
            needs_it: "dynamic thresholding takes its quantile per sample",
        }),
        None => Ok(()),
        Some(batch_size) if batch_size == 0 || len % batch_size != 0 => {
            Err(Error::BatchSizeMismatch { batch_size, len })
        }
        Some(_) => Ok(()),
    }
}
