//! The flags of the options beyond diffusers, as a user runs them.

mod common;

use common::{ddim, json, runtime_error, success};

fn timesteps(doc: &serde_json::Value) -> Vec<u64> {
    doc["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["timestep"].as_u64().unwrap())
        .collect()
}

#[test]
fn prev_timestep_flag_switches_the_rule() {
    let base = ["schedule", "--spacing", "linspace", "-n", "7", "--json"];
    let next = json(&[&base[..], &["--prev-timestep", "next-in-schedule"]].concat());
    let ts = timesteps(&next);
    for (i, step) in next["steps"].as_array().unwrap().iter().enumerate() {
        assert_eq!(step["prev_timestep"].as_u64(), ts.get(i + 1).copied());
    }
    let stride = json(&base);
    let prev = stride["steps"][0]["prev_timestep"].as_u64().unwrap();
    assert_eq!(prev, ts[0] - 1000 / 7);
    assert_ne!(Some(prev), ts.get(1).copied());
}

#[test]
fn timesteps_flag_takes_quad_or_a_list() {
    let quad = timesteps(&json(&[
        "schedule",
        "--timesteps",
        "quad",
        "-n",
        "12",
        "--json",
    ]));
    assert_eq!(quad.len(), 12);
    assert!(quad.windows(2).all(|w| w[0] > w[1]));
    // Denser at small t: the last gap is smaller than the first.
    assert!(quad[10] - quad[11] < quad[0] - quad[1]);
    let custom = json(&["schedule", "--timesteps", "999,500,3", "--json"]);
    assert_eq!(timesteps(&custom), [999, 500, 3]);
    assert_eq!(custom["steps"][1]["prev_timestep"], 3);
    // Not decreasing is wrong whatever the config: a usage error (issue 15).
    let dir = tempfile::tempdir().unwrap();
    let o = ddim(&["schedule", "--timesteps", "5,10"], dir.path());
    common::assert_usage_error(&o, "strictly decreasing");
    let err = runtime_error(&["schedule", "--timesteps", "1000"]);
    assert!(err.contains("outside [0, 1000)"), "{err}");
}

#[test]
fn eta_policy_flag_refuses_gives_nan_or_clamps() {
    let err = runtime_error(&["schedule", "-n", "10", "--eta", "3"]);
    assert!(err.contains("too large"), "{err}");
    let diffusers = json(&[
        "schedule",
        "-n",
        "10",
        "--eta",
        "3",
        "--eta-policy",
        "diffusers",
        "--json",
    ]);
    assert_eq!(diffusers["eta_policy"], "Diffusers");
    let clamped = json(&[
        "schedule",
        "-n",
        "10",
        "--eta",
        "3",
        "--eta-policy",
        "clamp-sigma",
        "--json",
    ]);
    for step in clamped["steps"].as_array().unwrap() {
        let sigma = step["sigma"].as_f64().unwrap();
        let limit = (1.0 - step["alpha_bar_prev"].as_f64().unwrap()).sqrt();
        assert!(sigma <= limit + 1e-6, "{step}");
    }
}

#[test]
fn zero_snr_guard_stops_epsilon_before_sampling_unless_off() {
    let args = [
        "sample",
        "--samples",
        "10",
        "--steps",
        "5",
        "--rescale-betas-zero-snr",
        "true",
        "--spacing",
        "trailing",
        "--clip-sample",
        "false",
    ];
    let err = runtime_error(&args);
    assert!(
        err.contains("alpha_bar = 0") && err.contains("--zero-snr-guard off"),
        "{err}"
    );
    // Off: diffusers' behaviour, the samples are not finite (and the sample command says so).
    let err = runtime_error(&[&args[..], &["--zero-snr-guard", "off"]].concat());
    assert!(err.contains("not finite"), "{err}");
}

#[test]
fn sigma_hat_row_and_variance_flag() {
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
            "5",
            "--etas",
            "0",
            "--sigma-hat",
            "-o",
            "t.png",
        ],
        dir.path(),
    );
    let text = success(&out);
    let rows: Vec<&str> = text.lines().filter(|l| l.starts_with("| ")).collect();
    assert_eq!(rows.len(), 4, "{text}");
    assert!(rows[2].starts_with("| σ̂ (η = 1.0) |"), "{text}");
    let sampled = ddim(
        &[
            "sample",
            "--samples",
            "50",
            "--steps",
            "5",
            "--eta",
            "1",
            "--variance",
            "ddpm-larger",
            "-o",
            "s.png",
        ],
        dir.path(),
    );
    assert!(success(&sampled).contains("DDPM σ̂"));
}

#[test]
fn eval_prev_timestep_prints_both_tables() {
    let dir = tempfile::tempdir().unwrap();
    let out = ddim(
        &[
            "eval",
            "--experiment",
            "prev-timestep",
            "--dataset",
            "ring",
            "--samples",
            "100",
            "--seeds",
            "2",
            "--steps",
            "7",
            "--num-train-timesteps",
            "100",
            "-o",
            "p.png",
        ],
        dir.path(),
    );
    let text = success(&out);
    assert!(
        text.contains("| linspace | 7 |") && text.contains("| trailing | 7 |"),
        "{text}"
    );
    assert!(
        text.contains("RMS distance to the 100-step DDIM solution"),
        "{text}"
    );
    assert!(dir.path().join("p.png").exists());
}
