//! Choosing the `n` inference timesteps out of the `T` training steps.
//!
//! [`inference_timesteps`] returns exactly `n` valid timesteps in `[0, T)`, strictly
//! decreasing, identical to diffusers' `set_timesteps` wherever diffusers' output is valid.
//! diffusers 0.42.1 is invalid in two places, and this crate differs there on purpose:
//!
//! * `trailing` returns `n + 1` timesteps ending in `-1` for some `n` (62 values for T = 1000:
//!   61, 103, 121, …), because float `arange` overshoots. The extra step indexes `ᾱ[-1]`, the
//!   noisiest value, and spoils the sample. Here the first `n` are returned — diffusers' own
//!   first `n`, the schedule the spacing describes.
//! * `leading` with `steps_offset` can reach `T` (e.g. `T = n = 1000`, offset 1; diffusers
//!   issue #10003), which diffusers then fails on with an index error inside `step`. Here that
//!   is an error from `set_timesteps` naming the timestep and suggesting `trailing`.
//!
//! [`diffusers_timesteps`] keeps the raw, bug-compatible output for study and comparison.

use crate::config::TimestepSpacing;
use crate::error::{Error, Result};

/// diffusers' `DDIMScheduler.set_timesteps` output, bugs included (it may hold `-1` or `T`).
///
/// * `leading`: `(arange(n) · (T // n))[::-1] + steps_offset`;
/// * `linspace`: `round_half_even(linspace(0, T−1, n))[::-1]` (offset ignored);
/// * `trailing`: `round_half_even(arange(T, 0, −T/n)) − 1` with numpy's float `arange`
///   (length `⌈T/(T/n)⌉`, elements `T + i·((T − T/n) − T)`; offset ignored).
///
/// `n = 0` returns an empty list here (diffusers raises for leading and trailing).
///
/// ```
/// use ddim::{timesteps::diffusers_timesteps, TimestepSpacing};
/// assert_eq!(diffusers_timesteps(1000, TimestepSpacing::Linspace, 0, 7), [999, 832, 666, 500, 333, 166, 0]);
/// let t = diffusers_timesteps(1000, TimestepSpacing::Trailing, 0, 61);
/// assert_eq!((t.len(), t[61]), (62, -1)); // diffusers' extra step
/// ```
pub fn diffusers_timesteps(
    num_train_timesteps: usize,
    spacing: TimestepSpacing,
    steps_offset: usize,
    n: usize,
) -> Vec<i64> {
    if n == 0 {
        return Vec::new();
    }
    let t = num_train_timesteps as i64;
    match spacing {
        TimestepSpacing::Leading => {
            let ratio = t / n as i64;
            (0..n as i64)
                .rev()
                .map(|i| i * ratio + steps_offset as i64)
                .collect()
        }
        TimestepSpacing::Linspace => {
            if n == 1 {
                return vec![0];
            }
            let step = (t - 1) as f64 / (n - 1) as f64;
            (0..n)
                .rev()
                .map(|i| {
                    let v = if i == n - 1 {
                        (t - 1) as f64
                    } else {
                        i as f64 * step + 0.0
                    };
                    v.round_ties_even() as i64
                })
                .collect()
        }
        TimestepSpacing::Trailing => {
            let ratio = t as f64 / n as f64;
            let start = t as f64;
            let len = ((0.0 - start) / -ratio).ceil() as usize;
            let delta = (start + -ratio) - start;
            (0..len)
                .map(|i| {
                    let v = if i == 0 {
                        start
                    } else {
                        start + i as f64 * delta
                    };
                    v.round_ties_even() as i64 - 1
                })
                .collect()
        }
    }
}

/// The `n` inference timesteps for a spacing, descending, each in `[0, T)`.
///
/// ```
/// use ddim::{timesteps::inference_timesteps, TimestepSpacing};
/// assert_eq!(inference_timesteps(1000, TimestepSpacing::Leading, 1, 5)?, [801, 601, 401, 201, 1]);
/// assert_eq!(inference_timesteps(1000, TimestepSpacing::Trailing, 0, 61)?.len(), 61);
/// # Ok::<(), ddim::Error>(())
/// ```
///
/// # Errors
///
/// [`Error::InvalidStepCount`] when `n` is 0, larger than `T`, or (for `leading`) when
/// `steps_offset` pushes the first timestep to `T` or beyond.
pub fn inference_timesteps(
    num_train_timesteps: usize,
    spacing: TimestepSpacing,
    steps_offset: usize,
    n: usize,
) -> Result<Vec<usize>> {
    let refuse = |reason: String| Error::InvalidStepCount {
        requested: n,
        reason,
    };
    if n == 0 {
        return Err(refuse("must be at least 1".into()));
    }
    if n > num_train_timesteps {
        return Err(refuse(format!(
            "must be at most num_train_timesteps = {num_train_timesteps}"
        )));
    }
    let mut raw = diffusers_timesteps(num_train_timesteps, spacing, steps_offset, n);
    // trailing's extra `-1` (see the module docs): keep diffusers' first n.
    raw.truncate(n);
    let first = raw[0];
    if first >= num_train_timesteps as i64 {
        return Err(refuse(format!(
            "{spacing} spacing with steps_offset = {steps_offset} gives timestep {first}, \
             outside [0, {num_train_timesteps}) (diffusers issue #10003); \
             use fewer steps, steps_offset = 0 or trailing spacing"
        )));
    }
    Ok(raw.into_iter().map(|t| t as usize).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use TimestepSpacing::*;

    #[test]
    fn spec_tables() {
        let cases: [(TimestepSpacing, usize, &[i64]); 6] = [
            (Leading, 3, &[666, 333, 0]),
            (Trailing, 3, &[999, 666, 332]),
            (Linspace, 3, &[999, 500, 0]),
            (Trailing, 7, &[999, 856, 713, 570, 428, 285, 142]),
            (Linspace, 1, &[0]),
            (
                Trailing,
                16,
                &[
                    999, 937, 874, 811, 749, 687, 624, 561, 499, 437, 374, 311, 249, 187, 124, 61,
                ],
            ),
        ];
        for (spacing, n, want) in cases {
            assert_eq!(
                diffusers_timesteps(1000, spacing, 0, n),
                want,
                "{spacing} n={n}"
            );
        }
    }

    #[test]
    fn every_spacing_gives_n_decreasing_valid_timesteps() {
        for t in [1, 2, 37, 100, 1000] {
            for spacing in TimestepSpacing::ALL.iter().copied() {
                for offset in [0, 1] {
                    for n in 1..=t {
                        match inference_timesteps(t, spacing, offset, n) {
                            Ok(ts) => {
                                assert_eq!(ts.len(), n);
                                assert!(ts.windows(2).all(|w| w[0] > w[1]), "{spacing} {n}");
                                assert!(ts[0] < t);
                            }
                            Err(e) => {
                                assert_eq!((spacing, offset), (Leading, 1), "{e}");
                                assert_eq!((n - 1) * (t / n) + 1, t);
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn zero_and_too_many_steps_are_errors() {
        assert!(inference_timesteps(1000, Leading, 0, 0).is_err());
        let err = inference_timesteps(1000, Trailing, 0, 1001).unwrap_err();
        assert!(
            err.to_string()
                .contains("at most num_train_timesteps = 1000"),
            "{err}"
        );
        let err = inference_timesteps(1000, Leading, 1, 1000).unwrap_err();
        assert!(err.to_string().contains("gives timestep 1000"), "{err}");
    }
}
