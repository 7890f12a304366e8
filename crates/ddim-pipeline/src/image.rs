//! Images in and out, as diffusers' `VaeImageProcessor` and `diffusers.utils.load_image` do
//! them, pixel for pixel.
//!
//! - [`load_image`]: a PNG or JPEG file to 8-bit RGB, as `load_image(path)` =
//!   `PIL.ImageOps.exif_transpose(PIL.Image.open(path)).convert("RGB")` (alpha dropped, grey
//!   replicated, 16-bit samples as PIL converts them; see [`load_image`]).
//! - [`preprocess`]: RGB to the img2img pipeline's `1×3×H×W` input in [-1, 1], as
//!   `VaeImageProcessor(vae_scale_factor=f).preprocess(image)`: size rounded down to a
//!   multiple of `f`, PIL's Lanczos resize ([`resize_lanczos`], bit-exact) when it changed,
//!   `/255` in f32, `2x − 1`.
//! - [`postprocess`]: the VAE's decoded `B×3×H×W` values to 8-bit RGB, as
//!   `VaeImageProcessor.postprocess(image, output_type="pil")`.
//! - [`write_png`], [`check_writable`]: PNG out, never a partial file.
//!
//! Sizes are limited ([`MAX_IMAGE_SIDE`], [`MAX_IMAGE_PIXELS`]) and checked from the file's
//! header, before any pixel buffer is allocated.

mod decode;
mod exif;
mod process;
pub mod resample;
mod write;

pub use decode::{load_image, load_image_bytes};
pub use process::{postprocess, postprocess_f16, postprocess_tensor, preprocess};
pub use resample::resize_lanczos;
pub use write::{check_writable, encode_png, write_png};

use std::path::Path;

use crate::error::{Error, Result};

/// The largest width or height accepted for an image read or made: 16384.
pub const MAX_IMAGE_SIDE: u32 = 16384;

/// The largest number of pixels accepted for an image read: PIL's `Image.MAX_IMAGE_PIXELS`
/// (89,478,485), above which PIL warns of a decompression bomb.
pub const MAX_IMAGE_PIXELS: u64 = 89_478_485;

/// An 8-bit RGB image, row-major, 3 bytes per pixel (`H×W×3`, as `np.array(pil_image)`).
#[derive(Clone, PartialEq, Eq)]
pub struct RgbImage {
    width: u32,
    height: u32,
    data: Vec<u8>,
}

impl std::fmt::Debug for RgbImage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RgbImage({}×{})", self.width, self.height)
    }
}

impl RgbImage {
    /// An image from its `H×W×3` bytes.
    ///
    /// ```
    /// use ddim_pipeline::image::RgbImage;
    /// let image = RgbImage::new(2, 1, vec![255, 0, 0, 0, 0, 255])?;
    /// assert_eq!(image.pixel(1, 0), [0, 0, 255]);
    /// # Ok::<(), ddim_pipeline::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] when a side is 0 or above [`MAX_IMAGE_SIDE`], or `data` is
    /// not `width × height × 3` bytes long.
    pub fn new(width: u32, height: u32, data: Vec<u8>) -> Result<RgbImage> {
        check_size(width, height)?;
        let expected = width as usize * height as usize * 3;
        if data.len() != expected {
            return Err(Error::InvalidArgument {
                name: "image",
                reason: format!(
                    "has {} bytes, but {width}×{height} rgb needs {expected}",
                    data.len()
                ),
            });
        }
        Ok(RgbImage {
            width,
            height,
            data,
        })
    }

    /// The width in pixels.
    pub fn width(&self) -> u32 {
        self.width
    }

    /// The height in pixels.
    pub fn height(&self) -> u32 {
        self.height
    }

    /// The `H×W×3` bytes.
    pub fn as_raw(&self) -> &[u8] {
        &self.data
    }

    /// The `H×W×3` bytes, owned.
    pub fn into_raw(self) -> Vec<u8> {
        self.data
    }

    /// The pixel at column `x`, row `y` (panics outside the image, like slice indexing).
    pub fn pixel(&self, x: u32, y: u32) -> [u8; 3] {
        let i = (y as usize * self.width as usize + x as usize) * 3;
        [self.data[i], self.data[i + 1], self.data[i + 2]]
    }
}

/// Checks an image size against the limits, before anything is allocated for it.
fn check_size(width: u32, height: u32) -> Result<()> {
    if width == 0 || height == 0 || width > MAX_IMAGE_SIDE || height > MAX_IMAGE_SIDE {
        return Err(Error::InvalidArgument {
            name: "image",
            reason: format!("is {width}×{height}: each side must be 1 to {MAX_IMAGE_SIDE} pixels"),
        });
    }
    Ok(())
}

/// As [`check_size`] for a file's header: an [`Error::Image`] naming the file, with the
/// pixel-count limit too.
fn check_file_size(path: &Path, width: u32, height: u32) -> Result<()> {
    let pixels = u64::from(width) * u64::from(height);
    if width == 0 || height == 0 || width > MAX_IMAGE_SIDE || height > MAX_IMAGE_SIDE {
        return Err(image_error(
            path,
            format!("image is {width}×{height}: each side must be 1 to {MAX_IMAGE_SIDE} pixels"),
        ));
    }
    if pixels > MAX_IMAGE_PIXELS {
        return Err(image_error(
            path,
            format!(
                "image is {width}×{height} = {pixels} pixels, above the limit of \
                 {MAX_IMAGE_PIXELS} (a decompression bomb?)"
            ),
        ));
    }
    Ok(())
}

fn image_error(path: &Path, reason: impl Into<String>) -> Error {
    Error::Image {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}
