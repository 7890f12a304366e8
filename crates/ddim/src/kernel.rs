//! The element-wise DDIM update over slices, and the per-sample dynamic threshold.
//!
//! Every operation is one f32 rounding in the order diffusers evaluates it (Rust does not
//! contract `a * b + c` into a fused multiply-add), so results match diffusers bit for bit
//! given the same scalar coefficients.

use crate::config::PredictionType;

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
    /// σ_t = η·√variance.
    pub std_dev_t: f32,
    /// √((1 − ᾱ_prev) − σ_t²), the coefficient of ε̂ ("direction pointing to x_t"); 0 where
    /// rounding makes the radicand a tiny negative for η ≤ 1, NaN where η > 1 makes it negative.
    pub direction: f32,
    /// η as f32.
    pub eta: f32,
}

impl StepCoefficients {
    /// Computes the coefficients from ᾱ_t and ᾱ_prev in diffusers' f32 operation order.
    pub fn new(
        timestep: usize,
        prev_timestep: Option<usize>,
        alpha_prod_t: f32,
        alpha_prod_t_prev: f32,
        eta: f32,
    ) -> Self {
        let beta_prod_t = 1.0 - alpha_prod_t;
        let beta_prod_t_prev = 1.0 - alpha_prod_t_prev;
        let variance = (beta_prod_t_prev / beta_prod_t) * (1.0 - alpha_prod_t / alpha_prod_t_prev);
        let std_dev_t = eta * variance.sqrt();
        let direction_sq = (1.0 - alpha_prod_t_prev) - std_dev_t * std_dev_t;
        // For η ≤ 1 this is ≥ 0 in exact arithmetic. At zero terminal SNR with η = 1 it is
        // exactly 0, and rounding can leave ±6e-8: diffusers then takes √(negative) = NaN
        // (diffusers #5969). Only that rounding residue is mapped to 0; for η > 1 a negative
        // value is real and stays NaN (the scheduler reports it as an error).
        let direction = if direction_sq < 0.0 && eta <= 1.0 {
            0.0
        } else {
            direction_sq.sqrt()
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

/// What happens to x̂₀ after it is recovered from the model output.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum X0Bound {
    /// Left as is.
    None,
    /// Clamped to `[-r, r]` (`clip_sample`).
    Clip(f32),
    /// Clamped to `[-s, s]` and divided by `s` (dynamic thresholding, `s` per batch item).
    Threshold(f32),
}

/// torch's `clamp(x, lo, hi)`: `min(max(x, lo), hi)`, NaN passes through.
#[inline(always)]
fn clamp_keep_nan(x: f32, lo: f32, hi: f32) -> f32 {
    if x.is_nan() {
        x
    } else {
        let x = if x < lo { lo } else { x };
        if x > hi {
            hi
        } else {
            x
        }
    }
}

/// x̂₀ and ε̂ from the model output (`m`) and x_t (`x`), before any bound.
#[inline(always)]
fn recover(prediction: PredictionType, c: &StepCoefficients, m: f32, x: f32) -> (f32, f32) {
    let (sa, sb) = (c.sqrt_alpha_prod_t, c.sqrt_beta_prod_t);
    match prediction {
        PredictionType::Epsilon => ((x - sb * m) / sa, m),
        PredictionType::Sample => (m, (x - sa * m) / sb),
        PredictionType::VPrediction => (sa * x - sb * m, sa * m + sb * x),
    }
}

/// The settings of one call to [`ddim_update`] that do not vary per element.
#[derive(Debug, Clone, Copy)]
pub(crate) struct UpdateRule<'c> {
    pub(crate) prediction: PredictionType,
    pub(crate) coefficients: &'c StepCoefficients,
    pub(crate) bound: X0Bound,
    pub(crate) use_clipped_model_output: bool,
    /// Add σ·z: diffusers does so only when η > 0.
    pub(crate) add_noise: bool,
}

/// One fused pass: x̂₀ (bounded) into `x0_out`, x_{t_prev} into `prev_out`.
pub(crate) fn ddim_update(
    rule: UpdateRule<'_>,
    model_output: &[f32],
    sample: &[f32],
    noise: Option<&[f32]>,
    prev_out: &mut [f32],
    x0_out: &mut [f32],
) {
    let c = rule.coefficients;
    let element = |m: f32, x: f32| -> (f32, f32) {
        let (mut x0, mut eps) = recover(rule.prediction, c, m, x);
        x0 = match rule.bound {
            X0Bound::None => x0,
            X0Bound::Clip(r) => clamp_keep_nan(x0, -r, r),
            X0Bound::Threshold(s) => clamp_keep_nan(x0, -s, s) / s,
        };
        if rule.use_clipped_model_output {
            eps = (x - c.sqrt_alpha_prod_t * x0) / c.sqrt_beta_prod_t;
        }
        (x0, c.sqrt_alpha_prod_t_prev * x0 + c.direction * eps)
    };
    let outputs = prev_out.iter_mut().zip(x0_out.iter_mut());
    let inputs = model_output.iter().zip(sample);
    match noise.filter(|_| rule.add_noise) {
        Some(z) => {
            for (((p, o), (&m, &x)), &z) in outputs.zip(inputs).zip(z) {
                let (x0, prev) = element(m, x);
                *o = x0;
                *p = prev + c.std_dev_t * z;
            }
        }
        None => {
            for ((p, o), (&m, &x)) in outputs.zip(inputs) {
                let (x0, prev) = element(m, x);
                *o = x0;
                *p = prev;
            }
        }
    }
}

/// Unbounded x̂₀ into `x0_out` (the first pass of thresholding).
pub(crate) fn recover_x0(
    prediction: PredictionType,
    c: &StepCoefficients,
    model_output: &[f32],
    sample: &[f32],
    x0_out: &mut [f32],
) {
    for ((o, &m), &x) in x0_out.iter_mut().zip(model_output).zip(sample) {
        *o = recover(prediction, c, m, x).0;
    }
}

/// `torch.quantile(|row|, q)` with linear interpolation, by selection in O(len), using
/// `scratch` (same length as `row`) as work space.
///
/// torch makes `q` an f32 tensor, computes the rank `q·(N−1)` and the interpolation in f64,
/// and rounds the result to f32. A row holding NaN has quantile NaN.
pub(crate) fn abs_quantile(row: &[f32], q: f32, scratch: &mut [f32]) -> f32 {
    let n = row.len();
    debug_assert!(n > 0 && scratch.len() == n);
    if row.iter().any(|v| v.is_nan()) {
        return f32::NAN;
    }
    for (s, &v) in scratch.iter_mut().zip(row) {
        *s = v.abs();
    }
    let rank = f64::from(q) * (n - 1) as f64;
    let lo = rank.floor() as usize;
    let hi = rank.ceil() as usize;
    let weight = rank - lo as f64;
    let (_, &mut lo_value, above) = scratch.select_nth_unstable_by(lo, f32::total_cmp);
    let hi_value = if hi == lo {
        lo_value
    } else {
        above.iter().copied().fold(f32::INFINITY, f32::min)
    };
    let (lo_value, hi_value) = (f64::from(lo_value), f64::from(hi_value));
    (lo_value + weight * (hi_value - lo_value)) as f32
}

/// The dynamic threshold s = clamp(quantile, min = 1, max = sample_max_value) (torch applies
/// `min` first, so `sample_max_value < 1` gives `s = sample_max_value`).
pub(crate) fn dynamic_threshold(quantile: f32, sample_max_value: f32) -> f32 {
    if quantile.is_nan() {
        quantile
    } else {
        quantile.max(1.0).min(sample_max_value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sorted_quantile(row: &[f32], q: f32) -> f32 {
        let mut s: Vec<f64> = row.iter().map(|v| f64::from(v.abs())).collect();
        s.sort_by(f64::total_cmp);
        let rank = f64::from(q) * (s.len() - 1) as f64;
        let (lo, hi) = (rank.floor() as usize, rank.ceil() as usize);
        (s[lo] + (rank - lo as f64) * (s[hi] - s[lo])) as f32
    }

    #[test]
    fn selection_quantile_equals_sorting_quantile() {
        let mut state = 12345u64;
        for n in [1usize, 2, 3, 7, 192, 1000] {
            let row: Vec<f32> = (0..n)
                .map(|_| {
                    state = state
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    ((state >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 6.0
                })
                .collect();
            for q in [0.0f32, 0.5, 0.9, 0.995, 1.0] {
                let mut scratch = vec![0.0; n];
                assert_eq!(
                    abs_quantile(&row, q, &mut scratch),
                    sorted_quantile(&row, q),
                    "n={n} q={q}"
                );
            }
        }
    }

    #[test]
    fn nan_row_gives_nan_threshold() {
        let mut scratch = [0.0; 3];
        let q = abs_quantile(&[1.0, f32::NAN, 2.0], 0.5, &mut scratch);
        assert!(q.is_nan());
        assert!(dynamic_threshold(q, 2.0).is_nan());
        assert_eq!(dynamic_threshold(0.3, 2.0), 1.0);
        assert_eq!(dynamic_threshold(1.7, 2.0), 1.7);
        assert_eq!(dynamic_threshold(5.0, 2.0), 2.0);
        assert_eq!(dynamic_threshold(5.0, 0.5), 0.5);
    }

    #[test]
    fn clamp_passes_nan_and_bounds_infinities() {
        assert!(clamp_keep_nan(f32::NAN, -1.0, 1.0).is_nan());
        assert_eq!(clamp_keep_nan(f32::INFINITY, -1.0, 1.0), 1.0);
        assert_eq!(clamp_keep_nan(f32::NEG_INFINITY, -1.0, 1.0), -1.0);
    }
}
