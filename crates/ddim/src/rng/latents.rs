//! Initial latents as diffusers' `randn_tensor` draws them.

use super::{NoiseGenerator, RandnElement};
use crate::error::{Error, Result};

/// The number of values of `shape` and its batch size (`shape[0]`).
fn numel_and_batch(shape: &[usize]) -> Result<(usize, usize)> {
    let Some(&batch) = shape.first() else {
        return Err(Error::InvalidShape {
            shape: shape.to_vec(),
            reason: "has no batch dimension".to_owned(),
        });
    };
    let numel = shape
        .iter()
        .try_fold(1usize, |n, &d| n.checked_mul(d))
        .ok_or_else(|| Error::InvalidShape {
            shape: shape.to_vec(),
            reason: format!("has more than {} elements", usize::MAX),
        })?;
    Ok((numel, batch))
}

/// `randn_tensor(shape, generator=g)` with one generator: one `torch.randn(shape)` over the
/// whole tensor (batch-major, contiguous), times `init_noise_sigma` = 1 for DDIM.
///
/// ```
/// use ddim::rng::{randn_latents, TorchCpuGenerator};
/// let latents: Vec<f32> = randn_latents(&[1, 4, 64, 64], &mut TorchCpuGenerator::new(0))?;
/// assert_eq!(latents.len(), 16_384);
/// assert_eq!(latents[0].to_bits(), 0xbf90_1b85);
/// # Ok::<(), ddim::Error>(())
/// ```
///
/// # Errors
///
/// [`Error::InvalidShape`] for an empty shape or one whose size overflows `usize`;
/// [`Error::OutOfMemory`] when the latents cannot be allocated.
pub fn randn_latents<T: RandnElement, G: NoiseGenerator + ?Sized>(
    shape: &[usize],
    generator: &mut G,
) -> Result<Vec<T>> {
    let (numel, _) = numel_and_batch(shape)?;
    let mut out = crate::alloc::filled(
        T::from_compute(<T::Compute as crate::element::Compute>::ZERO),
        numel,
        "latents",
    )?;
    T::fill_randn(generator, &mut out);
    Ok(out)
}

/// `randn_tensor(shape, generator=[g₀, g₁, …])`: item b of the batch (`shape[0]` items) is a
/// separate `torch.randn((1, *shape[1:]), generator=g_b)`. As in diffusers, a list of one
/// generator is the single-generator call over the whole tensor.
///
/// ```
/// use ddim::rng::{randn_latents, randn_latents_per_item, TorchCpuGenerator};
/// let mut gens = [TorchCpuGenerator::new(7), TorchCpuGenerator::new(8)];
/// let latents: Vec<f32> = randn_latents_per_item(&[2, 4, 8, 8], &mut gens)?;
/// let second: Vec<f32> = randn_latents(&[1, 4, 8, 8], &mut TorchCpuGenerator::new(8))?;
/// assert_eq!(latents[256..], second[..]);
/// # Ok::<(), ddim::Error>(())
/// ```
///
/// # Errors
///
/// [`Error::InvalidShape`] as for [`randn_latents`], and [`Error::GeneratorCountMismatch`]
/// unless there is one generator or one per batch item.
pub fn randn_latents_per_item<T: RandnElement, G: NoiseGenerator>(
    shape: &[usize],
    generators: &mut [G],
) -> Result<Vec<T>> {
    let (numel, batch) = numel_and_batch(shape)?;
    let mut out = crate::alloc::filled(
        T::from_compute(<T::Compute as crate::element::Compute>::ZERO),
        numel,
        "latents",
    )?;
    fill_per_item(&mut out, batch, generators)?;
    Ok(out)
}

/// Fills `out` (`batch` equal items) from one generator per item, or from one generator for
/// the whole buffer.
pub(super) fn fill_per_item<T: RandnElement, G: NoiseGenerator>(
    out: &mut [T],
    batch: usize,
    generators: &mut [G],
) -> Result<()> {
    match generators {
        [single] => T::fill_randn(single, out),
        _ if generators.len() == batch && batch > 0 => {
            let per_item = out.len() / batch;
            if per_item > 0 {
                for (item, g) in out.chunks_exact_mut(per_item).zip(generators.iter_mut()) {
                    T::fill_randn(g, item);
                }
            }
        }
        _ => {
            return Err(Error::GeneratorCountMismatch {
                generators: generators.len(),
                batch_size: batch,
            })
        }
    }
    Ok(())
}
