//! Imagen's dynamic thresholding of x̂₀ (Saharia et al. 2022), per batch item:
//! s = clamp(quantile_q(|x̂₀|), 1, sample_max_value), then x̂₀ ← clamp(x̂₀, −s, s)/s.
//!
//! The quantile is `torch.quantile`'s linear interpolation, found by selection in O(n)
//! instead of a full sort.

use crate::element::{Compute, Element};

/// `torch.quantile(|row|, q)` with linear interpolation, in O(len), using `scratch` (as long
/// as `row`) as work space.
///
/// torch makes `q` a tensor of the row's dtype, computes the rank `q·(N−1)` and the
/// interpolation `lo + w·(hi − lo)` in f64, and rounds the result to the row's type. A row
/// holding NaN has quantile NaN.
pub(crate) fn abs_quantile<E: Element>(row: &[E], q: f64, scratch: &mut [E]) -> E::Compute {
    let n = row.len();
    debug_assert!(n > 0 && scratch.len() == n);
    let mut has_nan = false;
    for (s, &v) in scratch.iter_mut().zip(row) {
        let v = v.to_compute();
        has_nan |= v.is_nan();
        *s = E::from_compute(v.abs());
    }
    if has_nan {
        return E::Compute::from_f64(f64::NAN);
    }
    let rank = E::Compute::from_f64(q).to_f64() * (n - 1) as f64;
    let lo = rank.floor() as usize;
    let hi = rank.ceil() as usize;
    let weight = rank - lo as f64;
    let order = |a: &E, b: &E| a.to_compute().total_cmp(&b.to_compute());
    let (_, lo_value, above) = scratch.select_nth_unstable_by(lo, order);
    let lo_value = lo_value.to_compute().to_f64();
    let hi_value = if hi == lo {
        lo_value
    } else {
        // The (lo+1)-th smallest is the smallest of the part above the selected element.
        above
            .iter()
            .map(|v| v.to_compute().to_f64())
            .fold(f64::INFINITY, f64::min)
    };
    E::Compute::from_f64(lo_value + weight * (hi_value - lo_value))
}

/// The dynamic threshold s = clamp(quantile, min = 1, max = sample_max_value). torch applies
/// `min` first, so `sample_max_value < 1` gives `s = sample_max_value`; NaN stays NaN.
pub(crate) fn dynamic_threshold<C: Compute>(quantile: C, sample_max_value: f64) -> C {
    if quantile.is_nan() {
        return quantile;
    }
    let s = if quantile < C::ONE { C::ONE } else { quantile };
    let max = C::from_f64(sample_max_value);
    if s > max {
        max
    } else {
        s
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
                let got = abs_quantile(&row, f64::from(q), &mut scratch);
                assert_eq!(got, sorted_quantile(&row, q), "n={n} q={q}");
            }
        }
    }

    #[test]
    fn nan_row_gives_nan_threshold() {
        let mut scratch = [0.0f32; 3];
        let q = abs_quantile(&[1.0f32, f32::NAN, 2.0], 0.5, &mut scratch);
        assert!(q.is_nan());
        assert!(dynamic_threshold(q, 2.0).is_nan());
        assert_eq!(dynamic_threshold(0.3f32, 2.0), 1.0);
        assert_eq!(dynamic_threshold(1.7f32, 2.0), 1.7);
        assert_eq!(dynamic_threshold(5.0f32, 2.0), 2.0);
        assert_eq!(dynamic_threshold(5.0f32, 0.5), 0.5);
    }
}
