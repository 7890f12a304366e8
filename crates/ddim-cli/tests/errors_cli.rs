//! The command-line half of docs/errors.md, as a test: every row of its `ddim` table is run
//! (in crates/ddim-cli, with RUST_BACKTRACE=1) and must exit with the documented code and print
//! exactly the documented line on stderr, and nothing else. Also: output files are written
//! atomically, and a failed write leaves no file behind.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const CATALOGUE: &str = include_str!("../../../docs/errors.md");

fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn ddim_in(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ddim"))
        .args(args)
        .current_dir(dir)
        .env("RUST_BACKTRACE", "1")
        // `--model` searches the Hugging Face cache folders: the same absent ones everywhere.
        .env("HF_HUB_CACHE", "no-such-hub")
        .env("HOME", "no-such-home")
        .env_remove("HUGGINGFACE_HUB_CACHE")
        .env_remove("HF_HOME")
        .env_remove("XDG_CACHE_HOME")
        .output()
        .unwrap()
}

/// A table cell without its code delimiters.
fn code(cell: &str) -> &str {
    let cell = cell.trim();
    if let Some(inner) = cell.strip_prefix("`` ").and_then(|c| c.strip_suffix(" ``")) {
        inner
    } else {
        cell.trim_matches('`')
    }
}

/// (command words after `ddim`, exit code, stderr line) of every command-line row.
fn cli_rows() -> Vec<(Vec<&'static str>, i32, &'static str)> {
    CATALOGUE
        .lines()
        .filter(|l| l.starts_with("| "))
        .map(|l| {
            let l = l.trim().trim_start_matches('|').trim_end_matches('|');
            l.split(" | ").map(str::trim).collect::<Vec<_>>()
        })
        .filter(|cells| cells.len() == 4 && code(cells[1]).starts_with("ddim "))
        .map(|cells| {
            let words = code(cells[1]).split_whitespace().skip(1).collect();
            (words, cells[2].parse().unwrap(), code(cells[3]))
        })
        .collect()
}

fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn every_documented_failure_exits_with_its_code_and_one_line() {
    let rows = cli_rows();
    assert!(
        rows.len() > 20,
        "the catalogue's command-line table was not found"
    );
    let before = entries(&crate_dir());
    let mut failures = Vec::new();
    for (args, code, line) in &rows {
        let o = ddim_in(&crate_dir(), args);
        let stderr = String::from_utf8_lossy(&o.stderr);
        let want = format!("{line}\n");
        if o.status.code() != Some(*code) || stderr != want {
            failures.push(format!(
                "ddim {}\n   doc: {code} {line}\n  code: {:?} {}",
                args.join(" "),
                o.status.code(),
                stderr.trim_end()
            ));
        }
        assert!(!stderr.contains("panicked") && !stderr.contains("backtrace"));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // No failed command left a file (or a temporary file) behind.
    assert_eq!(entries(&crate_dir()), before);
}

#[test]
fn outputs_are_complete_and_leave_no_temporary_files() {
    let dir = tempfile::tempdir().unwrap();
    let o = ddim_in(
        dir.path(),
        &[
            "sample",
            "--steps",
            "5",
            "--samples",
            "200",
            "--output",
            "s.png",
        ],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(entries(dir.path()), ["s.png"]);
    let png = std::fs::read(dir.path().join("s.png")).unwrap();
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n") && png.ends_with(b"IEND\xaeB`\x82"));
}

#[test]
fn a_failing_write_keeps_the_old_file_and_leaves_no_partial_file() {
    let dir = tempfile::tempdir().unwrap();
    // The target is a folder (with a file in it): refused before anything is computed or
    // written; the folder is untouched and no temporary file remains. (A write that fails
    // half-way is tested in src/atomic.rs with a failing writer.)
    std::fs::create_dir(dir.path().join("out.png")).unwrap();
    std::fs::write(dir.path().join("out.png").join("keep"), b"old").unwrap();
    let o = ddim_in(
        dir.path(),
        &["sample", "--steps", "2", "--output", "out.png"],
    );
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&o.stderr),
        "error: cannot write out.png: it is a folder\n"
    );
    assert_eq!(entries(dir.path()), ["out.png"]);
    assert_eq!(entries(&dir.path().join("out.png")), ["keep"]);
}
