//! The fused pass in place: x̂₀ over the model output, x_{t_prev} over the sample.
//!
//! Each element reads its model output `m`, its sample `x` (and its noise `z`) and then
//! overwrites `m` with x̂₀ and `x` with x_{t_prev}, through the same per-element functions as
//! the out-of-place loops, so the bits are the same. In the thresholded mode the unbounded x̂₀
//! is recomputed from `m` and `x` (rounded to the element type, as the out-of-place pass
//! stores it) instead of being read back from a buffer.

use super::{
    element, element_thresholded, recover, Scalars, UpdateRule, X0Bound, CLIP, EPSILON, NO_BOUND,
    SAMPLE, THRESHOLD, V_PREDICTION,
};
use crate::config::PredictionType;
use crate::element::{Compute, Element};
use crate::rng::dispatch::{run_isa, Kernel};

/// One element, in place.
#[inline(always)]
fn store<E: Element, const P: u8, const B: u8, const U: bool, const Z: bool>(
    k: &Scalars<E::Compute>,
    m: &mut E,
    x: &mut E,
    z: E::Compute,
) {
    let (mc, xc) = (m.to_compute(), x.to_compute());
    let (x0, prev) = if B == THRESHOLD {
        let x0 = E::from_compute(recover::<E::Compute, P>(k, mc, xc).0).to_compute();
        element_thresholded::<E::Compute, P, U, Z>(k, x0, mc, xc, z)
    } else {
        element::<E::Compute, P, B, U, Z>(k, mc, xc, z)
    };
    *m = E::from_compute(x0);
    *x = E::from_compute(prev);
}

/// The serial in-place loop of one mode combination (`noise` is empty unless `Z`), inlined
/// into each dispatch path.
#[inline(always)]
fn update_serial<E: Element, const P: u8, const B: u8, const U: bool, const Z: bool>(
    k: &Scalars<E::Compute>,
    model_output: &mut [E],
    sample: &mut [E],
    noise: &[E],
) {
    debug_assert!(model_output.len() == sample.len() && (!Z || noise.len() == sample.len()));
    let pairs = model_output.iter_mut().zip(sample.iter_mut());
    if Z {
        for ((m, x), &z) in pairs.zip(noise) {
            store::<E, P, B, U, Z>(k, m, x, z.to_compute());
        }
    } else {
        for (m, x) in pairs {
            store::<E, P, B, U, Z>(k, m, x, <E::Compute as Compute>::ZERO);
        }
    }
}

/// One call of [`update_serial`], as a kernel compiled per instruction set.
struct Serial<'a, E: Element, const P: u8, const B: u8, const U: bool, const Z: bool> {
    k: &'a Scalars<E::Compute>,
    m: &'a mut [E],
    x: &'a mut [E],
    z: &'a [E],
}

impl<E: Element, const P: u8, const B: u8, const U: bool, const Z: bool> Kernel
    for Serial<'_, E, P, B, U, Z>
{
    type Output = ();
    #[inline(always)]
    fn run<const FMA: bool>(self) {
        update_serial::<E, P, B, U, Z>(self.k, self.m, self.x, self.z);
    }
}

/// [`update_serial`] on the instruction set of [`crate::kernel_path`].
fn dispatched<E: Element, const P: u8, const B: u8, const U: bool, const Z: bool>(
    k: &Scalars<E::Compute>,
    m: &mut [E],
    x: &mut [E],
    z: &[E],
) {
    run_isa(Serial::<E, P, B, U, Z> { k, m, x, z }, crate::simd::isa());
}

type InPlaceFn<E> = fn(&Scalars<<E as Element>::Compute>, &mut [E], &mut [E], &[E]);

/// Picks the monomorphised in-place loop for the runtime modes.
fn select<E: Element>(p: PredictionType, b: u8, u: bool, z: bool) -> InPlaceFn<E> {
    macro_rules! pick {
        ($p:expr) => {
            match (b, u, z) {
                (NO_BOUND, false, false) => dispatched::<E, { $p }, NO_BOUND, false, false>,
                (NO_BOUND, false, true) => dispatched::<E, { $p }, NO_BOUND, false, true>,
                (NO_BOUND, true, false) => dispatched::<E, { $p }, NO_BOUND, true, false>,
                (NO_BOUND, true, true) => dispatched::<E, { $p }, NO_BOUND, true, true>,
                (CLIP, false, false) => dispatched::<E, { $p }, CLIP, false, false>,
                (CLIP, false, true) => dispatched::<E, { $p }, CLIP, false, true>,
                (CLIP, true, false) => dispatched::<E, { $p }, CLIP, true, false>,
                (CLIP, true, true) => dispatched::<E, { $p }, CLIP, true, true>,
                (_, false, false) => dispatched::<E, { $p }, THRESHOLD, false, false>,
                (_, false, true) => dispatched::<E, { $p }, THRESHOLD, false, true>,
                (_, true, false) => dispatched::<E, { $p }, THRESHOLD, true, false>,
                (_, true, true) => dispatched::<E, { $p }, THRESHOLD, true, true>,
            }
        };
    }
    match p {
        PredictionType::Epsilon => pick!(EPSILON),
        PredictionType::Sample => pick!(SAMPLE),
        PredictionType::VPrediction => pick!(V_PREDICTION),
    }
}

/// Runs `f` over the buffers, in parallel chunks when they are long enough (the same chunks
/// as the out-of-place pass; each element's result does not depend on the split).
fn run<E: Element>(f: InPlaceFn<E>, k: &Scalars<E::Compute>, m: &mut [E], x: &mut [E], z: &[E]) {
    #[cfg(feature = "rayon")]
    if x.len() >= super::PARALLEL_MIN_LEN {
        use rayon::prelude::*;
        m.par_chunks_mut(super::PARALLEL_CHUNK)
            .zip(x.par_chunks_mut(super::PARALLEL_CHUNK))
            .enumerate()
            .for_each(|(i, (m, x))| {
                let start = i * super::PARALLEL_CHUNK;
                let z = z.get(start..start + x.len()).unwrap_or(&[]);
                f(k, m, x, z);
            });
        return;
    }
    f(k, m, x, z);
}

/// The fused pass without thresholding, in place: x̂₀ (clipped or not) over `model_output`,
/// x_{t_prev} over `sample`.
pub(crate) fn ddim_update_in_place<E: Element>(
    rule: UpdateRule<'_>,
    model_output: &mut [E],
    sample: &mut [E],
    noise: Option<&[E]>,
) {
    let (b, r) = match rule.bound {
        X0Bound::None => (NO_BOUND, E::Compute::ONE),
        X0Bound::Clip(r) => (CLIP, E::Compute::from_f64(r)),
    };
    let z = noise.filter(|_| rule.add_noise).unwrap_or(&[]);
    let f = select::<E>(
        rule.prediction,
        b,
        rule.use_clipped_model_output,
        !z.is_empty(),
    );
    run(
        f,
        &super::scalars(rule.coefficients, r),
        model_output,
        sample,
        z,
    );
}

/// The fused pass of one thresholded batch item, in place, with its threshold `s`.
pub(crate) fn ddim_update_thresholded_in_place<E: Element>(
    rule: UpdateRule<'_>,
    threshold: E::Compute,
    model_output: &mut [E],
    sample: &mut [E],
    noise: Option<&[E]>,
) {
    let z = noise.filter(|_| rule.add_noise).unwrap_or(&[]);
    let f = select::<E>(
        rule.prediction,
        THRESHOLD,
        rule.use_clipped_model_output,
        !z.is_empty(),
    );
    run(
        f,
        &super::scalars(rule.coefficients, threshold),
        model_output,
        sample,
        z,
    );
}
