//! `ddim sample`, `ddim eval` and `ddim schedule --plot` as a user runs them: exit codes,
//! one-line errors, valid PNGs of the expected size, reproducible bytes.

use std::path::Path;
use std::process::{Command, Output};

fn ddim(args: &[&str], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ddim"))
        .args(args)
        .current_dir(dir)
        .output()
        .expect("the ddim binary runs")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Decodes a PNG and returns its size, checking it is 8-bit RGB with every row present.
fn png_size(path: &Path) -> (u32, u32) {
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

/// Exit code 1 and exactly one line on stderr, starting with "error:".
fn assert_runtime_error(out: &Output, needle: &str) {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(1), "stderr: {err}");
    assert_eq!(err.lines().count(), 1, "one line expected, got: {err}");
    assert!(err.starts_with("error: ") && err.contains(needle), "{err}");
}

/// Exit code 2 and one "error: …" line naming the problem (clap adds usage and hint lines).
fn assert_usage_error(out: &Output, needle: &str) {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(2), "stderr: {err}");
    assert!(err.starts_with("error: ") && err.contains(needle), "{err}");
    assert_eq!(err.lines().filter(|l| l.starts_with("error")).count(), 1);
}

#[test]
fn sample_with_no_arguments_writes_the_default_picture() {
    let dir = tempfile::tempdir().unwrap();
    let out = ddim(&["sample"], dir.path());
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    for needle in [
        "2000 samples of `spiral`",
        "50 steps",
        "η = 0",
        "sliced W2",
        "noise floor",
        "wall time",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
    }
    assert_eq!(png_size(&dir.path().join("ddim-sample.png")), (720, 780));
}

#[test]
fn the_same_seed_gives_the_same_png_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let run = |name: &str, seed: &str| {
        let args = [
            "sample",
            "--dataset",
            "ring",
            "--samples",
            "200",
            "--steps",
            "10",
            "--eta",
            "0.5",
            "--seed",
            seed,
            "-o",
            name,
        ];
        let out = ddim(&args, dir.path());
        assert!(out.status.success(), "{}", stderr(&out));
        std::fs::read(dir.path().join(name)).unwrap()
    };
    let (a, b, c) = (run("a.png", "7"), run("b.png", "7"), run("c.png", "8"));
    assert!(a == b, "same seed, different bytes");
    assert!(a != c, "different seeds, same bytes");
}

#[test]
fn image_sets_are_drawn_as_a_grid() {
    let dir = tempfile::tempdir().unwrap();
    let out = ddim(
        &[
            "sample",
            "--dataset",
            "glyphs",
            "--samples",
            "20",
            "--steps",
            "5",
            "-o",
            "g.png",
        ],
        dir.path(),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("modes hit"));
    // 10 columns of 16·4 + 6 pixels plus margins; titles, 6 rows, the means row.
    assert_eq!(png_size(&dir.path().join("g.png")), (732, 600));
}

#[test]
fn every_prediction_type_and_zero_snr_runs_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    for extra in [
        &["--prediction-type", "sample"][..],
        &[
            "--prediction-type",
            "v_prediction",
            "--rescale-betas-zero-snr",
            "true",
            "--spacing",
            "trailing",
        ][..],
    ] {
        let mut args = vec![
            "sample",
            "--dataset",
            "grid",
            "--samples",
            "100",
            "--steps",
            "10",
            "-o",
            "z.png",
        ];
        args.extend_from_slice(extra);
        let out = ddim(&args, dir.path());
        assert!(out.status.success(), "{extra:?}: {}", stderr(&out));
        assert!(stdout(&out).contains("modes hit"));
    }
}

#[test]
fn zero_snr_with_epsilon_prediction_fails_with_a_hint() {
    let dir = tempfile::tempdir().unwrap();
    let out = ddim(
        &[
            "sample",
            "--samples",
            "10",
            "--steps",
            "5",
            "--rescale-betas-zero-snr",
            "true",
            "--spacing",
            "trailing",
        ],
        dir.path(),
    );
    assert_runtime_error(&out, "v_prediction");
}

#[test]
fn eval_prints_the_table_and_draws_it() {
    let dir = tempfile::tempdir().unwrap();
    let out = ddim(
        &[
            "eval",
            "--dataset",
            "ring",
            "--samples",
            "100",
            "--seeds",
            "2",
            "--steps",
            "5,10",
            "--etas",
            "0,1",
            "-o",
            "t.png",
        ],
        dir.path(),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("| η | S = 5 | S = 10 |"), "{text}");
    let rows: Vec<&str> = text.lines().filter(|l| l.starts_with("| ")).collect();
    assert_eq!(rows.len(), 4, "header, η = 0, η = 1, floor:\n{text}");
    assert!(rows[1].starts_with("| 0.0 |") && rows[2].starts_with("| 1.0 |"));
    assert!(rows[3].starts_with("| exact samples (noise floor) |"));
    assert!(rows[1].contains(" ± "));
    assert_eq!(png_size(&dir.path().join("t.png")), (900, 600));

    let json = ddim(
        &[
            "eval",
            "--dataset",
            "ring",
            "--samples",
            "50",
            "--seeds",
            "2",
            "--steps",
            "5",
            "--etas",
            "0",
            "--json",
            "-o",
            "t.png",
        ],
        dir.path(),
    );
    let doc: serde_json::Value = serde_json::from_slice(&json.stdout).expect("JSON on stdout");
    assert_eq!(
        doc["rows"][0]["cells"][0]["values"]
            .as_array()
            .map(Vec::len),
        Some(2)
    );
}

#[test]
fn eval_zero_snr_compares_the_three_schedules() {
    let dir = tempfile::tempdir().unwrap();
    let out = ddim(
        &[
            "eval",
            "--experiment",
            "zero-snr",
            "--samples",
            "20",
            "--seeds",
            "2",
            "--steps",
            "5",
            "-o",
            "z.png",
        ],
        dir.path(),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    for needle in [
        "as configured",
        "trailing spacing",
        "zero terminal SNR + v_prediction + trailing",
        "t = 999, ᾱ = 0.000e0",
        "paired",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
    }
    assert_eq!(png_size(&dir.path().join("z.png")), (900, 600));
}

#[test]
fn schedule_plot_draws_the_compared_configs() {
    let dir = tempfile::tempdir().unwrap();
    let out = ddim(
        &[
            "schedule",
            "-n",
            "10",
            "--plot",
            "s.png",
            "--compare",
            "zero-snr",
        ],
        dir.path(),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    // The table still goes to stdout; the plot is announced on stderr.
    assert!(stdout(&out).contains("alpha_bar_t"));
    assert!(stderr(&out).contains("wrote s.png"));
    assert_eq!(png_size(&dir.path().join("s.png")), (960, 700));
}

#[test]
fn bad_arguments_exit_2_with_one_error_line() {
    let dir = tempfile::tempdir().unwrap();
    assert_usage_error(&ddim(&["sample", "--steps", "many"], dir.path()), "--steps");
    assert_usage_error(
        &ddim(&["sample", "--eta", "-1"], dir.path()),
        "must be a finite number >= 0",
    );
    assert_usage_error(
        &ddim(&["sample", "--dataset", "mnist"], dir.path()),
        "mnist",
    );
    assert_usage_error(&ddim(&["eval", "--seeds", "1"], dir.path()), "at least 2");
    assert_usage_error(&ddim(&["eval", "--experiment", "fid"], dir.path()), "fid");
    assert_usage_error(
        &ddim(&["schedule", "--compare", "zero-snr"], dir.path()),
        "--plot",
    );
}

#[test]
fn unreadable_or_broken_configs_exit_1_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let missing = ddim(&["sample", "--config", "nope.json"], dir.path());
    assert_runtime_error(&missing, "cannot load config nope.json");
    std::fs::write(dir.path().join("broken.json"), "{ \"beta_start\": ").unwrap();
    let broken = ddim(&["eval", "--config", "broken.json"], dir.path());
    assert_runtime_error(&broken, "broken.json");
    std::fs::write(
        dir.path().join("bad.json"),
        r#"{ "num_train_timesteps": 0 }"#,
    )
    .unwrap();
    let invalid = ddim(&["sample", "--config", "bad.json"], dir.path());
    assert_runtime_error(&invalid, "num_train_timesteps");
    let compare = ddim(
        &["schedule", "--plot", "p.png", "--compare", "missing.json"],
        dir.path(),
    );
    assert_runtime_error(&compare, "missing.json");
    assert!(
        !dir.path().join("ddim-sample.png").exists(),
        "no picture on failure"
    );
}
