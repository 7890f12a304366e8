//! The optimal denoiser of a [`GaussianMixture`], in closed form.
//!
//! With x_t = √a·x₀ + √(1 − a)·ε, x₀ ~ Σ_k w_k·N(μ_k, s_k²·I) and ε ~ N(0, I), each component
//! gives x_t ~ N(√a·μ_k, v_k·I) with v_k = a·s_k² + 1 − a, and the posterior is again a mixture:
//!
//! r_k(x_t) ∝ w_k·N(x_t; √a·μ_k, v_k·I)   (normalised with log-sum-exp),
//! E[x₀ | x_t] = Σ_k r_k·(μ_k + (√a·s_k²/v_k)·(x_t − √a·μ_k)),
//! E[ε | x_t]  = Σ_k r_k·(√(1 − a)/v_k)·(x_t − √a·μ_k),
//! v̂ = √a·E[ε | x_t] − √(1 − a)·E[x₀ | x_t].
//!
//! These are the minimisers of the training losses of the three prediction types, so they are
//! what a perfectly trained network would output. Nothing is divided by √a or √(1 − a), and
//! v_k ≥ min(1, s_k²) > 0, so every ᾱ in [0, 1] (both ends included) gives finite numbers.

use ddim::PredictionType;

use crate::error::{Error, Result};
use crate::mixture::{softmax_in_place, GaussianMixture, Kernel};

/// Responsibilities below e^(−46) ≈ 1e−20 of the largest are dropped: their terms are under
/// f64's resolution of the sum (the largest responsibility is at least 1/K, and every term is
/// of the same scale).
const LN_NEGLIGIBLE: f64 = -46.0;

/// The posterior means E[x₀ | x_t] and E[ε | x_t] of a batch, in `f64`.
#[derive(Debug, Clone, PartialEq)]
pub struct PosteriorMean {
    /// E[x₀ | x_t], batch-major, as long as x_t.
    pub x0: Vec<f64>,
    /// E[ε | x_t], batch-major, as long as x_t.
    pub eps: Vec<f64>,
}

/// The scalars of one noise level a = ᾱ_t.
struct Level {
    sqrt_a: f64,
    sqrt_b: f64,
    /// ln w_k + ln N(x_t; √a·μ_k, v_k·I) with v_k = a·s_k² + 1 − a.
    kernel: Kernel,
    /// √a·s_k²/v_k.
    x0_gains: Vec<f64>,
    /// √(1 − a)/v_k.
    eps_gains: Vec<f64>,
}

impl Level {
    fn new(mixture: &GaussianMixture, alpha_bar: f64) -> Result<Self> {
        if !(0.0..=1.0).contains(&alpha_bar) {
            return Err(Error::InvalidAlphaBar(alpha_bar));
        }
        let a = alpha_bar;
        let b = 1.0 - a;
        let (sqrt_a, sqrt_b) = (a.sqrt(), b.sqrt());
        let variances: Vec<f64> = mixture.stds().iter().map(|s| a * s * s + b).collect();
        let x0_gains = mixture
            .stds()
            .iter()
            .zip(&variances)
            .map(|(s, v)| sqrt_a * s * s / v)
            .collect();
        let eps_gains = variances.iter().map(|v| sqrt_b / v).collect();
        Ok(Self {
            sqrt_a,
            sqrt_b,
            kernel: mixture.kernel(sqrt_a, &variances),
            x0_gains,
            eps_gains,
        })
    }
}

impl GaussianMixture {
    /// E[x₀ | x_t] and E[ε | x_t] for each sample of the batch `x_t` at ᾱ_t = `alpha_bar`
    /// (see the [module docs](self) for the equations).
    ///
    /// ```
    /// // One Gaussian N(2, 0.5²): E[x₀ | x_t] = μ + √a·s²/(a·s² + 1 − a)·(x_t − √a·μ).
    /// let g = ddim_exact::GaussianMixture::new(1, vec![1.0], vec![2.0], vec![0.5])?;
    /// let post = g.posterior_mean(&[1.0], 0.64)?;
    /// let expected = 2.0 + 0.8 * 0.25 / (0.64 * 0.25 + 0.36) * (1.0 - 0.8 * 2.0);
    /// assert!((post.x0[0] - expected).abs() < 1e-12);
    /// # Ok::<(), ddim_exact::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::InvalidAlphaBar`] unless 0 ≤ ᾱ ≤ 1; [`Error::LengthMismatch`] when the batch
    /// is not a whole number of samples.
    pub fn posterior_mean(&self, x_t: &[f32], alpha_bar: f64) -> Result<PosteriorMean> {
        self.check_batch("x_t", x_t)?;
        let level = Level::new(self, alpha_bar)?;
        let mut post = PosteriorMean {
            x0: vec![0.0; x_t.len()],
            eps: vec![0.0; x_t.len()],
        };
        let mut logits = vec![0.0; self.num_components()];
        for ((x, x0), eps) in x_t
            .chunks_exact(self.dim())
            .zip(post.x0.chunks_exact_mut(self.dim()))
            .zip(post.eps.chunks_exact_mut(self.dim()))
        {
            self.denoise_one(x, &level, &mut logits, x0, eps);
        }
        Ok(post)
    }

    /// What a perfectly trained model of this `prediction_type` outputs for the batch `x_t`
    /// at ᾱ_t = `alpha_bar`: E[ε | x_t] (`epsilon`), E[x₀ | x_t] (`sample`) or
    /// √a·E[ε | x_t] − √(1 − a)·E[x₀ | x_t] (`v_prediction`), rounded to `f32`.
    ///
    /// ```
    /// use ddim::PredictionType;
    /// let g = ddim_exact::GaussianMixture::new(2, vec![1.0, 1.0], vec![-1.0, 0.0, 1.0, 0.0], vec![0.1, 0.1])?;
    /// // At ᾱ = 0, x_t is pure noise: ε̂ = x_t, x̂₀ = E[x₀] = 0, v̂ = −x̂₀.
    /// assert_eq!(g.predict(&[0.3, -0.2], 0.0, PredictionType::Epsilon)?, vec![0.3, -0.2]);
    /// assert_eq!(g.predict(&[0.3, -0.2], 0.0, PredictionType::VPrediction)?, vec![0.0, 0.0]);
    /// # Ok::<(), ddim_exact::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`posterior_mean`](Self::posterior_mean).
    pub fn predict(
        &self,
        x_t: &[f32],
        alpha_bar: f64,
        prediction_type: PredictionType,
    ) -> Result<Vec<f32>> {
        let mut out = vec![0.0; x_t.len()];
        self.predict_into(x_t, alpha_bar, prediction_type, &mut out)?;
        Ok(out)
    }

    /// [`predict`](Self::predict) into the caller's buffer (as long as `x_t`).
    ///
    /// # Errors
    ///
    /// As [`predict`](Self::predict), and [`Error::LengthMismatch`] for an `out` of the wrong
    /// length.
    pub fn predict_into(
        &self,
        x_t: &[f32],
        alpha_bar: f64,
        prediction_type: PredictionType,
        out: &mut [f32],
    ) -> Result<()> {
        self.check_batch("x_t", x_t)?;
        if out.len() != x_t.len() {
            return Err(Error::LengthMismatch {
                name: "out",
                expected: x_t.len(),
                got: out.len(),
            });
        }
        let level = Level::new(self, alpha_bar)?;
        let d = self.dim();
        let mut logits = vec![0.0; self.num_components()];
        let mut x0 = vec![0.0; d];
        let mut eps = vec![0.0; d];
        for (x, o) in x_t.chunks_exact(d).zip(out.chunks_exact_mut(d)) {
            self.denoise_one(x, &level, &mut logits, &mut x0, &mut eps);
            for ((o, x0), eps) in o.iter_mut().zip(&x0).zip(&eps) {
                let m = match prediction_type {
                    PredictionType::Epsilon => *eps,
                    PredictionType::Sample => *x0,
                    PredictionType::VPrediction => level.sqrt_a * eps - level.sqrt_b * x0,
                };
                *o = m as f32;
            }
        }
        Ok(())
    }

    /// The posterior means of one sample `x` (length d) into `x0` and `eps`.
    fn denoise_one(
        &self,
        x: &[f32],
        level: &Level,
        logits: &mut [f64],
        x0: &mut [f64],
        eps: &mut [f64],
    ) {
        self.log_joint(x, &level.kernel, logits);
        softmax_in_place(logits, LN_NEGLIGIBLE);
        x0.fill(0.0);
        eps.fill(0.0);
        for (k, &r) in logits.iter().enumerate() {
            if r == 0.0 {
                continue;
            }
            let (gx, ge) = (r * level.x0_gains[k], r * level.eps_gains[k]);
            for (((x0, eps), &xi), &mu) in
                x0.iter_mut().zip(eps.iter_mut()).zip(x).zip(self.mean(k))
            {
                let residual = f64::from(xi) - level.sqrt_a * mu;
                *x0 += r * mu + gx * residual;
                *eps += ge * residual;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_distr::{Distribution, StandardNormal};

    fn ring() -> GaussianMixture {
        crate::Dataset::Ring.mixture()
    }

    #[test]
    fn finite_at_both_ends_of_the_schedule() {
        let g = ring();
        let x = [0.3f32, -2.5, 40.0, 0.0];
        for a in [0.0, 1e-12, 0.5, 1.0 - 1e-7, 1.0] {
            for p in PredictionType::ALL {
                let m = g.predict(&x, a, *p).unwrap();
                assert!(m.iter().all(|v| v.is_finite()), "a = {a}, {p}: {m:?}");
            }
        }
        // The limits: at a = 1 the sample is clean (x̂₀ = x_t, ε̂ = 0); at a = 0 it is noise.
        let clean = g.posterior_mean(&x, 1.0).unwrap();
        for (x0, xi) in clean.x0.iter().zip(x) {
            assert!((x0 - f64::from(xi)).abs() < 1e-12);
        }
        assert!(clean.eps.iter().all(|e| *e == 0.0));
        let noise = g.posterior_mean(&x, 0.0).unwrap();
        for ((x0, eps), xi) in noise.x0.iter().zip(&noise.eps).zip(x) {
            assert!(x0.abs() < 1e-12, "ring mean is 0, got {x0}");
            assert_eq!(*eps, f64::from(xi));
        }
    }

    #[test]
    fn rejects_alpha_bar_outside_the_unit_interval() {
        for a in [-1e-9, 1.0 + 1e-9, f64::NAN] {
            assert!(matches!(
                ring().predict(&[0.0, 0.0], a, PredictionType::Epsilon),
                Err(Error::InvalidAlphaBar(_))
            ));
        }
    }

    #[test]
    fn posterior_means_reconstruct_x_t() {
        // x_t = √a·x₀ + √(1−a)·ε holds for every draw, so also for the conditional means.
        let g = ring();
        let x = [0.4f32, -0.1, -1.3, 0.9, 0.0, 0.0];
        for a in [1e-4, 0.1, 0.5, 0.99] {
            let post = g.posterior_mean(&x, a).unwrap();
            for ((x0, eps), xi) in post.x0.iter().zip(&post.eps).zip(x) {
                let rebuilt = a.sqrt() * x0 + (1.0 - a).sqrt() * eps;
                assert!((rebuilt - f64::from(xi)).abs() < 1e-12, "a = {a}");
            }
        }
    }

    #[test]
    fn the_three_prediction_types_agree_through_the_scheduler_formulas() {
        let g = crate::Dataset::Grid.mixture();
        let x = [0.25f32, -0.7];
        let a = 0.3f64;
        let (sa, sb) = (a.sqrt(), (1.0 - a).sqrt());
        let x0 = g.predict(&x, a, PredictionType::Sample).unwrap();
        let eps = g.predict(&x, a, PredictionType::Epsilon).unwrap();
        let v = g.predict(&x, a, PredictionType::VPrediction).unwrap();
        for i in 0..2 {
            let xi = f64::from(x[i]);
            let from_eps = (xi - sb * f64::from(eps[i])) / sa;
            let from_v = sa * xi - sb * f64::from(v[i]);
            assert!((from_eps - f64::from(x0[i])).abs() < 1e-5);
            assert!((from_v - f64::from(x0[i])).abs() < 1e-6);
        }
    }

    /// E[x₀ | x_t] by self-normalised importance sampling over exact draws x₀⁽ʲ⁾ with weights
    /// q_j = N(x_t; √a·x₀⁽ʲ⁾, (1 − a)·I) must match the closed form within 5 of its own
    /// standard errors, se² = Σ_j q_j²·(x₀⁽ʲ⁾ − m)² / (Σ_j q_j)² (delta method). A wrong
    /// gain or responsibility moves the closed form by far more than that.
    #[test]
    fn closed_form_matches_monte_carlo() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(42);
        let n = 100_000;
        for (g, a) in [
            (ring(), 0.5f64),
            (ring(), 0.9),
            (crate::Dataset::Grid.mixture(), 0.7),
        ] {
            let draws = g.sample(n, &mut rng);
            let x0_true = g.sample(1, &mut rng);
            let x_t: Vec<f32> = x0_true
                .iter()
                .map(|&x0| {
                    let z: f64 = StandardNormal.sample(&mut rng);
                    (a.sqrt() * f64::from(x0) + (1.0 - a).sqrt() * z) as f32
                })
                .collect();
            let closed = g.posterior_mean(&x_t, a).unwrap().x0;
            let log_q: Vec<f64> = draws
                .chunks_exact(2)
                .map(|x0| {
                    let d2: f64 = x0
                        .iter()
                        .zip(&x_t)
                        .map(|(&x0, &xt)| (f64::from(xt) - a.sqrt() * f64::from(x0)).powi(2))
                        .sum();
                    -0.5 * d2 / (1.0 - a)
                })
                .collect();
            let max = log_q.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let q: Vec<f64> = log_q.iter().map(|l| (l - max).exp()).collect();
            let total: f64 = q.iter().sum();
            for i in 0..2 {
                let m = draws
                    .chunks_exact(2)
                    .zip(&q)
                    .map(|(x0, q)| q * f64::from(x0[i]))
                    .sum::<f64>()
                    / total;
                let se = draws
                    .chunks_exact(2)
                    .zip(&q)
                    .map(|(x0, q)| (q * (f64::from(x0[i]) - m)).powi(2))
                    .sum::<f64>()
                    .sqrt()
                    / total;
                assert!(
                    (m - closed[i]).abs() < 5.0 * se + 1e-6,
                    "a = {a}, coordinate {i}: Monte Carlo {m} ± {se}, closed form {}",
                    closed[i]
                );
            }
        }
    }
}
