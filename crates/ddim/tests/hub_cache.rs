//! Loading a scheduler config from a local Hugging Face cache laid out by the test, checked
//! against what the real huggingface_hub 2.4 does (fixtures from
//! `tools/gen_guidance_fixtures.py`): its cache folder for each environment, its
//! `hf_hub_download(..., local_files_only=True)` lookups, its model-id validation.
//!
//! Nothing here reads or changes the process's environment: environments are passed as
//! [`HubEnv`] values.

use std::path::{Path, PathBuf};

use ddim::config::hub::{find_scheduler_config, repo_folder_name, HubEnv};
use ddim::{DdimConfig, Error};
use serde_json::Value;

fn fixture() -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/hub/cases.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn env_of(case: &Value) -> HubEnv {
    let vars = case["env"].as_object().unwrap();
    HubEnv::from_vars(
        vars.iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned())),
    )
}

/// Lays out the fixture's cache (refs, snapshots, configs) under a new temporary folder.
fn lay_out(fixture: &Value) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for entry in fixture["layout"].as_array().unwrap() {
        let rel = entry[0].as_str().unwrap();
        let path = rel
            .split('/')
            .fold(dir.path().to_path_buf(), |p, c| p.join(c));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, entry[1].as_str().unwrap()).unwrap();
    }
    dir
}

#[cfg(unix)]
#[test]
fn cache_folder_is_huggingface_hubs() {
    let fixture = fixture();
    let envs = fixture["envs"].as_array().unwrap();
    assert!(envs.len() >= 10);
    for case in envs {
        let dirs = env_of(case).cache_dirs();
        let expected = PathBuf::from(case["hf_hub_cache"].as_str().unwrap());
        assert_eq!(dirs[0], expected, "{}", case["env"]);
        // The default is always searched last.
        assert_eq!(
            dirs.last().unwrap(),
            Path::new("/home/u/.cache/huggingface/hub"),
            "{}",
            case["env"]
        );
    }
}

#[test]
fn search_order_and_duplicates() {
    let env = HubEnv::from_vars([
        ("HF_HUB_CACHE", "/a/hub"),
        ("HUGGINGFACE_HUB_CACHE", "/legacy"),
        ("HF_HOME", "/a"),
        ("XDG_CACHE_HOME", "/xdg"),
        ("HOME", "/h"),
        ("USERPROFILE", "/h"),
        ("UNRELATED", "/x"),
    ]);
    let expected: Vec<PathBuf> = if cfg!(windows) {
        vec![
            "/a/hub".into(),
            "/legacy".into(),
            "/xdg/huggingface/hub".into(),
            PathBuf::from("/h")
                .join(".cache")
                .join("huggingface")
                .join("hub"),
        ]
    } else {
        vec![
            "/a/hub".into(),
            "/legacy".into(),
            "/xdg/huggingface/hub".into(),
            "/h/.cache/huggingface/hub".into(),
        ]
    };
    let got = env.cache_dirs();
    assert_eq!(got.len(), 4, "{got:?}");
    if cfg!(unix) {
        assert_eq!(got, expected);
    }
    // Empty values count as unset; no variables at all: no folder is known.
    assert!(HubEnv::from_vars([("HOME", ""), ("USERPROFILE", "")])
        .cache_dirs()
        .is_empty());
    let none: [(&str, &str); 0] = [];
    let err =
        find_scheduler_config(&HubEnv::from_vars(none).cache_dirs(), "org/m", None).unwrap_err();
    assert!(
        err.to_string().contains("no cache folder is known"),
        "{err}"
    );
}

#[test]
fn model_ids_are_validated_as_huggingface_hub_does() {
    let fixture = fixture();
    let ids = fixture["model_ids"].as_array().unwrap();
    assert!(ids.len() >= 30);
    for case in ids {
        let id = case["model_id"].as_str().unwrap();
        let ours = repo_folder_name(id);
        assert_eq!(ours.is_ok(), case["valid"] == true, "{id:?}: {ours:?}");
        if let Err(e) = ours {
            assert!(matches!(e, Error::InvalidModelId { .. }));
            assert!(e.to_string().contains(id), "{e}");
        }
    }
    assert_eq!(repo_folder_name("org/model").unwrap(), "models--org--model");
    assert_eq!(repo_folder_name("solo").unwrap(), "models--solo");
}

#[test]
fn lookups_match_hf_hub_download_local_files_only() {
    let fixture = fixture();
    let cache = lay_out(&fixture);
    let dirs = vec![cache.path().to_path_buf()];
    let queries = fixture["queries"].as_array().unwrap();
    let (mut found, mut absent) = (0, 0);
    for q in queries {
        let id = q["model_id"].as_str().unwrap();
        let revision = q["revision"].as_str();
        let ours = find_scheduler_config(&dirs, id, revision);
        match q["found"].as_str() {
            Some(rel) => {
                found += 1;
                let expected = rel
                    .split('/')
                    .fold(cache.path().to_path_buf(), |p, c| p.join(c));
                assert_eq!(ours.unwrap(), expected, "{id} @ {revision:?}");
            }
            None => {
                absent += 1;
                let err = ours.unwrap_err();
                assert!(
                    matches!(err, Error::ModelNotInCache { .. }),
                    "{id} @ {revision:?}: {err}"
                );
            }
        }
    }
    assert!(found >= 6 && absent >= 5, "{found} / {absent}");
}

#[test]
fn configs_load_from_the_cache_by_revision() {
    let fixture = fixture();
    let cache = lay_out(&fixture);
    let dirs = vec![cache.path().to_path_buf()];
    for (revision, offset) in [(None, 1), (Some("v1"), 2), (Some("refs/pr/1"), 3)] {
        let path = find_scheduler_config(&dirs, "org/model", revision).unwrap();
        let config = DdimConfig::from_file(&path).unwrap();
        assert_eq!(config.steps_offset, offset, "{revision:?}");
    }
}

#[test]
fn first_cache_with_the_model_wins() {
    let fixture = fixture();
    let (empty, cache) = (tempfile::tempdir().unwrap(), lay_out(&fixture));
    let second = lay_out(&fixture);
    // The model is only in `cache` and `second`; the first of them is used.
    let dirs = vec![
        empty.path().to_path_buf(),
        cache.path().to_path_buf(),
        second.path().to_path_buf(),
    ];
    let path = find_scheduler_config(&dirs, "org/model", None).unwrap();
    assert!(path.starts_with(cache.path()), "{}", path.display());
}

#[test]
fn absent_model_names_every_folder_and_what_is_missing() {
    let fixture = fixture();
    let cache = lay_out(&fixture);
    let nowhere = cache.path().join("not-a-cache");
    let dirs = vec![nowhere.clone(), cache.path().to_path_buf()];
    let cases = [
        ("org/other", None, "no models--org--other"),
        (
            "org/model",
            Some("no-such-branch"),
            "no models--org--model/refs/no-such-branch or models--org--model/snapshots/no-such-branch",
        ),
        (
            "org/model",
            Some("broken"),
            "where models--org--model/refs/broken points",
        ),
        (
            "org/model",
            Some("nosched"),
            "/scheduler/scheduler_config.json",
        ),
    ];
    for (id, revision, what) in cases {
        let err = find_scheduler_config(&dirs, id, revision).unwrap_err();
        let Error::ModelNotInCache {
            searched, missing, ..
        } = &err
        else {
            panic!("{err}");
        };
        assert_eq!(searched, &dirs);
        assert_eq!(missing.len(), 2);
        let text = err.to_string();
        assert!(text.contains(&nowhere.display().to_string()), "{text}");
        assert!(text.contains(&cache.path().display().to_string()), "{text}");
        assert!(text.contains(what), "{text}");
        assert!(text.contains(id), "{text}");
        assert!(text.contains(revision.unwrap_or("main")), "{text}");
    }
}

#[test]
fn revisions_cannot_leave_the_cache() {
    let fixture = fixture();
    let cache = lay_out(&fixture);
    let dirs = vec![cache.path().to_path_buf()];
    for bad in [
        "",
        "..",
        "../x",
        "a/../../b",
        "a//b",
        "/abs",
        "a\\b",
        "c:x",
        "./main",
    ] {
        let err = find_scheduler_config(&dirs, "org/model", Some(bad)).unwrap_err();
        assert!(
            matches!(err, Error::InvalidRevision { .. }),
            "{bad:?}: {err}"
        );
    }
    // A ref holding a path instead of a commit is not followed.
    let refs = cache.path().join("models--org--model").join("refs");
    std::fs::write(refs.join("evil"), "../../outside").unwrap();
    let err = find_scheduler_config(&dirs, "org/model", Some("evil")).unwrap_err();
    assert!(
        err.to_string().contains("does not hold a commit hash"),
        "{err}"
    );
    // A trailing newline in a ref (written by hand) is tolerated.
    std::fs::write(refs.join("nl"), format!("{}\n", "a".repeat(40))).unwrap();
    assert!(find_scheduler_config(&dirs, "org/model", Some("nl")).is_ok());
}

/// huggingface_hub stores file contents under `blobs/` and links them from the snapshot
/// (relative symbolic links); the lookup follows them.
#[cfg(unix)]
#[test]
fn snapshot_files_linked_to_blobs_are_followed() {
    let cache = tempfile::tempdir().unwrap();
    let repo = cache.path().join("models--org--linked");
    let commit = "c".repeat(40);
    std::fs::create_dir_all(repo.join("blobs")).unwrap();
    std::fs::write(repo.join("blobs").join("0abc"), r#"{"steps_offset": 7}"#).unwrap();
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::write(repo.join("refs").join("main"), &commit).unwrap();
    let dir = repo.join("snapshots").join(&commit).join("scheduler");
    std::fs::create_dir_all(&dir).unwrap();
    std::os::unix::fs::symlink("../../../blobs/0abc", dir.join("scheduler_config.json")).unwrap();
    let path = find_scheduler_config(&[cache.path().to_path_buf()], "org/linked", None).unwrap();
    assert_eq!(DdimConfig::from_file(path).unwrap().steps_offset, 7);
    // A dangling link is reported as a missing file.
    std::fs::remove_file(repo.join("blobs").join("0abc")).unwrap();
    let err = find_scheduler_config(&[cache.path().to_path_buf()], "org/linked", None).unwrap_err();
    assert!(err.to_string().contains("scheduler_config.json"), "{err}");
}
