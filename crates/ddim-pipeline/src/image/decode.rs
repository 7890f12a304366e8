//! Reading PNG and JPEG files to RGB as diffusers' `load_image` does:
//! `PIL.ImageOps.exif_transpose(PIL.Image.open(path)).convert("RGB")`.

use std::io::{Cursor, Read};
use std::path::Path;

use super::{check_file_size, exif, image_error, RgbImage, MAX_IMAGE_PIXELS, MAX_IMAGE_SIDE};
use crate::error::{Error, Result};

/// The largest image file read: 256 MiB.
const MAX_FILE_BYTES: u64 = 256 << 20;

const PNG_SIGNATURE: &[u8] = b"\x89PNG\r\n\x1a\n";
const JPEG_SIGNATURE: &[u8] = b"\xff\xd8\xff";

/// Reads a PNG or JPEG file as 8-bit RGB, as diffusers' `load_image(path)`
/// (`PIL.Image.open`, `ImageOps.exif_transpose`, `.convert("RGB")`):
///
/// - the EXIF orientation (JPEG APP1, PNG `eXIf`) is applied;
/// - RGBA and grey+alpha drop the alpha (PIL's `convert("RGB")` does not composite);
///   grey is replicated; palettes are looked up; 1-, 2- and 4-bit grey are scaled to 8 bits;
/// - 16-bit RGB(A) and grey+alpha keep the high byte of each sample (PIL reads them so);
///   16-bit grey (PIL's mode `I;16`) is clamped to 255, as PIL's `I;16 → RGB` conversion
///   does (so most of a 16-bit grey image turns white there, and here);
/// - JPEG is decoded by `zune-jpeg`, PIL uses libjpeg-turbo: the two may differ by a level
///   on some pixels (measured in this crate's tests).
///
/// The format is recognised from the content, not the file name. Sizes are checked against
/// [`MAX_IMAGE_SIDE`] and [`MAX_IMAGE_PIXELS`] from the header, before decoding.
///
/// ```no_run
/// let image = ddim_pipeline::image::load_image(std::path::Path::new("init.png"))?;
/// println!("{}×{}", image.width(), image.height());
/// # Ok::<(), ddim_pipeline::Error>(())
/// ```
///
/// # Errors
///
/// [`Error::Image`] naming the file: unreadable, not a regular file, empty, too large, not
/// PNG or JPEG, corrupt or truncated, or too large in pixels.
pub fn load_image(path: &Path) -> Result<RgbImage> {
    let io = |e: std::io::Error| {
        image_error(
            path,
            format!("cannot read: {}", e.to_string().to_lowercase()),
        )
    };
    let meta = std::fs::metadata(path).map_err(io)?;
    if !meta.is_file() {
        return Err(image_error(path, "not a regular file"));
    }
    if meta.len() > MAX_FILE_BYTES {
        return Err(image_error(
            path,
            format!(
                "larger than the {} MiB limit for an image file",
                MAX_FILE_BYTES >> 20
            ),
        ));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    std::fs::File::open(path)
        .map_err(io)?
        .take(MAX_FILE_BYTES)
        .read_to_end(&mut bytes)
        .map_err(io)?;
    load_image_bytes(&bytes, path)
}

/// [`load_image`] on the bytes of a file already in memory; `name` is used in errors.
///
/// # Errors
///
/// As [`load_image`].
pub fn load_image_bytes(bytes: &[u8], name: &Path) -> Result<RgbImage> {
    if bytes.is_empty() {
        return Err(image_error(name, "empty file, not an image"));
    }
    let (image, orientation) = if bytes.starts_with(PNG_SIGNATURE) {
        decode_png(bytes, name)?
    } else if bytes.starts_with(JPEG_SIGNATURE) {
        decode_jpeg(bytes, name)?
    } else {
        return Err(image_error(name, "not a png or jpeg file"));
    };
    Ok(match orientation {
        Some(o) => exif::transpose(image, o),
        None => image,
    })
}

fn decode_png(bytes: &[u8], name: &Path) -> Result<(RgbImage, Option<u16>)> {
    use png::{BitDepth, ColorType};
    let corrupt = |e: png::DecodingError| {
        image_error(
            name,
            format!("corrupt png: {}", e.to_string().to_lowercase()),
        )
    };
    let mut decoder = png::Decoder::new(Cursor::new(bytes));
    decoder.set_transformations(png::Transformations::EXPAND);
    // 16-bit RGBA at the pixel limit, plus slack for the decoder's own buffers.
    let limit = MAX_IMAGE_PIXELS.saturating_mul(8).saturating_add(1 << 20);
    decoder.set_limits(png::Limits {
        bytes: usize::try_from(limit).unwrap_or(usize::MAX),
    });
    let mut reader = decoder.read_info().map_err(corrupt)?;
    let info = reader.info();
    let (width, height) = (info.width, info.height);
    check_file_size(name, width, height)?;
    let source = (info.color_type, info.bit_depth);
    let orientation = info.exif_metadata.as_deref().and_then(exif::orientation);
    let size = reader
        .output_buffer_size()
        .ok_or_else(|| image_error(name, "png image too large"))?;
    let mut buf = vec![0_u8; size];
    let frame = reader.next_frame(&mut buf).map_err(corrupt)?;
    let (color, depth) = (frame.color_type, frame.bit_depth);
    let samples = color.samples();
    let wide = depth == BitDepth::Sixteen;
    let bytes_per_sample = if wide { 2 } else { 1 };
    let line = frame.line_size;
    // One sample to 8 bits: the high byte of 16-bit samples, except PIL's `I;16` grey, clamped.
    let grey16 = source == (ColorType::Grayscale, BitDepth::Sixteen);
    let sample = |row: &[u8], i: usize| -> u8 {
        if wide {
            let v = u16::from_be_bytes([row[2 * i], row[2 * i + 1]]);
            if grey16 {
                v.min(255) as u8
            } else {
                (v >> 8) as u8
            }
        } else {
            row[i]
        }
    };
    let (w, h) = (width as usize, height as usize);
    let mut data = Vec::with_capacity(w * h * 3);
    for y in 0..h {
        let row = buf
            .get(y * line..y * line + w * samples * bytes_per_sample)
            .ok_or_else(|| image_error(name, "corrupt png: short image data"))?;
        for x in 0..w {
            let base = x * samples;
            match color {
                ColorType::Grayscale | ColorType::GrayscaleAlpha => {
                    let v = sample(row, base);
                    data.extend_from_slice(&[v, v, v]);
                }
                ColorType::Rgb | ColorType::Rgba => {
                    for c in 0..3 {
                        data.push(sample(row, base + c));
                    }
                }
                ColorType::Indexed => {
                    return Err(image_error(name, "png palette was not expanded"));
                }
            }
        }
    }
    Ok((RgbImage::new(width, height, data)?, orientation))
}

fn decode_jpeg(bytes: &[u8], name: &Path) -> Result<(RgbImage, Option<u16>)> {
    use zune_jpeg::zune_core::bytestream::ZCursor;
    use zune_jpeg::zune_core::colorspace::ColorSpace;
    use zune_jpeg::zune_core::options::DecoderOptions;
    let corrupt = |e: zune_jpeg::errors::DecodeErrors| {
        image_error(
            name,
            format!("corrupt jpeg: {}", format!("{e:?}").to_lowercase()),
        )
    };
    let options = DecoderOptions::default()
        .set_max_width(MAX_IMAGE_SIDE as usize)
        .set_max_height(MAX_IMAGE_SIDE as usize)
        .jpeg_set_out_colorspace(ColorSpace::RGB);
    let mut decoder = zune_jpeg::JpegDecoder::new_with_options(ZCursor::new(bytes), options);
    decoder.decode_headers().map_err(corrupt)?;
    let info = decoder
        .info()
        .ok_or_else(|| image_error(name, "corrupt jpeg: no frame header"))?;
    let (width, height) = (u32::from(info.width), u32::from(info.height));
    check_file_size(name, width, height)?;
    let orientation = decoder.exif().and_then(|e| exif::orientation(e));
    let data = decoder.decode().map_err(corrupt)?;
    if data.len() != width as usize * height as usize * 3 {
        return Err(Error::Image {
            path: name.to_path_buf(),
            reason: format!(
                "corrupt jpeg: decoded {} bytes for {width}×{height} rgb",
                data.len()
            ),
        });
    }
    Ok((RgbImage::new(width, height, data)?, orientation))
}
