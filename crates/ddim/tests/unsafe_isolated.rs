//! `unsafe` is allowed in one module only: the runtime CPU dispatch of the random generators
//! (`crates/ddim/src/rng/dispatch.rs`, DESIGN.md's "measured kernel needs SIMD"). The
//! workspace lint is `deny(unsafe_code)` rather than `forbid` so that this module can allow
//! it; this test makes sure no other source file of the workspace does (the other crates
//! also `forbid` it in their roots).

use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            if !path.ends_with("data") {
                rust_files(&path, out);
            }
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Whether `line` uses `unsafe` as a keyword or allows the lint (comments and string
/// literals holding the word are not code, but a plain search is stricter and simple: it
/// only has to accept the current sources).
fn mentions_unsafe(line: &str) -> bool {
    let code = line.split("//").next().unwrap_or("");
    code.contains("unsafe ") || code.contains("unsafe{") || code.contains("allow(unsafe_code")
}

#[test]
fn unsafe_appears_only_in_the_dispatch_module() {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let allowed = workspace.join("crates/ddim/src/rng/dispatch.rs");
    let this = Path::new(file!()).file_name().unwrap();
    let mut files = Vec::new();
    rust_files(&workspace.join("crates"), &mut files);
    assert!(files.len() > 50, "found only {} files", files.len());
    let mut offenders = Vec::new();
    let mut allowed_uses = 0;
    for file in &files {
        if file.file_name() == Some(this) {
            continue; // its patterns are string literals
        }
        let text = std::fs::read_to_string(file).unwrap();
        let uses = text.lines().filter(|l| mentions_unsafe(l)).count();
        if file.canonicalize().unwrap() == allowed.canonicalize().unwrap() {
            allowed_uses = uses;
        } else if uses > 0 {
            offenders.push(file.display().to_string());
        }
    }
    assert!(
        offenders.is_empty(),
        "unsafe outside rng/dispatch.rs: {offenders:?}"
    );
    // The module's allow, its three unsafe blocks (the RNG's AVX2 path, the step kernels'
    // AVX-512 and AVX2 paths) and the two `unsafe fn`s they call.
    assert_eq!(
        allowed_uses, 6,
        "rng/dispatch.rs should have exactly 6 unsafe lines"
    );
    let root = std::fs::read_to_string(workspace.join("Cargo.toml")).unwrap();
    assert!(root.contains("unsafe_code = \"deny\""));
    for root in [
        "crates/ddim-exact/src/lib.rs",
        "crates/ddim-cli/src/main.rs",
    ] {
        let text = std::fs::read_to_string(workspace.join(root)).unwrap();
        assert!(text.contains("#![forbid(unsafe_code)]"), "{root}");
    }
}
