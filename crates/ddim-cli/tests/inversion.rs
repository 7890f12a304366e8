//! `ddim invert`, `ddim interpolate` and `ddim eval --experiment inversion` as a user runs
//! them: exit codes, valid PNGs of the expected size, reproducible bytes, the table.

mod common;

use common::{assert_runtime_error, assert_usage_error, ddim, png_size, success};

/// The number after `label` on the line that starts with it.
fn number_after(text: &str, label: &str) -> f64 {
    let line = text.lines().find(|l| l.starts_with(label)).expect(label);
    line[label.len()..].trim().parse().expect("a number")
}

#[test]
fn invert_writes_three_rows_and_reports_the_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = ddim(&["invert", "-o", "a.png"], dir.path());
    let text = success(&out);
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
    let fine_error = number_after(&success(&fine), "RMS reconstruction error per pixel:");
    assert!(fine_error < error / 3.0, "{fine_error} vs {error}");
    let again = ddim(&["invert", "-o", "c.png"], dir.path());
    success(&again);
    let bytes = |p: &str| std::fs::read(dir.path().join(p)).unwrap();
    assert_eq!(bytes("a.png"), bytes("c.png"));
}

#[test]
fn interpolate_writes_a_strip_and_is_deterministic() {
    let dir = tempfile::tempdir().unwrap();
    // 12 frames from seed 3 to seed 4 (or to `extra`'s --seed2), drawn to `png`.
    let interpolate = |png: &str, extra: &[&str]| {
        let base = ["interpolate", "--frames", "12", "--seed", "3", "-o", png];
        success(&ddim(&[&base[..], extra].concat(), dir.path()))
    };
    let text = interpolate("s.png", &[]);
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
    interpolate("t.png", &[]);
    let bytes = |p: &str| std::fs::read(dir.path().join(p)).unwrap();
    assert_eq!(bytes("s.png"), bytes("t.png"));
    interpolate("u.png", &["--seed2", "9"]);
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
    let text = success(&out);
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
    success(&json);
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
    let cases: [(&[&str], &str); 7] = [
        (&["invert", "--dataset", "ring"], "2-D point set"),
        (&["interpolate", "--dataset", "spiral"], "2-D point set"),
        (&["interpolate", "--frames", "1"], "--frames"),
        (&["invert", "--count", "0"], "--count"),
        (&["invert", "--level", "middle"], "--level"),
        (&["invert", "-n", "ten"], "ten"),
        // Issue 15: zero steps is an invalid value (exit 2), as in every command.
        (&["invert", "-n", "0"], "0 is not in 1..=1000000"),
    ];
    for (args, needle) in cases {
        assert_usage_error(&ddim(args, dir.path()), needle);
    }
}

#[test]
fn refused_configs_exit_1_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let cases: [(&[&str], &str); 2] = [
        (&["invert", "--thresholding", "true"], "thresholding"),
        (
            &["interpolate", "-n", "2000"],
            "at most num_train_timesteps",
        ),
    ];
    for (args, needle) in cases {
        assert_runtime_error(&ddim(args, dir.path()), needle);
    }
}
