//! Output files written atomically: the bytes go to a temporary file in the same folder, are
//! flushed to disk, and the temporary file is renamed over the target. A failure at any point
//! (a full disk, a killed process, a bad path) leaves either the old file or none — never a
//! half-written PNG or JSON — and removes the temporary file.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use anyhow::Context;

/// Fails early, before any long computation, when `path` cannot be an output file: its folder
/// does not exist, or it names a folder.
pub(crate) fn check_writable(path: &Path) -> anyhow::Result<()> {
    let folder = folder_of(path);
    if !folder.is_dir() {
        anyhow::bail!(
            "cannot write {}: folder {} does not exist",
            path.display(),
            folder.display()
        );
    }
    if path.is_dir() {
        anyhow::bail!("cannot write {}: it is a folder", path.display());
    }
    Ok(())
}

/// Writes `bytes` to `path` atomically (see the module docs).
pub(crate) fn write(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    write_with(path, |file| file.write_all(bytes))
}

/// Writes to `path` atomically what `fill` writes to the temporary file; if `fill` fails,
/// nothing is renamed and the temporary file is removed.
pub(crate) fn write_with(
    path: &Path,
    fill: impl FnOnce(&mut File) -> io::Result<()>,
) -> anyhow::Result<()> {
    check_writable(path)?;
    let (temp, mut file) =
        create_temp(path).with_context(|| format!("cannot write {}", path.display()))?;
    let result = fill(&mut file)
        .and_then(|()| file.sync_all())
        .and_then(|()| {
            drop(file);
            fs::rename(&temp, path)
        });
    if let Err(e) = result {
        let _ = fs::remove_file(&temp);
        return Err(e).with_context(|| format!("cannot write {}", path.display()));
    }
    Ok(())
}

fn folder_of(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// A new file `.<name>.<pid>.<n>.tmp` beside `path` (created exclusively, so two writers
/// never share one).
fn create_temp(path: &Path) -> io::Result<(PathBuf, File)> {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let name = path
        .file_name()
        .map_or_else(|| "output".into(), |n| n.to_string_lossy());
    loop {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let temp = folder_of(path).join(format!(".{name}.{}.{n}.tmp", std::process::id()));
        match OpenOptions::new().write(true).create_new(true).open(&temp) {
            Ok(file) => return Ok((temp, file)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn writes_and_replaces() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.json");
        write(&path, b"first").unwrap();
        write(&path, b"second").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"second");
        assert_eq!(entries(dir.path()), ["out.json"]);
    }

    #[test]
    fn a_failing_write_leaves_the_old_file_and_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("plot.png");
        let err = write_with(&path, |f| {
            f.write_all(b"half a png")?;
            Err(io::Error::other("disk full"))
        })
        .unwrap_err();
        assert_eq!(
            format!("{err:#}"),
            format!("cannot write {}: disk full", path.display())
        );
        assert!(entries(dir.path()).is_empty(), "{:?}", entries(dir.path()));
        // With an old file in place, it survives intact.
        fs::write(&path, b"old").unwrap();
        let _ = write_with(&path, |f| {
            f.write_all(b"new but broken")?;
            Err(io::Error::other("killed"))
        });
        assert_eq!(fs::read(&path).unwrap(), b"old");
        assert_eq!(entries(dir.path()), ["plot.png"]);
    }

    #[test]
    fn bad_targets_fail_before_writing() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("no-such-folder").join("x.png");
        let err = write(&missing, b"x").unwrap_err().to_string();
        assert!(err.contains("does not exist"), "{err}");
        let err = write(dir.path(), b"x").unwrap_err().to_string();
        assert!(err.ends_with("it is a folder"), "{err}");
        assert!(entries(dir.path()).is_empty());
    }
}
