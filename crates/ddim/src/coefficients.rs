//! [`StepCoefficients`]: the scalars of one DDIM step, computed once per step on the host.

use crate::policy::{EtaPolicy, VarianceKind};

/// The scalars of one DDIM step, computed once per step in f32 exactly as diffusers does.
///
/// With a = ᾱ_t, a′ = ᾱ_{t_prev} (or the final ᾱ when t_prev < 0), b = 1 − a:
///
/// * σ² = ((1 − a′)/b) · (1 − a/a′)  (DDIM eq. 16, `_get_variance`);
/// * σ = η·σ;
/// * direction coefficient = √((1 − a′) − σ²);
/// * x_{t_prev} = √a′·x̂₀ + √((1 − a′) − σ²)·ε̂ + σ·z  (DDIM eq. 12).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepCoefficients {
    /// The timestep stepped from.
    pub timestep: usize,
    /// The timestep stepped to; `None` past the end, where the final ᾱ is used.
    pub prev_timestep: Option<usize>,
    /// ᾱ_t.
    pub alpha_prod_t: f32,
    /// ᾱ_{t_prev}, or the final ᾱ.
    pub alpha_prod_t_prev: f32,
    /// 1 − ᾱ_t.
    pub beta_prod_t: f32,
    /// √ᾱ_t.
    pub sqrt_alpha_prod_t: f32,
    /// √(1 − ᾱ_t).
    pub sqrt_beta_prod_t: f32,
    /// √ᾱ_{t_prev}.
    pub sqrt_alpha_prod_t_prev: f32,
    /// σ²_t(η = 1) = ((1 − ᾱ_prev)/(1 − ᾱ_t))·(1 − ᾱ_t/ᾱ_prev).
    pub variance: f32,
    /// σ_t = η·√variance, the standard deviation of the noise added (η·σ̂_t with
    /// [`VarianceKind::DdpmLarger`], clamped under [`EtaPolicy::ClampSigma`]).
    pub std_dev_t: f32,
    /// √((1 − ᾱ_prev) − σ_t²), the coefficient of ε̂ ("direction pointing to x_t"); 0 where
    /// rounding makes the radicand a tiny negative for η ≤ 1, NaN where η > 1 makes it negative.
    pub direction: f32,
    /// η as f32.
    pub eta: f32,
}

impl StepCoefficients {
    /// Computes the coefficients from ᾱ_t and ᾱ_prev in diffusers' f32 operation order, with
    /// the default policies ([`VarianceKind::Ddim`], [`EtaPolicy::Strict`]).
    ///
    /// ```
    /// let c = ddim::StepCoefficients::new(500, Some(480), 0.3, 0.35, 0.0);
    /// assert_eq!((c.std_dev_t, c.direction), (0.0, (1.0f32 - 0.35).sqrt()));
    /// ```
    pub fn new(
        timestep: usize,
        prev_timestep: Option<usize>,
        alpha_prod_t: f32,
        alpha_prod_t_prev: f32,
        eta: f32,
    ) -> Self {
        Self::with_policy(
            timestep,
            prev_timestep,
            alpha_prod_t,
            alpha_prod_t_prev,
            eta,
            VarianceKind::Ddim,
            EtaPolicy::Strict,
        )
    }

    /// Computes the coefficients with a choice of σ_t ([`VarianceKind`]) and of what happens
    /// where 1 − ᾱ_prev − σ_t² < 0 ([`EtaPolicy`]):
    ///
    /// * [`VarianceKind::Ddim`]: σ_t = η·√variance; [`VarianceKind::DdpmLarger`]: the noise has
    ///   σ̂_t = η·√(1 − ᾱ_t/ᾱ_prev) while the direction coefficient keeps DDIM's η·√variance;
    /// * [`EtaPolicy::Strict`]: a negative radicand with η ≤ 1 (rounding) is 0, with η > 1 it
    ///   stays NaN (the scheduler refuses it); [`EtaPolicy::Diffusers`]: NaN, as diffusers;
    ///   [`EtaPolicy::ClampSigma`]: σ_t ≤ √(1 − ᾱ_prev), the radicand clamped at 0.
    ///
    /// ```
    /// use ddim::{EtaPolicy, StepCoefficients, VarianceKind};
    /// let nan = StepCoefficients::with_policy(500, Some(480), 0.3, 0.35, 3.0, VarianceKind::Ddim, EtaPolicy::Diffusers);
    /// assert!(nan.direction.is_nan());
    /// let clamped = StepCoefficients::with_policy(500, Some(480), 0.3, 0.35, 3.0, VarianceKind::Ddim, EtaPolicy::ClampSigma);
    /// assert_eq!(clamped.direction, 0.0);
    /// ```
    pub fn with_policy(
        timestep: usize,
        prev_timestep: Option<usize>,
        alpha_prod_t: f32,
        alpha_prod_t_prev: f32,
        eta: f32,
        kind: VarianceKind,
        policy: EtaPolicy,
    ) -> Self {
        let beta_prod_t = 1.0 - alpha_prod_t;
        let beta_prod_t_prev = 1.0 - alpha_prod_t_prev;
        let variance = (beta_prod_t_prev / beta_prod_t) * (1.0 - alpha_prod_t / alpha_prod_t_prev);
        let mut sigma = eta * variance.sqrt();
        if policy == EtaPolicy::ClampSigma {
            // `min` that keeps a NaN σ (a NaN variance) NaN, as everything else here does.
            let limit = beta_prod_t_prev.sqrt();
            if sigma > limit {
                sigma = limit;
            }
        }
        let direction_sq = (1.0 - alpha_prod_t_prev) - sigma * sigma;
        // For η ≤ 1 this is ≥ 0 in exact arithmetic. At zero terminal SNR with η = 1 it is
        // exactly 0, and rounding can leave ±6e-8: diffusers then takes √(negative) = NaN
        // (diffusers #5969). Under the strict policy only that rounding residue is mapped to
        // 0; for η > 1 a negative value is real and stays NaN (the scheduler reports it as an
        // error). Clamped σ leaves at most a rounding residue, mapped to 0.
        let residue_to_zero = match policy {
            EtaPolicy::Strict => eta <= 1.0,
            EtaPolicy::Diffusers => false,
            EtaPolicy::ClampSigma => true,
        };
        let direction = if direction_sq < 0.0 && residue_to_zero {
            0.0
        } else {
            direction_sq.sqrt()
        };
        let std_dev_t = match kind {
            VarianceKind::Ddim => sigma,
            VarianceKind::DdpmLarger => eta * (1.0 - alpha_prod_t / alpha_prod_t_prev).sqrt(),
        };
        Self {
            timestep,
            prev_timestep,
            alpha_prod_t,
            alpha_prod_t_prev,
            beta_prod_t,
            sqrt_alpha_prod_t: alpha_prod_t.sqrt(),
            sqrt_beta_prod_t: beta_prod_t.sqrt(),
            sqrt_alpha_prod_t_prev: alpha_prod_t_prev.sqrt(),
            variance,
            std_dev_t,
            direction,
            eta,
        }
    }
}
