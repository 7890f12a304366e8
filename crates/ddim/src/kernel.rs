//! The fused element-wise DDIM update over slices.
//!
//! One pass reads the model output, the sample (and the noise) once and writes x̂₀ and
//! x_{t_prev} once. Every operation is one rounding in the order diffusers evaluates it (Rust
//! does not contract `a * b + c` into a fused multiply-add), so `f32` results match diffusers
//! bit for bit given the same scalar coefficients. The mode switches (prediction type, bound,
//! clipped ε̂, noise) are const generics, so each combination compiles to its own branch-free,
//! vectorisable loop. Large buffers are split into chunks run on rayon's pool; each element is
//! computed by the same code either way, so the result is bit-identical to one thread.

mod in_place;

pub(crate) use in_place::{ddim_update_in_place, ddim_update_thresholded_in_place};

use crate::coefficients::StepCoefficients;
use crate::config::PredictionType;
use crate::element::{Compute, Element};
use crate::rng::dispatch::{run_isa, Kernel};

/// Buffers at least this long are processed in parallel (when the `rayon` feature is on).
/// Below it, a step runs on the calling thread and allocates nothing. Measured on 2 cores:
/// at 65,536 elements (1×4×128×128) two threads are no faster than one (14.1 against
/// 14.8 µs); at 131,072 they are (22 against 30 µs).
pub const PARALLEL_MIN_LEN: usize = 1 << 17;

/// The chunk each parallel task processes (elements).
#[cfg(feature = "rayon")]
const PARALLEL_CHUNK: usize = 1 << 15;

/// What happens to x̂₀ after it is recovered from the model output.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum X0Bound {
    /// Left as is.
    None,
    /// Clamped to `[-r, r]` (`clip_sample`); `r` as diffusers' Python float.
    Clip(f64),
}

/// The per-step settings of the fused pass that do not vary per element.
#[derive(Debug, Clone, Copy)]
pub(crate) struct UpdateRule<'c> {
    pub(crate) prediction: PredictionType,
    pub(crate) coefficients: &'c StepCoefficients,
    pub(crate) bound: X0Bound,
    pub(crate) use_clipped_model_output: bool,
    /// Add σ·z: diffusers does so only when η > 0.
    pub(crate) add_noise: bool,
}

/// The scalars of the pass, in the compute type.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Scalars<C> {
    sqrt_alpha: C,
    sqrt_beta: C,
    sqrt_alpha_prev: C,
    direction: C,
    std_dev: C,
    /// The clamp bound: `r` for clipping, `s` for thresholding.
    bound: C,
}

const EPSILON: u8 = 0;
const SAMPLE: u8 = 1;
const V_PREDICTION: u8 = 2;

const NO_BOUND: u8 = 0;
const CLIP: u8 = 1;
const THRESHOLD: u8 = 2;

/// torch's `clamp(x, lo, hi)`: NaN passes through, ±∞ go to the bounds. Written as selects
/// so the loop vectorises.
#[inline(always)]
pub(crate) fn clamp_keep_nan<C: Compute>(x: C, lo: C, hi: C) -> C {
    let x = if x < lo { lo } else { x };
    if x > hi {
        hi
    } else {
        x
    }
}

/// x̂₀ and ε̂ from the model output `m` and the sample `x`, before any bound.
#[inline(always)]
fn recover<C: Compute, const P: u8>(k: &Scalars<C>, m: C, x: C) -> (C, C) {
    let (sa, sb) = (k.sqrt_alpha, k.sqrt_beta);
    match P {
        EPSILON => ((x - sb * m) / sa, m),
        SAMPLE => (m, (x - sa * m) / sb),
        _ => (sa * x - sb * m, sa * m + sb * x),
    }
}

/// One element: bounded x̂₀ and x_{t_prev}.
#[inline(always)]
fn element<C: Compute, const P: u8, const B: u8, const U: bool, const Z: bool>(
    k: &Scalars<C>,
    m: C,
    x: C,
    z: C,
) -> (C, C) {
    let (x0, eps) = recover::<C, P>(k, m, x);
    let x0 = match B {
        NO_BOUND => x0,
        CLIP => clamp_keep_nan(x0, -k.bound, k.bound),
        _ => clamp_keep_nan(x0, -k.bound, k.bound) / k.bound,
    };
    (x0, update::<C, U, Z>(k, x0, eps, x, z))
}

/// x_{t_prev} from the bounded x̂₀ and ε̂ (re-derived from x̂₀ with `use_clipped_model_output`).
#[inline(always)]
fn update<C: Compute, const U: bool, const Z: bool>(
    k: &Scalars<C>,
    x0: C,
    eps: C,
    x: C,
    z: C,
) -> C {
    let eps = if U {
        (x - k.sqrt_alpha * x0) / k.sqrt_beta
    } else {
        eps
    };
    let prev = k.sqrt_alpha_prev * x0 + k.direction * eps;
    if Z {
        prev + k.std_dev * z
    } else {
        prev
    }
}

/// One element of the thresholded pass: x̂₀ was recovered in the first pass (`x0`, unbounded)
/// and is not recomputed; ε̂ is the same expression of `m` and `x` as in [`recover`].
#[inline(always)]
fn element_thresholded<C: Compute, const P: u8, const U: bool, const Z: bool>(
    k: &Scalars<C>,
    x0: C,
    m: C,
    x: C,
    z: C,
) -> (C, C) {
    let eps = match P {
        EPSILON => m,
        SAMPLE => (x - k.sqrt_alpha * m) / k.sqrt_beta,
        _ => k.sqrt_alpha * m + k.sqrt_beta * x,
    };
    let x0 = clamp_keep_nan(x0, -k.bound, k.bound) / k.bound;
    (x0, update::<C, U, Z>(k, x0, eps, x, z))
}

/// One element of the serial loop: writes x̂₀ to `x0_out` and x_{t_prev} to `prev_out`.
#[inline(always)]
fn store<E: Element, const P: u8, const B: u8, const U: bool, const Z: bool>(
    k: &Scalars<E::Compute>,
    (prev_out, x0_out): (&mut E, &mut E),
    m: E,
    x: E,
    z: E::Compute,
) {
    let (m, x) = (m.to_compute(), x.to_compute());
    let (x0, prev) = if B == THRESHOLD {
        element_thresholded::<E::Compute, P, U, Z>(k, x0_out.to_compute(), m, x, z)
    } else {
        element::<E::Compute, P, B, U, Z>(k, m, x, z)
    };
    *x0_out = E::from_compute(x0);
    *prev_out = E::from_compute(prev);
}

/// The serial loop of one mode combination over buffers of one length (`noise` is empty
/// unless `Z`). In the `THRESHOLD` mode, `x0_out` holds the unbounded x̂₀ on entry. Inlined
/// into [`Serial`]'s dispatch paths, so each is compiled for its instruction set.
#[inline(always)]
fn update_serial<E: Element, const P: u8, const B: u8, const U: bool, const Z: bool>(
    k: &Scalars<E::Compute>,
    model_output: &[E],
    sample: &[E],
    noise: &[E],
    prev_out: &mut [E],
    x0_out: &mut [E],
) {
    debug_assert!(
        model_output.len() == prev_out.len()
            && sample.len() == prev_out.len()
            && x0_out.len() == prev_out.len()
            && (!Z || noise.len() == prev_out.len())
    );
    let outputs = prev_out.iter_mut().zip(x0_out.iter_mut());
    let inputs = model_output.iter().zip(sample);
    if Z {
        for ((out, (&m, &x)), &z) in outputs.zip(inputs).zip(noise) {
            store::<E, P, B, U, Z>(k, out, m, x, z.to_compute());
        }
    } else {
        for (out, (&m, &x)) in outputs.zip(inputs) {
            store::<E, P, B, U, Z>(k, out, m, x, <E::Compute as Compute>::ZERO);
        }
    }
}

/// One call of [`update_serial`], as a kernel compiled per instruction set.
struct Serial<'a, E: Element, const P: u8, const B: u8, const U: bool, const Z: bool> {
    k: &'a Scalars<E::Compute>,
    m: &'a [E],
    x: &'a [E],
    z: &'a [E],
    prev: &'a mut [E],
    x0: &'a mut [E],
}

impl<E: Element, const P: u8, const B: u8, const U: bool, const Z: bool> Kernel
    for Serial<'_, E, P, B, U, Z>
{
    type Output = ();
    #[inline(always)]
    fn run<const FMA: bool>(self) {
        update_serial::<E, P, B, U, Z>(self.k, self.m, self.x, self.z, self.prev, self.x0);
    }
}

/// [`update_serial`] on the instruction set of [`crate::kernel_path`].
fn dispatched<E: Element, const P: u8, const B: u8, const U: bool, const Z: bool>(
    k: &Scalars<E::Compute>,
    m: &[E],
    x: &[E],
    z: &[E],
    prev: &mut [E],
    x0: &mut [E],
) {
    let kernel = Serial::<E, P, B, U, Z> {
        k,
        m,
        x,
        z,
        prev,
        x0,
    };
    run_isa(kernel, crate::simd::isa());
}

type SerialFn<E> = fn(&Scalars<<E as Element>::Compute>, &[E], &[E], &[E], &mut [E], &mut [E]);

/// Picks the monomorphised loop for the runtime modes.
fn select<E: Element>(p: PredictionType, b: u8, u: bool, z: bool) -> SerialFn<E> {
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

/// Runs `f` over the buffers, in parallel chunks when they are long enough.
fn run<E: Element>(
    f: SerialFn<E>,
    k: &Scalars<E::Compute>,
    m: &[E],
    x: &[E],
    z: &[E],
    prev: &mut [E],
    x0: &mut [E],
) {
    #[cfg(feature = "rayon")]
    if prev.len() >= PARALLEL_MIN_LEN {
        use rayon::prelude::*;
        prev.par_chunks_mut(PARALLEL_CHUNK)
            .zip(x0.par_chunks_mut(PARALLEL_CHUNK))
            .zip(m.par_chunks(PARALLEL_CHUNK))
            .zip(x.par_chunks(PARALLEL_CHUNK))
            .enumerate()
            .for_each(|(i, (((p, o), m), x))| {
                // The noise, when there is any, is as long as the other buffers.
                let start = i * PARALLEL_CHUNK;
                let z = z.get(start..start + p.len()).unwrap_or(&[]);
                f(k, m, x, z, p, o);
            });
        return;
    }
    f(k, m, x, z, prev, x0);
}

pub(crate) fn scalars<C: Compute>(c: &StepCoefficients, bound: C) -> Scalars<C> {
    Scalars {
        sqrt_alpha: C::from_f32(c.sqrt_alpha_prod_t),
        sqrt_beta: C::from_f32(c.sqrt_beta_prod_t),
        sqrt_alpha_prev: C::from_f32(c.sqrt_alpha_prod_t_prev),
        direction: C::from_f32(c.direction),
        std_dev: C::from_f32(c.std_dev_t),
        bound,
    }
}

/// The fused pass without thresholding: x̂₀ (clipped or not) into `x0_out`, x_{t_prev} into
/// `prev_out`.
pub(crate) fn ddim_update<E: Element>(
    rule: UpdateRule<'_>,
    model_output: &[E],
    sample: &[E],
    noise: Option<&[E]>,
    prev_out: &mut [E],
    x0_out: &mut [E],
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
        &scalars(rule.coefficients, r),
        model_output,
        sample,
        z,
        prev_out,
        x0_out,
    );
}

/// The fused pass of one thresholded batch item, with its threshold `s`:
/// x̂₀ = clamp(x̂₀, −s, s)/s. `x0_out` holds the unbounded x̂₀ on entry.
pub(crate) fn ddim_update_thresholded<E: Element>(
    rule: UpdateRule<'_>,
    threshold: E::Compute,
    model_output: &[E],
    sample: &[E],
    noise: Option<&[E]>,
    prev_out: &mut [E],
    x0_out: &mut [E],
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
        &scalars(rule.coefficients, threshold),
        model_output,
        sample,
        z,
        prev_out,
        x0_out,
    );
}

/// x̂₀ at one element (what the first thresholding pass stores there), widened.
pub(crate) fn recover_one<E: Element>(
    prediction: PredictionType,
    k: &Scalars<E::Compute>,
    m: E,
    x: E,
) -> E::Compute {
    let (m, x) = (m.to_compute(), x.to_compute());
    let x0 = match prediction {
        PredictionType::Epsilon => recover::<E::Compute, EPSILON>(k, m, x).0,
        PredictionType::Sample => recover::<E::Compute, SAMPLE>(k, m, x).0,
        PredictionType::VPrediction => recover::<E::Compute, V_PREDICTION>(k, m, x).0,
    };
    E::from_compute(x0).to_compute()
}

/// |x̂₀| (rounded to the element type, as the first thresholding pass stores x̂₀) of each
/// element into `out`, in one vectorisable loop per prediction type; `out` as long as the
/// inputs (extra entries are left as they are).
pub(crate) fn recover_abs_into<E: Element>(
    prediction: PredictionType,
    k: &Scalars<E::Compute>,
    model_output: &[E],
    sample: &[E],
    out: &mut [E::Compute],
) {
    /// |x̂₀| of one chunk, as a kernel compiled per instruction set.
    struct AbsInto<'a, E: Element, const P: u8> {
        k: &'a Scalars<E::Compute>,
        m: &'a [E],
        x: &'a [E],
        out: &'a mut [E::Compute],
    }
    impl<E: Element, const P: u8> Kernel for AbsInto<'_, E, P> {
        type Output = ();
        #[inline(always)]
        fn run<const FMA: bool>(self) {
            for ((o, &mi), &xi) in self.out.iter_mut().zip(self.m).zip(self.x) {
                let x0 = recover::<E::Compute, P>(self.k, mi.to_compute(), xi.to_compute()).0;
                *o = E::from_compute(x0).to_compute().abs();
            }
        }
    }
    let (m, x, isa) = (model_output, sample, crate::simd::isa());
    match prediction {
        PredictionType::Epsilon => run_isa(AbsInto::<E, EPSILON> { k, m, x, out }, isa),
        PredictionType::Sample => run_isa(AbsInto::<E, SAMPLE> { k, m, x, out }, isa),
        PredictionType::VPrediction => run_isa(AbsInto::<E, V_PREDICTION> { k, m, x, out }, isa),
    }
}

/// What the first thresholding pass saw of |x̂₀| against two pivots.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Partition {
    /// Some |x̂₀| is NaN.
    pub(crate) has_nan: bool,
    /// How many |x̂₀| are below the low pivot.
    pub(crate) below: usize,
    /// How many |x̂₀| lie within [low, high]; they were copied to the scratch buffer.
    pub(crate) candidates: usize,
}

#[inline(always)]
fn recover_partition<E: Element, const P: u8>(
    k: &Scalars<E::Compute>,
    m: &[E],
    x: &[E],
    x0_out: &mut [E],
    (low, high): (E::Compute, E::Compute),
    scratch: &mut [E],
) -> Partition {
    let (mut has_nan, mut below, mut candidates) = (false, 0, 0);
    // In chunks that stay in L1: a vectorisable loop computes x̂₀ (the division is the
    // costly part), then a branch-free loop compacts the values between the pivots.
    const CHUNK: usize = 512;
    let chunks = x0_out
        .chunks_mut(CHUNK)
        .zip(m.chunks(CHUNK))
        .zip(x.chunks(CHUNK));
    for ((out, m), x) in chunks {
        let mut below_in_chunk = 0u32;
        for ((o, &mi), &xi) in out.iter_mut().zip(m).zip(x) {
            let x0 =
                E::from_compute(recover::<E::Compute, P>(k, mi.to_compute(), xi.to_compute()).0);
            *o = x0;
            let a = x0.to_compute().abs();
            has_nan |= a.is_nan();
            below_in_chunk += u32::from(a < low);
        }
        below += below_in_chunk as usize;
        if (below_in_chunk as usize) < out.len() {
            // Most blocks hold nothing at or above the low pivot: one branch-free test per
            // block of 16 skips them; the rest are compacted element by element.
            for block in out.chunks(16) {
                let any = block
                    .iter()
                    .fold(false, |any, v| any | (v.to_compute().abs() >= low));
                if !any {
                    continue;
                }
                for &x0 in block {
                    let a = x0.to_compute().abs();
                    if a >= low && a <= high {
                        // `scratch` is as long as the item; a shorter one makes the caller
                        // fall back to the plain selection (candidates > its length).
                        if let Some(s) = scratch.get_mut(candidates) {
                            *s = E::from_compute(a);
                        }
                        candidates += 1;
                    }
                }
            }
        }
    }
    Partition {
        has_nan,
        below,
        candidates,
    }
}

/// The first pass of thresholding: the unbounded x̂₀ into `x0_out`, and |x̂₀| partitioned
/// by the pivots `low ≤ high` (the values in between copied to `scratch`).
pub(crate) fn recover_x0_partition<E: Element>(
    prediction: PredictionType,
    k: &Scalars<E::Compute>,
    model_output: &[E],
    sample: &[E],
    x0_out: &mut [E],
    pivots: (E::Compute, E::Compute),
    scratch: &mut [E],
) -> Partition {
    /// [`recover_partition`] as a kernel compiled per instruction set.
    struct Partitioned<'a, E: Element, const P: u8> {
        k: &'a Scalars<E::Compute>,
        m: &'a [E],
        x: &'a [E],
        x0_out: &'a mut [E],
        pivots: (E::Compute, E::Compute),
        scratch: &'a mut [E],
    }
    impl<E: Element, const P: u8> Kernel for Partitioned<'_, E, P> {
        type Output = Partition;
        #[inline(always)]
        fn run<const FMA: bool>(self) -> Partition {
            recover_partition::<E, P>(
                self.k,
                self.m,
                self.x,
                self.x0_out,
                self.pivots,
                self.scratch,
            )
        }
    }
    let (m, x, isa) = (model_output, sample, crate::simd::isa());
    macro_rules! partitioned {
        ($p:expr) => {
            run_isa(
                Partitioned::<E, { $p }> {
                    k,
                    m,
                    x,
                    x0_out,
                    pivots,
                    scratch,
                },
                isa,
            )
        };
    }
    match prediction {
        PredictionType::Epsilon => partitioned!(EPSILON),
        PredictionType::Sample => partitioned!(SAMPLE),
        PredictionType::VPrediction => partitioned!(V_PREDICTION),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clamp_passes_nan_and_bounds_infinities() {
        assert!(clamp_keep_nan(f32::NAN, -1.0, 1.0).is_nan());
        assert_eq!(clamp_keep_nan(f32::INFINITY, -1.0, 1.0), 1.0);
        assert_eq!(clamp_keep_nan(f32::NEG_INFINITY, -1.0, 1.0), -1.0);
        assert_eq!(clamp_keep_nan(0.25f64, -1.0, 1.0), 0.25);
    }

    /// Every mode combination of the monomorphised loops against a plain scalar evaluation.
    #[test]
    fn every_mode_matches_the_scalar_formula() {
        let c = StepCoefficients::new(500, Some(480), 0.3, 0.35, 0.7);
        let m: Vec<f32> = (0..37).map(|i| (i as f32 * 0.37).sin() * 2.0).collect();
        let x: Vec<f32> = (0..37).map(|i| (i as f32 * 0.91).cos() * 1.5).collect();
        let z: Vec<f32> = (0..37).map(|i| (i as f32 * 1.3).sin()).collect();
        for prediction in PredictionType::ALL.iter().copied() {
            for bound in [X0Bound::None, X0Bound::Clip(0.8)] {
                for ucmo in [false, true] {
                    for noise in [false, true] {
                        let rule = UpdateRule {
                            prediction,
                            coefficients: &c,
                            bound,
                            use_clipped_model_output: ucmo,
                            add_noise: noise,
                        };
                        let (mut p, mut o) = (vec![0.0f32; 37], vec![0.0f32; 37]);
                        ddim_update(rule, &m, &x, Some(&z), &mut p, &mut o);
                        for i in 0..37 {
                            let (sa, sb) = (c.sqrt_alpha_prod_t, c.sqrt_beta_prod_t);
                            let (mut x0, mut eps) = match prediction {
                                PredictionType::Epsilon => ((x[i] - sb * m[i]) / sa, m[i]),
                                PredictionType::Sample => (m[i], (x[i] - sa * m[i]) / sb),
                                PredictionType::VPrediction => {
                                    (sa * x[i] - sb * m[i], sa * m[i] + sb * x[i])
                                }
                            };
                            if let X0Bound::Clip(r) = bound {
                                x0 = x0.clamp(-r as f32, r as f32);
                            }
                            if ucmo {
                                eps = (x[i] - sa * x0) / sb;
                            }
                            let mut prev = c.sqrt_alpha_prod_t_prev * x0 + c.direction * eps;
                            if noise {
                                prev += c.std_dev_t * z[i];
                            }
                            assert_eq!(
                                (o[i], p[i]),
                                (x0, prev),
                                "{prediction} {bound:?} {ucmo} {noise}"
                            );
                        }
                    }
                }
            }
        }
    }
}
