//! Regressions of issue 15 (an adversarial probe) on the command line: outputs that are not
//! regular files, long names, early failure on unwritable outputs, signals during a write,
//! absurd sizes under a memory cap, multi-line input in messages, configs no scheduler can be
//! built from. (The plain usage and runtime errors are rows of docs/errors.md, run by
//! errors_cli.rs.)

mod common;

use std::path::Path;

use common::{command, ddim, stderr};

/// A PNG's first bytes.
const PNG: &[u8] = b"\x89PNG\r\n\x1a\n";

fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// `ddim schedule --steps 2 --plot <output>`: the cheapest command that writes a PNG.
fn plot_to(output: &str, dir: &Path) -> std::process::Output {
    ddim(&["schedule", "--steps", "2", "--plot", output], dir)
}

#[cfg(unix)]
#[test]
fn a_symbolic_link_is_followed_and_its_target_replaced() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("real.txt"), b"old text").unwrap();
    std::os::unix::fs::symlink("real.txt", dir.path().join("link.png")).unwrap();
    let o = plot_to("link.png", dir.path());
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(std::fs::read(dir.path().join("real.txt"))
        .unwrap()
        .starts_with(PNG));
    let link = std::fs::symlink_metadata(dir.path().join("link.png")).unwrap();
    assert!(link.file_type().is_symlink());
    assert_eq!(entries(dir.path()), ["link.png", "real.txt"]);
}

#[cfg(unix)]
#[test]
fn a_character_device_is_written_through_not_replaced() {
    use std::os::unix::fs::FileTypeExt;
    let null = Path::new("/dev/null");
    if !null.exists() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let o = plot_to("/dev/null", dir.path());
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(std::fs::metadata(null)
        .unwrap()
        .file_type()
        .is_char_device());
    // A link to the process's own standard output (a pipe here): written through it.
    std::os::unix::fs::symlink("/proc/self/fd/1", dir.path().join("stdout.png")).unwrap();
    if Path::new("/proc/self/fd/1").exists() {
        let o = plot_to("stdout.png", dir.path());
        assert!(o.status.success(), "{}", stderr(&o));
        assert!(o.stdout.windows(PNG.len()).any(|w| w == PNG));
        assert_eq!(entries(dir.path()), ["stdout.png"]);
    }
}

#[cfg(unix)]
#[test]
fn a_fifo_is_written_through_not_replaced() {
    use std::os::unix::fs::FileTypeExt;
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("pipe.png");
    let made = std::process::Command::new("mkfifo").arg(&fifo).status();
    if !made.is_ok_and(|s| s.success()) {
        eprintln!("mkfifo is not available: skipped");
        return;
    }
    let reader = {
        let fifo = fifo.clone();
        std::thread::spawn(move || std::fs::read(fifo).unwrap())
    };
    let o = plot_to("pipe.png", dir.path());
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(reader.join().unwrap().starts_with(PNG));
    assert!(std::fs::metadata(&fifo).unwrap().file_type().is_fifo());
    assert_eq!(entries(dir.path()), ["pipe.png"]);
}

#[test]
fn a_long_valid_name_is_written() {
    let dir = tempfile::tempdir().unwrap();
    // 249 bytes: valid, but the old temporary name (+ ~15 bytes) exceeded 255.
    let name = format!("{}.png", "a".repeat(245));
    let o = plot_to(&name, dir.path());
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(entries(dir.path()), [name]);
}

#[cfg(target_os = "linux")]
#[test]
fn outputs_that_cannot_be_created_fail_before_any_work() {
    let dir = tempfile::tempdir().unwrap();
    // `eval` and `invert` would compute for seconds before writing; they now stop at once.
    for args in [
        &["eval", "--output", "/proc/x.png"][..],
        &["invert", "--output", "/proc/x.png"],
        &["interpolate", "--output", "/proc/x.png"],
        &["sample", "--output", "/proc/x.png"],
    ] {
        let o = ddim(args, dir.path());
        assert_eq!(o.status.code(), Some(1), "{args:?}");
        assert_eq!(
            stderr(&o),
            "error: cannot write /proc/x.png: No such file or directory (os error 2)\n",
            "{args:?}"
        );
    }
    // A name beyond the file-name limit, refused before the work too.
    let long = format!("{}.png", "b".repeat(300));
    let o = ddim(&["eval", "--output", &long], dir.path());
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("File name too long"), "{}", stderr(&o));
    assert!(entries(dir.path()).is_empty());
}

#[cfg(unix)]
#[test]
fn a_signal_during_the_write_removes_the_temporary_file() {
    use std::os::unix::process::ExitStatusExt;
    for signal in ["TERM", "INT"] {
        let dir = tempfile::tempdir().unwrap();
        let mut child = command(&["schedule", "--steps", "2", "--plot", "s.png"], dir.path())
            .env("DDIM_TEST_PAUSE_IN_WRITE_MS", "20000")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        // Wait (without a time limit: a hung test shows the failure) for the temporary file.
        while !entries(dir.path()).iter().any(|n| n.ends_with(".tmp")) {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let killed = std::process::Command::new("kill")
            .args([format!("-{signal}"), child.id().to_string()])
            .status()
            .unwrap();
        assert!(killed.success());
        let status = child.wait().unwrap();
        let expected = if signal == "TERM" { 15 } else { 2 };
        assert_eq!(status.signal(), Some(expected), "{status:?}");
        assert!(
            entries(dir.path()).is_empty(),
            "SIG{signal} left {:?}",
            entries(dir.path())
        );
    }
}

#[cfg(unix)]
#[test]
fn absurd_sizes_are_errors_under_a_memory_cap() {
    // 4 GB of address space: T = 2³¹ − 1 needs 8.6 GB for β alone. Before, `ddim config`
    // and `ddim schedule` aborted (exit 134); now the allocation is refused with an error.
    let bin = env!("CARGO_BIN_EXE_ddim");
    for cmd in ["config", "schedule --steps 1"] {
        let script =
            format!("ulimit -v 4000000 && exec '{bin}' {cmd} --num-train-timesteps 2147483647");
        let o = std::process::Command::new("sh")
            .args(["-c", &script])
            .output()
            .unwrap();
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{cmd}: {err}");
        assert!(
            err.contains("out of memory: `linspace` needs 2147483647 values (8589934588 bytes)"),
            "{cmd}: {err}"
        );
        assert_eq!(err.lines().count(), 1, "{err}");
    }
}

#[test]
fn a_line_break_in_a_model_id_stays_on_one_line() {
    let dir = tempfile::tempdir().unwrap();
    for args in [
        &["schedule", "--model", "org/name\nsecond"][..],
        &["config", "--model", "org/m", "--revision", "main\nx"],
    ] {
        let o = command(args, dir.path())
            .env("HF_HUB_CACHE", "no-such-hub")
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(1));
        let err = stderr(&o);
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains("\\n"), "{err}");
    }
}

#[test]
fn a_config_no_scheduler_can_be_built_from_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("t0.json"), r#"{"num_train_timesteps": 0}"#).unwrap();
    let o = ddim(&["config", "--config", "t0.json"], dir.path());
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        stderr(&o),
        "error: no scheduler can be built from this config: invalid config: \
         `num_train_timesteps` must be at least 1, got 0\n"
    );
    assert!(o.stdout.is_empty());
}

#[test]
fn decreasing_betas_warn_and_sigma_is_zero_at_eta_zero() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("down.json"),
        r#"{"beta_start": 0.5, "beta_end": 0.1}"#,
    )
    .unwrap();
    let o = ddim(
        &["schedule", "--config", "down.json", "-n", "3", "--json"],
        dir.path(),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    // The warning names where ᾱ reaches 0 (t = 164, as diffusers computes it).
    assert!(
        stderr(&o).contains("alpha_bar reaches 0 at t = 164"),
        "{}",
        stderr(&o)
    );
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let steps = doc["steps"].as_array().unwrap();
    // ᾱ_t = ᾱ_prev = 0 at t = 666 → 333: diffusers' variance is 0/0, but σ_t = η·… = 0 at η = 0
    // (it printed NaN, null in JSON).
    assert_eq!(steps[0]["alpha_bar"], 0.0);
    assert_eq!(steps[0]["alpha_bar_prev"], 0.0);
    for step in steps {
        assert_eq!(step["sigma"], 0.0, "{step}");
    }
}
