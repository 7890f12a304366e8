//! The noise schedule: β_t, then ᾱ_t = ∏_{s≤t} (1 − β_s), in torch's float32 arithmetic.
//!
//! Parity notes (diffusers on torch CPU; spec §1.3–1.5):
//! * `torch.linspace` in f32 computes each half from its own end with one fused multiply-add;
//! * `scaled_linear` takes square roots of the ends in f64, then squares the f32 linspace;
//! * `squaredcos_cap_v2` is computed in f64 and rounded once;
//! * `torch.cumprod` on CPU accumulates in f64 and rounds each partial product to f32.

use crate::alloc;
use crate::config::{BetaSchedule, DdimConfig};
use crate::element::round_to_f32;
use crate::error::Result;

/// `torch.linspace(start, end, steps, dtype=float32)` on an x86 CPU with AVX2/AVX512:
/// the first half is `start + step·i`, the second `end − step·(steps−1−i)`, each one fused
/// multiply-add, with `step = (end − start)/(steps − 1)` in f32.
///
/// ```
/// let v = ddim::schedule::linspace_f32(0.0, 1.0, 5)?;
/// assert_eq!(v, [0.0, 0.25, 0.5, 0.75, 1.0]);
/// # Ok::<(), ddim::Error>(())
/// ```
///
/// # Errors
///
/// [`Error::OutOfMemory`](crate::Error::OutOfMemory) when `steps` values cannot be allocated.
pub fn linspace_f32(start: f64, end: f64, steps: usize) -> Result<Vec<f32>> {
    let (start, end) = (round_to_f32(start), round_to_f32(end));
    let step = (end - start) / (steps.max(2) - 1) as f32;
    let half = steps / 2;
    let values = (0..steps).map(|i| {
        if steps == 1 {
            start
        } else if i < half {
            step.mul_add(i as f32, start)
        } else {
            (-step).mul_add((steps - 1 - i) as f32, end)
        }
    });
    alloc::collect(values, steps, "linspace")
}

/// ᾱ(t) = cos²((t + 0.008)/1.008 · π/2), the cosine schedule of Nichol & Dhariwal (2021).
fn cosine_alpha_bar(t: f64) -> f64 {
    ((t + 0.008) / 1.008 * std::f64::consts::PI / 2.0)
        .cos()
        .powi(2)
}

/// diffusers' `betas_for_alpha_bar(T)` (cosine, `max_beta = 0.999`):
/// β_i = min(1 − ᾱ((i+1)/T)/ᾱ(i/T), 0.999), in f64, rounded once to f32.
///
/// # Errors
///
/// [`Error::OutOfMemory`](crate::Error::OutOfMemory) when `T` values cannot be allocated.
pub fn cosine_betas(num_train_timesteps: usize) -> Result<Vec<f32>> {
    let t = num_train_timesteps as f64;
    let values = (0..num_train_timesteps).map(|i| {
        let beta = 1.0 - cosine_alpha_bar((i + 1) as f64 / t) / cosine_alpha_bar(i as f64 / t);
        round_to_f32(beta.min(0.999))
    });
    alloc::collect(values, num_train_timesteps, "betas")
}

/// The β schedule a config describes (before any zero-SNR rescale).
///
/// # Errors
///
/// [`Error::OutOfMemory`](crate::Error::OutOfMemory) when `T` values cannot be allocated.
pub fn betas(config: &DdimConfig) -> Result<Vec<f32>> {
    if let Some(trained) = &config.trained_betas {
        return alloc::collect(
            trained.iter().map(|&b| round_to_f32(b)),
            trained.len(),
            "betas",
        );
    }
    let t = config.num_train_timesteps;
    match config.beta_schedule {
        BetaSchedule::Linear => linspace_f32(config.beta_start, config.beta_end, t),
        BetaSchedule::ScaledLinear => {
            let mut b = linspace_f32(config.beta_start.sqrt(), config.beta_end.sqrt(), t)?;
            for v in &mut b {
                *v *= *v;
            }
            Ok(b)
        }
        BetaSchedule::SquaredcosCapV2 => cosine_betas(t),
    }
}

/// ᾱ_t = ∏_{s≤t} α_s with α = 1 − β in f32, accumulated in f64 as torch's CPU `cumprod` does.
///
/// # Errors
///
/// [`Error::OutOfMemory`](crate::Error::OutOfMemory) when `betas.len()` values cannot be
/// allocated.
pub fn alphas_cumprod(betas: &[f32]) -> Result<Vec<f32>> {
    let mut acc = 1.0f64;
    let values = betas.iter().map(|&b| {
        acc *= f64::from(1.0f32 - b);
        round_to_f32(acc)
    });
    alloc::collect(values, betas.len(), "alphas_cumprod")
}

/// Rescales β so the last ᾱ is exactly 0 while ᾱ₀ is kept (Lin et al. 2023, "Common Diffusion
/// Noise Schedules and Sample Steps are Flawed", Algorithm 1):
///
/// √ᾱ'_t = (√ᾱ_t − √ᾱ_{T−1}) · √ᾱ₀ / (√ᾱ₀ − √ᾱ_{T−1}),  β'_t = 1 − ᾱ'_t/ᾱ'_{t−1}.
///
/// Every operation is f32 in diffusers' order. diffusers' torch CPU `sqrt` is not correctly
/// rounded; this uses IEEE `sqrt`, so results may differ from diffusers by a few ulps.
///
/// # Errors
///
/// [`Error::OutOfMemory`](crate::Error::OutOfMemory) when `betas.len()` values cannot be
/// allocated.
pub fn rescale_zero_terminal_snr(betas: &[f32]) -> Result<Vec<f32>> {
    // ᾱ, then √ᾱ, then ᾱ' in place: one buffer.
    let mut ab = alphas_cumprod(betas)?;
    let (Some(&first), Some(&last)) = (ab.first(), ab.last()) else {
        return Ok(Vec::new());
    };
    let (first, last) = (first.sqrt(), last.sqrt());
    let scale = first / (first - last);
    for a in &mut ab {
        let s = (a.sqrt() - last) * scale;
        *a = s * s;
    }
    let values = ab
        .first()
        .copied()
        .into_iter()
        .chain(ab.iter().zip(ab.iter().skip(1)).map(|(a0, a1)| a1 / a0))
        .map(|alpha| 1.0 - alpha);
    alloc::collect(values, ab.len(), "betas")
}

/// The schedule a scheduler runs on: β (after any rescale) and ᾱ.
#[derive(Debug, Clone, PartialEq)]
pub struct NoiseSchedule {
    /// β_t for t in `0..T`.
    pub betas: Vec<f32>,
    /// ᾱ_t for t in `0..T`.
    pub alphas_cumprod: Vec<f32>,
}

impl NoiseSchedule {
    /// Computes β and ᾱ for a config, as `DDIMScheduler.__init__` does.
    ///
    /// # Errors
    ///
    /// [`Error::OutOfMemory`](crate::Error::OutOfMemory) when the `T` values of β or ᾱ
    /// cannot be allocated (`T` is at most 2³¹ − 1, 8 GiB for each).
    pub fn from_config(config: &DdimConfig) -> Result<Self> {
        let mut betas = betas(config)?;
        if config.rescale_betas_zero_snr {
            betas = rescale_zero_terminal_snr(&betas)?;
        }
        let alphas_cumprod = alphas_cumprod(&betas)?;
        Ok(Self {
            betas,
            alphas_cumprod,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cosine_betas_are_not_truncated() {
        // The most copied bug among Rust ports: integer division in i/T gives 999 zeros.
        let b = cosine_betas(1000).unwrap();
        assert!(b.iter().all(|&x| x > 0.0));
        assert_eq!(b[999], 0.999f32);
        assert!(b[998] < 0.76 && b[998] > 0.74);
    }

    #[test]
    fn zero_snr_ends_at_zero() {
        let config = DdimConfig {
            rescale_betas_zero_snr: true,
            ..DdimConfig::default()
        };
        let s = NoiseSchedule::from_config(&config).unwrap();
        assert_eq!(s.betas[999], 1.0);
        assert_eq!(s.alphas_cumprod[999], 0.0);
        // β₀ is unchanged in exact arithmetic; in f32 it moves by a few ulps of 1 − β₀.
        let default_beta0 = NoiseSchedule::from_config(&DdimConfig::default())
            .unwrap()
            .betas[0];
        assert!((s.betas[0] - default_beta0).abs() < 1e-7);
    }
}
