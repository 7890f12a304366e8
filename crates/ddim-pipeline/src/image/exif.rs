//! The EXIF orientation tag and `PIL.ImageOps.exif_transpose`, which diffusers' `load_image`
//! applies before converting to RGB.

use super::RgbImage;

/// The orientation (EXIF tag 0x0112, 1 to 8) in an EXIF block: a TIFF structure, optionally
/// preceded by JPEG's `Exif\0\0`. `None` when absent or unreadable (as PIL, which then leaves
/// the image alone). Every offset is bounds-checked.
pub(super) fn orientation(exif: &[u8]) -> Option<u16> {
    let tiff = exif.strip_prefix(b"Exif\0\0").unwrap_or(exif);
    let big = match tiff.get(..4)? {
        [b'I', b'I', 42, 0] => false,
        [b'M', b'M', 0, 42] => true,
        _ => return None,
    };
    let u16_at = |at: usize| -> Option<u16> {
        let b: [u8; 2] = tiff.get(at..at.checked_add(2)?)?.try_into().ok()?;
        Some(if big {
            u16::from_be_bytes(b)
        } else {
            u16::from_le_bytes(b)
        })
    };
    let u32_at = |at: usize| -> Option<u32> {
        let b: [u8; 4] = tiff.get(at..at.checked_add(4)?)?.try_into().ok()?;
        Some(if big {
            u32::from_be_bytes(b)
        } else {
            u32::from_le_bytes(b)
        })
    };
    let ifd = usize::try_from(u32_at(4)?).ok()?;
    let count = usize::from(u16_at(ifd)?);
    (0..count).find_map(|i| {
        let entry = ifd.checked_add(2)?.checked_add(i.checked_mul(12)?)?;
        // tag 0x0112, type SHORT (3), one value stored in the entry itself.
        if u16_at(entry)? == 0x0112 && u16_at(entry + 2)? == 3 {
            u16_at(entry + 8).filter(|o| (1..=8).contains(o))
        } else {
            None
        }
    })
}

/// Applies an EXIF orientation as `PIL.ImageOps.exif_transpose`: 2 mirror left-right,
/// 3 rotate 180°, 4 mirror top-bottom, 5 transpose, 6 rotate 90° clockwise, 7 transverse,
/// 8 rotate 90° counter-clockwise; 1 (or anything else) leaves the image as it is.
pub(super) fn transpose(image: RgbImage, orientation: u16) -> RgbImage {
    if !(2..=8).contains(&orientation) {
        return image;
    }
    let (w, h) = (image.width as usize, image.height as usize);
    let swap = orientation >= 5;
    let (ow, oh) = if swap { (h, w) } else { (w, h) };
    let mut data = vec![0_u8; image.data.len()];
    for y in 0..oh {
        for x in 0..ow {
            // The input pixel shown at output (x, y).
            let (sx, sy) = match orientation {
                2 => (w - 1 - x, y),
                3 => (w - 1 - x, h - 1 - y),
                4 => (x, h - 1 - y),
                5 => (y, x),
                6 => (y, h - 1 - x),
                7 => (w - 1 - y, h - 1 - x),
                _ => (w - 1 - y, x),
            };
            let (o, i) = ((y * ow + x) * 3, (sy * w + sx) * 3);
            data[o..o + 3].copy_from_slice(&image.data[i..i + 3]);
        }
    }
    RgbImage {
        width: ow as u32,
        height: oh as u32,
        data,
    }
}
