//! Interpolating latents: spherical ([`slerp`]) and linear ([`lerp`]).
//!
//! DDIM's η = 0 map is deterministic, so a path between two latents x_T gives a path between
//! the samples they decode to (Song et al. 2020, §5.3 and Figure 6). Gaussian latents of
//! dimension d sit near the sphere of radius √d; a straight line between two of them passes
//! well inside it (at t = ½ its norm is about √(d/2)), where the model has seen no inputs.
//! slerp follows the great circle instead, keeping the norm.

use crate::error::{Error, Result};

/// The cosine above which [`slerp`] falls back to [`lerp`]: |cos θ| > 0.9995, θ under about
/// 1.8° of parallel (or anti-parallel). There sin θ is so small that the slerp weights lose
/// their precision, and the two paths differ by less than 1e−7 of the norm. The value and
/// the rule (on |cos θ|) are those of the slerp in diffusers' community pipelines.
pub const SLERP_DOT_THRESHOLD: f64 = 0.9995;

/// The nearest `f32` (the results are computed in `f64` and stored once).
#[allow(clippy::cast_possible_truncation)] // rounding to f32 is the intent
fn round_to_f32(x: f64) -> f32 {
    x as f32
}

fn check(t: f64, v0: &[f32], v1: &[f32], out: &[f32]) -> Result<()> {
    if !t.is_finite() {
        return Err(Error::InvalidInterpolation {
            reason: format!("t must be a finite number, got {t}"),
        });
    }
    for (name, len) in [("v1", v1.len()), ("out", out.len())] {
        if len != v0.len() {
            return Err(Error::LengthMismatch {
                name,
                expected: v0.len(),
                got: len,
            });
        }
    }
    if let Some(i) = v0.iter().chain(v1).position(|v| !v.is_finite()) {
        return Err(Error::InvalidInterpolation {
            reason: format!("element {i} of v0 followed by v1 is not finite"),
        });
    }
    Ok(())
}

/// Linear interpolation, in `f64`: out = (1 − t)·v0 + t·v1.
///
/// ```
/// let mut out = [0.0f32; 2];
/// ddim::lerp(0.25, &[0.0, 4.0], &[4.0, 0.0], &mut out)?;
/// assert_eq!(out, [1.0, 3.0]);
/// # Ok::<(), ddim::Error>(())
/// ```
///
/// # Errors
///
/// [`Error::LengthMismatch`] when `v1` or `out` is not as long as `v0`;
/// [`Error::InvalidInterpolation`] for a `t` or an input element that is not finite.
pub fn lerp(t: f64, v0: &[f32], v1: &[f32], out: &mut [f32]) -> Result<()> {
    check(t, v0, v1, out)?;
    for ((o, &a), &b) in out.iter_mut().zip(v0).zip(v1) {
        *o = round_to_f32((1.0 - t) * f64::from(a) + t * f64::from(b));
    }
    Ok(())
}

/// Spherical linear interpolation (Shoemake 1985), in `f64`:
///
/// cos θ = ⟨v0, v1⟩/(‖v0‖·‖v1‖),
/// out = sin((1 − t)·θ)/sin θ · v0 + sin(t·θ)/sin θ · v1,
///
/// and [`lerp`] where |cos θ| > [`SLERP_DOT_THRESHOLD`] (nearly parallel or anti-parallel
/// vectors) or where a vector is zero (no angle). t = 0 gives v0 and t = 1 gives v1; t outside
/// [0, 1] extrapolates along the same circle.
///
/// ```
/// let mut out = [0.0f32; 2];
/// ddim::slerp(0.5, &[1.0, 0.0], &[0.0, 1.0], &mut out)?;
/// let h = std::f32::consts::FRAC_1_SQRT_2;
/// assert!((out[0] - h).abs() < 1e-7 && (out[1] - h).abs() < 1e-7); // on the unit circle
/// # Ok::<(), ddim::Error>(())
/// ```
///
/// # Errors
///
/// As [`lerp`].
pub fn slerp(t: f64, v0: &[f32], v1: &[f32], out: &mut [f32]) -> Result<()> {
    check(t, v0, v1, out)?;
    let (mut dot, mut n0, mut n1) = (0.0f64, 0.0f64, 0.0f64);
    for (&a, &b) in v0.iter().zip(v1) {
        let (a, b) = (f64::from(a), f64::from(b));
        dot += a * b;
        n0 += a * a;
        n1 += b * b;
    }
    let norms = n0.sqrt() * n1.sqrt();
    if norms == 0.0 || !norms.is_finite() {
        return lerp(t, v0, v1, out);
    }
    let cos = (dot / norms).clamp(-1.0, 1.0);
    if cos.abs() > SLERP_DOT_THRESHOLD {
        return lerp(t, v0, v1, out);
    }
    let theta = cos.acos();
    let sin = theta.sin();
    let s0 = ((1.0 - t) * theta).sin() / sin;
    let s1 = (t * theta).sin() / sin;
    for ((o, &a), &b) in out.iter_mut().zip(v0).zip(v1) {
        *o = round_to_f32(s0 * f64::from(a) + s1 * f64::from(b));
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn slerp_keeps_the_norm_of_orthogonal_unit_vectors() {
        let (a, b) = ([3.0f32, 0.0, 0.0], [0.0f32, 3.0, 0.0]);
        let mut out = [0.0f32; 3];
        for i in 0..=10 {
            slerp(f64::from(i) / 10.0, &a, &b, &mut out).unwrap();
            let norm = out.iter().map(|v| v * v).sum::<f32>().sqrt();
            assert!((norm - 3.0).abs() < 1e-5, "{i}: {norm}");
        }
        slerp(0.0, &a, &b, &mut out).unwrap();
        assert_eq!(out, a);
        slerp(1.0, &a, &b, &mut out).unwrap();
        assert!(out.iter().zip(&b).all(|(x, y)| (x - y).abs() < 1e-6));
    }

    #[test]
    fn nearly_parallel_and_zero_vectors_fall_back_to_lerp() {
        let a = [1.0f32, 0.0];
        let b = [1.0f32, 0.02]; // cos θ = 0.9998 > 0.9995
        let (mut s, mut l) = ([0.0f32; 2], [0.0f32; 2]);
        slerp(0.3, &a, &b, &mut s).unwrap();
        lerp(0.3, &a, &b, &mut l).unwrap();
        assert_eq!(s, l);
        let anti = [-1.0f32, 0.0];
        slerp(0.5, &a, &anti, &mut s).unwrap();
        assert_eq!(s, [0.0, 0.0]);
        slerp(0.5, &[0.0, 0.0], &b, &mut s).unwrap();
        lerp(0.5, &[0.0, 0.0], &b, &mut l).unwrap();
        assert_eq!(s, l);
        // Just below the threshold, slerp is used and differs from lerp.
        let c = [1.0f32, 0.04]; // cos θ ≈ 0.9992
        slerp(0.5, &a, &c, &mut s).unwrap();
        lerp(0.5, &a, &c, &mut l).unwrap();
        assert_ne!(s, l);
    }

    #[test]
    fn bad_inputs_are_errors() {
        let mut out = [0.0f32; 2];
        assert!(matches!(
            slerp(0.5, &[1.0, 0.0], &[0.0], &mut out),
            Err(Error::LengthMismatch { name: "v1", .. })
        ));
        assert!(matches!(
            slerp(f64::NAN, &[1.0, 0.0], &[0.0, 1.0], &mut out),
            Err(Error::InvalidInterpolation { .. })
        ));
        assert!(matches!(
            lerp(0.5, &[f32::INFINITY, 0.0], &[0.0, 1.0], &mut out),
            Err(Error::InvalidInterpolation { .. })
        ));
        let mut short = [0.0f32; 1];
        assert!(matches!(
            lerp(0.5, &[1.0, 0.0], &[0.0, 1.0], &mut short),
            Err(Error::LengthMismatch { name: "out", .. })
        ));
    }
}
