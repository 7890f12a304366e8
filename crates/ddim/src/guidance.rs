//! Classifier-free guidance and its rescale (`guidance_rescale`), as diffusers' Stable
//! Diffusion pipelines combine the two noise predictions before `scheduler.step`.
//!
//! A guided pipeline runs the model on the unconditional and the text-conditioned input and
//! combines the two predictions:
//!
//! ε_cfg = ε_uncond + w·(ε_text − ε_uncond)                       ([`classifier_free_guidance`])
//!
//! With a zero-terminal-SNR schedule, Lin et al. (2023, "Common Diffusion Noise Schedules and
//! Sample Steps are Flawed", §3.4) rescale the result per sample to the spread of the text
//! prediction, and mix:
//!
//! ε_rescaled = ε_cfg·(σ(ε_text) / σ(ε_cfg)),
//! ε = φ·ε_rescaled + (1 − φ)·ε_cfg                                ([`rescale_noise_cfg`])
//!
//! where σ is the unbiased (N − 1) standard deviation of one sample over all its elements
//! (every dimension but the batch one), and φ is `guidance_rescale`.
//!
//! diffusers applies the rescale only when guidance is on (w > 1) and φ > 0; these functions
//! leave that decision to the caller.
//!
//! ## Numerics
//!
//! Both follow torch's float32 arithmetic in diffusers' order: `w` and `φ` are rounded to the
//! element's compute type, `1 − φ` is computed in double (as Python does) and then rounded,
//! each product and sum is rounded once, and nothing is fused. The standard deviation is
//! computed as torch's CPU `std` does: for a batch of one (a full reduction), torch takes the
//! mean in float32 from its cascade summation and sums squared deviations from it in double;
//! for larger batches it runs Welford's algorithm in double. Both are reproduced, the cascade
//! sum included. Measured against diffusers: bit-exact, in f32 and f64, including samples
//! whose mean is 10⁴ times their spread (where the float32 mean matters). torch splits sums of
//! 32,768 elements or more over its threads; the fixtures use one thread, as does this crate.
//!
//! ## A sample without spread
//!
//! diffusers divides by σ(ε_cfg) unguarded, so a constant sample (σ = 0) gives NaN or ±∞ in
//! every element of it (diffusers PR #13704, still open). [`rescale_noise_cfg`] instead returns
//! [`Error::ZeroStdCfg`] naming the first such sample and leaves `noise_cfg` unchanged: there
//! is no ratio to rescale by, any substitute (skipping the sample, a ratio of 1) would be a
//! number diffusers never computes, and a constant guided prediction means the model or its
//! inputs are broken, which the caller should hear about. A caller who wants to skip such
//! samples can call the function once per sample (`batch_size` 1 on each sample's slice).

use crate::element::{Compute, Element};
use crate::error::{Error, Result};

/// Combines the unconditional and text-conditioned noise predictions with guidance scale `w`:
///
/// out = ε_uncond + w·(ε_text − ε_uncond)
///
/// as diffusers' pipelines do (`noise_pred_uncond + guidance_scale * (noise_pred_text -
/// noise_pred_uncond)`), element by element, in the element's compute type: the difference,
/// the product with `w` (rounded to the compute type) and the sum are each rounded once.
///
/// When the model runs on the concatenated batch `[uncond; text]` (diffusers' `chunk(2)`),
/// split its output in two halves with `split_at(len / 2)`.
///
/// # Errors
///
/// [`Error::LengthMismatch`] when the three buffers differ in length;
/// [`Error::InvalidStepOption`] when `guidance_scale` is not finite.
///
/// # Example
///
/// ```
/// use ddim::guidance::classifier_free_guidance;
///
/// let uncond = [0.1f32, -0.2, 0.3];
/// let text = [0.2f32, -0.1, 0.1];
/// let mut guided = [0.0f32; 3];
/// classifier_free_guidance(&uncond, &text, 7.5, &mut guided)?;
/// assert_eq!(guided[0], 0.1 + 7.5 * (0.2f32 - 0.1));
/// # Ok::<(), ddim::Error>(())
/// ```
pub fn classifier_free_guidance<T: Element>(
    noise_pred_uncond: &[T],
    noise_pred_text: &[T],
    guidance_scale: f32,
    out: &mut [T],
) -> Result<()> {
    check_finite("guidance_scale", guidance_scale)?;
    check_len(
        "noise_pred_text",
        noise_pred_uncond.len(),
        noise_pred_text.len(),
    )?;
    check_len("out", noise_pred_uncond.len(), out.len())?;
    let w = T::Compute::from_f32(guidance_scale);
    for ((o, &u), &t) in out.iter_mut().zip(noise_pred_uncond).zip(noise_pred_text) {
        let (u, t) = (u.to_compute(), t.to_compute());
        *o = T::from_compute(u + w * (t - u));
    }
    Ok(())
}

/// Rescales the guided prediction `noise_cfg` in place towards the spread of the text
/// prediction, per sample (diffusers' `rescale_noise_cfg`, Lin et al. 2023 §3.4):
///
/// ε ← φ·ε_cfg·(σ(ε_text) / σ(ε_cfg)) + (1 − φ)·ε_cfg
///
/// with σ the unbiased standard deviation over each sample's elements and φ =
/// `guidance_rescale`. The buffers hold `batch_size` samples one after the other (batch-major,
/// contiguous). φ = 0 leaves finite values unchanged; φ = 1 is the full rescale; diffusers
/// does not restrict φ, and neither does this function (it must be finite).
///
/// Arithmetic as torch's: σ computed in double (see the [module docs](self)) and rounded to
/// the compute type, the ratio σ_text/σ_cfg rounded once per sample, then per element
/// `ε_cfg·ratio`, `φ·that`, `(1 − φ)·ε_cfg` and their sum, each rounded once.
///
/// # Errors
///
/// - [`Error::LengthMismatch`] when the buffers differ in length;
/// - [`Error::BatchSizeMismatch`] when `batch_size` is 0 or does not divide their length;
/// - [`Error::SampleTooSmall`] when a sample has fewer than 2 elements (the unbiased standard
///   deviation divides by N − 1; torch returns NaN);
/// - [`Error::InvalidStepOption`] when `guidance_rescale` is not finite;
/// - [`Error::ZeroStdCfg`] when a sample of `noise_cfg` is constant (σ_cfg = 0; diffusers
///   returns NaN/∞). On any error `noise_cfg` is left unchanged.
///
/// A NaN in the inputs propagates to its sample, as in torch.
///
/// # Example
///
/// ```
/// use ddim::guidance::{classifier_free_guidance, rescale_noise_cfg};
///
/// // Two samples of four elements each.
/// let uncond = [0.1f32, -0.3, 0.2, 0.0, 0.5, 0.1, -0.4, 0.2];
/// let text = [0.2f32, -0.2, 0.1, 0.3, 0.4, 0.0, -0.2, 0.1];
/// let mut guided = [0.0f32; 8];
/// classifier_free_guidance(&uncond, &text, 7.5, &mut guided)?;
/// rescale_noise_cfg(&mut guided, &text, 0.7, 2)?;
/// # Ok::<(), ddim::Error>(())
/// ```
pub fn rescale_noise_cfg<T: Element>(
    noise_cfg: &mut [T],
    noise_pred_text: &[T],
    guidance_rescale: f32,
    batch_size: usize,
) -> Result<()> {
    check_finite("guidance_rescale", guidance_rescale)?;
    check_len("noise_pred_text", noise_cfg.len(), noise_pred_text.len())?;
    let len = noise_cfg.len();
    if batch_size == 0 || len % batch_size != 0 {
        return Err(Error::BatchSizeMismatch { batch_size, len });
    }
    let per_sample = len / batch_size;
    if per_sample < 2 {
        return Err(Error::SampleTooSmall {
            per_sample,
            minimum: 2,
        });
    }
    // First every sample's ratio (small allocations), so that an error leaves `noise_cfg`
    // untouched. Per sample: σ(ε_text) and σ(ε_cfg), in that order.
    let pairs: Vec<&[T]> = noise_pred_text
        .chunks_exact(per_sample)
        .zip(noise_cfg.chunks_exact(per_sample))
        .flat_map(|(text, cfg)| [text, cfg])
        .collect();
    let stds = if batch_size == 1 {
        pairs.iter().map(|s| full_reduction_std(s)).collect()
    } else {
        welford_stds(&pairs)
    };
    let mut ratios = Vec::with_capacity(batch_size);
    for (sample, pair) in stds.chunks_exact(2).enumerate() {
        let &[std_text, std_cfg] = pair else {
            continue; // chunks_exact(2) gives pairs only
        };
        if std_cfg.to_f64() == 0.0 {
            return Err(Error::ZeroStdCfg { sample });
        }
        ratios.push(std_text / std_cfg);
    }
    let phi = T::Compute::from_f32(guidance_rescale);
    let one_minus_phi = T::Compute::from_f64(1.0 - f64::from(guidance_rescale));
    for (cfg, ratio) in noise_cfg.chunks_exact_mut(per_sample).zip(ratios) {
        for v in cfg {
            let x = v.to_compute();
            let rescaled = x * ratio;
            *v = T::from_compute(phi * rescaled + one_minus_phi * x);
        }
    }
    Ok(())
}

/// The unbiased standard deviation of a batch of one, as torch's CPU `std` computes a full
/// reduction, rounded to the compute type: the mean in the compute type (torch's cascade sum,
/// divided by N there), then squared deviations from it summed in double.
fn full_reduction_std<C: Compute, T: Element<Compute = C>>(values: &[T]) -> C {
    // Element counts are far below 2^53, so they convert to f64 exactly.
    #[allow(clippy::cast_precision_loss)]
    let n = values.len() as f64;
    let widened: Vec<C> = values.iter().map(|v| v.to_compute()).collect();
    let mean = (torch_sum(&widened) / C::from_f64(n)).to_f64();
    let sum_dx2: f64 = values
        .iter()
        .map(|v| {
            let dx = v.to_compute().to_f64() - mean;
            dx * dx
        })
        .sum();
    C::from_f64((sum_dx2 / (n - 1.0)).sqrt())
}

/// The unbiased standard deviation of each of `samples` (all of one length) as torch's CPU
/// `std` reduces one axis of a batch, rounded to the compute type: Welford's algorithm in
/// double,
///
/// mean ← mean + δ/n, M₂ ← M₂ + δ·(x − mean_new), σ² = M₂/(n − 1), with δ = x − mean.
///
/// Each sample is one chain of dependent divisions, so the samples run in lockstep,
/// [`WELFORD_LANES`] at a time, and their divisions overlap in the pipeline. Each sample sees
/// the same operations in the same order as alone, so the bits are those of torch's loop.
fn welford_stds<C: Compute, T: Element<Compute = C>>(samples: &[&[T]]) -> Vec<C> {
    let mut stds = Vec::with_capacity(samples.len());
    for group in samples.chunks(WELFORD_LANES) {
        let Some(&first) = group.first() else {
            continue;
        };
        // Lanes past the group's end repeat its first sample; their results are dropped.
        let lanes: [&[T]; WELFORD_LANES] =
            std::array::from_fn(|lane| group.get(lane).copied().unwrap_or(first));
        let len = first.len();
        let (mut mean, mut m2) = ([0.0f64; WELFORD_LANES], [0.0f64; WELFORD_LANES]);
        let mut count = 0.0f64;
        for i in 0..len {
            count += 1.0;
            for ((mean, m2), lane) in mean.iter_mut().zip(m2.iter_mut()).zip(&lanes) {
                let x = lane.get(i).map_or(0.0, |v| v.to_compute().to_f64());
                let delta = x - *mean;
                *mean += delta / count;
                *m2 += delta * (x - *mean);
            }
        }
        // Element counts are far below 2^53, so they convert to f64 exactly.
        #[allow(clippy::cast_precision_loss)]
        let n = len as f64;
        stds.extend(
            m2.iter()
                .take(group.len())
                .map(|&m2| C::from_f64((m2 / (n - 1.0)).sqrt())),
        );
    }
    stds
}

/// How many Welford chains [`welford_stds`] runs together: a division's latency over its
/// throughput on current x86 cores, and the text and guided samples of a batch of two.
const WELFORD_LANES: usize = 4;

/// torch's CPU `sum` of a contiguous tensor in the compute type (`SumKernel.cpp`,
/// `cascade_sum`, one thread), with 32-byte vectors: 8 lanes of f32, 4 of f64. (torch
/// registers this kernel for AVX2 and runs that build on AVX-512 CPUs too; its portable build
/// also uses 32-byte vectors. Measured on an AVX-512 CPU: these widths match torch, 16 and 8
/// lanes do not.)
///
/// Vectors of `LANES` elements are summed lane-wise in 4 interleaved rows, each through a
/// 4-level cascade of partial sums (`multi_row_sum`); leftover vectors go to row 0; the rows
/// are added; then the scalar tail and the lanes, in order, are added to 0. Fewer than
/// `LANES` elements take the same path with 1 lane.
fn torch_sum<C: Compute>(values: &[C]) -> C {
    if std::mem::size_of::<C>() == 4 {
        torch_sum_lanes::<C, 8>(values)
    } else {
        torch_sum_lanes::<C, 4>(values)
    }
}

fn torch_sum_lanes<C: Compute, const LANES: usize>(values: &[C]) -> C {
    if values.len() < LANES {
        let [sum] = row_sum::<C, 1>(values);
        return C::ZERO + sum;
    }
    let (body, tail) = values.split_at(values.len() - values.len() % LANES);
    let mut acc = C::ZERO;
    for &x in tail {
        acc = acc + x;
    }
    for lane in row_sum::<C, LANES>(body) {
        acc = acc + lane;
    }
    C::ZERO + acc
}

fn add_lanes<C: Compute, const L: usize>(acc: &mut [C; L], vector: &[C]) {
    for (a, &v) in acc.iter_mut().zip(vector) {
        *a = *a + v;
    }
}

/// torch's `row_sum` over vectors of `L` lanes (`values.len()` is a multiple of `L`).
fn row_sum<C: Compute, const L: usize>(values: &[C]) -> [C; L] {
    const ILP: usize = 4;
    let vectors = values.len() / L;
    let (rows, rest) = values.split_at((vectors / ILP) * ILP * L);
    let [mut first, second, third, fourth] = multi_row_sum::<C, L>(rows);
    for vector in rest.chunks_exact(L) {
        add_lanes(&mut first, vector);
    }
    for other in [second, third, fourth] {
        add_lanes(&mut first, &other);
    }
    first
}

/// torch's `multi_row_sum` with 4 rows: row i is the 4 vectors at `values[4·L·i..]`; each
/// row's lanes accumulate through 4 levels, a level emptied into the next every
/// 2^`level_power` rows.
fn multi_row_sum<C: Compute, const L: usize>(values: &[C]) -> [[C; L]; 4] {
    const LEVELS: usize = 4;
    let size = values.len() / (4 * L);
    let ceil_log2 = if size <= 2 {
        1
    } else {
        u64::BITS - (size as u64 - 1).leading_zeros()
    };
    let level_power = (ceil_log2 / 4).max(4);
    let level_step = 1u64 << level_power;
    let level_mask = level_step - 1;
    let mut acc = [[[C::ZERO; L]; 4]; LEVELS];
    let add_row = |level: &mut [[C; L]; 4], row: &[C]| {
        for (row_acc, vector) in level.iter_mut().zip(row.chunks_exact(L)) {
            add_lanes(row_acc, vector);
        }
    };
    let mut rows = values.chunks_exact(4 * L);
    let mut i: u64 = 0;
    while i + level_step <= size as u64 {
        let step = usize::try_from(level_step).unwrap_or(usize::MAX);
        for row in rows.by_ref().take(step) {
            if let Some(level0) = acc.first_mut() {
                add_row(level0, row);
            }
            i += 1;
        }
        for (j, shift) in (1..LEVELS).zip((1u32..).map(|j| j * level_power)) {
            let (lower, upper) = acc.split_at_mut(j);
            if let (Some(lo), Some(up)) = (lower.last_mut(), upper.first_mut()) {
                for (lo_row, up_row) in lo.iter_mut().zip(up.iter_mut()) {
                    add_lanes(up_row, lo_row);
                    *lo_row = [C::ZERO; L];
                }
            }
            if i & level_mask.checked_shl(shift).unwrap_or(0) != 0 {
                break;
            }
        }
    }
    let [mut total, level1, level2, level3] = acc;
    for row in rows {
        add_row(&mut total, row);
    }
    for level in [level1, level2, level3] {
        for (t, r) in total.iter_mut().zip(&level) {
            add_lanes(t, r);
        }
    }
    total
}

fn check_finite(name: &'static str, value: f32) -> Result<()> {
    if value.is_finite() {
        Ok(())
    } else {
        Err(Error::InvalidStepOption {
            name,
            reason: format!("must be a finite number, got {value}"),
        })
    }
}

fn check_len(name: &'static str, expected: usize, got: usize) -> Result<()> {
    if expected == got {
        Ok(())
    } else {
        Err(Error::LengthMismatch {
            name,
            expected,
            got,
        })
    }
}
