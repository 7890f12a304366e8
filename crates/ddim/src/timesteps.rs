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
//!
//! Beyond diffusers: [`quad_timesteps`] (the DDIM paper's quadratic spacing) and
//! [`check_custom_timesteps`] (for [`DdimScheduler::set_timesteps_custom`](crate::DdimScheduler::set_timesteps_custom)).

use crate::alloc;
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
/// assert_eq!(diffusers_timesteps(1000, TimestepSpacing::Linspace, 0, 7)?, [999, 832, 666, 500, 333, 166, 0]);
/// let t = diffusers_timesteps(1000, TimestepSpacing::Trailing, 0, 61)?;
/// assert_eq!((t.len(), t[61]), (62, -1)); // diffusers' extra step
/// # Ok::<(), ddim::Error>(())
/// ```
///
/// # Errors
///
/// [`Error::InvalidStepCount`] when `n` is larger than `T` (diffusers raises there too);
/// [`Error::InvalidConfig`] when `T` exceeds `i64::MAX`, or (for `leading`) when
/// `(n − 1)·⌊T/n⌋ + steps_offset` does not fit in an `i64`.
pub fn diffusers_timesteps(
    num_train_timesteps: usize,
    spacing: TimestepSpacing,
    steps_offset: usize,
    n: usize,
) -> Result<Vec<i64>> {
    if n > num_train_timesteps {
        return Err(Error::InvalidStepCount {
            requested: n,
            reason: format!("must be at most num_train_timesteps = {num_train_timesteps}"),
        });
    }
    if n == 0 {
        return Ok(Vec::new());
    }
    let t = i64::try_from(num_train_timesteps).map_err(|_| Error::InvalidConfig {
        key: "num_train_timesteps",
        reason: format!("must be at most {}, got {num_train_timesteps}", i64::MAX),
    })?;
    // n ≤ T ≤ i64::MAX from here on.
    // n ≤ T ≤ i64::MAX, so the fallback is never taken.
    let n_i64 = i64::try_from(n).unwrap_or(t);
    match spacing {
        TimestepSpacing::Leading => {
            let ratio = t / n_i64;
            // The largest timestep, (n − 1)·ratio ≤ T, plus the offset; every other is smaller.
            let top = (n_i64 - 1) * ratio;
            let offset = i64::try_from(steps_offset)
                .ok()
                .filter(|o| top.checked_add(*o).is_some())
                .ok_or_else(|| Error::InvalidConfig {
                    key: "steps_offset",
                    reason: format!(
                        "must be at most {} for leading spacing with {n} steps of \
                         num_train_timesteps = {num_train_timesteps} (the timesteps are i64), \
                         got {steps_offset}",
                        i64::MAX - top
                    ),
                })?;
            alloc::collect((0..n_i64).rev().map(|i| i * ratio + offset), n, "timesteps")
        }
        TimestepSpacing::Linspace => {
            if n == 1 {
                return Ok(vec![0]);
            }
            let step = (t - 1) as f64 / (n - 1) as f64;
            let values = (0..n).rev().map(|i| {
                let v = if i == n - 1 {
                    (t - 1) as f64
                } else {
                    i as f64 * step + 0.0
                };
                round_to_i64(v)
            });
            alloc::collect(values, n, "timesteps")
        }
        TimestepSpacing::Trailing => {
            let ratio = t as f64 / n as f64;
            let start = t as f64;
            // ⌈T/(T/n)⌉ is n or n + 1 (float rounding), never negative: `as` saturates anyway.
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            let len = ((0.0 - start) / -ratio).ceil() as usize;
            let delta = (start + -ratio) - start;
            let values = (0..len).map(|i| {
                let v = if i == 0 {
                    start
                } else {
                    start + i as f64 * delta
                };
                round_to_i64(v) - 1
            });
            alloc::collect(values, len, "timesteps")
        }
    }
}

/// numpy's `round` then `astype(int64)` of a value in `[-1, T]` (T ≤ i64::MAX).
fn round_to_i64(v: f64) -> i64 {
    // In range by construction (T and the steps are ≤ i64::MAX); `as` saturates, never panics.
    #[allow(clippy::cast_possible_truncation)]
    let r = v.round_ties_even() as i64;
    r
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
/// `steps_offset` pushes the first timestep to `T` or beyond; [`Error::InvalidConfig`] as
/// [`diffusers_timesteps`] (a `T` or a `leading` `steps_offset` beyond `i64`).
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
    let mut raw = diffusers_timesteps(num_train_timesteps, spacing, steps_offset, n)?;
    // trailing's extra `-1` (see the module docs): keep diffusers' first n.
    raw.truncate(n);
    let outside = |t: i64| {
        refuse(format!(
            "{spacing} spacing with steps_offset = {steps_offset} gives timestep {t}, \
             outside [0, {num_train_timesteps}) (diffusers issue #10003); \
             use fewer steps, steps_offset = 0 or trailing spacing"
        ))
    };
    // Descending, so the first is the largest.
    if let Some(&first) = raw.first() {
        if !usize::try_from(first).is_ok_and(|f| f < num_train_timesteps) {
            return Err(outside(first));
        }
    }
    let mut out = alloc::vec_with_capacity(raw.len(), "timesteps")?;
    for t in raw {
        out.push(usize::try_from(t).map_err(|_| outside(t))?);
    }
    Ok(out)
}

/// The DDIM paper's quadratic spacing (`skip_type = "quad"` in the authors' code), exactly `n`
/// timesteps, descending:
///
/// 1. raw_i = ⌊(i·√(0.8·T)/(n − 1))²⌋ + steps_offset, i = 0 … n−1, in f64 as numpy's
///    `(np.linspace(0, np.sqrt(T * .8), n) ** 2).astype(int)` (the last point is exactly
///    √(0.8·T); n = 1 gives `[0]`);
/// 2. de-duplication: ascending, each timestep is raised to one above the previous where
///    the squares collide (t_i = max(raw_i, t_{i−1} + 1)). The dense small-t end stays as
///    dense as integers allow; where the raw values are distinct nothing changes.
///
/// ```
/// use ddim::timesteps::quad_timesteps;
/// assert_eq!(quad_timesteps(1000, 0, 5)?, [800, 450, 200, 50, 0]);
/// // 20 steps from T = 100: the first squares collide (0, 0, 0, 0, 0, 1, …) and are spread.
/// let t = quad_timesteps(100, 0, 20)?;
/// assert_eq!((t.len(), &t[15..]), (20, &[4, 3, 2, 1, 0][..]));
/// # Ok::<(), ddim::Error>(())
/// ```
///
/// # Errors
///
/// [`Error::InvalidStepCount`] for `n = 0` or `n > T`, or when de-duplication (or
/// `steps_offset`) would push a timestep to `T` or beyond; [`Error::InvalidConfig`] when
/// `steps_offset` is so large that a timestep overflows `usize`.
pub fn quad_timesteps(
    num_train_timesteps: usize,
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
    // n distinct timesteps in [0, T) need n ≤ T (also bounds the allocation below).
    if n > num_train_timesteps {
        return Err(refuse(format!(
            "must be at most num_train_timesteps = {num_train_timesteps}"
        )));
    }
    let stop = (num_train_timesteps as f64 * 0.8).sqrt();
    let step = if n > 1 { stop / (n - 1) as f64 } else { 0.0 };
    let mut out: Vec<usize> = alloc::vec_with_capacity(n, "timesteps")?;
    for i in 0..n {
        let x = if n > 1 && i == n - 1 {
            stop
        } else {
            i as f64 * step
        };
        // `astype(int)` truncates; the value is in [0, 0.8·T], so it fits.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let square = (x * x) as usize;
        let raw = square
            .checked_add(steps_offset)
            .ok_or_else(|| Error::InvalidConfig {
                key: "steps_offset",
                reason: format!(
                    "must be at most {} for quad spacing with {n} steps of \
                     num_train_timesteps = {num_train_timesteps}, got {steps_offset}",
                    usize::MAX - square
                ),
            })?;
        let t = match out.last() {
            Some(&prev) if raw <= prev => prev + 1,
            _ => raw,
        };
        if t >= num_train_timesteps {
            return Err(refuse(format!(
                "quad spacing with steps_offset = {steps_offset} needs timestep {t} after \
                 de-duplication, outside [0, {num_train_timesteps}); use fewer steps"
            )));
        }
        out.push(t);
    }
    out.reverse();
    Ok(out)
}

/// Checks caller-given timesteps: non-empty, each in `[0, T)`, strictly decreasing.
///
/// ```
/// use ddim::timesteps::check_custom_timesteps;
/// check_custom_timesteps(1000, &[999, 500, 20])?;
/// assert!(check_custom_timesteps(1000, &[500, 500]).is_err());
/// # Ok::<(), ddim::Error>(())
/// ```
///
/// # Errors
///
/// [`Error::InvalidTimesteps`] naming the first offending position and value.
pub fn check_custom_timesteps(num_train_timesteps: usize, timesteps: &[usize]) -> Result<()> {
    let refuse = |reason: String| Err(Error::InvalidTimesteps { reason });
    let Some(&first) = timesteps.first() else {
        return refuse("the list is empty; give at least one timestep".into());
    };
    if first >= num_train_timesteps {
        return refuse(format!(
            "timesteps[0] = {first} is outside [0, {num_train_timesteps})"
        ));
    }
    for (i, w) in timesteps.windows(2).enumerate() {
        if let [a, b] = *w {
            if b >= a {
                return refuse(format!(
                    "must be strictly decreasing, got timesteps[{i}] = {a} then timesteps[{}] = {b}",
                    i + 1
                ));
            }
        }
    }
    Ok(())
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
                diffusers_timesteps(1000, spacing, 0, n).unwrap(),
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

    #[test]
    fn quad_gives_n_decreasing_valid_timesteps_or_an_error() {
        for t in [1, 2, 37, 100, 1000] {
            for offset in [0, 1] {
                for n in 1..=t + 1 {
                    match quad_timesteps(t, offset, n) {
                        Ok(ts) => {
                            assert_eq!(ts.len(), n);
                            assert!(ts.windows(2).all(|w| w[0] > w[1]), "{t} {n}");
                            assert!(ts[0] < t);
                            assert_eq!(ts[n - 1], offset);
                        }
                        // Only when there are not n free timesteps above the offset.
                        Err(e) => assert!(n + offset > t || n == 0, "{t} {offset} {n}: {e}"),
                    }
                }
            }
        }
    }

    #[test]
    fn quad_matches_the_ddim_code_where_squares_are_distinct() {
        // (np.linspace(0, np.sqrt(1000 * .8), 10) ** 2).astype(int), as numpy 2.3 printed it, reversed.
        assert_eq!(
            quad_timesteps(1000, 0, 10).unwrap(),
            [800, 632, 483, 355, 246, 158, 88, 39, 9, 0]
        );
    }
}
