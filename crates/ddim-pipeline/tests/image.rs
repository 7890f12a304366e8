//! Images against Pillow and diffusers (fixtures from `tools/gen_image_fixtures.py`):
//! `load_image`, PIL's Lanczos resize, `VaeImageProcessor.preprocess` and `.postprocess`, PNG
//! output.

use std::path::{Path, PathBuf};

use ddim_pipeline::image::{
    check_writable, load_image, postprocess, postprocess_f16, postprocess_tensor, preprocess,
    resize_lanczos, write_png, RgbImage,
};
use ddim_pipeline::Error;
use serde_json::Value;

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/images")
        .join(name)
}

fn manifest() -> Value {
    serde_json::from_str(&std::fs::read_to_string(data("manifest.json")).unwrap()).unwrap()
}

fn dim(case: &Value, key: &str) -> u32 {
    case[key].as_u64().unwrap() as u32
}

/// Largest absolute difference between two byte images, and the count of differing bytes.
fn byte_diff(a: &[u8], b: &[u8]) -> (u8, usize) {
    assert_eq!(a.len(), b.len());
    let max = a
        .iter()
        .zip(b)
        .map(|(x, y)| x.abs_diff(*y))
        .max()
        .unwrap_or(0);
    (max, a.iter().zip(b).filter(|(x, y)| x != y).count())
}

#[test]
fn load_image_matches_diffusers_load_image() {
    let m = manifest();
    let mut worst_jpeg = 0;
    for case in m["load"].as_array().unwrap() {
        let input = case["input"].as_str().unwrap();
        let image = load_image(&data(input)).unwrap();
        let expected = std::fs::read(data(case["expected"].as_str().unwrap())).unwrap();
        assert_eq!(
            (image.width(), image.height()),
            (dim(case, "width"), dim(case, "height")),
            "{input}"
        );
        let (max, count) = byte_diff(image.as_raw(), &expected);
        if input.ends_with(".jpg") {
            // zune-jpeg against libjpeg-turbo: a level at most on a few samples.
            eprintln!("{input}: max difference {max} levels on {count} samples");
            worst_jpeg = worst_jpeg.max(max);
            assert!(max <= 3, "{input}: {max} levels off");
        } else {
            assert_eq!(count, 0, "{input}: {count} samples differ (max {max})");
        }
    }
    eprintln!("png: bit-exact; jpeg: largest difference {worst_jpeg} levels");
}

#[test]
fn resize_lanczos_equals_pillow_bit_for_bit() {
    let m = manifest();
    let mut differing = 0;
    let mut orders = std::collections::BTreeSet::new();
    for case in m["resize"].as_array().unwrap() {
        let input = load_image(&data(case["input"].as_str().unwrap())).unwrap();
        let (w, h) = (dim(case, "width"), dim(case, "height"));
        let out = resize_lanczos(&input, w, h).unwrap();
        let expected = std::fs::read(data(case["expected"].as_str().unwrap())).unwrap();
        let (max, count) = byte_diff(out.as_raw(), &expected);
        let order = case["pil_first_pass"].as_str().unwrap();
        eprintln!(
            "resize {}×{} -> {w}×{h} (pil: {order} pass first): {count} samples differ, max {max}",
            input.width(),
            input.height()
        );
        differing += count;
        orders.insert(order.to_owned());
    }
    // The fixtures exercise both of Pillow's pass orders.
    assert!(
        orders.contains("vertical") && orders.contains("horizontal"),
        "{orders:?}"
    );
    eprintln!("largest resize difference from Pillow: 0 expected, {differing} samples differ");
    assert_eq!(differing, 0, "resize differs from Pillow");
}

#[test]
fn preprocess_equals_vae_image_processor() {
    let m = manifest();
    for case in m["preprocess"].as_array().unwrap() {
        let input = case["input"].as_str().unwrap();
        let image = load_image(&data(input)).unwrap();
        let f = dim(case, "vae_scale_factor");
        let (values, h, w) = preprocess(&image, f).unwrap();
        assert_eq!(
            (h as u32, w as u32),
            (dim(case, "height"), dim(case, "width"))
        );
        let bytes = std::fs::read(data(case["expected"].as_str().unwrap())).unwrap();
        let expected: Vec<f32> = bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
            .collect();
        assert_eq!(values.len(), expected.len());
        let max = values
            .iter()
            .zip(&expected)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0_f32, f32::max);
        eprintln!("preprocess {input} (f = {f}) -> {h}×{w}: max |difference| {max:e}");
        if input.ends_with(".jpg") {
            assert!(max <= 2.0 * 3.0 / 255.0 + 1e-6, "{input}: {max}");
        } else {
            let same = values
                .iter()
                .zip(&expected)
                .all(|(a, b)| a.to_bits() == b.to_bits());
            assert!(same, "{input}: not bit-equal (max {max:e})");
        }
    }
}

#[test]
fn preprocess_refuses_images_smaller_than_the_scale_factor() {
    let image = RgbImage::new(7, 30, vec![0; 7 * 30 * 3]).unwrap();
    let err = preprocess(&image, 8).unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid argument: `image` is 7×30: each side must be at least the vae scale factor 8 \
         (the size is rounded down to a multiple of it)"
    );
    assert!(preprocess(&image, 0).is_err());
}

fn postprocess_cases() -> Vec<(Value, Vec<u8>, Vec<u8>)> {
    manifest()["postprocess"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let input = std::fs::read(data(c["input"].as_str().unwrap())).unwrap();
            let out = std::fs::read(data(c["expected"].as_str().unwrap())).unwrap();
            (c.clone(), input, out)
        })
        .collect()
}

fn images_bytes(images: &[RgbImage]) -> Vec<u8> {
    images.iter().flat_map(|i| i.as_raw().to_vec()).collect()
}

#[test]
fn postprocess_is_bit_equal_to_diffusers() {
    assert_eq!(
        manifest()["nan_to_uint8"],
        0,
        "numpy's NaN cast, documented as 0"
    );
    for (case, input, expected) in postprocess_cases() {
        let (b, h, w) = (
            dim(&case, "batch") as usize,
            dim(&case, "height") as usize,
            dim(&case, "width") as usize,
        );
        let (images, tensor_images) = match case["dtype"].as_str().unwrap() {
            "f32" => {
                let v: Vec<f32> = input
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                    .collect();
                let t = candle_core::Tensor::from_vec(
                    v.clone(),
                    (b, 3, h, w),
                    &candle_core::Device::Cpu,
                )
                .unwrap();
                (
                    postprocess(&v, b, h, w).unwrap(),
                    postprocess_tensor(&t).unwrap(),
                )
            }
            "bf16" => {
                let v: Vec<half::bf16> = input
                    .chunks_exact(2)
                    .map(|c| half::bf16::from_bits(u16::from_le_bytes(c.try_into().unwrap())))
                    .collect();
                let t = candle_core::Tensor::from_vec(v, (b, 3, h, w), &candle_core::Device::Cpu)
                    .unwrap();
                let images = postprocess_tensor(&t).unwrap();
                (images.clone(), images)
            }
            _ => {
                let v: Vec<half::f16> = input
                    .chunks_exact(2)
                    .map(|c| half::f16::from_bits(u16::from_le_bytes(c.try_into().unwrap())))
                    .collect();
                let t = candle_core::Tensor::from_vec(
                    v.clone(),
                    (b, 3, h, w),
                    &candle_core::Device::Cpu,
                )
                .unwrap();
                (
                    postprocess_f16(&v, b, h, w).unwrap(),
                    postprocess_tensor(&t).unwrap(),
                )
            }
        };
        assert_eq!(images.len(), b);
        let got = images_bytes(&images);
        let (max, count) = byte_diff(&got, &expected);
        eprintln!(
            "postprocess {} ({} input bytes): {count} output samples differ, max {max}",
            case["dtype"],
            input.len()
        );
        assert_eq!(count, 0);
        assert_eq!(images_bytes(&tensor_images), got);
    }
}

#[test]
fn postprocess_checks_the_shape() {
    let err = postprocess(&[0.0; 5], 1, 1, 1).unwrap_err();
    assert!(matches!(err, Error::InvalidArgument { .. }));
    let t = candle_core::Tensor::zeros(
        (1, 4, 2, 2),
        candle_core::DType::F32,
        &candle_core::Device::Cpu,
    )
    .unwrap();
    assert_eq!(
        postprocess_tensor(&t).unwrap_err().to_string(),
        "invalid argument: `image` tensor has 4 channels, expected 3 (rgb)"
    );
}

fn test_image() -> RgbImage {
    let data = (0..23 * 17 * 3).map(|i| (i * 7 % 256) as u8).collect();
    RgbImage::new(23, 17, data).unwrap()
}

#[test]
fn write_png_round_trips_and_replaces_atomically() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out.png");
    let image = test_image();
    check_writable(&path).unwrap();
    write_png(&path, &image).unwrap();
    assert_eq!(load_image(&path).unwrap(), image);
    // Overwriting an existing file; no temporary file is left beside it.
    let other = RgbImage::new(2, 2, vec![9; 12]).unwrap();
    write_png(&path, &other).unwrap();
    assert_eq!(load_image(&path).unwrap(), other);
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from("out.png")]);
}

#[cfg(unix)]
#[test]
fn write_png_through_a_symlink_replaces_its_target() {
    let dir = tempfile::tempdir().unwrap();
    let real = dir.path().join("real.png");
    std::fs::write(&real, b"old").unwrap();
    let link = dir.path().join("link.png");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    write_png(&link, &test_image()).unwrap();
    assert!(std::fs::symlink_metadata(&link)
        .unwrap()
        .file_type()
        .is_symlink());
    assert_eq!(load_image(&real).unwrap(), test_image());
    // A dangling link is refused, nothing is created.
    let dangling = dir.path().join("dangling.png");
    std::os::unix::fs::symlink(dir.path().join("missing.png"), &dangling).unwrap();
    assert!(write_png(&dangling, &test_image()).is_err());
    assert!(!dir.path().join("missing.png").exists());
}

#[cfg(unix)]
#[test]
fn write_png_writes_through_devices() {
    write_png(Path::new("/dev/null"), &test_image()).unwrap();
    check_writable(Path::new("/dev/null")).unwrap();
}

#[test]
fn write_png_refuses_folders_and_missing_folders_without_leaving_files() {
    let dir = tempfile::tempdir().unwrap();
    let err = write_png(dir.path(), &test_image()).unwrap_err();
    assert!(
        err.to_string()
            .ends_with("is a folder, not a file name for the png"),
        "{err}"
    );
    let missing = dir.path().join("no/such/folder/out.png");
    let err = check_writable(&missing).unwrap_err();
    assert!(err.to_string().contains("does not exist"), "{err}");
    assert!(write_png(&missing, &test_image()).is_err());
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[cfg(unix)]
#[test]
fn check_writable_refuses_a_read_only_folder() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let ro = dir.path().join("ro");
    std::fs::create_dir(&ro).unwrap();
    std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o555)).unwrap();
    let target = ro.join("out.png");
    // root may write anyway: then the check rightly passes and writing works.
    let probe = std::fs::write(ro.join("probe"), b"x").is_ok();
    let _ = std::fs::remove_file(ro.join("probe"));
    assert_eq!(check_writable(&target).is_ok(), probe);
    if !probe {
        assert!(write_png(&target, &test_image()).is_err());
        assert_eq!(std::fs::read_dir(&ro).unwrap().count(), 0);
    }
}

#[test]
fn bad_image_files_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.png");
    std::fs::write(&empty, b"").unwrap();
    let text = dir.path().join("notes.png");
    std::fs::write(&text, b"hello, not a picture").unwrap();
    let full = std::fs::read(data("in_rgb.png")).unwrap();
    let truncated = dir.path().join("truncated.png");
    std::fs::write(&truncated, &full[..full.len() / 2]).unwrap();
    let jpeg = std::fs::read(data("in_q420.jpg")).unwrap();
    let truncated_jpeg = dir.path().join("truncated.jpg");
    std::fs::write(&truncated_jpeg, &jpeg[..40]).unwrap();
    for (path, expect) in [
        (&empty, "empty file, not an image"),
        (&text, "not a png or jpeg file"),
        (&truncated, "corrupt png"),
        (&truncated_jpeg, "corrupt jpeg"),
        (&dir.path().join("missing.png"), "cannot read"),
        (&dir.path().to_path_buf(), "not a regular file"),
    ] {
        let err = load_image(path).unwrap_err();
        assert!(matches!(err, Error::Image { .. }), "{err}");
        let msg = err.to_string();
        assert!(msg.starts_with(&path.display().to_string()), "{msg}");
        assert!(msg.contains(expect), "{msg} lacks {expect}");
    }
}

/// A PNG header claiming 100000×100000 pixels is refused from the header, before any pixel
/// buffer is allocated (a decompression bomb).
#[test]
fn absurd_dimensions_are_refused_before_decoding() {
    fn chunk(kind: &[u8], body: &[u8]) -> Vec<u8> {
        let mut out = (body.len() as u32).to_be_bytes().to_vec();
        out.extend_from_slice(kind);
        out.extend_from_slice(body);
        let mut crc_in = kind.to_vec();
        crc_in.extend_from_slice(body);
        out.extend_from_slice(&crc32(&crc_in).to_be_bytes());
        out
    }
    fn crc32(bytes: &[u8]) -> u32 {
        let mut crc = !0_u32;
        for &b in bytes {
            crc ^= u32::from(b);
            for _ in 0..8 {
                crc = if crc & 1 != 0 {
                    (crc >> 1) ^ 0xEDB8_8320
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }
    let dir = tempfile::tempdir().unwrap();
    for (w, h, expect) in [
        (
            100_000_u32,
            100_000_u32,
            "each side must be 1 to 16384 pixels",
        ),
        (16_000, 16_000, "above the limit of 89478485"),
    ] {
        let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
        let mut ihdr = w.to_be_bytes().to_vec();
        ihdr.extend_from_slice(&h.to_be_bytes());
        ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
        png.extend(chunk(b"IHDR", &ihdr));
        png.extend(chunk(
            b"IDAT",
            &[0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01],
        ));
        png.extend(chunk(b"IEND", b""));
        let path = dir.path().join(format!("bomb{w}.png"));
        std::fs::write(&path, png).unwrap();
        let msg = load_image(&path).unwrap_err().to_string();
        assert!(msg.contains(expect), "{msg}");
    }
}
