//! `--model org/name` (and `--revision`) on `ddim schedule`, `sample` and `config`: the
//! scheduler config comes from a local Hugging Face cache laid out by the test and passed to
//! the child process through `HF_HUB_CACHE` (its other cache variables removed, `HOME`
//! pointed at an empty folder), so the real environment never matters.

mod common;

use std::path::Path;
use std::process::Output;

use common::{assert_runtime_error, assert_usage_error, config_path, stderr, stdout, success};

const MAIN: &str = "0123456789abcdef0123456789abcdef01234567";
const V1: &str = "89abcdef0123456789abcdef0123456789abcdef";

/// A cache holding `org/model`: `main` is Stable Diffusion 2.1-base's PNDM config, tag `v1`
/// the SDXL Euler-ancestral one.
struct Cache {
    root: tempfile::TempDir,
    home: tempfile::TempDir,
}

impl Cache {
    fn new() -> Self {
        let root = tempfile::tempdir().unwrap();
        let repo = root.path().join("models--org--model");
        for (rev, commit, config) in [
            ("main", MAIN, "sd21base_pndm.json"),
            ("v1", V1, "sdxl_euler_a.json"),
        ] {
            std::fs::create_dir_all(repo.join("refs")).unwrap();
            std::fs::write(repo.join("refs").join(rev), commit).unwrap();
            let dir = repo.join("snapshots").join(commit).join("scheduler");
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::copy(config_path(config), dir.join("scheduler_config.json")).unwrap();
        }
        Self {
            root,
            home: tempfile::tempdir().unwrap(),
        }
    }

    fn ddim(&self, args: &[&str]) -> Output {
        common::command(args, self.home.path())
            .env("HF_HUB_CACHE", self.root.path())
            .env("HOME", self.home.path())
            .env("USERPROFILE", self.home.path())
            .env_remove("HF_HOME")
            .env_remove("HUGGINGFACE_HUB_CACHE")
            .env_remove("XDG_CACHE_HOME")
            .output()
            .unwrap()
    }
}

fn path_str(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn schedule_from_the_cache_equals_schedule_from_the_file() {
    let cache = Cache::new();
    let args = ["schedule", "-n", "10", "--json"];
    let by_model = cache.ddim(&[&args[..], &["--model", "org/model"]].concat());
    success(&by_model);
    let file = config_path("sd21base_pndm.json");
    let by_path = cache.ddim(&[&args[..], &["--config", path_str(&file)]].concat());
    success(&by_path);
    assert_eq!(stdout(&by_model), stdout(&by_path));
    let doc: serde_json::Value = serde_json::from_str(&stdout(&by_model)).unwrap();
    assert_eq!(doc["config"]["steps_offset"], 1);
    assert_eq!(doc["steps"][0]["timestep"], 901);
}

#[test]
fn revision_picks_the_tagged_snapshot() {
    let cache = Cache::new();
    for (revision, expected) in [
        ("main", "sd21base_pndm.json"),
        ("v1", "sdxl_euler_a.json"),
        (V1, "sdxl_euler_a.json"),
    ] {
        let by_model = cache.ddim(&["config", "--model", "org/model", "--revision", revision]);
        success(&by_model);
        let file = config_path(expected);
        let by_path = cache.ddim(&["config", "--config", path_str(&file)]);
        assert_eq!(stdout(&by_model), stdout(&by_path), "{revision}");
        assert_eq!(stderr(&by_model), stderr(&by_path), "{revision}: warnings");
    }
}

#[test]
fn sample_runs_from_the_cache() {
    let cache = Cache::new();
    let out = cache.ddim(&[
        "sample",
        "--model",
        "org/model",
        "-n",
        "5",
        "--samples",
        "64",
        "-o",
        "s.png",
    ]);
    success(&out);
    assert!(cache.home.path().join("s.png").is_file());
    // The cache's config is the one used: an override on top of it still applies.
    let plain = cache.ddim(&[
        "sample",
        "--model",
        "org/model",
        "--spacing",
        "trailing",
        "-n",
        "5",
        "--samples",
        "64",
        "-o",
        "t.png",
    ]);
    success(&plain);
}

#[test]
fn absent_model_is_one_line_naming_the_cache() {
    let cache = Cache::new();
    let out = cache.ddim(&["schedule", "--model", "org/absent"]);
    assert_runtime_error(&out, "org/absent");
    let err = stderr(&out);
    for needle in [
        "org/absent",
        "revision main",
        path_str(cache.root.path()),
        "no models--org--absent",
    ] {
        assert!(err.contains(needle), "{needle:?} not in {err}");
    }
    let out = cache.ddim(&["schedule", "--model", "org/model", "--revision", "v9"]);
    assert_runtime_error(&out, "no models--org--model/refs/v9");
}

#[test]
fn invalid_model_id_is_a_runtime_error() {
    let cache = Cache::new();
    let out = cache.ddim(&["schedule", "--model", "../etc"]);
    assert_runtime_error(&out, "invalid model id `../etc`");
}

#[test]
fn model_conflicts_with_config_and_revision_needs_model() {
    let cache = Cache::new();
    let file = config_path("sd21base_pndm.json");
    let out = cache.ddim(&[
        "schedule",
        "--model",
        "org/model",
        "--config",
        path_str(&file),
    ]);
    assert_usage_error(&out, "cannot be used with");
    let out = cache.ddim(&["schedule", "--revision", "main"]);
    assert_usage_error(&out, "--model");
}
