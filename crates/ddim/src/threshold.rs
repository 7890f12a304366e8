//! Imagen's dynamic thresholding of x̂₀ (Saharia et al. 2022), per batch item:
//! s = clamp(quantile_q(|x̂₀|), 1, sample_max_value), then x̂₀ ← clamp(x̂₀, −s, s)/s.
//!
//! The quantile is `torch.quantile`'s linear interpolation, found by selection in O(n)
//! instead of a full sort, and mostly within the pass that computes x̂₀.

use crate::config::PredictionType;
use crate::element::{index_from_f64, Compute, Element};
use crate::kernel::{self, Scalars};

/// `torch.quantile(|row|, q)` with linear interpolation, in O(len) by selection, using
/// `scratch` (as long as `row`) as work space.
///
/// torch makes `q` a tensor of the row's dtype, computes the rank `q·(N−1)` and the
/// interpolation `lo + w·(hi − lo)` in f64, and rounds the result to the row's type. A row
/// holding NaN has quantile NaN.
pub(crate) fn abs_quantile<E: Element>(row: &[E], q: f64, scratch: &mut [E]) -> E::Compute {
    let mut has_nan = false;
    for (s, &v) in scratch.iter_mut().zip(row) {
        let a = v.to_compute().abs();
        has_nan |= a.is_nan();
        *s = E::from_compute(a);
    }
    if has_nan {
        return E::Compute::from_f64(f64::NAN);
    }
    let ranks = Ranks::new(row.len(), q);
    match scratch.get_mut(..row.len()) {
        Some(values) => ranks.select(values, 0),
        None => E::Compute::from_f64(f64::NAN), // callers pass scratch as long as the row
    }
}

/// The two order statistics `torch.quantile` interpolates between.
#[derive(Debug, Clone, Copy)]
struct Ranks {
    lo: usize,
    hi: usize,
    weight: f64,
}

impl Ranks {
    /// The ranks of quantile `q ∈ [0, 1]` among `n` values (clamped to `[0, n − 1]`).
    fn new(n: usize, q: f64) -> Self {
        let last = n.saturating_sub(1);
        let rank = q * last as f64;
        Self {
            lo: index_from_f64(rank.floor(), last),
            hi: index_from_f64(rank.ceil(), last),
            weight: rank - rank.floor(),
        }
    }

    /// The quantile from `values`, which hold the elements of ranks `offset..offset + len`.
    fn select<E: Element>(&self, values: &mut [E], offset: usize) -> E::Compute {
        let order = |a: &E, b: &E| a.to_compute().total_cmp(&b.to_compute());
        // Callers pass values holding rank `lo`; anything else has no quantile.
        let Some(lo) = self.lo.checked_sub(offset).filter(|&i| i < values.len()) else {
            return E::Compute::from_f64(f64::NAN);
        };
        let (_, lo_value, above) = values.select_nth_unstable_by(lo, order);
        let lo_value = lo_value.to_compute().to_f64();
        let hi_value = if self.hi == self.lo {
            lo_value
        } else {
            // The (lo+1)-th smallest is the smallest of the part above the selected element.
            above
                .iter()
                .map(|v| v.to_compute().to_f64())
                .fold(f64::INFINITY, f64::min)
        };
        E::Compute::from_f64(lo_value + self.weight * (hi_value - lo_value))
    }
}

/// Sample size of the pivot choice: n/64 within [MIN_SAMPLE, MAX_SAMPLE]. A larger sample
/// brackets the quantile more tightly (fewer candidates to select among) at the cost of more
/// scattered reads.
const MIN_SAMPLE: usize = 256;
const MAX_SAMPLE: usize = 512;
/// Items shorter than this take the plain selection.
const SAMPLING_MIN_LEN: usize = 4 * MIN_SAMPLE;

/// The first pass of a thresholded step for one batch item: the unbounded x̂₀ into `x0_out`,
/// and the quantile of |x̂₀| (torch.quantile's value) for the threshold.
///
/// Floyd–Rivest style: x̂₀ at 128 fixed pseudo-random positions gives two pivots that bracket
/// the wanted rank with high probability; the pass that writes x̂₀ also counts the values below
/// the low pivot and copies those between the pivots into `scratch`, where a small selection
/// finishes. If the pivots miss (or the item is short), a plain selection over all of |x̂₀|
/// runs instead, so the result never depends on the sample. No heap allocation either way.
pub(crate) fn recover_x0_and_quantile<E: Element>(
    prediction: PredictionType,
    k: &Scalars<E::Compute>,
    model_output: &[E],
    sample: &[E],
    x0_out: &mut [E],
    q: f64,
    scratch: &mut [E],
) -> E::Compute {
    let n = x0_out.len();
    let q = E::Compute::from_f64(q).to_f64();
    let ranks = Ranks::new(n, q);
    let pivots = if n >= SAMPLING_MIN_LEN {
        pivots(prediction, k, model_output, sample, q)
    } else {
        None
    };
    let (low, high) = pivots.unwrap_or((E::Compute::INFINITY, E::Compute::INFINITY));
    let part = kernel::recover_x0_partition(
        prediction,
        k,
        model_output,
        sample,
        x0_out,
        (low, high),
        scratch,
    );
    if part.has_nan {
        return E::Compute::from_f64(f64::NAN);
    }
    if pivots.is_some() && ranks.lo >= part.below && ranks.hi < part.below + part.candidates {
        if let Some(candidates) = scratch.get_mut(..part.candidates) {
            return ranks.select(candidates, part.below);
        }
    }
    abs_quantile(x0_out, q, scratch)
}

/// Calls `f` with |x̂₀| of every element in order, a chunk at a time: each chunk is computed
/// by a vectorised loop (the division is the costly part) into a small stack buffer.
fn for_each_abs_chunk<E: Element>(
    prediction: PredictionType,
    k: &Scalars<E::Compute>,
    model_output: &[E],
    sample: &[E],
    mut f: impl FnMut(&[E::Compute]),
) {
    const CHUNK: usize = 256;
    let mut values = [E::Compute::ZERO; CHUNK];
    for (m, x) in model_output.chunks(CHUNK).zip(sample.chunks(CHUNK)) {
        kernel::recover_abs_into(prediction, k, m, x, &mut values);
        // Chunks are at most CHUNK long: `get` always succeeds.
        if let Some(chunk) = values.get(..m.len().min(x.len())) {
            f(chunk);
        }
    }
}

/// How many candidate values [`abs_x0_quantile`] keeps on the stack for its final selection.
const STACK_CANDIDATES: usize = 2048;

/// Items at least this long build the histogram in the first pass of [`abs_x0_quantile`]:
/// their sampled bracket (about 2 % of the item at q = 0.995) overflows the stack, and the
/// histogram saves a second pass over the item. Shorter items (a 1×4×128×128 latent is 65,536
/// values) usually fit, and skip its cost (about 7 % of their step, measured).
const HISTOGRAM_FIRST_MIN_LEN: usize = 1 << 17;

/// The quantile of |x̂₀| (torch.quantile's value, as [`recover_x0_and_quantile`] gives it)
/// without any buffer to write to: the in-place step's first pass, which must leave the model
/// output and the sample as they are.
///
/// x̂₀ is recomputed from `model_output` and `sample` at each pass (rounded to the element
/// type, as the out-of-place pass stores it). A pass counts the values below a key range,
/// copies those inside it to a stack buffer while they fit, and builds a 256-bin histogram of
/// the range; the range starts at the sampled pivots (one pass is then the rule; two for
/// large items, whose bracket overflows the stack) and is narrowed to the bins holding the
/// wanted ranks until its values fit on the stack or it holds one value. The keys are the
/// bits of |x̂₀| as `f64`, whose order is the values' order for non-negative numbers. No heap
/// allocation.
pub(crate) fn abs_x0_quantile<E: Element>(
    prediction: PredictionType,
    k: &Scalars<E::Compute>,
    model_output: &[E],
    sample: &[E],
    q: f64,
) -> E::Compute {
    let n = model_output.len().min(sample.len());
    let q = E::Compute::from_f64(q).to_f64();
    let ranks = Ranks::new(n, q);
    let key = |v: E::Compute| v.to_f64().to_bits();
    let value = |key: u64| E::Compute::from_f64(f64::from_bits(key));
    let full = (0u64, f64::INFINITY.to_bits());
    let sampled = if n >= SAMPLING_MIN_LEN {
        pivots(prediction, k, model_output, sample, q)
    } else {
        None
    };
    // The key range [lo, hi] (inclusive) holding the ranks wanted.
    let (mut lo, mut hi) = sampled.map_or(full, |(l, h)| (key(l), key(h)));
    let zero = E::from_compute(<E::Compute as Compute>::ZERO);
    let mut buffer = [zero; STACK_CANDIDATES];
    // Whether a pass also builds the histogram of its range. A small item's sampled bracket
    // fits on the stack, and its first pass skips that work; a pass that overflows is
    // repeated with it, and every later pass (over a narrow range) builds it.
    let mut with_histogram = n >= HISTOGRAM_FIRST_MIN_LEN;
    loop {
        let span = hi - lo;
        let shift = (64 - span.leading_zeros()).saturating_sub(8);
        let mut histogram = [0usize; 256];
        let (low, high) = (value(lo), value(hi));
        let (mut below, mut inside, mut has_nan) = (0usize, 0usize, false);
        for_each_abs_chunk(prediction, k, model_output, sample, |chunk| {
            // Branch-free counts over the chunk; only blocks of 16 holding a value at or above
            // the low bound (few, with sampled pivots) are visited one by one: each value in
            // the range is copied to the stack while it fits and counted in the histogram, so
            // that a range that overflows the stack is narrowed without another pass.
            has_nan |= chunk.iter().fold(false, |nan, a| nan | a.is_nan());
            // u32 lanes (a chunk is short): twice as many per vector as usize.
            let below_chunk = chunk.iter().fold(0u32, |n, &a| n + u32::from(a < low)) as usize;
            below += below_chunk;
            if below_chunk == chunk.len() {
                return;
            }
            for block in chunk.chunks(16) {
                if !block.iter().fold(false, |any, &a| any | (a >= low)) {
                    continue;
                }
                for &a in block {
                    if a >= low && a <= high {
                        if let Some(slot) = buffer.get_mut(inside) {
                            *slot = E::from_compute(a);
                        }
                        inside += 1;
                        if !with_histogram {
                            continue;
                        }
                        // `high` rounded to the compute type can admit the next value above
                        // the range's last key: it falls past the last bin and is left out
                        // (it ranks above the values wanted).
                        if let Some(bin) = key(a)
                            .checked_sub(lo)
                            .and_then(|offset| usize::try_from(offset >> shift).ok())
                            .and_then(|b| histogram.get_mut(b))
                        {
                            *bin += 1;
                        }
                    }
                }
            }
        });
        if has_nan {
            return E::Compute::from_f64(f64::NAN);
        }
        if !(ranks.lo >= below && ranks.hi < below + inside) {
            // Sampled pivots that miss the ranks: start again over every value (which holds
            // them all, so this happens at most once).
            if (lo, hi) == full {
                return E::Compute::from_f64(f64::NAN); // unreachable: all values are inside
            }
            (lo, hi) = full;
            continue;
        }
        if let Some(candidates) = buffer.get_mut(..inside) {
            return ranks.select(candidates, below);
        }
        if !with_histogram {
            with_histogram = true;
            continue;
        }
        // Narrow to the bins that hold ranks lo and hi.
        let (mut bin_lo, mut bin_hi) = (None, None);
        let mut seen = below;
        for (b, &count) in histogram.iter().enumerate() {
            if bin_lo.is_none() && ranks.lo < seen + count {
                bin_lo = Some(b);
            }
            if ranks.hi < seen + count {
                bin_hi = Some(b);
                break;
            }
            seen += count;
        }
        let (Some(b_lo), Some(b_hi)) = (bin_lo, bin_hi) else {
            return E::Compute::from_f64(f64::NAN); // unreachable: the ranks are inside
        };
        let bin = |b: usize| {
            let start = lo + ((b as u64) << shift);
            (start, start.saturating_add((1u64 << shift) - 1).min(hi))
        };
        if b_lo == b_hi {
            (lo, hi) = bin(b_lo);
            if lo == hi {
                // One value holds both ranks.
                return value(lo);
            }
            continue;
        }
        // Rank hi = rank lo + 1 is the first of its bin and rank lo the last of its own (the
        // bins between are empty): one more pass finds the two.
        let ((lo_start, lo_end), (hi_start, hi_end)) = (bin(b_lo), bin(b_hi));
        let (mut lo_key, mut hi_key) = (lo_start, hi_end);
        for_each_abs_chunk(prediction, k, model_output, sample, |chunk| {
            for &a in chunk {
                let kv = key(a);
                if kv >= lo_start && kv <= lo_end && kv > lo_key {
                    lo_key = kv;
                }
                if kv >= hi_start && kv <= hi_end && kv < hi_key {
                    hi_key = kv;
                }
            }
        });
        let (lo_value, hi_value) = (value(lo_key).to_f64(), value(hi_key).to_f64());
        return E::Compute::from_f64(lo_value + ranks.weight * (hi_value - lo_value));
    }
}

/// Two values of |x̂₀| from a fixed pseudo-random stratified sample, about three standard
/// deviations of the sample rank either side of quantile `q`; `None` if the sample holds NaN.
fn pivots<E: Element>(
    prediction: PredictionType,
    k: &Scalars<E::Compute>,
    model_output: &[E],
    sample: &[E],
    q: f64,
) -> Option<(E::Compute, E::Compute)> {
    let n = model_output.len();
    let size = (n / 64).clamp(MIN_SAMPLE, MAX_SAMPLE);
    let stratum = n / size;
    let mut buffer = [E::Compute::ZERO; MAX_SAMPLE];
    let values = buffer.get_mut(..size)?;
    let mut state = 0x9e37_79b9_u32;
    // One position per stratum of n/size elements, jittered within it: spread over the
    // whole item (no bias from image structure), in increasing order (prefetch-friendly).
    for (j, v) in values.iter_mut().enumerate() {
        state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        let i = j * stratum + ((u64::from(state) * stratum as u64) >> 32) as usize;
        *v = kernel::recover_one(prediction, k, *model_output.get(i)?, *sample.get(i)?).abs();
        if v.is_nan() {
            return None;
        }
    }
    let position = q * (size - 1) as f64;
    let spread = 3.0 * (size as f64 * q * (1.0 - q)).sqrt() + 2.0;
    let low = (position - spread).floor();
    let high = (position + spread).ceil();
    // Two selections instead of a sort: O(size).
    let order = |a: &E::Compute, b: &E::Compute| a.total_cmp(b);
    let (high, end) = if high >= size as f64 {
        (E::Compute::INFINITY, size)
    } else {
        let h = index_from_f64(high, size - 1);
        (*values.select_nth_unstable_by(h, order).1, h)
    };
    // After that selection, `values[..end]` holds the values at most `high` (end ≥ 2: the
    // spread is at least 2).
    let low = if low < 0.0 {
        E::Compute::ZERO
    } else {
        let below_high = values.get_mut(..end).filter(|v| !v.is_empty())?;
        let l = index_from_f64(low, below_high.len() - 1);
        *below_high.select_nth_unstable_by(l, order).1
    };
    Some((low, high))
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
    fn selection_handles_ties_zeros_infinities_and_f64() {
        let rows: [&[f32]; 5] = [
            &[2.0; 50],
            &[0.0, -0.0, 0.0, 1.0, -1.0, 0.0],
            &[f32::INFINITY, 1.0, -f32::INFINITY, 3.0, 1e-30, 5e-39],
            &[1.0, 1.0000001, 1.0000002, -1.0000001, 7.0, 1e30],
            &[3.5],
        ];
        for row in rows {
            for q in [0.0f32, 0.3, 0.5, 0.995, 1.0] {
                let mut scratch = vec![0.0; row.len()];
                let (got, want) = (
                    abs_quantile(row, f64::from(q), &mut scratch),
                    sorted_quantile(row, q),
                );
                assert!(
                    got == want || got.is_nan() && want.is_nan(),
                    "{row:?} q={q}: {got} vs {want}"
                );
            }
        }
        let row64: Vec<f64> = (0..300)
            .map(|i| ((i * 37 % 101) as f64 - 50.0) * 0.013)
            .collect();
        let mut sorted: Vec<f64> = row64.iter().map(|v| v.abs()).collect();
        sorted.sort_by(f64::total_cmp);
        let rank: f64 = 0.995 * 299.0;
        let (lo, hi) = (rank.floor() as usize, rank.ceil() as usize);
        let want = sorted[lo] + (rank - lo as f64) * (sorted[hi] - sorted[lo]);
        let mut scratch = vec![0.0; 300];
        assert_eq!(abs_quantile(&row64, 0.995, &mut scratch), want);
    }

    /// The sampled-pivot path gives exactly the sorted quantile, whatever the data does to the
    /// pivots: smooth, constant, few distinct values, sorted, heavy tails, a single outlier.
    #[test]
    fn sampled_pivots_give_the_exact_quantile() {
        use crate::coefficients::StepCoefficients;
        let c = StepCoefficients::new(780, Some(760), 0.09, 0.1, 0.0);
        let k = kernel::scalars(&c, 1.0f32);
        let n = 5000;
        let datasets: Vec<Vec<f32>> = vec![
            (0..n)
                .map(|i| ((i * 7919) % 1000) as f32 / 250.0 - 2.0)
                .collect(),
            vec![0.75; n],
            (0..n).map(|i| (i % 3) as f32).collect(),
            (0..n).map(|i| i as f32 / n as f32).collect(),
            (0..n)
                .map(|i| ((i as f32 * 0.37).sin()).powi(9) * 100.0)
                .collect(),
            (0..n).map(|i| if i == 1234 { 1e6 } else { 0.5 }).collect(),
        ];
        let zeros = vec![0.0f32; n];
        for (d, m) in datasets.iter().enumerate() {
            for prediction in PredictionType::ALL.iter().copied() {
                for q in [0.5, 0.9, 0.995, 1.0, 0.0] {
                    let (mut x0, mut scratch) = (vec![0.0f32; n], vec![0.0f32; n]);
                    let got = recover_x0_and_quantile(
                        prediction,
                        &k,
                        m,
                        &zeros,
                        &mut x0,
                        q,
                        &mut scratch,
                    );
                    let want_x0: Vec<f32> = m
                        .iter()
                        .map(|&v| kernel::recover_one(prediction, &k, v, 0.0f32))
                        .collect();
                    assert_eq!(x0, want_x0);
                    let want = sorted_quantile(&want_x0, q as f32);
                    assert_eq!(got, want, "dataset {d} {prediction} q={q}");
                }
            }
        }
    }

    /// The in-place quantile (no buffer: counts, stack candidates, histogram narrowing) gives
    /// the out-of-place one's value on data whose candidates fit on the stack and on data
    /// whose candidates do not (q = 0.5 of 70,000 values: the histogram passes), with ties.
    #[test]
    fn buffer_free_quantile_equals_the_buffered_one() {
        use crate::coefficients::StepCoefficients;
        let c = StepCoefficients::new(780, Some(760), 0.09, 0.1, 0.0);
        let k = kernel::scalars(&c, 1.0f32);
        for n in [300usize, 5000, 70_000] {
            let datasets: Vec<Vec<f32>> = vec![
                (0..n)
                    .map(|i| ((i * 7919) % 100_003) as f32 / 25_000.0 - 2.0)
                    .collect(),
                (0..n).map(|i| (i % 3) as f32).collect(),
                (0..n)
                    .map(|i| ((i as f32 * 0.37).sin()).powi(9) * 100.0)
                    .collect(),
                vec![0.75; n],
            ];
            let x = (0..n).map(|i| (i % 17) as f32 * 0.1).collect::<Vec<_>>();
            for (d, m) in datasets.iter().enumerate() {
                for prediction in PredictionType::ALL.iter().copied() {
                    for q in [0.5, 0.9, 0.995, 1.0, 0.0] {
                        let (mut x0, mut scratch) = (vec![0.0f32; n], vec![0.0f32; n]);
                        let want = recover_x0_and_quantile(
                            prediction,
                            &k,
                            m,
                            &x,
                            &mut x0,
                            q,
                            &mut scratch,
                        );
                        let got = abs_x0_quantile(prediction, &k, m, &x, q);
                        assert_eq!(
                            got.to_bits(),
                            want.to_bits(),
                            "n={n} data {d} {prediction} q={q}"
                        );
                    }
                }
            }
        }
    }

    /// Large items whose sampled bracket overflows the stack (q = 0.995 of 300,000 values
    /// brackets thousands): the first pass's histogram narrows the range, in f32 and f64.
    #[test]
    fn overflowing_bracket_is_narrowed_by_the_first_pass_histogram() {
        fn agree<E: Element>(m: &[E], x: &[E], label: &str) {
            use crate::coefficients::StepCoefficients;
            let c = StepCoefficients::new(780, Some(760), 0.09, 0.1, 0.0);
            let k = kernel::scalars(&c, <E::Compute as Compute>::ONE);
            let zero = E::from_compute(<E::Compute as Compute>::ZERO);
            for prediction in PredictionType::ALL.iter().copied() {
                for q in [0.995, 0.9] {
                    let (mut x0, mut scratch) = (vec![zero; m.len()], vec![zero; m.len()]);
                    let want =
                        recover_x0_and_quantile(prediction, &k, m, x, &mut x0, q, &mut scratch);
                    let got = abs_x0_quantile(prediction, &k, m, x, q);
                    assert_eq!(
                        got.to_f64().to_bits(),
                        want.to_f64().to_bits(),
                        "{label} {prediction} q={q}"
                    );
                }
            }
        }
        let n = 300_000;
        let m32: Vec<f32> = (0..n)
            .map(|i| ((i as f32 * 0.37).sin() + (i as f32 * 0.011).cos()) * 1.7)
            .collect();
        let x32: Vec<f32> = (0..n).map(|i| (i % 29) as f32 * 0.07 - 1.0).collect();
        let (m64, x64): (Vec<f64>, Vec<f64>) = m32
            .iter()
            .zip(&x32)
            .map(|(&m, &x)| (f64::from(m) * 1.000_000_1, f64::from(x)))
            .unzip();
        agree(&m32, &x32, "f32");
        agree(&m64, &x64, "f64");
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
