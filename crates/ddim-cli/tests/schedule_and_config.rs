//! `ddim schedule` and `ddim config`: output, exit codes and one-line errors.

use std::path::PathBuf;
use std::process::{Command, Output};

fn ddim(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ddim"))
        .args(args)
        .output()
        .unwrap()
}

fn configs() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../ddim/tests/data/configs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8(o.stderr.clone()).unwrap()
}

#[test]
fn schedule_defaults_print_a_table() {
    let o = ddim(&["schedule"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
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
    let path = configs().join("sd21base_pndm.json");
    let o = ddim(&[
        "schedule",
        "--config",
        path.to_str().unwrap(),
        "-n",
        "10",
        "--eta",
        "1",
        "--json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let doc: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let steps = doc["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 10);
    assert_eq!(steps[0]["timestep"], 901);
    assert_eq!(steps[9]["prev_timestep"], serde_json::Value::Null);
    assert!(steps[5]["sigma"].as_f64().unwrap() > 0.0);
    assert_eq!(doc["config"]["beta_schedule"], "scaled_linear");
}

#[test]
fn schedule_overrides_apply() {
    let o = ddim(&[
        "schedule",
        "--spacing",
        "trailing",
        "--rescale-betas-zero-snr",
        "true",
        "-n",
        "4",
        "--json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let doc: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
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
    for args in [
        &["schedule", "--bogus"][..],
        &["schedule", "--spacing", "sideways"],
        &["frobnicate"],
    ] {
        let o = ddim(args);
        assert_eq!(o.status.code(), Some(2), "{args:?}");
    }
}

#[test]
fn runtime_errors_exit_1_with_one_line() {
    let conflicted = configs().join("waifu_conflicted.json");
    let cases: [(&[&str], &str); 4] = [
        (
            &["schedule", "-n", "0"],
            "invalid number of inference steps: 0",
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
        let o = ddim(args);
        assert_eq!(o.status.code(), Some(1), "{args:?}");
        let err = stderr(&o);
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.starts_with("error: ") && err.contains(message), "{err}");
    }
}

#[test]
fn config_prints_diffusers_layout_and_warnings() {
    let path = configs().join("flux_flowmatch.json");
    let o = ddim(&["config", "--config", path.to_str().unwrap()]);
    assert!(o.status.success());
    assert!(stdout(&o).starts_with(
        "{\n  \"_class_name\": \"DDIMScheduler\",\n  \"_diffusers_version\": \"0.42.1\",\n"
    ));
    assert!(stderr(&o).contains("warning: config was written for FlowMatchEulerDiscreteScheduler"));
}
