//! The opt-in finiteness check of a step's inputs ([`StepOptions::check_finite`]).
//!
//! [`StepOptions::check_finite`]: crate::StepOptions::check_finite

use crate::element::{Compute, Element};
use crate::error::{Error, Result};

/// [`Error::NonFinite`] for the first NaN or ±∞ of `values`.
pub(crate) fn check_finite<T: Element>(
    buffer: &'static str,
    values: &[T],
    timestep: usize,
) -> Result<()> {
    match values
        .iter()
        .map(|v| v.to_compute().to_f64())
        .enumerate()
        .find(|(_, v)| !v.is_finite())
    {
        None => Ok(()),
        Some((index, value)) => Err(Error::NonFinite {
            buffer,
            index,
            value,
            timestep,
        }),
    }
}
