//! The element types a step can run on: `f32`, `f64`, and the half-precision latents that
//! real pipelines keep (`half::f16`, `half::bf16`).
//!
//! Each element type names the float type its arithmetic runs in ([`Element::Compute`]):
//! `f32` and `f64` compute in themselves (as torch does for f32 and f64 tensors); `f16` and
//! `bf16` are widened to `f32`, computed, and rounded once when stored. (diffusers rounds every
//! intermediate to half precision instead, so half-precision results are not compared with it.)

use std::fmt::Debug;
use std::ops::{Add, Div, Mul, Neg, Sub};

/// `x` rounded to the nearest `f32` (±∞ beyond its range, NaN kept): torch's `float64 →
/// float32` conversion, which β, ᾱ and the config's Python floats go through.
#[inline(always)]
#[allow(clippy::cast_possible_truncation)] // the rounding is the intent
pub(crate) fn round_to_f32(x: f64) -> f32 {
    x as f32
}

/// `x` (a rank or a position computed in `f64`) as an index, clamped to `[0, max]`; NaN gives 0.
/// Rust's float-to-integer `as` saturates and maps NaN to 0, so nothing wraps.
#[inline]
#[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // saturating, then clamped
pub(crate) fn index_from_f64(x: f64, max: usize) -> usize {
    (x as usize).min(max)
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for f32 {}
    impl Sealed for f64 {}
    impl Sealed for half::f16 {}
    impl Sealed for half::bf16 {}
}

/// A float type the step's arithmetic runs in: `f32` or `f64`.
pub trait Compute:
    Copy
    + Send
    + Sync
    + Debug
    + PartialOrd
    + Add<Output = Self>
    + Sub<Output = Self>
    + Mul<Output = Self>
    + Div<Output = Self>
    + Neg<Output = Self>
    + sealed::Sealed
    + 'static
{
    /// 0.
    const ZERO: Self;
    /// 1.
    const ONE: Self;
    /// +∞.
    const INFINITY: Self;
    /// An `f32` value, exactly (the step's scalar coefficients are `f32`, as in diffusers).
    fn from_f32(value: f32) -> Self;
    /// An `f64` rounded to this type (Python floats such as `clip_sample_range`).
    fn from_f64(value: f64) -> Self;
    /// Widened (or kept) to `f64`.
    fn to_f64(self) -> f64;
    /// |x|.
    fn abs(self) -> Self;
    /// √x, correctly rounded.
    fn sqrt(self) -> Self;
    /// Whether x is NaN.
    fn is_nan(self) -> bool;
    /// IEEE total order, for selection.
    fn total_cmp(&self, other: &Self) -> std::cmp::Ordering;
}

macro_rules! compute_impl {
    ($t:ty) => {
        impl Compute for $t {
            const ZERO: Self = 0.0;
            const ONE: Self = 1.0;
            const INFINITY: Self = <$t>::INFINITY;
            #[inline(always)]
            fn from_f32(value: f32) -> Self {
                value as $t
            }
            #[inline(always)]
            // Rounding f64 to the compute type (nearest; ±∞ beyond its range) is the intent.
            #[allow(clippy::cast_possible_truncation)]
            fn from_f64(value: f64) -> Self {
                value as $t
            }
            #[inline(always)]
            fn to_f64(self) -> f64 {
                self as f64
            }
            #[inline(always)]
            fn abs(self) -> Self {
                <$t>::abs(self)
            }
            #[inline(always)]
            fn sqrt(self) -> Self {
                <$t>::sqrt(self)
            }
            #[inline(always)]
            fn is_nan(self) -> bool {
                <$t>::is_nan(self)
            }
            #[inline(always)]
            fn total_cmp(&self, other: &Self) -> std::cmp::Ordering {
                <$t>::total_cmp(self, other)
            }
        }
    };
}
compute_impl!(f32);
compute_impl!(f64);

/// An element type of the sample, model output and noise buffers.
///
/// ```
/// use ddim::Element;
/// let x = half::f16::from_f32(0.5);
/// assert_eq!(x.to_compute(), 0.5f32);
/// ```
pub trait Element: Copy + Send + Sync + Debug + sealed::Sealed + 'static {
    /// The type the arithmetic runs in.
    type Compute: Compute;
    /// Widens (or keeps) the value for computing.
    fn to_compute(self) -> Self::Compute;
    /// Rounds a computed value to the element type (once).
    fn from_compute(value: Self::Compute) -> Self;
}

impl Element for f32 {
    type Compute = f32;
    #[inline(always)]
    fn to_compute(self) -> f32 {
        self
    }
    #[inline(always)]
    fn from_compute(value: f32) -> Self {
        value
    }
}

impl Element for f64 {
    type Compute = f64;
    #[inline(always)]
    fn to_compute(self) -> f64 {
        self
    }
    #[inline(always)]
    fn from_compute(value: f64) -> Self {
        value
    }
}

/// Half-precision types: widened to `f32`, rounded once when stored.
macro_rules! half_element {
    ($t:ty) => {
        impl Element for $t {
            type Compute = f32;
            #[inline(always)]
            fn to_compute(self) -> f32 {
                self.to_f32()
            }
            #[inline(always)]
            fn from_compute(value: f32) -> Self {
                <$t>::from_f32(value)
            }
        }
    };
}
half_element!(half::f16);
half_element!(half::bf16);
