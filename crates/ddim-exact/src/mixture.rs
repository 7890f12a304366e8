//! [`GaussianMixture`]: an isotropic Gaussian mixture, its exact sampler and its log-density.

use rand::{Rng, RngExt};
use rand_distr::{Distribution, StandardNormal};

use crate::error::{Error, Result};

/// ln(2π).
const LN_2PI: f64 = 1.837_877_066_409_345_5;

/// A mixture of `K` isotropic Gaussians in `d` dimensions:
///
/// p(x) = Σ_k w_k·N(x; μ_k, s_k²·I),  Σ_k w_k = 1, s_k > 0.
///
/// Parameters are kept in `f64`; samples are `f32`, flat and batch-major (sample `i` is
/// `x[i·d .. (i+1)·d]`), as the scheduler wants them.
///
/// ```
/// use rand::SeedableRng;
/// let mixture = ddim_exact::GaussianMixture::new(1, vec![1.0, 3.0], vec![-1.0, 1.0], vec![0.1, 0.1])?;
/// assert_eq!(mixture.weights(), &[0.25, 0.75]);
/// let mut rng = rand::rngs::StdRng::seed_from_u64(7);
/// let x = mixture.sample(1000, &mut rng);
/// let mean = x.iter().map(|&v| f64::from(v)).sum::<f64>() / 1000.0;
/// assert!((mean - 0.5).abs() < 0.1);
/// # Ok::<(), ddim_exact::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct GaussianMixture {
    dim: usize,
    weights: Vec<f64>,
    log_weights: Vec<f64>,
    means: Vec<f64>,
    stds: Vec<f64>,
}

impl GaussianMixture {
    /// Builds the mixture from unnormalised weights (they are divided by their sum), the
    /// means (`K·d` values, component-major) and the per-component standard deviations `s_k`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidMixture`] for `d = 0`, no components, a negative, non-finite or
    /// all-zero weight, a non-finite mean, or a standard deviation that is not finite and
    /// positive; [`Error::LengthMismatch`] when `means` is not `K·d` long.
    pub fn new(dim: usize, weights: Vec<f64>, means: Vec<f64>, stds: Vec<f64>) -> Result<Self> {
        let invalid = |reason: String| Err(Error::InvalidMixture { reason });
        if dim == 0 {
            return invalid("dimension must be at least 1, got 0".into());
        }
        let k = weights.len();
        if k == 0 {
            return invalid("a mixture needs at least 1 component, got 0".into());
        }
        if stds.len() != k {
            return Err(Error::LengthMismatch {
                name: "stds",
                expected: k,
                got: stds.len(),
            });
        }
        if means.len() != k * dim {
            return Err(Error::LengthMismatch {
                name: "means",
                expected: k * dim,
                got: means.len(),
            });
        }
        if let Some((i, w)) = weights
            .iter()
            .enumerate()
            .find(|(_, w)| !(w.is_finite() && **w >= 0.0))
        {
            return invalid(format!(
                "component {i} has weight {w}, must be finite and >= 0"
            ));
        }
        let total: f64 = weights.iter().sum();
        if !(total > 0.0 && total.is_finite()) {
            return invalid(format!(
                "weights must have a positive finite sum, got {total}"
            ));
        }
        if let Some((i, s)) = stds
            .iter()
            .enumerate()
            .find(|(_, s)| !(s.is_finite() && **s > 0.0))
        {
            return invalid(format!("component {i} has std {s}, must be finite and > 0"));
        }
        if let Some(i) = means.iter().position(|m| !m.is_finite()) {
            return invalid(format!("component {} has a non-finite mean", i / dim));
        }
        let weights: Vec<f64> = weights.iter().map(|w| w / total).collect();
        let log_weights = weights.iter().map(|w| w.ln()).collect();
        Ok(Self {
            dim,
            weights,
            log_weights,
            means,
            stds,
        })
    }

    /// The dimension `d` of one sample.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// The number of components `K`.
    pub fn num_components(&self) -> usize {
        self.weights.len()
    }

    /// The normalised weights w_k.
    pub fn weights(&self) -> &[f64] {
        &self.weights
    }

    /// The mean μ_k of component `k` (`d` values).
    ///
    /// # Panics
    ///
    /// When `k >= K`.
    pub fn mean(&self, k: usize) -> &[f64] {
        &self.means[k * self.dim..(k + 1) * self.dim]
    }

    /// All means, component-major (`K·d` values).
    pub fn means(&self) -> &[f64] {
        &self.means
    }

    /// The standard deviations s_k.
    pub fn stds(&self) -> &[f64] {
        &self.stds
    }

    /// The mean of the mixture, E\[x₀\] = Σ_k w_k·μ_k.
    pub fn data_mean(&self) -> Vec<f64> {
        let mut mean = vec![0.0; self.dim];
        for (k, w) in self.weights.iter().enumerate() {
            for (m, mu) in mean.iter_mut().zip(self.mean(k)) {
                *m += w * mu;
            }
        }
        mean
    }

    /// Draws `n` exact samples: a component k with probability w_k, then μ_k + s_k·z with
    /// z ~ N(0, I). The draws use `rng` in a fixed order, so a seeded generator gives the
    /// same samples on every run.
    pub fn sample<R: Rng + ?Sized>(&self, n: usize, rng: &mut R) -> Vec<f32> {
        let mut x = Vec::with_capacity(n * self.dim);
        for _ in 0..n {
            let k = self.pick_component(rng.random::<f64>());
            let s = self.stds[k];
            for &mu in self.mean(k) {
                let z: f64 = StandardNormal.sample(rng);
                x.push((mu + s * z) as f32);
            }
        }
        x
    }

    /// The component whose cumulative weight first exceeds `u ∈ [0, 1)`.
    fn pick_component(&self, u: f64) -> usize {
        let mut cumulative = 0.0;
        for (k, w) in self.weights.iter().enumerate() {
            cumulative += w;
            if u < cumulative {
                return k;
            }
        }
        // Rounding can leave the sum a hair below 1: the last component with weight takes it.
        self.weights.iter().rposition(|&w| w > 0.0).unwrap_or(0)
    }

    /// ln p(x) for each sample of the batch, by log-sum-exp over the components:
    ///
    /// ln p(x) = LSE_k [ln w_k − (d/2)·ln(2π·s_k²) − ‖x − μ_k‖²/(2·s_k²)].
    ///
    /// # Errors
    ///
    /// [`Error::LengthMismatch`] when the batch is not a whole number of samples.
    pub fn log_density(&self, x: &[f32]) -> Result<Vec<f64>> {
        self.reduce_log_joint(x, log_sum_exp)
    }

    /// For each sample, the component with the largest responsibility
    /// argmax_k w_k·N(x; μ_k, s_k²·I) (the first one on a tie).
    ///
    /// # Errors
    ///
    /// [`Error::LengthMismatch`] when the batch is not a whole number of samples.
    pub fn assign(&self, x: &[f32]) -> Result<Vec<usize>> {
        self.reduce_log_joint(x, argmax)
    }

    /// `reduce` applied to each sample's ln(w_k·N(x; μ_k, s_k²·I)) over the components.
    fn reduce_log_joint<T>(&self, x: &[f32], reduce: impl Fn(&[f64]) -> T) -> Result<Vec<T>> {
        self.check_batch("x", x)?;
        let kernel = self.clean_kernel();
        let mut logits = vec![0.0; self.num_components()];
        Ok(x.chunks_exact(self.dim)
            .map(|xi| {
                self.log_joint(xi, &kernel, &mut logits);
                reduce(&logits)
            })
            .collect())
    }

    /// The kernel of the clean data, N(x; μ_k, s_k²·I).
    fn clean_kernel(&self) -> Kernel {
        let variances: Vec<f64> = self.stds.iter().map(|s| s * s).collect();
        self.kernel(1.0, &variances)
    }

    /// The kernel of the components N(x; c·μ_k, v_k·I), k = 1 … K.
    pub(crate) fn kernel(&self, c: f64, variances: &[f64]) -> Kernel {
        let half_d = 0.5 * self.dim as f64;
        Kernel {
            c,
            log_norms: self
                .log_weights
                .iter()
                .zip(variances)
                .map(|(lw, v)| lw - half_d * (LN_2PI + v.ln()))
                .collect(),
            half_precisions: variances.iter().map(|v| 0.5 / v).collect(),
        }
    }

    /// Writes ln w_k + ln N(x; c·μ_k, v_k·I) for every component into `logits`.
    pub(crate) fn log_joint(&self, x: &[f32], kernel: &Kernel, logits: &mut [f64]) {
        for (k, logit) in logits.iter_mut().enumerate() {
            let d2: f64 = x
                .iter()
                .zip(self.mean(k))
                .map(|(&xi, mu)| {
                    let r = f64::from(xi) - kernel.c * mu;
                    r * r
                })
                .sum();
            *logit = kernel.log_norms[k] - kernel.half_precisions[k] * d2;
        }
    }

    /// Checks that `x` holds a whole number of samples; returns that number.
    pub(crate) fn check_batch(&self, name: &'static str, x: &[f32]) -> Result<usize> {
        if x.len() % self.dim != 0 {
            return Err(Error::LengthMismatch {
                name,
                expected: (x.len() / self.dim + 1) * self.dim,
                got: x.len(),
            });
        }
        Ok(x.len() / self.dim)
    }
}

/// The per-component constants of ln w_k + ln N(x; c·μ_k, v_k·I), computed once per noise
/// level rather than once per sample.
#[derive(Debug, Clone)]
pub(crate) struct Kernel {
    /// The scale c of the means.
    c: f64,
    /// ln w_k − (d/2)·ln(2π·v_k).
    log_norms: Vec<f64>,
    /// 1/(2·v_k).
    half_precisions: Vec<f64>,
}

/// ln Σ_k exp(l_k), shifted by the largest term so nothing overflows; −∞ when every term is.
pub(crate) fn log_sum_exp(logits: &[f64]) -> f64 {
    let max = logits.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if max == f64::NEG_INFINITY {
        return max;
    }
    max + logits.iter().map(|l| (l - max).exp()).sum::<f64>().ln()
}

/// Replaces the logits by the softmax r_k = exp(l_k − LSE(l)) in place. Terms below
/// e^(`cutoff`) relative to the largest are set to 0 without calling `exp` (the caller picks a
/// cutoff under which they cannot change its sums; −∞ keeps every term).
pub(crate) fn softmax_in_place(logits: &mut [f64], cutoff: f64) {
    let max = logits.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let mut total = 0.0;
    for l in logits.iter_mut() {
        // A zero-weight component has l = −∞ and gets r = 0.
        let shifted = *l - max;
        *l = if shifted < cutoff { 0.0 } else { shifted.exp() };
        total += *l;
    }
    for l in logits.iter_mut() {
        *l /= total;
    }
}

fn argmax(values: &[f64]) -> usize {
    let mut best = 0;
    for (i, v) in values.iter().enumerate() {
        if *v > values[best] {
            best = i;
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn two_bumps() -> GaussianMixture {
        GaussianMixture::new(2, vec![1.0, 1.0], vec![-1.0, 0.0, 1.0, 0.0], vec![0.2, 0.5]).unwrap()
    }

    #[test]
    fn rejects_bad_parameters() {
        let bad = [
            GaussianMixture::new(0, vec![1.0], vec![], vec![1.0]),
            GaussianMixture::new(1, vec![], vec![], vec![]),
            GaussianMixture::new(1, vec![-1.0], vec![0.0], vec![1.0]),
            GaussianMixture::new(1, vec![0.0], vec![0.0], vec![1.0]),
            GaussianMixture::new(1, vec![1.0], vec![0.0], vec![0.0]),
            GaussianMixture::new(1, vec![1.0], vec![f64::NAN], vec![1.0]),
            GaussianMixture::new(2, vec![1.0], vec![0.0], vec![1.0]),
        ];
        for result in bad {
            assert!(result.is_err(), "{result:?}");
        }
    }

    #[test]
    fn log_density_of_one_gaussian_is_the_textbook_formula() {
        let g = GaussianMixture::new(2, vec![1.0], vec![0.5, -0.5], vec![2.0]).unwrap();
        let lp = g.log_density(&[1.5, 0.5]).unwrap()[0];
        // ln N = −(d/2)·ln(2π s²) − ‖x − μ‖²/(2s²) with d = 2, s² = 4, ‖x − μ‖² = 2.
        let textbook = -(2.0 * std::f64::consts::PI * 4.0).ln() - 0.25;
        assert!((lp - textbook).abs() < 1e-12, "{lp} vs {textbook}");
    }

    #[test]
    fn log_density_survives_far_away_points() {
        // Without log-sum-exp every term underflows to 0 and ln 0 = −∞.
        let lp = two_bumps().log_density(&[1.0e3, 0.0]).unwrap()[0];
        assert!(lp.is_finite() && lp < -1.0e6, "{lp}");
    }

    #[test]
    fn sample_moments_match_the_parameters() {
        let g = two_bumps();
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let n = 20_000;
        let x = g.sample(n, &mut rng);
        let mean_x = x.iter().step_by(2).map(|&v| f64::from(v)).sum::<f64>() / n as f64;
        // E[x] = 0; Var[x] = E[s²] + Var[μ] = (0.04 + 0.25)/2 + 1 = 1.145.
        let var_x = x
            .iter()
            .step_by(2)
            .map(|&v| f64::from(v).powi(2))
            .sum::<f64>()
            / n as f64;
        // Standard errors: √(1.145/n) ≈ 0.0076 for the mean; ≈ 0.0075 for the variance.
        assert!(mean_x.abs() < 0.04, "{mean_x}");
        assert!((var_x - 1.145).abs() < 0.04, "{var_x}");
        let assigned = g.assign(&x).unwrap();
        let left = assigned.iter().filter(|&&k| k == 0).count() as f64 / n as f64;
        assert!((left - 0.5).abs() < 0.03, "{left}");
    }

    #[test]
    fn rejects_ragged_batches() {
        assert!(matches!(
            two_bumps().log_density(&[0.0; 3]),
            Err(Error::LengthMismatch { .. })
        ));
    }
}
