//! Output files, written so that a failure never leaves a half-written one.
//!
//! * A regular file (or a name that does not exist yet) is written atomically: the bytes go to
//!   a temporary file `.<name>.<pid>.<n>.tmp` in the same folder, are flushed to disk, and the
//!   temporary file is renamed over the target. A failure at any point (a full disk, a bad
//!   path, SIGINT or SIGTERM) leaves either the old file or none, and removes the
//!   temporary file. (SIGKILL or a power cut cannot be caught: the temporary file can then
//!   remain beside the target, which is intact.)
//! * A symbolic link is followed to the file it names (through chains and dangling links):
//!   that file is replaced, the link is kept.
//! * A character device (`/dev/null`, a terminal) or a FIFO is written through, in place:
//!   renaming over it would replace the special file itself. A block device or a socket is
//!   refused.
//! * `-` is refused: the commands print their report on standard output, so a picture
//!   cannot go there too.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;

use anyhow::Context;

/// The most bytes of the target's name kept in a temporary file's name: with the dot, the
/// process id, a counter and `.tmp` the temporary name stays under 255 bytes, the file-name
/// limit of the common file systems, whatever the target's name.
const TEMP_NAME_PREFIX_MAX: usize = 200;

/// How many symbolic links are followed before giving up (Linux's own limit is 40).
const MAX_SYMLINK_HOPS: usize = 40;

/// Where the bytes of an output go.
#[derive(Debug, PartialEq, Eq)]
enum Target {
    /// A regular file, or a name that does not exist yet (symbolic links resolved): written
    /// atomically.
    File(PathBuf),
    /// A character device or a FIFO: written through.
    Stream(PathBuf),
}

/// Parses an output path given on the command line: anything but `-` (standard output, which
/// carries the report) and the empty string. A clap value parser, so these are usage errors.
pub(crate) fn parse_output(text: &str) -> Result<PathBuf, String> {
    match text {
        "-" => Err("standard output carries the report; give a file name".into()),
        "" => Err("an output file name cannot be empty".into()),
        _ => Ok(PathBuf::from(text)),
    }
}

/// Fails early, before any long computation, when `path` cannot be an output file: `-`, a
/// folder that does not exist or refuses new files, a name too long, a folder, a block
/// device or a socket. For a regular target it creates (and removes) a temporary file where
/// the real one will go.
pub(crate) fn check_writable(path: &Path) -> anyhow::Result<()> {
    match resolve(path)? {
        Target::File(real) => {
            let (probe, file) = create_temp(&real, "probe")
                .with_context(|| format!("cannot write {}", path.display()))?;
            let _guard = PendingTemp::register(&probe);
            drop(file);
            let _ = fs::remove_file(&probe);
            Ok(())
        }
        Target::Stream(_) => Ok(()),
    }
}

/// Writes `bytes` to `path` (see the module docs).
pub(crate) fn write(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    write_with(path, |file| file.write_all(bytes))
}

/// Writes to `path` what `fill` writes to the file it is given: a temporary file that is then
/// renamed over the target, or the device or FIFO itself. If `fill` fails, nothing is renamed
/// and the temporary file is removed.
pub(crate) fn write_with(
    path: &Path,
    fill: impl FnOnce(&mut File) -> io::Result<()>,
) -> anyhow::Result<()> {
    let context = || format!("cannot write {}", path.display());
    let real = match resolve(path)? {
        Target::Stream(stream) => {
            let mut file = OpenOptions::new()
                .write(true)
                .open(&stream)
                .with_context(context)?;
            return fill(&mut file)
                .and_then(|()| file.flush())
                .with_context(context);
        }
        Target::File(real) => real,
    };
    let (temp, mut file) = create_temp(&real, "tmp").with_context(context)?;
    let _guard = PendingTemp::register(&temp);
    pause_for_signal_test();
    let result = fill(&mut file)
        .and_then(|()| file.sync_all())
        .and_then(|()| {
            drop(file);
            fs::rename(&temp, &real)
        });
    if let Err(e) = result {
        let _ = fs::remove_file(&temp);
        return Err(e).with_context(context);
    }
    Ok(())
}

/// What `path` is as an output (see [`Target`]), or why it cannot be one.
fn resolve(path: &Path) -> anyhow::Result<Target> {
    let refuse = |why: &str| anyhow::anyhow!("cannot write {}: {why}", path.display());
    if path.as_os_str() == "-" {
        return Err(refuse(
            "standard output carries the report; give a file name",
        ));
    }
    if path.as_os_str().is_empty() {
        return Err(refuse("an output file name cannot be empty"));
    }
    let follow = || follow_links(path).with_context(|| format!("cannot write {}", path.display()));
    // The kernel follows the links (magic ones too: /proc/self/fd/1 may name a pipe).
    match fs::metadata(path) {
        Ok(m) if m.is_dir() => Err(refuse("it is a folder")),
        Ok(m) if m.is_file() => Ok(Target::File(follow()?)),
        Ok(m) => special(m.file_type(), path.to_path_buf()).ok_or_else(|| {
            refuse("it is a block device, a socket or another special file, not a file")
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            // A new name, or a (chain of) symbolic link(s) to one.
            let real = follow()?;
            let folder = folder_of(&real);
            if folder.is_dir() {
                Ok(Target::File(real))
            } else {
                Err(refuse(&format!(
                    "folder {} does not exist",
                    folder.display()
                )))
            }
        }
        Err(e) => Err(e).with_context(|| format!("cannot write {}", path.display())),
    }
}

/// A character device or a FIFO as a [`Target::Stream`]; `None` for other special files.
#[cfg(unix)]
fn special(kind: fs::FileType, path: PathBuf) -> Option<Target> {
    use std::os::unix::fs::FileTypeExt;
    (kind.is_char_device() || kind.is_fifo()).then_some(Target::Stream(path))
}

#[cfg(not(unix))]
fn special(_kind: fs::FileType, _path: PathBuf) -> Option<Target> {
    None
}

/// `path` with its last component's symbolic links followed (a chain of them, or a dangling
/// one): the file a write through `path` would reach. Folders above need no resolving: a
/// rename goes through them.
fn follow_links(path: &Path) -> io::Result<PathBuf> {
    let mut current = path.to_path_buf();
    for _ in 0..MAX_SYMLINK_HOPS {
        match fs::symlink_metadata(&current) {
            Ok(m) if m.file_type().is_symlink() => {
                let target = fs::read_link(&current)?;
                current = if target.is_absolute() {
                    target
                } else {
                    folder_of(&current).join(target)
                };
            }
            _ => return Ok(current),
        }
    }
    Err(io::Error::other(format!(
        "more than {MAX_SYMLINK_HOPS} symbolic links in a row"
    )))
}

fn folder_of(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// The first `max` bytes of `name`, cut at a character boundary.
fn truncated(name: &str, max: usize) -> &str {
    let mut end = name.len().min(max);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    &name[..end]
}

/// A new file `.<name>.<pid>.<n>.<ext>` beside `path` (created exclusively, so two writers
/// never share one; `<name>` cut to [`TEMP_NAME_PREFIX_MAX`] bytes). `ext` is `tmp` for the
/// file being written, `probe` for the one [`check_writable`] creates and removes at once.
fn create_temp(path: &Path, ext: &str) -> io::Result<(PathBuf, File)> {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let name = path
        .file_name()
        .map_or_else(|| "output".into(), |n| n.to_string_lossy());
    let name = truncated(&name, TEMP_NAME_PREFIX_MAX);
    loop {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let temp = folder_of(path).join(format!(".{name}.{}.{n}.{ext}", std::process::id()));
        match OpenOptions::new().write(true).create_new(true).open(&temp) {
            Ok(file) => return Ok((temp, file)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Debug builds only: sleeps `DDIM_TEST_PAUSE_IN_WRITE_MS` milliseconds once the temporary
/// file exists, so that `tests/hardening_cli.rs` can send a signal while it does. Release
/// builds do not read the variable.
fn pause_for_signal_test() {
    #[cfg(debug_assertions)]
    if let Some(ms) = std::env::var("DDIM_TEST_PAUSE_IN_WRITE_MS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
    {
        std::thread::sleep(std::time::Duration::from_millis(ms.min(60_000)));
    }
}

/// The temporary files being written now: removed by the signal handler before the process
/// dies of SIGINT or SIGTERM.
static PENDING: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// Keeps a temporary file in [`PENDING`] while it is alive.
struct PendingTemp(PathBuf);

impl PendingTemp {
    fn register(path: &Path) -> Self {
        if let Ok(mut pending) = PENDING.lock() {
            pending.push(path.to_path_buf());
        }
        Self(path.to_path_buf())
    }
}

impl Drop for PendingTemp {
    fn drop(&mut self) {
        if let Ok(mut pending) = PENDING.lock() {
            pending.retain(|p| p != &self.0);
        }
    }
}

/// Removes the temporary files of [`PENDING`] when SIGINT or SIGTERM arrives, then
/// lets the signal do what it does by default (end the process, exit status 128 + signal).
/// A thread waits for the signals (`signal-hook`'s iterator, no `unsafe` here).
#[cfg(unix)]
pub(crate) fn remove_temporary_files_on_signals() {
    // Not SIGHUP: under `nohup` it is ignored, and a handler here would undo that.
    use signal_hook::consts::{SIGINT, SIGTERM};
    let Ok(mut signals) = signal_hook::iterator::Signals::new([SIGINT, SIGTERM]) else {
        return; // Without the handler, a signal leaves the temporary file: documented.
    };
    std::thread::spawn(move || {
        if let Some(signal) = signals.forever().next() {
            // Held until the process ends: no new temporary file is registered meanwhile.
            let pending = PENDING.lock();
            if let Ok(pending) = &pending {
                for path in pending.iter() {
                    let _ = fs::remove_file(path);
                }
            }
            let _ = signal_hook::low_level::emulate_default_handler(signal);
            std::process::exit(128 + signal);
        }
    });
}

#[cfg(not(unix))]
pub(crate) fn remove_temporary_files_on_signals() {}

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
        // Other tests write concurrently: only this folder's entries must be gone.
        assert!(!PENDING
            .lock()
            .unwrap()
            .iter()
            .any(|p| p.starts_with(dir.path())));
    }

    #[test]
    fn bad_targets_fail_before_writing() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("no-such-folder").join("x.png");
        let err = write(&missing, b"x").unwrap_err().to_string();
        assert!(err.contains("does not exist"), "{err}");
        let err = write(dir.path(), b"x").unwrap_err().to_string();
        assert!(err.ends_with("it is a folder"), "{err}");
        let err = check_writable(Path::new("-")).unwrap_err().to_string();
        assert!(err.contains("standard output"), "{err}");
        assert!(parse_output("-").is_err() && parse_output("").is_err());
        assert!(entries(dir.path()).is_empty());
    }

    #[test]
    fn a_long_name_gets_a_temporary_name_within_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        // 249 bytes: a valid name whose old temporary name (+ ~15 bytes) was too long.
        let name = format!("{}.png", "é".repeat(122) + "a");
        assert_eq!(name.len(), 249);
        let path = dir.path().join(&name);
        check_writable(&path).unwrap();
        write(&path, b"png").unwrap();
        assert_eq!(entries(dir.path()), [name]);
        let (temp, _) = create_temp(&path, "probe").unwrap();
        assert!(temp.file_name().unwrap().len() < 255);
        // A name over the limit fails before any work, naming the file.
        let too_long = dir.path().join("x".repeat(300));
        let err = check_writable(&too_long).unwrap_err();
        assert!(format!("{err:#}").contains("name too long"), "{err:#}");
    }

    #[cfg(unix)]
    #[test]
    fn symbolic_links_are_followed_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("real.txt"), b"old").unwrap();
        std::os::unix::fs::symlink("real.txt", dir.path().join("link.png")).unwrap();
        // A chain ending in a name that does not exist yet.
        std::os::unix::fs::symlink("link2", dir.path().join("chain")).unwrap();
        std::os::unix::fs::symlink("new.png", dir.path().join("link2")).unwrap();
        write(&dir.path().join("link.png"), b"new").unwrap();
        write(&dir.path().join("chain"), b"made").unwrap();
        assert_eq!(fs::read(dir.path().join("real.txt")).unwrap(), b"new");
        assert_eq!(fs::read(dir.path().join("new.png")).unwrap(), b"made");
        assert!(fs::symlink_metadata(dir.path().join("link.png"))
            .unwrap()
            .file_type()
            .is_symlink());
        assert!(fs::symlink_metadata(dir.path().join("chain"))
            .unwrap()
            .file_type()
            .is_symlink());
        // A loop is an error, not a hang.
        std::os::unix::fs::symlink("loop", dir.path().join("loop")).unwrap();
        assert!(write(&dir.path().join("loop"), b"x").is_err());
    }

    #[cfg(unix)]
    #[test]
    fn devices_are_written_through_not_replaced() {
        use std::os::unix::fs::FileTypeExt;
        let null = Path::new("/dev/null");
        if !null.exists() {
            return;
        }
        check_writable(null).unwrap();
        write(null, b"png bytes").unwrap();
        assert!(fs::metadata(null).unwrap().file_type().is_char_device());
        // Through a symbolic link too.
        let dir = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(null, dir.path().join("out.png")).unwrap();
        write(&dir.path().join("out.png"), b"png bytes").unwrap();
        assert!(fs::metadata(null).unwrap().file_type().is_char_device());
        assert_eq!(entries(dir.path()), ["out.png"]);
    }
}
