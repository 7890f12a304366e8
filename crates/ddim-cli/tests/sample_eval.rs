//! `ddim sample`, `ddim eval` and `ddim schedule --plot` as a user runs them: exit codes,
//! one-line errors, valid PNGs of the expected size, reproducible bytes.

mod common;

use common::{
    assert_runtime_error, assert_usage_error, ddim, json, png_size, stderr, stdout, success,
};

#[test]
fn sample_with_no_arguments_writes_the_default_picture() {
    let dir = tempfile::tempdir().unwrap();
    let out = ddim(&["sample"], dir.path());
    let text = success(&out);
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
        success(&out);
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
    assert!(success(&out).contains("modes hit"));
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
    let text = success(&out);
    assert!(text.contains("| η | S = 5 | S = 10 |"), "{text}");
    let rows: Vec<&str> = text.lines().filter(|l| l.starts_with("| ")).collect();
    assert_eq!(rows.len(), 4, "header, η = 0, η = 1, floor:\n{text}");
    assert!(rows[1].starts_with("| 0.0 |") && rows[2].starts_with("| 1.0 |"));
    assert!(rows[3].starts_with("| exact samples (noise floor) |"));
    assert!(rows[1].contains(" ± "));
    assert_eq!(png_size(&dir.path().join("t.png")), (900, 600));

    let doc = json(&[
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
    ]);
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
    let text = success(&out);
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
    // The table still goes to stdout; the plot is announced on stderr.
    assert!(success(&out).contains("alpha_bar_t"));
    assert!(stderr(&out).contains("wrote s.png"));
    assert_eq!(png_size(&dir.path().join("s.png")), (960, 700));
}

#[test]
fn bad_arguments_exit_2_with_one_error_line() {
    let dir = tempfile::tempdir().unwrap();
    let cases: [(&[&str], &str); 6] = [
        (&["sample", "--steps", "many"], "--steps"),
        (&["sample", "--eta", "-1"], "must be a finite number >= 0"),
        (&["sample", "--dataset", "mnist"], "mnist"),
        (&["eval", "--seeds", "1"], "not in 2..=1000"),
        (&["eval", "--experiment", "fid"], "fid"),
        (&["schedule", "--compare", "zero-snr"], "--plot"),
    ];
    for (args, needle) in cases {
        assert_usage_error(&ddim(args, dir.path()), needle);
    }
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

/// The zero-SNR experiment honours the scheduler options: the next-in-schedule rule changes
/// its numbers and is named in the title; a zero-SNR ε config is refused by the guard.
#[test]
fn eval_zero_snr_honours_the_scheduler_options() {
    let dir = tempfile::tempdir().unwrap();
    let run = |extra: &[&str]| {
        let mut args = vec![
            "eval",
            "--experiment",
            "zero-snr",
            "--samples",
            "20",
            "--seeds",
            "2",
            "--steps",
            "7",
            "-o",
            "z.png",
        ];
        args.extend_from_slice(extra);
        ddim(&args, dir.path())
    };
    let stride = success(&run(&[]));
    let next = success(&run(&["--prev-timestep", "next-in-schedule"]));
    assert!(next.contains("t_prev next in schedule"), "{next}");
    let rows = |text: &str| -> Vec<String> {
        text.lines()
            .filter(|l| l.starts_with("| as configured"))
            .map(str::to_owned)
            .collect()
    };
    assert_ne!(rows(&stride), rows(&next));
    assert_runtime_error(&run(&["--rescale-betas-zero-snr", "true"]), "v_prediction");
}
