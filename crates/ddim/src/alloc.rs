//! Allocations whose size comes from the caller (`num_train_timesteps`, a step count, a
//! latent shape): reserved with `try_reserve_exact`, so that a size the machine cannot hold
//! is an [`Error::OutOfMemory`] naming the buffer and its size, never a "capacity overflow"
//! panic or an abort.

use crate::error::{Error, Result};

/// An empty vector with room for exactly `len` values, or [`Error::OutOfMemory`].
pub(crate) fn vec_with_capacity<T>(len: usize, what: &'static str) -> Result<Vec<T>> {
    let mut v = Vec::new();
    v.try_reserve_exact(len).map_err(|_| Error::OutOfMemory {
        what,
        len,
        bytes: (len as u128).saturating_mul(std::mem::size_of::<T>() as u128),
    })?;
    Ok(v)
}

/// The first `len` values of `iter` in a vector reserved up front (see the module docs).
pub(crate) fn collect<T>(
    iter: impl IntoIterator<Item = T>,
    len: usize,
    what: &'static str,
) -> Result<Vec<T>> {
    let mut v = vec_with_capacity(len, what)?;
    v.extend(iter.into_iter().take(len));
    Ok(v)
}

/// `len` copies of `value`, reserved up front.
pub(crate) fn filled<T: Clone>(value: T, len: usize, what: &'static str) -> Result<Vec<T>> {
    let mut v = vec_with_capacity(len, what)?;
    v.resize(len, value);
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_impossible_size_is_an_error() {
        let err = vec_with_capacity::<f32>(usize::MAX, "betas").unwrap_err();
        assert!(matches!(
            err,
            Error::OutOfMemory {
                len: usize::MAX,
                ..
            }
        ));
        assert!(
            err.to_string().starts_with("out of memory: `betas` needs"),
            "{err}"
        );
        assert_eq!(collect(0..10, 3, "x").unwrap(), [0, 1, 2]);
        assert_eq!(filled(1u8, 2, "x").unwrap(), [1, 1]);
    }
}
