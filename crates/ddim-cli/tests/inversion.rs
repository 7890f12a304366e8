//! `ddim invert`, `ddim interpolate` and `ddim eval --experiment inversion` as a user runs
//! them: exit codes, valid PNGs of the expected size, reproducible bytes, the table.

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

/// Decodes a PNG and returns its size, checking it is 8-bit RGB and not blank.
fn png_size(path: &Path) -> (u32, u32) {
    let file = std::io::BufReader::new(std::fs::File::open(path).expect("the PNG exists"));
    let mut reader = png::Decoder::new(file).read_info().expect("a PNG header");
    let mut buf = vec![0; reader.output_buffer_size().expect("a sane size")];
    let info = reader.next_frame(&mut buf).expect("PNG image data");
    assert_eq!(info.color_type, png::ColorType::Rgb);
    assert_eq!(info.bit_depth, png::BitDepth::Eight);
    let drawn = buf
        .chunks_exact(3)
        .filter(|p| p != &[255, 255, 255])
        .count();
    assert!(drawn * 100 > buf.len() / 3, "only {drawn} pixels drawn");
    (info.width, info.height)
}

/// Exit code 2 and one "error: …" line naming the problem.
fn assert_usage_error(out: &Output, needle: &str) {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(2), "stderr: {err}");
    assert!(err.starts_with("error: ") && err.contains(needle), "{err}");
    assert_eq!(err.lines().filter(|l| l.starts_with("error")).count(), 1);
}

/// Exit code 1 and exactly one line on stderr.
fn assert_runtime_error(out: &Output, needle: &str) {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(1), "stderr: {err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("error: ") && err.contains(needle), "{err}");
}

/// The number after `label` on the line that starts with it.
fn number_after(text: &str, label: &str) -> f64 {
    let line = text.lines().find(|l| l.starts_with(label)).expect(label);
    line[label.len()..].trim().parse().expect("a number")
}

#[test]
fn invert_writes_three_rows_and_reports_the_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = ddim(&["invert", "-o", "a.png"], dir.path());
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("8 samples of `glyphs`"), "{text}");
    let error = number_after(&text, "RMS reconstruction error per pixel:");
    // Measured: 0.0322 with the defaults (50 steps).
    assert!(error > 0.0 && error < 0.05, "{error}");
    // 8 images of 16×16 at 4 px + 6 px gap, margins 16: 2·16 + 8·70 = 592 → 640 minimum;
    // header 64 + 3 rows of (24 + 70) + 16.
    assert_eq!(png_size(&dir.path().join("a.png")), (640, 362));

    // More steps, a smaller error; the same arguments, the same bytes.
    let fine = ddim(
        &["invert", "-n", "500", "--count", "4", "-o", "b.png"],
        dir.path(),
    );
    assert!(fine.status.success(), "{}", stderr(&fine));
    let fine_error = number_after(&stdout(&fine), "RMS reconstruction error per pixel:");
    assert!(fine_error < error / 3.0, "{fine_error} vs {error}");
    let again = ddim(&["invert", "-o", "c.png"], dir.path());
    assert!(again.status.success());
    let bytes = |p: &str| std::fs::read(dir.path().join(p)).unwrap();
    assert_eq!(bytes("a.png"), bytes("c.png"));
}

#[test]
fn interpolate_writes_a_strip_and_is_deterministic() {
    let dir = tempfile::tempdir().unwrap();
    let out = ddim(
        &[
            "interpolate",
            "--frames",
            "12",
            "--seed",
            "3",
            "-o",
            "s.png",
        ],
        dir.path(),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("12 frames of `glyphs`") && text.contains("seeds 3 → 4"),
        "{text}"
    );
    // 12 frames: 2·16 + 12·70 = 872 wide; 64 + 2·94 + 16 high.
    assert_eq!(png_size(&dir.path().join("s.png")), (872, 268));
    // slerp keeps the latent norm near √256 = 16 while lerp's middle frame dips.
    let norms = |label: &str| -> Vec<f64> {
        let line = text.lines().find(|l| l.starts_with(label)).unwrap();
        line[label.len()..]
            .split_whitespace()
            .map(|v| v.parse().unwrap())
            .collect()
    };
    let (slerp, lerp) = (norms("latent norms, slerp:"), norms("latent norms, lerp:"));
    assert_eq!((slerp.len(), lerp.len()), (12, 12));
    assert!(
        slerp.iter().all(|&n| (14.5..17.5).contains(&n)),
        "{slerp:?}"
    );
    assert!(lerp[6] < 0.85 * lerp[0], "{lerp:?}");
    let again = ddim(
        &[
            "interpolate",
            "--frames",
            "12",
            "--seed",
            "3",
            "-o",
            "t.png",
        ],
        dir.path(),
    );
    assert!(again.status.success());
    let bytes = |p: &str| std::fs::read(dir.path().join(p)).unwrap();
    assert_eq!(bytes("s.png"), bytes("t.png"));
    let other = ddim(
        &[
            "interpolate",
            "--frames",
            "12",
            "--seed",
            "3",
            "--seed2",
            "9",
            "-o",
            "u.png",
        ],
        dir.path(),
    );
    assert!(other.status.success());
    assert_ne!(bytes("s.png"), bytes("u.png"));
}

#[test]
fn eval_inversion_prints_the_table_and_json() {
    let dir = tempfile::tempdir().unwrap();
    let args = [
        "eval",
        "--experiment",
        "inversion",
        "--steps",
        "10,100,1000",
        "--seeds",
        "2",
        "--samples",
        "64",
        "-o",
        "e.png",
    ];
    let out = ddim(&args, dir.path());
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("| inverse step | S = 10 | S = 100 | S = 1000 |"),
        "{text}"
    );
    assert_eq!(
        text.lines().filter(|l| l.starts_with("| model at")).count(),
        2
    );
    assert_eq!(png_size(&dir.path().join("e.png")), (900, 600));

    let mut json_args = args.to_vec();
    json_args.push("--json");
    let json = ddim(&json_args, dir.path());
    assert!(json.status.success(), "{}", stderr(&json));
    let doc: serde_json::Value = serde_json::from_slice(&json.stdout).expect("JSON on stdout");
    assert_eq!(doc["experiment"], "inversion");
    assert_eq!(doc["dataset"], "ring");
    for row in doc["rows"].as_array().unwrap() {
        let means: Vec<f64> = row["cells"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["mean"].as_f64().unwrap())
            .collect();
        // The error falls with the number of steps (the DDIM paper's Table 2).
        assert!(means[0] > means[1] && means[1] > means[2], "{row}");
        assert!(means[2] < 0.005, "{row}");
    }
}

#[test]
fn usage_errors_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    assert_usage_error(
        &ddim(&["invert", "--dataset", "ring"], dir.path()),
        "2-D point set",
    );
    assert_usage_error(
        &ddim(&["interpolate", "--dataset", "spiral"], dir.path()),
        "2-D point set",
    );
    assert_usage_error(
        &ddim(&["interpolate", "--frames", "1"], dir.path()),
        "--frames",
    );
    assert_usage_error(&ddim(&["invert", "--count", "0"], dir.path()), "--count");
    assert_usage_error(
        &ddim(&["invert", "--level", "middle"], dir.path()),
        "--level",
    );
    assert_usage_error(&ddim(&["invert", "-n", "ten"], dir.path()), "ten");
}

#[test]
fn refused_configs_exit_1_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    assert_runtime_error(
        &ddim(&["invert", "--thresholding", "true"], dir.path()),
        "thresholding",
    );
    assert_runtime_error(
        &ddim(&["invert", "-n", "0"], dir.path()),
        "must be at least 1",
    );
    assert_runtime_error(
        &ddim(&["interpolate", "-n", "2000"], dir.path()),
        "at most num_train_timesteps",
    );
}
