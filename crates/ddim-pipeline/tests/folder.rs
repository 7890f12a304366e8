//! Pipeline folder discovery on folders built in a temporary directory: the layouts diffusers
//! writes (single, fp16 variant, sharded, the HF cache with refs/ and symlinked blobs) and every
//! refusal (wrong class, missing parts, pickles only, corrupt safetensors, hostile files).

use std::path::{Path, PathBuf};

use ddim_pipeline::folder::{Component, PipelineFolder, MAX_JSON_BYTES};
use ddim_pipeline::Error;

const INDEX: &str = r#"{
  "_class_name": "StableDiffusionPipeline",
  "_diffusers_version": "0.42.1",
  "feature_extractor": [null, null],
  "requires_safety_checker": false,
  "safety_checker": [null, null],
  "scheduler": ["diffusers", "PNDMScheduler"],
  "text_encoder": ["transformers", "CLIPTextModel"],
  "tokenizer": ["transformers", "CLIPTokenizer"],
  "unet": ["diffusers", "UNet2DConditionModel"],
  "vae": ["diffusers", "AutoencoderKL"]
}"#;

/// A minimal valid safetensors file (one 1-element f32 tensor).
fn safetensors_bytes() -> Vec<u8> {
    let header = br#"{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#;
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(header);
    out.extend_from_slice(&1.0_f32.to_le_bytes());
    out
}

fn write(path: &Path, bytes: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
}

/// A complete SD folder with single-file weights (and fp16 ones when `fp16`).
fn make_folder(root: &Path, fp16: bool) {
    write(&root.join("model_index.json"), INDEX.as_bytes());
    for (dir, stem) in [
        ("unet", "diffusion_pytorch_model"),
        ("vae", "diffusion_pytorch_model"),
        ("text_encoder", "model"),
    ] {
        write(&root.join(dir).join("config.json"), b"{}");
        write(
            &root.join(dir).join(format!("{stem}.safetensors")),
            &safetensors_bytes(),
        );
        if fp16 {
            write(
                &root.join(dir).join(format!("{stem}.fp16.safetensors")),
                &safetensors_bytes(),
            );
        }
    }
    write(
        &root.join("scheduler/scheduler_config.json"),
        b"{\"_class_name\": \"PNDMScheduler\"}",
    );
    write(&root.join("tokenizer/tokenizer_config.json"), b"{}");
    write(&root.join("tokenizer/vocab.json"), b"{}");
}

fn message(err: Error) -> String {
    err.to_string()
}

#[test]
fn opens_a_complete_folder_and_finds_every_part() {
    let dir = tempfile::tempdir().unwrap();
    make_folder(dir.path(), true);
    let folder = PipelineFolder::open(dir.path()).unwrap();
    assert_eq!(folder.class_name(), "StableDiffusionPipeline");
    assert_eq!(
        folder.spec(Component::TextEncoder).unwrap().library,
        "transformers"
    );
    let (path, text) = folder.config_text(Component::Scheduler).unwrap();
    assert!(path.ends_with("scheduler/scheduler_config.json"));
    assert!(text.contains("PNDMScheduler"));
    assert_eq!(
        folder.weights(Component::Unet, None).unwrap(),
        vec![dir.path().join("unet/diffusion_pytorch_model.safetensors")]
    );
    assert_eq!(
        folder
            .weights(Component::TextEncoder, Some("fp16"))
            .unwrap(),
        vec![dir.path().join("text_encoder/model.fp16.safetensors")]
    );
    assert!(folder.weights(Component::Tokenizer, None).is_err());
}

#[test]
fn img2img_folders_are_accepted_and_other_pipelines_refused() {
    let dir = tempfile::tempdir().unwrap();
    make_folder(dir.path(), false);
    let set_class = |class: &str| {
        let text = INDEX.replace("StableDiffusionPipeline", class);
        std::fs::write(dir.path().join("model_index.json"), text).unwrap();
    };
    set_class("StableDiffusionImg2ImgPipeline");
    PipelineFolder::open(dir.path()).unwrap();
    for class in [
        "FluxPipeline",
        "StableDiffusionXLPipeline",
        "StableDiffusion3Pipeline",
        "KandinskyPipeline",
        "StableDiffusionInpaintPipeline",
    ] {
        set_class(class);
        let msg = message(PipelineFolder::open(dir.path()).unwrap_err());
        assert!(
            msg.contains(&format!("pipeline class `{class}` is not supported")),
            "{msg}"
        );
        assert!(
            msg.contains("StableDiffusionPipeline, StableDiffusionImg2ImgPipeline"),
            "{msg}"
        );
    }
}

/// Damages a complete folder.
type Breaker = Box<dyn Fn(&Path)>;

#[test]
fn missing_components_and_configs_are_named() {
    let cases: Vec<(&str, Breaker)> = vec![
        (
            "no `vae` component",
            Box::new(|r: &Path| {
                let text = INDEX.replace(
                    r#""vae": ["diffusers", "AutoencoderKL"]"#,
                    r#""vae": [null, null]"#,
                );
                std::fs::write(r.join("model_index.json"), text).unwrap();
            }),
        ),
        (
            "no `unet` component",
            Box::new(|r: &Path| {
                let text = INDEX.replace(r#""unet": ["diffusers", "UNet2DConditionModel"],"#, "");
                std::fs::write(r.join("model_index.json"), text).unwrap();
            }),
        ),
        (
            "missing the `text_encoder` sub-folder",
            Box::new(|r: &Path| {
                std::fs::remove_dir_all(r.join("text_encoder")).unwrap();
            }),
        ),
        (
            "missing config.json of the `unet` component",
            Box::new(|r: &Path| {
                std::fs::remove_file(r.join("unet/config.json")).unwrap();
            }),
        ),
        (
            "missing scheduler_config.json of the `scheduler` component",
            Box::new(|r: &Path| {
                std::fs::remove_file(r.join("scheduler/scheduler_config.json")).unwrap();
            }),
        ),
        (
            "`vae` is a `AutoencoderTiny`; this crate runs AutoencoderKL",
            Box::new(|r: &Path| {
                let text = INDEX.replace("AutoencoderKL", "AutoencoderTiny");
                std::fs::write(r.join("model_index.json"), text).unwrap();
            }),
        ),
        (
            "no model_index.json",
            Box::new(|r: &Path| {
                std::fs::remove_file(r.join("model_index.json")).unwrap();
            }),
        ),
        (
            "not valid json",
            Box::new(|r: &Path| {
                std::fs::write(r.join("model_index.json"), "{\"_class_name\": ").unwrap();
            }),
        ),
    ];
    for (expect, breaker) in cases {
        let dir = tempfile::tempdir().unwrap();
        make_folder(dir.path(), false);
        breaker(dir.path());
        let msg = message(PipelineFolder::open(dir.path()).unwrap_err());
        assert!(msg.contains(expect), "{msg} lacks {expect}");
    }
}

#[test]
fn a_file_is_not_a_folder() {
    let dir = tempfile::tempdir().unwrap();
    make_folder(dir.path(), false);
    let msg = message(PipelineFolder::open(&dir.path().join("model_index.json")).unwrap_err());
    assert!(
        msg.ends_with("not a folder: a diffusers pipeline is a folder holding model_index.json"),
        "{msg}"
    );
}

#[test]
fn pickles_only_are_refused_and_never_read() {
    let dir = tempfile::tempdir().unwrap();
    make_folder(dir.path(), false);
    std::fs::remove_file(dir.path().join("unet/diffusion_pytorch_model.safetensors")).unwrap();
    // Garbage content: if anything tried to parse it, a different error would show.
    write(
        &dir.path().join("unet/diffusion_pytorch_model.bin"),
        b"\x80\x04 not really a pickle",
    );
    let folder = PipelineFolder::open(dir.path()).unwrap();
    let msg = message(folder.weights(Component::Unet, None).unwrap_err());
    assert_eq!(
        msg,
        format!(
            "{}: holds only pytorch pickle weights (diffusion_pytorch_model.bin); safetensors is \
             needed (pickles are never loaded: they can run code)",
            dir.path().join("unet").display()
        )
    );
}

#[test]
fn a_missing_variant_is_an_error_not_a_fallback() {
    let dir = tempfile::tempdir().unwrap();
    make_folder(dir.path(), false);
    let folder = PipelineFolder::open(dir.path()).unwrap();
    let msg = message(folder.weights(Component::Vae, Some("fp16")).unwrap_err());
    assert!(
        msg.contains("no diffusion_pytorch_model.fp16.safetensors for variant `fp16`"),
        "{msg}"
    );
    let msg = message(folder.weights(Component::Vae, Some("../x")).unwrap_err());
    assert!(msg.contains("variant `../x` must be"), "{msg}");
    std::fs::remove_file(dir.path().join("vae/diffusion_pytorch_model.safetensors")).unwrap();
    let msg = message(folder.weights(Component::Vae, None).unwrap_err());
    assert!(
        msg.ends_with(
            "no weights file: expected diffusion_pytorch_model.safetensors or its sharded index"
        ),
        "{msg}"
    );
}

#[test]
fn sharded_weights_list_their_distinct_shards() {
    let dir = tempfile::tempdir().unwrap();
    make_folder(dir.path(), false);
    let unet = dir.path().join("unet");
    std::fs::remove_file(unet.join("diffusion_pytorch_model.safetensors")).unwrap();
    let a = "diffusion_pytorch_model-00001-of-00002.safetensors";
    let b = "diffusion_pytorch_model-00002-of-00002.safetensors";
    let index = format!(
        r#"{{"metadata": {{"total_size": 8}}, "weight_map": {{"x": "{b}", "y": "{a}", "z": "{a}"}}}}"#
    );
    write(
        &unet.join("diffusion_pytorch_model.safetensors.index.json"),
        index.as_bytes(),
    );
    write(&unet.join(a), &safetensors_bytes());
    write(&unet.join(b), &safetensors_bytes());
    // the fp16 variant's index, as diffusers names it
    let index16 = index.replace("model-", "model.fp16-");
    write(
        &unet.join("diffusion_pytorch_model.safetensors.index.fp16.json"),
        index16.as_bytes(),
    );
    write(
        &unet.join(a.replace("model-", "model.fp16-")),
        &safetensors_bytes(),
    );
    write(
        &unet.join(b.replace("model-", "model.fp16-")),
        &safetensors_bytes(),
    );
    let folder = PipelineFolder::open(dir.path()).unwrap();
    assert_eq!(
        folder.weights(Component::Unet, None).unwrap(),
        vec![unet.join(a), unet.join(b)]
    );
    assert_eq!(
        folder.weights(Component::Unet, Some("fp16")).unwrap().len(),
        2
    );
    // a missing shard, and an index pointing outside the folder
    std::fs::remove_file(unet.join(b)).unwrap();
    let msg = message(folder.weights(Component::Unet, None).unwrap_err());
    assert!(
        msg.ends_with(&format!(
            "missing shard {b} named by diffusion_pytorch_model.safetensors.index.json"
        )),
        "{msg}"
    );
    let evil = r#"{"weight_map": {"x": "../../secret.safetensors"}}"#;
    write(
        &unet.join("diffusion_pytorch_model.safetensors.index.json"),
        evil.as_bytes(),
    );
    let msg = message(folder.weights(Component::Unet, None).unwrap_err());
    assert!(msg.contains("not a file name in the same folder"), "{msg}");
}

#[test]
fn corrupt_safetensors_are_named() {
    let dir = tempfile::tempdir().unwrap();
    make_folder(dir.path(), false);
    let file = dir.path().join("vae/diffusion_pytorch_model.safetensors");
    let folder = PipelineFolder::open(dir.path()).unwrap();
    let good = safetensors_bytes();
    for (bytes, expect) in [
        (good[..good.len() - 10].to_vec(), "does not fit in the file"),
        (b"short".to_vec(), "too short for a header"),
        (
            [&u64::MAX.to_le_bytes()[..], &[b'{'; 8]].concat(),
            "above the 100000000-byte limit",
        ),
        (
            [&2_u64.to_le_bytes()[..], b"[]xx"].concat(),
            "the header is not a json object",
        ),
    ] {
        std::fs::write(&file, bytes).unwrap();
        let err = folder.weights(Component::Vae, None).unwrap_err();
        assert!(matches!(err, Error::Weights { .. }));
        let msg = message(err);
        assert!(
            msg.starts_with(&format!("{}: not a safetensors file: ", file.display())),
            "{msg}"
        );
        assert!(msg.contains(expect), "{msg} lacks {expect}");
    }
}

#[test]
fn oversized_and_special_json_files_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    make_folder(dir.path(), false);
    let config = dir.path().join("unet/config.json");
    let f = std::fs::File::create(&config).unwrap();
    f.set_len(MAX_JSON_BYTES + 1).unwrap(); // sparse: no disk used
    let folder = PipelineFolder::open(dir.path()).unwrap();
    let msg = message(folder.config_text(Component::Unet).unwrap_err());
    assert!(
        msg.ends_with("larger than the 16 MiB limit for a json file"),
        "{msg}"
    );
    #[cfg(unix)]
    {
        std::fs::remove_file(&config).unwrap();
        std::os::unix::fs::symlink("/dev/zero", &config).unwrap();
        let msg = message(folder.config_text(Component::Unet).unwrap_err());
        assert!(msg.ends_with("not a regular file"), "{msg}");
    }
}

/// `models--org--tiny/{refs/main, snapshots/<commit>/..., blobs/}` with the files as symlinks
/// into blobs/, as huggingface_hub stores them.
#[cfg(unix)]
fn make_cache(cache: &Path) -> PathBuf {
    let repo = cache.join("models--org--tiny");
    let commit = "0123456789abcdef0123456789abcdef01234567";
    let built = repo.join("built");
    make_folder(&built, false);
    let snapshot = repo.join("snapshots").join(commit);
    let blobs = repo.join("blobs");
    std::fs::create_dir_all(&blobs).unwrap();
    let mut stack = vec![built.clone()];
    let mut n = 0;
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
                continue;
            }
            n += 1;
            let blob = blobs.join(format!("blob{n}"));
            std::fs::rename(&p, &blob).unwrap();
            let link = snapshot.join(p.strip_prefix(&built).unwrap());
            std::fs::create_dir_all(link.parent().unwrap()).unwrap();
            let depth = link.strip_prefix(&repo).unwrap().components().count() - 1;
            let rel: PathBuf = std::iter::repeat_n("..", depth)
                .collect::<PathBuf>()
                .join("blobs")
                .join(format!("blob{n}"));
            std::os::unix::fs::symlink(rel, &link).unwrap();
        }
    }
    std::fs::remove_dir_all(&built).unwrap();
    write(&repo.join("refs/main"), commit.as_bytes());
    snapshot
}

#[cfg(unix)]
#[test]
fn the_hf_cache_layout_with_symlinked_blobs_works() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("hub");
    let snapshot = make_cache(&cache);
    let dirs = vec![dir.path().join("elsewhere"), cache.clone()];
    let folder = PipelineFolder::from_cache_dirs(&dirs, "org/tiny", None).unwrap();
    assert_eq!(folder.root(), snapshot);
    let weights = folder.weights(Component::Unet, None).unwrap();
    assert!(std::fs::symlink_metadata(&weights[0])
        .unwrap()
        .file_type()
        .is_symlink());
    assert!(folder.config_text(Component::Vae).is_ok());
    // by commit hash too
    let commit = snapshot.file_name().unwrap().to_str().unwrap().to_owned();
    assert!(PipelineFolder::from_cache_dirs(&dirs, "org/tiny", Some(&commit)).is_ok());
    // open_or_cached: an id goes to the cache; a revision with a path is an error
    assert!(PipelineFolder::open_or_cached_in(&dirs, "org/tiny", Some("main")).is_ok());
    let snap = snapshot.to_str().unwrap();
    assert!(PipelineFolder::open_or_cached_in(&dirs, snap, None).is_ok());
    let msg = message(PipelineFolder::open_or_cached_in(&dirs, snap, Some("main")).unwrap_err());
    assert!(
        msg.starts_with("invalid argument: `revision` `main` cannot be used with a local path"),
        "{msg}"
    );
    let msg =
        message(PipelineFolder::open_or_cached_in(&dirs, "./no/such/folder", None).unwrap_err());
    assert!(msg.ends_with("no such folder"), "{msg}");
    // not in the cache: ddim's error naming the folders searched
    let msg = message(PipelineFolder::from_cache_dirs(&dirs, "org/other", None).unwrap_err());
    assert!(
        msg.contains("org/other") && msg.contains("elsewhere"),
        "{msg}"
    );
}
