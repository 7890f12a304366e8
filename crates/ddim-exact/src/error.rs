//! The crate's one error type.

/// Everything that can go wrong in `ddim-exact`.
///
/// Messages are lower-case and name the offending value and the limit it broke.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A mixture's parameters cannot describe a probability density.
    #[error("invalid mixture: {reason}")]
    InvalidMixture {
        /// What is wrong, e.g. "component 3 has std 0, must be > 0".
        reason: String,
    },

    /// A buffer's length is not a multiple of the dimension, or two buffers disagree.
    #[error("length mismatch: `{name}` has {got} elements, expected {expected}")]
    LengthMismatch {
        /// Which argument is wrong.
        name: &'static str,
        /// The length required (or the multiple it must be of).
        expected: usize,
        /// The length given.
        got: usize,
    },

    /// ᾱ is not a number in `[0, 1]`.
    #[error("alpha_bar must be in [0, 1], got {0}")]
    InvalidAlphaBar(f64),

    /// A count that must be positive is zero (samples, projections, ...).
    #[error("`{0}` must be at least 1, got 0")]
    ZeroCount(&'static str),

    /// A sample holds a NaN or an infinity where a finite value is needed.
    #[error("sample {index} is not finite")]
    NonFiniteSample {
        /// The index of the sample (not of the element) in the batch.
        index: usize,
    },

    /// The scheduler refused a call while sampling.
    #[error(transparent)]
    Scheduler(#[from] ddim::Error),
}

/// `Result` with this crate's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;
