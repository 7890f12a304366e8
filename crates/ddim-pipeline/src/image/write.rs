//! PNG output that never leaves a partial file.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::{image_error, RgbImage};
use crate::error::Result;

/// An 8-bit RGB PNG of `image`, in memory.
///
/// # Errors
///
/// [`crate::Error::Image`] if the encoder fails (it does not for a valid [`RgbImage`]).
pub fn encode_png(image: &RgbImage) -> Result<Vec<u8>> {
    let fail = |e: png::EncodingError| {
        image_error(
            Path::new("<png>"),
            format!("cannot encode png: {}", e.to_string().to_lowercase()),
        )
    };
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, image.width(), image.height());
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header().map_err(fail)?;
    writer.write_image_data(image.as_raw()).map_err(fail)?;
    writer.finish().map_err(fail)?;
    Ok(out)
}

/// Where a write to a path really goes (a symlink is resolved, so the link is kept and the
/// file it points to replaced).
enum Target {
    /// A regular file, existing or not: replaced atomically.
    File(PathBuf),
    /// A device or FIFO: written to directly.
    Stream(PathBuf),
}

fn resolve(path: &Path) -> Result<Target> {
    let err = |reason: &str| image_error(path, reason.to_owned());
    match std::fs::symlink_metadata(path) {
        Err(_) => Ok(Target::File(path.to_path_buf())),
        Ok(meta) if meta.file_type().is_symlink() => {
            let real = std::fs::canonicalize(path)
                .map_err(|_| err("a symlink to a missing file: not written through"))?;
            resolve(&real)
        }
        Ok(meta) if meta.is_dir() => Err(err("is a folder, not a file name for the png")),
        Ok(meta) if meta.is_file() => Ok(Target::File(path.to_path_buf())),
        Ok(_) => Ok(Target::Stream(path.to_path_buf())),
    }
}

/// The folder a regular-file target lives in (`.` for a bare file name).
fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// A fresh temporary file beside `target`, created exclusively (never overwriting anything).
fn create_temp(target: &Path) -> std::io::Result<(PathBuf, std::fs::File)> {
    let dir = parent_dir(target);
    let stem = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "image".to_owned());
    let pid = std::process::id();
    let mut last = None;
    for attempt in 0..100_u32 {
        let temp = dir.join(format!(".{stem}.{pid}.{attempt}.tmp"));
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&temp)
        {
            Ok(file) => return Ok((temp, file)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| std::io::Error::other("no temporary name free")))
}

/// Checks, before any work, that [`write_png`] to `path` can succeed as far as the file
/// system can tell: the target is not a folder, a symlink resolves, and a file can be created
/// in the target's folder (a probe file is created and removed). Devices and FIFOs are not
/// opened (opening a FIFO blocks until a reader comes).
///
/// ```no_run
/// ddim_pipeline::image::check_writable(std::path::Path::new("out/lion.png"))?;
/// // ... minutes of denoising ...
/// # Ok::<(), ddim_pipeline::Error>(())
/// ```
///
/// # Errors
///
/// [`crate::Error::Image`] naming the path and why it cannot be written.
pub fn check_writable(path: &Path) -> Result<()> {
    match resolve(path)? {
        Target::Stream(_) => Ok(()),
        Target::File(target) => {
            let dir = parent_dir(&target);
            if !dir.is_dir() {
                return Err(image_error(
                    path,
                    format!("cannot write: the folder {} does not exist", dir.display()),
                ));
            }
            let (temp, file) = create_temp(&target).map_err(|e| {
                image_error(
                    path,
                    format!(
                        "cannot write in {}: {}",
                        dir.display(),
                        e.to_string().to_lowercase()
                    ),
                )
            })?;
            drop(file);
            let _ = std::fs::remove_file(temp);
            Ok(())
        }
    }
}

/// Writes `image` as an 8-bit RGB PNG, never leaving a partial file: the PNG is encoded in
/// memory, written to a temporary file beside the target (`.NAME.PID.N.tmp`), flushed to disk
/// and renamed over the target, so the target holds either its old content or the whole new
/// image. A symlink target is resolved and the file it points to replaced (the link stays);
/// a device or FIFO target (`/dev/stdout`, a pipe) is written through directly; a folder is
/// refused. Call [`check_writable`] first to fail before the long work.
///
/// ```no_run
/// use ddim_pipeline::image::{postprocess, write_png};
/// let images = postprocess(&vec![0.0; 3 * 64 * 64], 1, 64, 64)?;
/// write_png(std::path::Path::new("grey.png"), &images[0])?;
/// # Ok::<(), ddim_pipeline::Error>(())
/// ```
///
/// # Errors
///
/// [`crate::Error::Image`] naming the path: a folder, a dangling symlink, a folder that
/// cannot be written, a failed write or rename (the temporary file is then removed).
pub fn write_png(path: &Path, image: &RgbImage) -> Result<()> {
    let bytes = encode_png(image)?;
    let io = |e: std::io::Error| {
        image_error(
            path,
            format!("cannot write: {}", e.to_string().to_lowercase()),
        )
    };
    match resolve(path)? {
        Target::Stream(stream) => {
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .open(stream)
                .map_err(io)?;
            file.write_all(&bytes).map_err(io)?;
            file.flush().map_err(io)
        }
        Target::File(target) => {
            let (temp, mut file) = create_temp(&target).map_err(io)?;
            let written = file
                .write_all(&bytes)
                .and_then(|()| file.sync_all())
                .and_then(|()| {
                    drop(file);
                    std::fs::rename(&temp, &target)
                });
            if let Err(e) = written {
                let _ = std::fs::remove_file(&temp);
                return Err(io(e));
            }
            Ok(())
        }
    }
}
