//! The workspace's `rust-version` is true: no dependency that a build of the published crates
//! can pull in (normal and build dependencies, every feature, this machine's platform) needs a
//! newer Rust than the crates declare. Ignored by default (`cargo metadata` may download the
//! manifests of optional dependencies); `.ci/run` runs it with `--ignored`.

use std::collections::{BTreeSet, HashMap};
use std::process::Command;

use serde_json::Value;

/// "1.85" or "1.85.0" as (1, 85, 0).
fn version(text: &str) -> (u64, u64, u64) {
    let mut parts = text.split('.').map(|p| p.parse::<u64>().unwrap_or(0));
    let mut next = || parts.next().unwrap_or(0);
    (next(), next(), next())
}

/// A JSON string's text (`?` for anything else).
fn text(v: &Value) -> &str {
    v.as_str().unwrap_or("?")
}

fn host() -> String {
    let out = Command::new("rustc").arg("-vV").output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("host: "))
        .unwrap()
        .to_string()
}

#[test]
#[ignore = "runs cargo metadata (may need the network); .ci/run runs it"]
fn declared_rust_version_covers_every_dependency() {
    let manifest = concat!(env!("CARGO_MANIFEST_DIR"), "/../../Cargo.toml");
    let out = Command::new(env!("CARGO"))
        .args([
            "metadata",
            "--format-version",
            "1",
            "--all-features",
            "--locked",
        ])
        .args(["--filter-platform", &host(), "--manifest-path", manifest])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: Value = serde_json::from_slice(&out.stdout).unwrap();
    let packages: HashMap<&str, &Value> = meta["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["id"].as_str().unwrap(), p))
        .collect();
    let members: BTreeSet<&str> = meta["workspace_members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m.as_str().unwrap())
        .collect();
    let nodes: HashMap<&str, &Value> = meta["resolve"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| (n["id"].as_str().unwrap(), n))
        .collect();

    // What a build of the members reaches: their normal and build dependencies (not their
    // dev-dependencies, which only the tests need), then everything those reach.
    let mut reached = BTreeSet::new();
    let mut stack: Vec<&str> = members.iter().copied().collect();
    while let Some(id) = stack.pop() {
        if !reached.insert(id) {
            continue;
        }
        for dep in nodes[id]["deps"].as_array().unwrap() {
            let dev_only = dep["dep_kinds"]
                .as_array()
                .unwrap()
                .iter()
                .all(|k| k["kind"].as_str() == Some("dev"));
            if !(members.contains(id) && dev_only) {
                stack.push(dep["pkg"].as_str().unwrap());
            }
        }
    }
    let needed = reached
        .iter()
        .filter(|id| !members.contains(*id))
        .filter_map(|id| {
            let p = packages[id];
            let rv = p["rust_version"].as_str()?;
            Some((
                version(rv),
                format!(
                    "{} {} (rust-version {rv})",
                    text(&p["name"]),
                    text(&p["version"])
                ),
            ))
        })
        .max()
        .unwrap();
    for id in &members {
        let p = packages[id];
        let declared = p["rust_version"].as_str().unwrap_or("none");
        eprintln!(
            "{}: declares {declared}; the dependencies need {}",
            text(&p["name"]),
            needed.1
        );
        assert!(
            version(declared) >= needed.0,
            "{} declares rust-version {declared}, but {} needs more: raise \
             workspace.package.rust-version in Cargo.toml",
            text(&p["name"]),
            needed.1
        );
    }
}
