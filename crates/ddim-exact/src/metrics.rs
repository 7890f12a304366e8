//! Sample-quality metrics against a known [`GaussianMixture`], and their noise floors.
//!
//! With `N` generated samples x⁽ⁱ⁾ of dimension d:
//!
//! * **sliced Wasserstein-2** to `M` exact samples y⁽ʲ⁾, over `L` random unit directions θ_l
//!   (a fixed, seeded set):
//!   SW₂ = √((1/L)·Σ_l W₂²(θ_l·x, θ_l·y)), where the 1-D W₂² between two empirical
//!   distributions is ∫₀¹ (F⁻¹(q) − G⁻¹(q))² dq, computed exactly from the sorted projections;
//! * **mode coverage**: each sample goes to its most responsible component
//!   k(x) = argmax_k w_k·N(x; μ_k, s_k²·I); with p̂_k the share of samples in component k, the
//!   total-variation distance TV = ½·Σ_k |p̂_k − w_k| and the number of modes hit
//!   #{k : p̂_k > 0};
//! * **mean log-likelihood** under the true density: (1/N)·Σ_i ln p(x⁽ⁱ⁾) (nats per sample).
//!   Exact samples give −H(p) on average; a value *above* that floor means the samples
//!   crowd the modes (too little spread), below it means they stray between or beyond them.
//!
//! Each metric has sampling noise, so it is reported beside its **noise floor**: the same
//! metric for `N` fresh exact samples against the same reference
//! ([`Evaluator::noise_floor`]). A sampler is as good as the exact one when it sits at the
//! floor; SW₂'s floor shrinks like 1/√N.

use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, StandardNormal};

use crate::error::{Error, Result};
use crate::mixture::GaussianMixture;

/// The quality figures of one set of samples (see the [module docs](self) for formulas).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Metrics {
    /// Sliced Wasserstein-2 distance to the reference exact samples.
    pub sliced_w2: f64,
    /// Total-variation distance between the share of samples per component and the weights.
    pub mode_tv: f64,
    /// How many components received at least one sample.
    pub modes_hit: usize,
    /// Mean ln p(x) under the true density, in nats per sample.
    pub mean_log_likelihood: f64,
}

/// Mode coverage of a batch (see the [module docs](self)).
#[derive(Debug, Clone, PartialEq)]
pub struct ModeCoverage {
    /// p̂_k: the share of samples whose most responsible component is k.
    pub shares: Vec<f64>,
    /// TV = ½·Σ_k |p̂_k − w_k|, in [0, 1].
    pub tv_distance: f64,
    /// #{k : p̂_k > 0}.
    pub modes_hit: usize,
}

/// Scores sample sets against one fixed set of exact reference samples and one fixed set of
/// projection directions, so that scores of different samplers are comparable.
///
/// ```
/// use rand::SeedableRng;
/// let ring = ddim_exact::Dataset::Ring.mixture();
/// let mut rng = rand::rngs::StdRng::seed_from_u64(3);
/// let eval = ddim_exact::Evaluator::new(&ring, 500, &mut rng);
/// let floor = eval.noise_floor(500, &mut rng)?;
/// let collapsed = vec![0.75f32, 0.0].repeat(500); // every sample on one mode's centre
/// let bad = eval.evaluate(&collapsed)?;
/// assert!(bad.sliced_w2 > 5.0 * floor.sliced_w2);
/// assert_eq!(bad.modes_hit, 1);
/// # Ok::<(), ddim_exact::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Evaluator<'a> {
    mixture: &'a GaussianMixture,
    reference: Vec<f32>,
    projections: usize,
    projection_seed: u64,
}

impl<'a> Evaluator<'a> {
    /// The number L of projection directions of SW₂.
    pub const PROJECTIONS: usize = 128;

    /// Draws `reference_count` exact reference samples from `rng`, and the seed of the
    /// projection directions after them.
    pub fn new<R: Rng + ?Sized>(
        mixture: &'a GaussianMixture,
        reference_count: usize,
        rng: &mut R,
    ) -> Self {
        let reference = mixture.sample(reference_count, rng);
        Self {
            mixture,
            reference,
            projections: Self::PROJECTIONS,
            projection_seed: rng.next_u64(),
        }
    }

    /// Uses `projections` directions for SW₂ instead of [`PROJECTIONS`](Self::PROJECTIONS)
    /// (fewer is faster and noisier).
    ///
    /// # Errors
    ///
    /// [`Error::ZeroCount`] when `projections` is 0.
    pub fn with_projections(mut self, projections: usize) -> Result<Self> {
        if projections == 0 {
            return Err(Error::ZeroCount("projections"));
        }
        self.projections = projections;
        Ok(self)
    }

    /// The mixture the samples are scored against.
    pub fn mixture(&self) -> &GaussianMixture {
        self.mixture
    }

    /// Scores `samples` (batch-major, a whole number of samples).
    ///
    /// # Errors
    ///
    /// [`Error::LengthMismatch`] for a ragged batch, [`Error::ZeroCount`] for an empty one,
    /// [`Error::NonFiniteSample`] when a sample holds NaN or ±∞.
    pub fn evaluate(&self, samples: &[f32]) -> Result<Metrics> {
        let coverage = mode_coverage(self.mixture, samples)?;
        Ok(Metrics {
            sliced_w2: sliced_wasserstein(
                samples,
                &self.reference,
                self.mixture.dim(),
                self.projections,
                self.projection_seed,
            )?,
            mode_tv: coverage.tv_distance,
            modes_hit: coverage.modes_hit,
            mean_log_likelihood: mean_log_likelihood(self.mixture, samples)?,
        })
    }

    /// The metrics of `count` fresh exact samples drawn from `rng`: what a perfect sampler
    /// scores with this many samples.
    ///
    /// # Errors
    ///
    /// [`Error::ZeroCount`] when `count` is 0.
    pub fn noise_floor<R: Rng + ?Sized>(&self, count: usize, rng: &mut R) -> Result<Metrics> {
        self.evaluate(&self.mixture.sample(count, rng))
    }
}

/// SW₂ between the sample sets `a` and `b` (any sizes) of dimension `dim`, over `projections`
/// unit directions θ = z/‖z‖, z ~ N(0, I), drawn from a generator seeded with `seed`.
///
/// ```
/// let a = [0.0f32, 0.0, 1.0, 1.0];
/// let b = [0.0f32, 0.0, 1.0, 1.0];
/// assert_eq!(ddim_exact::sliced_wasserstein(&a, &b, 2, 16, 0)?, 0.0);
/// // Shifting every point by δ moves each projection by θ·δ: SW₂² = mean_l (θ_l·δ)².
/// let c = [0.5f32, 0.0, 1.5, 1.0];
/// let sw = ddim_exact::sliced_wasserstein(&a, &c, 2, 4096, 0)?;
/// assert!((sw - 0.5 / 2f64.sqrt()).abs() < 0.02); // E[(θ·δ)²] = ‖δ‖²/d
/// # Ok::<(), ddim_exact::Error>(())
/// ```
///
/// # Errors
///
/// [`Error::ZeroCount`] for an empty set, `dim = 0` or no projections;
/// [`Error::LengthMismatch`] for a ragged set; [`Error::NonFiniteSample`] for NaN or ±∞.
pub fn sliced_wasserstein(
    a: &[f32],
    b: &[f32],
    dim: usize,
    projections: usize,
    seed: u64,
) -> Result<f64> {
    if dim == 0 {
        return Err(Error::ZeroCount("dim"));
    }
    if projections == 0 {
        return Err(Error::ZeroCount("projections"));
    }
    check_samples("a", a, dim)?;
    check_samples("b", b, dim)?;
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut theta = vec![0.0f64; dim];
    let (mut pa, mut pb) = (Vec::new(), Vec::new());
    let mut total = 0.0;
    for _ in 0..projections {
        let mut norm2 = 0.0;
        for t in &mut theta {
            *t = StandardNormal.sample(&mut rng);
            norm2 += *t * *t;
        }
        // ‖z‖ > 0 with probability 1; a zero draw would only give a zero projection.
        let inv_norm = if norm2 > 0.0 {
            norm2.sqrt().recip()
        } else {
            0.0
        };
        project(a, &theta, inv_norm, &mut pa);
        project(b, &theta, inv_norm, &mut pb);
        total += wasserstein2_squared_sorted(&pa, &pb);
    }
    Ok((total / projections as f64).sqrt())
}

/// Sorted projections θ·x/‖θ‖ of every sample.
fn project(x: &[f32], theta: &[f64], inv_norm: f64, out: &mut Vec<f64>) {
    out.clear();
    out.extend(x.chunks_exact(theta.len()).map(|xi| {
        xi.iter()
            .zip(theta)
            .map(|(&v, t)| f64::from(v) * t)
            .sum::<f64>()
            * inv_norm
    }));
    out.sort_unstable_by(f64::total_cmp);
}

/// ∫₀¹ (F⁻¹(q) − G⁻¹(q))² dq for the empirical distributions of two sorted, non-empty lists.
///
/// Each of the n points of `a` has mass m units and each of the m points of `b` has n units
/// (units of 1/(n·m)), so the quantile functions are walked in exact integer steps.
fn wasserstein2_squared_sorted(a: &[f64], b: &[f64]) -> f64 {
    let (n, m) = (a.len() as u64, b.len() as u64);
    if n == m {
        return a.iter().zip(b).map(|(x, y)| (x - y).powi(2)).sum::<f64>() / n as f64;
    }
    let (mut i, mut j) = (0, 0);
    let (mut left_a, mut left_b) = (m, n);
    let mut total = 0.0;
    while i < a.len() && j < b.len() {
        let step = left_a.min(left_b);
        total += step as f64 * (a[i] - b[j]).powi(2);
        left_a -= step;
        left_b -= step;
        if left_a == 0 {
            i += 1;
            left_a = m;
        }
        if left_b == 0 {
            j += 1;
            left_b = n;
        }
    }
    total / (n * m) as f64
}

/// The share of samples per component, its TV distance to the weights and the modes hit.
///
/// ```
/// let ring = ddim_exact::Dataset::Ring.mixture();
/// let on_two_modes = [0.75f32, 0.0, 0.0, 0.75];
/// let c = ddim_exact::mode_coverage(&ring, &on_two_modes)?;
/// assert_eq!(c.modes_hit, 2);
/// assert!((c.tv_distance - 0.75).abs() < 1e-12); // ½·(2·|½ − ⅛| + 6·⅛)
/// # Ok::<(), ddim_exact::Error>(())
/// ```
///
/// # Errors
///
/// As [`Evaluator::evaluate`].
pub fn mode_coverage(mixture: &GaussianMixture, samples: &[f32]) -> Result<ModeCoverage> {
    let n = check_samples("samples", samples, mixture.dim())?;
    let mut counts = vec![0usize; mixture.num_components()];
    for k in mixture.assign(samples)? {
        counts[k] += 1;
    }
    let shares: Vec<f64> = counts.iter().map(|&c| c as f64 / n as f64).collect();
    let tv_distance = 0.5
        * shares
            .iter()
            .zip(mixture.weights())
            .map(|(p, w)| (p - w).abs())
            .sum::<f64>();
    Ok(ModeCoverage {
        modes_hit: counts.iter().filter(|&&c| c > 0).count(),
        shares,
        tv_distance,
    })
}

/// (1/N)·Σ_i ln p(x⁽ⁱ⁾), in nats per sample.
///
/// # Errors
///
/// As [`Evaluator::evaluate`].
pub fn mean_log_likelihood(mixture: &GaussianMixture, samples: &[f32]) -> Result<f64> {
    let n = check_samples("samples", samples, mixture.dim())?;
    Ok(mixture.log_density(samples)?.iter().sum::<f64>() / n as f64)
}

/// Checks a non-empty, whole, finite batch; returns the number of samples.
fn check_samples(name: &'static str, x: &[f32], dim: usize) -> Result<usize> {
    if x.is_empty() {
        return Err(Error::ZeroCount(name));
    }
    if x.len() % dim != 0 {
        return Err(Error::LengthMismatch {
            name,
            expected: (x.len() / dim + 1) * dim,
            got: x.len(),
        });
    }
    if let Some(i) = x.iter().position(|v| !v.is_finite()) {
        return Err(Error::NonFiniteSample { index: i / dim });
    }
    Ok(x.len() / dim)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Dataset;

    #[test]
    fn one_dimensional_w2_handles_unequal_sizes() {
        // {0, 1} against {0, 0.5, 1}: quantiles [0,⅓)→0 vs 0, [⅓,½)→0 vs 0.5,
        // [½,⅔)→1 vs 0.5, [⅔,1)→1 vs 1: W₂² = (1/6)·0.25·2 = 1/12.
        let w = wasserstein2_squared_sorted(&[0.0, 1.0], &[0.0, 0.5, 1.0]);
        assert!((w - 1.0 / 12.0).abs() < 1e-15, "{w}");
        // A point mass against a point mass: the squared distance.
        assert_eq!(wasserstein2_squared_sorted(&[2.0], &[-1.0, -1.0]), 9.0);
    }

    #[test]
    fn metrics_reject_bad_batches() {
        let ring = Dataset::Ring.mixture();
        assert!(matches!(
            mode_coverage(&ring, &[0.0, f32::NAN]),
            Err(Error::NonFiniteSample { index: 0 })
        ));
        assert!(matches!(
            mean_log_likelihood(&ring, &[]),
            Err(Error::ZeroCount(_))
        ));
        assert!(sliced_wasserstein(&[0.0; 3], &[0.0; 2], 2, 8, 0).is_err());
        assert!(sliced_wasserstein(&[0.0; 2], &[0.0; 2], 2, 0, 0).is_err());
    }

    /// Exact samples sit at the floor: over independent repeats, their SW₂ and TV are
    /// distributed as the floor's own (same count, same reference). Each is compared with a
    /// bound of mean + 4 standard deviations of the floor, measured here on 12 repeats
    /// (fewer samples and projections for the 256-pixel images, whose SW₂ costs d times
    /// more, to keep debug-mode tests fast).
    #[test]
    fn exact_samples_sit_at_the_noise_floor() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(11);
        for (d, n, projections) in [(Dataset::Ring, 400, 128), (Dataset::Glyphs, 100, 32)] {
            let g = d.mixture();
            let eval = Evaluator::new(&g, n, &mut rng)
                .with_projections(projections)
                .unwrap();
            let floors: Vec<Metrics> = (0..12)
                .map(|_| eval.noise_floor(n, &mut rng).unwrap())
                .collect();
            let stats = |f: &dyn Fn(&Metrics) -> f64| {
                let v: Vec<f64> = floors.iter().map(f).collect();
                let mean = v.iter().sum::<f64>() / v.len() as f64;
                let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (v.len() - 1) as f64;
                (mean, var.sqrt())
            };
            let (sw_mean, sw_std) = stats(&|m| m.sliced_w2);
            let (tv_mean, tv_std) = stats(&|m| m.mode_tv);
            let (ll_mean, ll_std) = stats(&|m| m.mean_log_likelihood);
            let exact = eval.evaluate(&g.sample(n, &mut rng)).unwrap();
            assert!(exact.sliced_w2 < sw_mean + 4.0 * sw_std, "{d}: {exact:?}");
            assert!(exact.mode_tv < tv_mean + 4.0 * tv_std, "{d}: {exact:?}");
            assert!(
                (exact.mean_log_likelihood - ll_mean).abs() < 4.0 * ll_std,
                "{d}"
            );
            assert_eq!(exact.modes_hit, g.num_components());
            // And the floor is informative: samples from a slightly wider mixture
            // (every s_k × 1.5) are far above it.
            let wide = GaussianMixture::new(
                g.dim(),
                g.weights().to_vec(),
                g.means().to_vec(),
                g.stds().iter().map(|s| 1.5 * s).collect(),
            )
            .unwrap();
            let off = eval.evaluate(&wide.sample(n, &mut rng)).unwrap();
            assert!(
                off.mean_log_likelihood < ll_mean - 10.0 * ll_std,
                "{d}: {off:?}"
            );
        }
    }
}
