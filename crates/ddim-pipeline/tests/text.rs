//! The CLIP tokenizer and text encoder against transformers (fixtures from
//! `tools/gen_text_fixtures.py`, transformers 5.25 / tokenizers 0.23.3 / torch 2.15 CPU).

use std::path::{Path, PathBuf};

use ddim_pipeline::tokenizer::ClipTokenizer;
use ddim_pipeline::Error;
use serde_json::Value;

fn data() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/text")
}

fn records() -> Value {
    let text = std::fs::read_to_string(data().join("tokens.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// Every prompt, every folder: the ids and the truncation text equal transformers'.
#[test]
fn token_ids_equal_transformers() {
    let records = records();
    let folders = records["folders"].as_object().unwrap();
    assert_eq!(folders.len(), 3);
    let mut failures = Vec::new();
    let mut checked = 0;
    for (name, rec) in folders {
        let tok = ClipTokenizer::from_folder(&data().join(name)).unwrap();
        assert_eq!(tok.model_max_length(), rec["model_max_length"].as_u64().unwrap() as usize);
        assert_eq!(tok.pad_id() as u64, rec["pad_id"].as_u64().unwrap(), "{name}: pad id");
        let cases = rec["cases"].as_array().unwrap();
        assert!(cases.len() >= 40);
        for case in cases {
            let prompt = case["prompt"].as_str().unwrap();
            let want: Vec<u32> = case["ids"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap() as u32)
                .collect();
            let want_cut = case["truncated"].as_str().map(str::to_string);
            let got = tok.encode(prompt).unwrap();
            checked += 1;
            if got.ids != want || got.truncated != want_cut {
                failures.push(format!(
                    "{name} {prompt:?}:\n  got  {:?} {:?}\n  want {:?} {:?}",
                    got.ids, got.truncated, want, want_cut
                ));
            }
        }
    }
    eprintln!("{checked} prompts checked, {} differ", failures.len());
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The SD 1.x and SD 2.x folders differ where transformers makes them differ.
#[test]
fn pad_token_and_bang_split_follow_the_folder() {
    let sd1 = ClipTokenizer::from_folder(&data().join("tokenizer_sd1")).unwrap();
    let sd2 = ClipTokenizer::from_folder(&data().join("tokenizer_sd2")).unwrap();
    assert_eq!(sd1.pad_id(), sd1.eos_id());
    assert_eq!(sd2.pad_id(), 0);
    // SD 2.x: `!` is an added token, split out before BPE: "wow!!!" is wow ! ! !.
    let wow = sd2.content_ids("wow").unwrap();
    let bang2 = sd2.content_ids("wow!!!").unwrap();
    assert_eq!(bang2.len(), wow.len() + 3);
    assert_eq!(bang2[wow.len()..], [0, 0, 0]);
    // SD 1.x: `!!!` goes through BPE like any punctuation run.
    let bang1 = sd1.content_ids("wow!!!").unwrap();
    assert_eq!(sd1.content_ids("wow").unwrap(), wow);
    assert_ne!(bang1, bang2);
    let padded = sd2.encode("wow").unwrap();
    assert_eq!(padded.ids[wow.len() + 1], sd2.eos_id());
    assert_eq!(*padded.ids.last().unwrap(), 0);
    assert_eq!(*sd1.encode("wow").unwrap().ids.last().unwrap(), sd1.eos_id());
}

#[test]
fn truncation_reports_the_removed_text() {
    let tok = ClipTokenizer::from_folder(&data().join("tokenizer_sd1")).unwrap();
    let long = "cat ".repeat(80);
    let p = tok.encode(&long).unwrap();
    assert_eq!(p.ids.len(), 77);
    assert_eq!(p.ids[76], tok.eos_id());
    assert_eq!(p.truncated.as_deref(), Some("cat cat cat cat cat"));
    let exact = "cat ".repeat(75);
    assert_eq!(tok.encode(&exact).unwrap().truncated, None);
    assert!(tok.encode(&"cat ".repeat(76)).unwrap().truncated.is_some());
}

fn scratch_folder(files: &[(&str, &Path)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, src) in files {
        std::fs::copy(src, dir.path().join(name)).unwrap();
    }
    dir
}

#[test]
fn missing_or_broken_tokenizer_files_name_the_file() {
    let sd1 = data().join("tokenizer_sd1");
    let dir = scratch_folder(&[
        ("vocab.json", &sd1.join("vocab.json")),
        ("tokenizer_config.json", &sd1.join("tokenizer_config.json")),
    ]);
    let err = ClipTokenizer::from_folder(dir.path()).unwrap_err();
    assert!(matches!(err, Error::Io { ref path, .. } if path.ends_with("merges.txt")), "{err}");
    assert!(err.to_string().contains("merges.txt"), "{err}");

    std::fs::write(dir.path().join("merges.txt"), "#version: 0.2\na b c\n").unwrap();
    let err = ClipTokenizer::from_folder(dir.path()).unwrap_err();
    assert!(matches!(err, Error::Config { .. }), "{err}");
    assert!(err.to_string().contains("vocab.json"), "{err}");

    std::fs::write(dir.path().join("tokenizer_config.json"), "{\"model_max_length\": 1}").unwrap();
    let err = ClipTokenizer::from_folder(dir.path()).unwrap_err();
    assert!(err.to_string().contains("tokenizer_config.json"), "{err}");
    assert!(err.to_string().contains("model_max_length"), "{err}");

    std::fs::write(dir.path().join("tokenizer.json"), "{not json").unwrap();
    let err = ClipTokenizer::from_folder(dir.path()).unwrap_err();
    assert!(err.to_string().contains("tokenizer.json"), "{err}");

    let err = ClipTokenizer::from_folder(&dir.path().join("nope")).unwrap_err();
    assert!(matches!(err, Error::Io { .. }), "{err}");
}
