//! `ddim schedule` and `ddim config`: output, exit codes and one-line errors.

mod common;

use common::{
    assert_runtime_error, assert_usage_error, config_path, ddim, ddim_here, json, png_size, stderr,
    success,
};

#[test]
fn schedule_defaults_print_a_table() {
    let o = ddim_here(&["schedule"]);
    let text = success(&o);
    let rows: Vec<&str> = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.contains("alpha_bar_t"))
        .collect();
    assert_eq!(rows.len(), 50);
    assert!(
        rows[0].split_whitespace().nth(1) == Some("980"),
        "{}",
        rows[0]
    );
    assert!(rows[49].contains("final"));
}

#[test]
fn schedule_json_from_a_real_config() {
    let path = config_path("sd21base_pndm.json");
    let doc = json(&[
        "schedule",
        "--config",
        path.to_str().unwrap(),
        "-n",
        "10",
        "--eta",
        "1",
        "--json",
    ]);
    let steps = doc["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 10);
    assert_eq!(steps[0]["timestep"], 901);
    assert_eq!(steps[9]["prev_timestep"], serde_json::Value::Null);
    assert!(steps[5]["sigma"].as_f64().unwrap() > 0.0);
    assert_eq!(doc["config"]["beta_schedule"], "scaled_linear");
}

#[test]
fn schedule_overrides_apply() {
    let doc = json(&[
        "schedule",
        "--spacing",
        "trailing",
        "--rescale-betas-zero-snr",
        "true",
        "-n",
        "4",
        "--json",
    ]);
    let first = &doc["steps"][0];
    assert_eq!(first["timestep"], 999);
    assert_eq!(first["alpha_bar"], 0.0);
    assert_eq!(
        first["log_snr"],
        serde_json::Value::Null,
        "-inf is written as null"
    );
}

#[test]
fn usage_errors_exit_2() {
    let cases: [(&[&str], &str); 4] = [
        (&["schedule", "--bogus"], "--bogus"),
        (&["schedule", "--spacing", "sideways"], "sideways"),
        (&["frobnicate"], "frobnicate"),
        // Issue 15: zero steps is an invalid value in every command.
        (&["schedule", "-n", "0"], "0 is not in 1..=1000000"),
    ];
    for (args, needle) in cases {
        assert_usage_error(&ddim_here(args), needle);
    }
}

#[test]
fn runtime_errors_exit_1_with_one_line() {
    let conflicted = config_path("waifu_conflicted.json");
    let cases: [(&[&str], &str); 4] = [
        (
            &["schedule", "-n", "5000"],
            "invalid number of inference steps: 5000",
        ),
        (
            &["schedule", "--config", "/nonexistent/scheduler_config.json"],
            "cannot read",
        ),
        (
            &["schedule", "--config", conflicted.to_str().unwrap()],
            "merge-conflict marker",
        ),
        (&["schedule", "--beta-end", "2"], "outside [0, 1]"),
    ];
    for (args, message) in cases {
        assert_runtime_error(&ddim_here(args), message);
    }
}

#[test]
fn config_prints_diffusers_layout_and_warnings() {
    let path = config_path("flux_flowmatch.json");
    let o = ddim_here(&["config", "--config", path.to_str().unwrap()]);
    assert!(success(&o).starts_with(
        "{\n  \"_class_name\": \"DDIMScheduler\",\n  \"_diffusers_version\": \"0.42.1\",\n"
    ));
    assert!(stderr(&o).contains("warning: config was written for FlowMatchEulerDiscreteScheduler"));
}

/// `--plot` draws the schedule the table prints: quad and custom timesteps get their own strip
/// row, and a zero-SNR ε config (which `sample` refuses) can still be inspected.
#[test]
fn schedule_plot_follows_the_timestep_options() {
    let dir = tempfile::tempdir().unwrap();
    let plot = |name: &str, extra: &[&str]| {
        let mut args = vec!["schedule", "-n", "10", "--plot", name];
        args.extend_from_slice(extra);
        success(&ddim(&args, dir.path()));
        let path = dir.path().join(name);
        assert_eq!(png_size(&path), (960, 700));
        std::fs::read(path).unwrap()
    };
    let config = plot("config.png", &[]);
    let quad = plot("quad.png", &["--timesteps", "quad"]);
    let custom = plot(
        "custom.png",
        &[
            "--timesteps",
            "999,700,300,10",
            "--spacing",
            "trailing",
            "--rescale-betas-zero-snr",
            "true",
            "--compare",
            "zero-snr",
        ],
    );
    assert_ne!(config, quad);
    assert_ne!(config, custom);
}
