//! `VaeImageProcessor.preprocess` (a PIL image in, default arguments) and
//! `VaeImageProcessor.postprocess(..., output_type="pil")`.

use half::f16;

use super::{resize_lanczos, RgbImage};
use crate::error::{Error, Result};

/// The img2img pipeline's image input, as `VaeImageProcessor(vae_scale_factor=f)
/// .preprocess(image)` for an RGB PIL image with no explicit height/width (what
/// `StableDiffusionImg2ImgPipeline` does):
///
/// 1. `w − w mod f`, `h − h mod f` (sizes rounded down to a multiple of `f`);
/// 2. if that differs from the image's size, PIL's Lanczos resize ([`resize_lanczos`]);
/// 3. `np.array(image).astype(np.float32) / 255.0`, then `2x − 1` in f32;
/// 4. laid out `1×3×H×W` (channel-major), as the tensor diffusers returns.
///
/// Returns the values and the height and width.
///
/// ```
/// use ddim_pipeline::image::{preprocess, RgbImage};
/// let image = RgbImage::new(20, 17, vec![255; 20 * 17 * 3])?;
/// let (values, h, w) = preprocess(&image, 8)?;
/// assert_eq!((h, w, values.len()), (16, 16, 3 * 16 * 16));
/// assert!(values.iter().all(|&v| v == 1.0));
/// # Ok::<(), ddim_pipeline::Error>(())
/// ```
///
/// # Errors
///
/// [`Error::InvalidArgument`] when `vae_scale_factor` is 0, or a side of the image is smaller
/// than it (rounding would give 0; diffusers fails there with an obscure error).
pub fn preprocess(image: &RgbImage, vae_scale_factor: u32) -> Result<(Vec<f32>, usize, usize)> {
    let f = vae_scale_factor;
    if f == 0 {
        return Err(Error::InvalidArgument {
            name: "vae_scale_factor",
            reason: "must be at least 1, got 0".to_owned(),
        });
    }
    let (w, h) = (
        image.width() - image.width() % f,
        image.height() - image.height() % f,
    );
    if w == 0 || h == 0 {
        return Err(Error::InvalidArgument {
            name: "image",
            reason: format!(
                "is {}×{}: each side must be at least the vae scale factor {f} (the size is \
                 rounded down to a multiple of it)",
                image.width(),
                image.height()
            ),
        });
    }
    let resized;
    let image = if (w, h) != (image.width(), image.height()) {
        resized = resize_lanczos(image, w, h)?;
        &resized
    } else {
        image
    };
    let plane = w as usize * h as usize;
    let mut values = vec![0_f32; 3 * plane];
    for (i, px) in image.as_raw().chunks_exact(3).enumerate() {
        for (c, &v) in px.iter().enumerate() {
            let x = f32::from(v) / 255.0;
            values[c * plane + i] = 2.0 * x - 1.0;
        }
    }
    Ok((values, h as usize, w as usize))
}

/// `(x * 255).round().astype("uint8")` for one f32 after denormalisation: numpy's round is
/// half-to-even; NaN becomes 0, what numpy's float-to-uint8 cast gives on x86-64 (it is
/// undefined in C; numpy warns "invalid value encountered in cast").
fn to_u8(x: f32) -> u8 {
    // After the clamp x is in [0, 1] or NaN, so the product is in [0, 255] or NaN, and `as`
    // maps NaN to 0.
    (x * 255.0).round_ties_even() as u8
}

/// The shape checks of the postprocess functions: values for `batch×3×height×width`.
fn check_shape(len: usize, batch: usize, height: usize, width: usize) -> Result<()> {
    let expected = batch
        .checked_mul(3)
        .and_then(|n| n.checked_mul(height))
        .and_then(|n| n.checked_mul(width));
    if expected != Some(len) || len == 0 {
        return Err(Error::InvalidArgument {
            name: "image",
            reason: format!(
                "has {len} values, not {batch}×3×{height}×{width} (a non-empty batch of rgb \
                 images)"
            ),
        });
    }
    let side = |n: usize| {
        u32::try_from(n)
            .ok()
            .filter(|&n| n <= super::MAX_IMAGE_SIDE)
    };
    if side(height).is_none() || side(width).is_none() {
        return Err(Error::InvalidArgument {
            name: "image",
            reason: format!(
                "is {width}×{height}: each side must be at most {} pixels",
                super::MAX_IMAGE_SIDE
            ),
        });
    }
    Ok(())
}

/// Gathers `B×3×H×W` planes into HWC images, mapping each value through `pixel`.
fn gather<T: Copy>(
    values: &[T],
    batch: usize,
    height: usize,
    width: usize,
    pixel: impl Fn(T) -> u8,
) -> Result<Vec<RgbImage>> {
    check_shape(values.len(), batch, height, width)?;
    let plane = height * width;
    (0..batch)
        .map(|b| {
            let item = &values[b * 3 * plane..(b + 1) * 3 * plane];
            let mut data = vec![0_u8; 3 * plane];
            for (i, px) in data.chunks_exact_mut(3).enumerate() {
                for (c, out) in px.iter_mut().enumerate() {
                    *out = pixel(item[c * plane + i]);
                }
            }
            RgbImage::new(width as u32, height as u32, data)
        })
        .collect()
}

/// The VAE's decoded images (`B×3×H×W` f32 values, batch-major) to 8-bit RGB, exactly as
/// `VaeImageProcessor.postprocess(image, output_type="pil")` for a float32 tensor:
/// `(x * 0.5 + 0.5).clamp(0, 1)` in f32 (torch), `.permute(0, 2, 3, 1).float().numpy()`,
/// `(x * 255).round().astype("uint8")` in f32 (numpy, half-to-even).
///
/// NaN: torch's `clamp` keeps NaN, and numpy's cast of NaN to uint8 gives 0 on x86-64 (with a
/// warning): a NaN value becomes 0 here. ±∞ clamp to 1 and 0.
///
/// ```
/// use ddim_pipeline::image::postprocess;
/// let images = postprocess(&[-1.0, 0.0, 1.0], 1, 1, 1)?;
/// assert_eq!(images[0].pixel(0, 0), [0, 128, 255]); // 127.5 rounds to even: 128
/// # Ok::<(), ddim_pipeline::Error>(())
/// ```
///
/// # Errors
///
/// [`Error::InvalidArgument`] when `values` is not `batch × 3 × height × width` long or a side
/// is above [`super::MAX_IMAGE_SIDE`].
pub fn postprocess(
    values: &[f32],
    batch: usize,
    height: usize,
    width: usize,
) -> Result<Vec<RgbImage>> {
    gather(values, batch, height, width, |x| {
        to_u8((x * 0.5 + 0.5).clamp(0.0, 1.0))
    })
}

/// Rounds an f32 to f16 and back: one f16 operation's result when the f32 holds the exact
/// result of an f16 addition or product's f32 rounding (f32 has 2·11 + 2 bits, so this double
/// rounding equals a single correct rounding).
fn f16_round(x: f32) -> f32 {
    f16::from_f32(x).to_f32()
}

/// [`postprocess`] for a half-precision (`torch.float16`) decoded tensor: diffusers'
/// denormalisation runs in f16 (`x * 0.5` rounded to f16, `+ 0.5` rounded to f16, clamp),
/// then `.float()` and the same rounding to 8 bits.
///
/// # Errors
///
/// As [`postprocess`].
pub fn postprocess_f16(
    values: &[f16],
    batch: usize,
    height: usize,
    width: usize,
) -> Result<Vec<RgbImage>> {
    gather(values, batch, height, width, |x| {
        let half = f16_round(x.to_f32() * 0.5);
        to_u8(f16_round(half + 0.5).clamp(0.0, 1.0))
    })
}

/// [`postprocess`] on a candle tensor of shape `B×3×H×W`: f32 goes through [`postprocess`],
/// f16 through [`postprocess_f16`], bf16 likewise with bf16 rounding (the three checked bit for
/// bit against diffusers, f16 and bf16 on every bit pattern); f64, not a diffusers path, is
/// converted to f32 first.
///
/// # Errors
///
/// [`Error::InvalidArgument`] for a tensor that is not `B×3×H×W` or of an integer dtype;
/// [`Error::Tensor`] when candle cannot copy it to the host.
pub fn postprocess_tensor(tensor: &candle_core::Tensor) -> Result<Vec<RgbImage>> {
    use candle_core::DType;
    let dims = tensor.dims();
    let [b, c, h, w] = dims else {
        return Err(Error::InvalidArgument {
            name: "image",
            reason: format!("tensor has shape {dims:?}, expected [batch, 3, height, width]"),
        });
    };
    if *c != 3 {
        return Err(Error::InvalidArgument {
            name: "image",
            reason: format!("tensor has {c} channels, expected 3 (rgb)"),
        });
    }
    let flat = tensor.flatten_all()?;
    match tensor.dtype() {
        DType::F16 => postprocess_f16(&flat.to_vec1::<f16>()?, *b, *h, *w),
        DType::BF16 => {
            let values = flat.to_vec1::<half::bf16>()?;
            let round = |x: f32| half::bf16::from_f32(x).to_f32();
            gather(&values, *b, *h, *w, |x| {
                to_u8(round(round(x.to_f32() * 0.5) + 0.5).clamp(0.0, 1.0))
            })
        }
        DType::F32 => postprocess(&flat.to_vec1::<f32>()?, *b, *h, *w),
        DType::F64 => postprocess(&flat.to_dtype(DType::F32)?.to_vec1::<f32>()?, *b, *h, *w),
        other => Err(Error::InvalidArgument {
            name: "image",
            reason: format!("tensor has dtype {other:?}, expected a float dtype"),
        }),
    }
}
