//! Helpers shared by the command-line tests: run the `ddim` binary, read what it prints,
//! check exit codes and one-line errors, decode the PNGs it writes.
//!
//! Each test file uses only some of them.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// `ddim args`, to be run in `dir` (the caller may add environment variables).
pub(crate) fn command(args: &[&str], dir: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_ddim"));
    command.args(args).current_dir(dir);
    command
}

/// Runs `ddim args` in `dir`.
pub(crate) fn ddim(args: &[&str], dir: &Path) -> Output {
    command(args, dir).output().expect("the ddim binary runs")
}

/// Runs `ddim args` in the test's working directory, for commands that write no file.
pub(crate) fn ddim_here(args: &[&str]) -> Output {
    ddim(args, Path::new("."))
}

/// What the command printed on stdout.
pub(crate) fn stdout(out: &Output) -> String {
    String::from_utf8(out.stdout.clone()).expect("UTF-8 on stdout")
}

/// What the command printed on stderr.
pub(crate) fn stderr(out: &Output) -> String {
    String::from_utf8(out.stderr.clone()).expect("UTF-8 on stderr")
}

/// Asserts exit code 0 (showing stderr otherwise) and returns stdout.
pub(crate) fn success(out: &Output) -> String {
    assert!(out.status.success(), "stderr: {}", stderr(out));
    stdout(out)
}

/// Runs `ddim args` in a fresh folder, asserts success and parses stdout as JSON.
pub(crate) fn json(args: &[&str]) -> serde_json::Value {
    let dir = tempfile::tempdir().unwrap();
    let out = ddim(args, dir.path());
    assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    serde_json::from_slice(&out.stdout).expect("JSON on stdout")
}

/// A real scheduler config of the library's test data.
pub(crate) fn config_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../ddim/tests/data/configs")
        .join(name)
}

/// Decodes a PNG and returns its size, checking it is 8-bit RGB with every row present.
pub(crate) fn png_size(path: &Path) -> (u32, u32) {
    let file = std::io::BufReader::new(std::fs::File::open(path).expect("the PNG exists"));
    let mut reader = png::Decoder::new(file).read_info().expect("a PNG header");
    let mut buf = vec![0; reader.output_buffer_size().expect("a sane size")];
    let info = reader.next_frame(&mut buf).expect("PNG image data");
    assert_eq!(info.color_type, png::ColorType::Rgb);
    assert_eq!(info.bit_depth, png::BitDepth::Eight);
    // Not a blank canvas: at least 1% of the pixels are not background white.
    let drawn = buf
        .chunks_exact(3)
        .filter(|p| p != &[255, 255, 255])
        .count();
    assert!(drawn * 100 > buf.len() / 3, "only {drawn} pixels drawn");
    (info.width, info.height)
}

/// Exit code 1 and exactly one line on stderr, starting with "error:" and naming `needle`.
pub(crate) fn assert_runtime_error(out: &Output, needle: &str) {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(1), "stderr: {err}");
    assert_eq!(err.lines().count(), 1, "one line expected, got: {err}");
    assert!(err.starts_with("error: ") && err.contains(needle), "{err}");
}

/// Exit code 2 and one "error: …" line naming `needle` (clap adds usage and hint lines).
pub(crate) fn assert_usage_error(out: &Output, needle: &str) {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(2), "stderr: {err}");
    assert!(err.starts_with("error: ") && err.contains(needle), "{err}");
    assert_eq!(err.lines().filter(|l| l.starts_with("error")).count(), 1);
}

/// Runs `ddim args` in a fresh folder, asserts a one-line runtime error and returns it.
pub(crate) fn runtime_error(args: &[&str]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let out = ddim(args, dir.path());
    assert_runtime_error(&out, "");
    stderr(&out)
}
