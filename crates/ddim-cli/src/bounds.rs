//! The command line's limits on counts and its parsers of numbers: every count a user gives
//! has an upper bound (so that no flag can ask for an allocation the machine cannot hold),
//! and every float is finite and fits its type. A value out of bounds is a usage error
//! (exit 2) naming the bound. The bounds are listed in `docs/errors.md`.

use std::ops::RangeInclusive;

/// `--steps`: inference steps. (The config bounds them further: at most `T`.)
pub(crate) const STEPS: RangeInclusive<u64> = 1..=1_000_000;
/// `--samples` of `sample` and `eval`: samples per run (and as many exact reference samples).
pub(crate) const SAMPLES: RangeInclusive<u64> = 1..=100_000;
/// `--seeds` of `eval`: at least 2, so that a spread can be measured.
pub(crate) const SEEDS: RangeInclusive<u64> = 2..=1_000;
/// `--num-train-timesteps`: the library's own bound on `T` (2³¹ − 1).
pub(crate) const TRAIN_TIMESTEPS: RangeInclusive<u64> = 1..=2_147_483_647;
/// `--steps-offset`: the library's own bound.
pub(crate) const STEPS_OFFSET: RangeInclusive<u64> = 0..=2_147_483_647;
/// `bench --seconds`: timing per row, in seconds (exclusive of 0).
pub(crate) const SECONDS_MAX: f64 = 3600.0;

/// Parses a count within `range`.
fn count(text: &str, range: &RangeInclusive<u64>) -> Result<usize, String> {
    let n: u64 = text.trim().parse().map_err(|e| format!("{e}"))?;
    if !range.contains(&n) {
        return Err(format!("{n} is not in {}..={}", range.start(), range.end()));
    }
    usize::try_from(n).map_err(|_| format!("{n} does not fit in this machine's usize"))
}

/// `--steps` (see [`STEPS`]).
pub(crate) fn steps(text: &str) -> Result<usize, String> {
    count(text, &STEPS)
}

/// `--samples` (see [`SAMPLES`]).
pub(crate) fn samples(text: &str) -> Result<usize, String> {
    count(text, &SAMPLES)
}

/// `--seeds` (see [`SEEDS`]).
pub(crate) fn seeds(text: &str) -> Result<u64, String> {
    count(text, &SEEDS).map(|n| n as u64)
}

/// `--num-train-timesteps` (see [`TRAIN_TIMESTEPS`]).
pub(crate) fn train_timesteps(text: &str) -> Result<usize, String> {
    count(text, &TRAIN_TIMESTEPS)
}

/// `--steps-offset` (see [`STEPS_OFFSET`]).
pub(crate) fn steps_offset(text: &str) -> Result<usize, String> {
    count(text, &STEPS_OFFSET)
}

/// A finite `f64` (a config override): `nan`, `inf` and numbers beyond f64 (`1e400`) are
/// refused.
pub(crate) fn finite_f64(text: &str) -> Result<f64, String> {
    let v: f64 = text.trim().parse().map_err(|e| format!("{e}"))?;
    if v.is_nan() || (v.is_infinite() && text.to_ascii_lowercase().contains("inf")) {
        return Err(format!("must be a finite number, got {text}"));
    }
    if v.is_infinite() {
        return Err(format!(
            "{text} overflows a 64-bit float (largest {:e})",
            f64::MAX
        ));
    }
    Ok(v)
}

/// η: a finite number ≥ 0 that fits in an `f32` (`1e308` overflows it: said so).
pub(crate) fn eta(text: &str) -> Result<f32, String> {
    let wide = finite_f64(text).map_err(|_| format!("must be a finite number >= 0, got {text}"))?;
    if wide < 0.0 {
        return Err(format!("must be a finite number >= 0, got {text}"));
    }
    #[allow(clippy::cast_possible_truncation)] // checked just below
    let eta = wide as f32;
    if eta.is_infinite() {
        return Err(format!(
            "{text} overflows a 32-bit float (largest {:e})",
            f32::MAX
        ));
    }
    Ok(eta)
}

/// `bench --seconds`: a finite number of seconds in (0, [`SECONDS_MAX`]].
pub(crate) fn seconds(text: &str) -> Result<f64, String> {
    let refuse = || format!("must be a number of seconds in (0, {SECONDS_MAX}], got {text}");
    let v = finite_f64(text).map_err(|_| refuse())?;
    if v > 0.0 && v <= SECONDS_MAX {
        Ok(v)
    } else {
        Err(refuse())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_are_bounded() {
        assert_eq!(steps("50"), Ok(50));
        assert_eq!(steps("0"), Err("0 is not in 1..=1000000".into()));
        assert!(samples("1000000000").unwrap_err().contains("1..=100000"));
        assert!(samples("18446744073709551615").is_err());
        assert!(samples("18446744073709551616").is_err());
        assert_eq!(seeds("1"), Err("1 is not in 2..=1000".into()));
        assert!(train_timesteps("0").is_err());
        assert_eq!(train_timesteps("2147483647"), Ok(2_147_483_647));
    }

    #[test]
    fn floats_are_finite_and_fit() {
        assert_eq!(eta("0.5"), Ok(0.5));
        assert!(eta("nan").is_err() && eta("inf").is_err() && eta("-1").is_err());
        assert_eq!(
            eta("1e308"),
            Err("1e308 overflows a 32-bit float (largest 3.4028235e38)".into())
        );
        assert!(finite_f64("1e400")
            .unwrap_err()
            .contains("overflows a 64-bit float"));
        for bad in ["nan", "inf", "-inf", "1e300", "-1", "0"] {
            assert!(seconds(bad).is_err(), "{bad}");
        }
        assert_eq!(seconds("0.1"), Ok(0.1));
    }
}
