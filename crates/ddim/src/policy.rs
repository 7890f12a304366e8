//! Options beyond diffusers: each one a scheduler-level setting whose default is diffusers'
//! behaviour (or, where diffusers produces NaN or an index error, this crate's documented
//! default), set with a `with_…` builder on [`DdimScheduler`](crate::DdimScheduler).
//!
//! | setting | default (diffusers) | the other choices |
//! |---|---|---|
//! | [`PrevTimestepRule`](crate::PrevTimestepRule) | `t − ⌊T/n⌋` | the next scheduled timestep |
//! | [`SpacingOverride`] | the config's `timestep_spacing` | the DDIM paper's quadratic spacing |
//! | [`EtaPolicy`] | error where σ_t² > 1 − ᾱ_prev | diffusers' NaN; σ_t clamped |
//! | [`VarianceKind`] | DDIM's σ_t(η) | DDPM's larger σ̂_t |
//! | [`ZeroSnrGuard`] | off (diffusers divides by √ᾱ = 0) | refuse ε-prediction at ᾱ_t = 0 |
//! | [`BatchFinalAlpha`] | ᾱ = 1 past the end (`DDIMParallelScheduler`) | the config's final ᾱ |
//!
//! `docs/beyond-diffusers.md` in the repository measures each option on the exact models.

/// What a step does where the direction coefficient's radicand 1 − ᾱ_prev − σ_t² is negative
/// (η > 1, or a rounding residue at zero terminal SNR with η = 1).
///
/// ```
/// use ddim::{DdimConfig, DdimScheduler, EtaPolicy};
/// let mut s = DdimScheduler::new(DdimConfig::default())?.with_eta_policy(EtaPolicy::ClampSigma);
/// s.set_timesteps(10)?;
/// let c = s.step_coefficients(900, 3.0)?; // σ_t = √(1 − ᾱ_prev): no direction term left
/// assert_eq!(c.direction, 0.0);
/// assert_eq!(c.std_dev_t, (1.0 - c.alpha_prod_t_prev).sqrt());
/// # Ok::<(), ddim::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[non_exhaustive]
pub enum EtaPolicy {
    /// The crate's default: a rounding-level negative radicand with η ≤ 1 is taken as 0
    /// (diffusers gives NaN there, #5969), and η > 1 with σ_t² > 1 − ᾱ_prev is an
    /// [`Error::InvalidStepOption`](crate::Error::InvalidStepOption). Identical to diffusers
    /// wherever diffusers' output is finite.
    #[default]
    Strict,
    /// Exactly diffusers: √ of the negative radicand, so x_{t_prev} is NaN (for parity
    /// studies; nothing is refused).
    Diffusers,
    /// σ_t is clamped to √(1 − ᾱ_prev), so the radicand is never negative (a negative rounding
    /// residue is taken as 0): the step puts all the remaining variance into fresh noise.
    /// With [`VarianceKind::DdpmLarger`] the clamp applies to the σ of the direction
    /// coefficient; the noise keeps σ̂.
    ClampSigma,
}

/// The standard deviation σ_t of the noise a step adds.
///
/// ```
/// use ddim::{DdimConfig, DdimScheduler, VarianceKind};
/// let mut s = DdimScheduler::new(DdimConfig::default())?
///     .with_variance_kind(VarianceKind::DdpmLarger);
/// s.set_timesteps(10)?;
/// let c = s.step_coefficients(900, 1.0)?;
/// let larger = (1.0 - c.alpha_prod_t / c.alpha_prod_t_prev).sqrt();
/// assert_eq!(c.std_dev_t, larger);
/// assert!(c.std_dev_t > c.variance.sqrt());
/// # Ok::<(), ddim::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[non_exhaustive]
pub enum VarianceKind {
    /// DDIM's σ_t(η) = η·√((1 − ᾱ_prev)/(1 − ᾱ_t)·(1 − ᾱ_t/ᾱ_prev)) (diffusers).
    #[default]
    Ddim,
    /// The "larger variance" σ̂_t = η·√(1 − ᾱ_t/ᾱ_prev) of DDPM (the σ̂ row of the DDIM paper's
    /// Table 1, at η = 1). The mean stays DDIM's for η (at η = 1 the DDPM posterior mean); only
    /// the noise added is larger.
    DdpmLarger,
}

/// Whether [`set_timesteps`](crate::DdimScheduler::set_timesteps) refuses a schedule on which
/// ε-prediction divides by zero.
///
/// With `rescale_betas_zero_snr`, ᾱ_{T−1} = 0, and ε-prediction recovers
/// x̂₀ = (x_t − √(1 − ᾱ_t)·ε̂)/√ᾱ_t, a division by 0 at every scheduled timestep with ᾱ_t = 0
/// (`trailing` and `linspace` always start at T − 1). `sample` and `v_prediction` divide only by
/// √(1 − ᾱ_t) = 1 there, and are fine.
///
/// ```
/// use ddim::{DdimConfig, DdimScheduler, TimestepSpacing, ZeroSnrGuard};
/// let config = DdimConfig {
///     rescale_betas_zero_snr: true,
///     timestep_spacing: TimestepSpacing::Trailing,
///     ..DdimConfig::default()
/// };
/// let mut s = DdimScheduler::new(config)?.with_zero_snr_guard(ZeroSnrGuard::Refuse);
/// let err = s.set_timesteps(10).unwrap_err();
/// assert!(err.to_string().contains("v_prediction"));
/// # Ok::<(), ddim::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[non_exhaustive]
pub enum ZeroSnrGuard {
    /// No check: x̂₀ = ±∞ or NaN at ᾱ_t = 0, as in diffusers (the explicit opt-out, for
    /// parity).
    Off,
    /// [`Error::ZeroTerminalSnr`](crate::Error::ZeroTerminalSnr) from `set_timesteps` when
    /// ε-prediction meets a scheduled timestep with ᾱ_t = 0 (the default: diffusers would
    /// return a NaN or infinite sample there, never a usable one).
    #[default]
    Refuse,
}

/// Where `set_timesteps(n)` takes its timesteps from.
///
/// `quad` is not a value of diffusers' `timestep_spacing`, so it is not a
/// [`TimestepSpacing`](crate::TimestepSpacing): a config this crate saves always loads in
/// diffusers. It is a scheduler setting instead.
///
/// ```
/// use ddim::{DdimConfig, DdimScheduler, SpacingOverride};
/// let mut s = DdimScheduler::new(DdimConfig::default())?
///     .with_spacing_override(SpacingOverride::Quad);
/// s.set_timesteps(5)?;
/// assert_eq!(s.timesteps(), [800, 450, 200, 50, 0]);
/// # Ok::<(), ddim::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[non_exhaustive]
pub enum SpacingOverride {
    /// The config's `timestep_spacing` (diffusers).
    #[default]
    Config,
    /// The DDIM paper's code's quadratic spacing, see
    /// [`timesteps::quad_timesteps`](crate::timesteps::quad_timesteps). Dense at small t.
    Quad,
}

/// The ᾱ a [`batch_step_no_noise`](crate::DdimScheduler::batch_step_no_noise) item uses when
/// it steps past the end of the schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[non_exhaustive]
pub enum BatchFinalAlpha {
    /// 1, whatever `set_alpha_to_one` says: diffusers' `DDIMParallelScheduler` (parity).
    #[default]
    Diffusers,
    /// The scheduler's [`final_alpha_cumprod`](crate::DdimScheduler::final_alpha_cumprod)
    /// (ᾱ₀ when `set_alpha_to_one` is false), as `step` uses.
    Config,
}
