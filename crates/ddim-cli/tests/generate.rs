//! `ddim generate` end to end on the tiny Stable Diffusion folders of `crates/ddim-pipeline`
//! (random weights, built by the real diffusers in `tools/gen_pipeline_fixtures.py`): the
//! images it writes equal what diffusers' pipelines made for the same flags (within 2 levels,
//! as the library test checks in detail), from a folder and from a Hugging Face cache layout,
//! and bad input is answered with one line and no partial output.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const LION: &str = "A lion in galaxies, spirals, nebulae, stars, smoke, iridescent, intricate detail, octane render, 8k";

fn data() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../ddim-pipeline/tests/data/pipelines")
}

fn ddim(args: &[&str], dir: &Path, hub: Option<&Path>) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_ddim"));
    command
        .args(args)
        .current_dir(dir)
        .env("RUST_BACKTRACE", "1")
        .env("HF_HUB_CACHE", hub.unwrap_or(Path::new("no-such-hub")))
        .env("HOME", "no-such-home")
        .env_remove("HUGGINGFACE_HUB_CACHE")
        .env_remove("HF_HOME")
        .env_remove("XDG_CACHE_HOME");
    command.output().unwrap()
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "exit {:?}: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// RGB8 pixels and size of a PNG.
fn pixels(path: &Path) -> (Vec<u8>, (u32, u32)) {
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(path).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    assert_eq!(info.color_type, png::ColorType::Rgb, "{}", path.display());
    buf.truncate(info.buffer_size());
    (buf, (info.width, info.height))
}

/// The largest difference in 8-bit levels between our PNG and diffusers'.
fn levels_off(ours: &Path, diffusers_png: &str) -> u8 {
    let (a, size_a) = pixels(ours);
    let (b, size_b) = pixels(&data().join(diffusers_png));
    assert_eq!(size_a, size_b);
    a.iter().zip(&b).map(|(x, y)| x.abs_diff(*y)).max().unwrap()
}

fn folder(name: &str) -> String {
    data().join(name).to_string_lossy().into_owned()
}

#[test]
fn the_seed_documents_recipe_gives_diffusers_image() {
    let dir = tempfile::tempdir().unwrap();
    let sd2 = folder("sd2");
    let out = ok(&ddim(
        &[
            "generate",
            "--model",
            &sd2,
            "--prompt",
            LION,
            "--steps",
            "10",
            "--seed",
            "1",
            "--rescale-betas-zero-snr",
            "true",
            "--spacing",
            "trailing",
            "--guidance-rescale",
            "0.7",
            "-o",
            "lion.png",
            "--latents-out",
            "lion.safetensors",
        ],
        dir.path(),
        None,
    ));
    assert!(out.contains("denoising: UNet"), "{out}");
    assert!(levels_off(&dir.path().join("lion.png"), "sd2_recipe_0.png") <= 2);
    let bytes = std::fs::read(dir.path().join("lion.safetensors")).unwrap();
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    assert_eq!(file.tensor("latents").unwrap().shape(), [1, 4, 8, 8]);
}

#[test]
fn eta_one_negative_prompt_and_two_images() {
    let dir = tempfile::tempdir().unwrap();
    let sd1 = folder("sd1");
    ok(&ddim(
        &[
            "generate",
            "--model",
            &sd1,
            "--prompt",
            "A painting of a squirrel eating a burger",
            "--negative-prompt",
            "blurry, low quality",
            "--steps",
            "8",
            "--guidance-scale",
            "5",
            "--eta",
            "1",
            "--seed",
            "42",
            "--num-images-per-prompt",
            "2",
            "-o",
            "sq.png",
        ],
        dir.path(),
        None,
    ));
    for i in 0..2 {
        let ours = dir.path().join(format!("sq-{i}.png"));
        assert!(levels_off(&ours, &format!("sd1_eta1_negative_two_images_{i}.png")) <= 2);
    }
}

#[test]
fn img2img_and_inversion_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let sd1 = folder("sd1");
    let init = data().join("init_64x64.png").to_string_lossy().into_owned();
    let prompt = "a photograph of an astronaut riding a horse";
    ok(&ddim(
        &[
            "generate",
            "--model",
            &sd1,
            "--prompt",
            prompt,
            "--init-image",
            &init,
            "--strength",
            "0.6",
            "--steps",
            "10",
            "--seed",
            "11",
            "-o",
            "i2i.png",
        ],
        dir.path(),
        None,
    ));
    assert!(levels_off(&dir.path().join("i2i.png"), "sd1_img2img_0.png") <= 2);
    let out = ok(&ddim(
        &[
            "generate", "--model", &sd1, "--prompt", prompt, "--invert", &init, "--steps", "10",
            "-o", "inv.png",
        ],
        dir.path(),
        None,
    ));
    assert!(out.contains("PSNR"), "{out}");
    assert!(levels_off(&dir.path().join("inv.png"), "sd1_invert_0.png") <= 2);
}

/// `--model org/name` finds the folder in a Hugging Face cache layout (refs/main → a commit,
/// files symlinked into blobs/ where the platform allows), with no network.
#[test]
fn a_cached_model_id_is_found_without_the_network() {
    let hub = tempfile::tempdir().unwrap();
    let repo = hub.path().join("models--tiny--sd1");
    let snapshot = repo.join("snapshots").join("0123abcd");
    copy_tree(&data().join("sd1"), &snapshot, &repo.join("blobs"));
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::write(repo.join("refs").join("main"), "0123abcd").unwrap();
    let dir = tempfile::tempdir().unwrap();
    ok(&ddim(
        &[
            "generate",
            "--model",
            "tiny/sd1",
            "--prompt",
            "a photograph of an astronaut riding a horse",
            "--steps",
            "10",
            "--seed",
            "0",
            "-o",
            "cached.png",
        ],
        dir.path(),
        Some(hub.path()),
    ));
    assert!(levels_off(&dir.path().join("cached.png"), "sd1_cfg_0.png") <= 2);
}

/// Copies `from` to `to` as the hub lays it out: each file's bytes in `blobs/`, a symlink to
/// it in the snapshot (a copy where symlinks are not available).
fn copy_tree(from: &Path, to: &Path, blobs: &Path) {
    std::fs::create_dir_all(to).unwrap();
    std::fs::create_dir_all(blobs).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target, blobs);
            continue;
        }
        // One blob per file: its snapshot path, flattened, is unique.
        let flat: String = target
            .to_string_lossy()
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '.' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let blob = blobs.join(flat);
        std::fs::copy(entry.path(), &blob).unwrap();
        #[cfg(unix)]
        std::os::unix::fs::symlink(&blob, &target).unwrap();
        #[cfg(not(unix))]
        std::fs::copy(&blob, &target).unwrap();
    }
}

/// A copy of the SD 1.x folder in `dir`, with `unet/diffusion_pytorch_model.safetensors` made
/// into whatever `corrupt` writes.
fn broken_copy(dir: &Path, corrupt: impl FnOnce(&Path)) -> String {
    let root = dir.join("sd1");
    copy_plain(&data().join("sd1"), &root);
    corrupt(&root.join("unet"));
    root.to_string_lossy().into_owned()
}

fn copy_plain(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_dir() {
            copy_plain(&entry.path(), &to.join(entry.file_name()));
        } else {
            std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
    }
}

/// The UNet's tensors rewritten by `edit` (name → (shape, f32 values)).
fn rewrite_unet(unet: &Path, edit: impl FnOnce(&mut Vec<(String, Vec<usize>, Vec<u8>)>)) {
    let file = unet.join("diffusion_pytorch_model.safetensors");
    let bytes = std::fs::read(&file).unwrap();
    let tensors = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut entries: Vec<(String, Vec<usize>, Vec<u8>)> = tensors
        .tensors()
        .into_iter()
        .map(|(name, view)| (name, view.shape().to_vec(), view.data().to_vec()))
        .collect();
    edit(&mut entries);
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = entries
        .iter()
        .map(|(name, shape, data)| {
            let view =
                safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), data)
                    .unwrap();
            (name.clone(), view)
        })
        .collect();
    std::fs::write(&file, safetensors::tensor::serialize(views, None).unwrap()).unwrap();
}

/// Runs `ddim generate` on a broken folder: exit 1, one line on stderr holding `needle`, no
/// backtrace, and no PNG written.
fn refuses(folder: &str, dir: &Path, needle: &str) {
    let out = ddim(
        &[
            "generate",
            "--model",
            folder,
            "--prompt",
            "x",
            "--steps",
            "2",
            "-o",
            "never.png",
        ],
        dir,
        None,
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains(needle), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(!dir.join("never.png").exists());
}

#[test]
fn broken_weights_are_refused_with_one_line_and_no_image() {
    let dir = tempfile::tempdir().unwrap();
    // Pickles only: never read, refused by name.
    let folder = broken_copy(&dir.path().join("pickle"), |unet| {
        std::fs::remove_file(unet.join("diffusion_pytorch_model.safetensors")).unwrap();
        std::fs::write(unet.join("diffusion_pytorch_model.bin"), b"not read").unwrap();
    });
    refuses(
        &folder,
        dir.path(),
        "safetensors is needed (pickles are never loaded",
    );
    // A truncated file.
    let folder = broken_copy(&dir.path().join("truncated"), |unet| {
        let file = unet.join("diffusion_pytorch_model.safetensors");
        let bytes = std::fs::read(&file).unwrap();
        std::fs::write(&file, &bytes[..bytes.len() / 2]).unwrap();
    });
    refuses(&folder, dir.path(), "diffusion_pytorch_model.safetensors");
    // A tensor of the wrong shape, named with both shapes.
    let folder = broken_copy(&dir.path().join("shape"), |unet| {
        rewrite_unet(unet, |entries| {
            let entry = entries
                .iter_mut()
                .find(|(n, _, _)| n == "conv_in.weight")
                .unwrap();
            let n: usize = entry.1.iter().product();
            entry.1 = vec![n];
        });
    });
    refuses(&folder, dir.path(), "conv_in.weight");
    // A tensor missing, named.
    let folder = broken_copy(&dir.path().join("missing"), |unet| {
        rewrite_unet(unet, |entries| {
            entries.retain(|(n, _, _)| n != "conv_out.bias")
        });
    });
    refuses(&folder, dir.path(), "conv_out.bias");
}
