//! The UNet and the VAE against diffusers 0.42.1 (torch CPU, f32), on the tiny random models
//! that `tools/gen_model_fixtures.py` saved under `tests/data/models/` with the inputs it fed
//! them and the outputs diffusers returned. Also: f16/bf16 runs, refused config keys, and
//! weights files with a wrong-shaped or missing tensor or corrupt bytes.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use ddim_pipeline::models::{
    AutoencoderKl, LatentDistribution, UNet2DConditionModel, UNetConfig, VaeConfig,
};
use ddim_pipeline::Error;

const UNETS: [&str; 4] = ["unet_sd1", "unet_sd2", "unet_mixed", "unet_nomid"];
const VAES: [&str; 3] = ["vae_small", "vae_deep", "vae_noattn"];

fn folder(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/models")
        .join(name)
}

fn weights(name: &str) -> Vec<PathBuf> {
    vec![folder(name).join("diffusion_pytorch_model.safetensors")]
}

fn expected(name: &str) -> HashMap<String, Tensor> {
    candle_core::safetensors::load(folder(name).join("expected.safetensors"), &Device::Cpu).unwrap()
}

fn unet_config(name: &str) -> UNetConfig {
    let path = folder(name).join("config.json");
    UNetConfig::from_json_str(&std::fs::read_to_string(&path).unwrap(), &path).unwrap()
}

fn vae_config(name: &str) -> VaeConfig {
    let path = folder(name).join("config.json");
    VaeConfig::from_json_str(&std::fs::read_to_string(&path).unwrap(), &path).unwrap()
}

/// (max |a − b|, max |a − b| / max |b|), in f32.
fn errors(ours: &Tensor, reference: &Tensor) -> (f32, f32) {
    assert_eq!(ours.dims(), reference.dims(), "shapes differ");
    let a: Vec<f32> = ours
        .to_dtype(DType::F32)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    let b: Vec<f32> = reference
        .to_dtype(DType::F32)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    assert!(a.iter().all(|v| v.is_finite()), "non-finite output");
    let abs = a
        .iter()
        .zip(&b)
        .map(|(x, y)| (x - y).abs())
        .fold(0f32, f32::max);
    let scale = b.iter().map(|y| y.abs()).fold(0f32, f32::max);
    (abs, abs / scale)
}

fn run_unet(name: &str, dtype: DType) -> (Tensor, Tensor) {
    let config = unet_config(name);
    let unet = UNet2DConditionModel::load(&config, &weights(name), dtype, &Device::Cpu).unwrap();
    let data = expected(name);
    let t = data["timestep"].to_vec1::<i64>().unwrap()[0] as usize;
    let sample = data["sample"].to_dtype(dtype).unwrap();
    let context = data["encoder_hidden_states"].to_dtype(dtype).unwrap();
    let out = unet.forward(&sample, t, &context).unwrap();
    assert_eq!(out.dtype(), dtype);
    (out, data["output"].clone())
}

#[test]
fn unet_matches_diffusers_in_f32() {
    let mut worst = 0f32;
    for name in UNETS {
        let (out, reference) = run_unet(name, DType::F32);
        let (abs, rel) = errors(&out, &reference);
        eprintln!("{name} f32: max abs {abs:.3e}, relative {rel:.3e}");
        assert!(rel < 1e-5, "{name}: relative error {rel:e}");
        worst = worst.max(rel);
    }
    eprintln!("unet f32 largest relative error: {worst:.3e}");
}

/// The half-precision dtypes, the suffix of diffusers' outputs in them, and the relative
/// error allowed against diffusers run in the same dtype (a few units of the dtype's epsilon,
/// 2⁻¹¹ for f16 and 2⁻⁸ for bf16, accumulated over the network's depth).
///
/// Two half-precision runs round differently (operation order, fused kernels), so ours and
/// diffusers' differ from each other about as much as each differs from f32. What must hold:
/// our error against diffusers' f32 is no worse than diffusers' own half-precision error
/// (with a factor of 2 of slack), and ours and theirs are within `limit` of each other.
const LOW: [(DType, &str, f32); 2] = [(DType::F16, "f16", 2e-2), (DType::BF16, "bf16", 6e-2)];

/// Checks and reports one half-precision output (see [`LOW`]).
fn check_low(label: &str, ours: &Tensor, theirs: &Tensor, reference: &Tensor, limit: f32) {
    let (abs, cross) = errors(ours, theirs);
    let (_, ours32) = errors(ours, reference);
    let (_, theirs32) = errors(theirs, reference);
    eprintln!(
        "{label}: ours vs diffusers same dtype: max abs {abs:.3e}, relative {cross:.3e}; \
         against diffusers f32: ours {ours32:.3e}, diffusers {theirs32:.3e}"
    );
    assert!(
        cross < limit,
        "{label}: relative error {cross:e} against diffusers"
    );
    assert!(
        ours32 <= 2.0 * theirs32 + 1e-4,
        "{label}: {ours32:e} against f32, diffusers {theirs32:e}"
    );
}

#[test]
fn unet_runs_in_f16_and_bf16_like_diffusers() {
    for (dtype, suffix, limit) in LOW {
        for name in UNETS {
            let (out, reference) = run_unet(name, dtype);
            let theirs = &expected(name)[&format!("output_{suffix}")];
            check_low(&format!("{name} {suffix}"), &out, theirs, &reference, limit);
        }
    }
}

fn run_vae(name: &str, dtype: DType) -> (LatentDistribution, Tensor, HashMap<String, Tensor>) {
    let config = vae_config(name);
    let vae = AutoencoderKl::load(&config, &weights(name), dtype, &Device::Cpu).unwrap();
    let data = expected(name);
    let dist = vae.encode(&data["image"].to_dtype(dtype).unwrap()).unwrap();
    let decoded = vae
        .decode(&data["latents"].to_dtype(dtype).unwrap())
        .unwrap();
    (dist, decoded, data)
}

#[test]
fn vae_matches_diffusers_in_f32() {
    let mut worst = 0f32;
    for name in VAES {
        let (dist, decoded, data) = run_vae(name, DType::F32);
        for (what, ours, reference) in [
            ("mean", &dist.mean, &data["mean"]),
            ("logvar", &dist.logvar, &data["logvar"]),
            ("std", &dist.std, &data["std"]),
            ("decoded", &decoded, &data["decoded"]),
        ] {
            let (abs, rel) = errors(ours, reference);
            eprintln!("{name} {what} f32: max abs {abs:.3e}, relative {rel:.3e}");
            assert!(rel < 1e-5, "{name} {what}: relative error {rel:e}");
            worst = worst.max(rel);
        }
    }
    eprintln!("vae f32 largest relative error: {worst:.3e}");
}

#[test]
fn vae_runs_in_f16_and_bf16_like_diffusers() {
    for (dtype, suffix, limit) in LOW {
        for name in VAES {
            let (dist, decoded, data) = run_vae(name, dtype);
            for (what, ours) in [("mean", &dist.mean), ("decoded", &decoded)] {
                let theirs = &data[&format!("{what}_{suffix}")];
                check_low(
                    &format!("{name} {what} {suffix}"),
                    ours,
                    theirs,
                    &data[what],
                    limit,
                );
            }
        }
    }
}

#[test]
fn latent_sample_is_mean_plus_std_times_noise() {
    let (dist, _, _) = run_vae("vae_small", DType::F32);
    let noise = Tensor::ones(dist.mean.dims(), DType::F32, &Device::Cpu).unwrap();
    let sample = dist.sample_with(&(noise * 2.0).unwrap()).unwrap();
    let want = (&dist.mean + (&dist.std * 2.0).unwrap()).unwrap();
    assert_eq!(errors(&sample, &want).0, 0.0);
    assert_eq!(errors(dist.mode(), &dist.mean).0, 0.0);
    let wrong = Tensor::ones((1, 1, 1, 1), DType::F32, &Device::Cpu).unwrap();
    assert!(matches!(
        dist.sample_with(&wrong),
        Err(Error::InvalidArgument { name: "noise", .. })
    ));
}

#[test]
fn configs_resolve_like_diffusers() {
    let sd2 = unet_config("unet_sd2");
    assert_eq!(sd2.num_attention_heads, vec![2, 4, 4]);
    assert_eq!(sd2.transformer_layers_per_block, vec![1, 2, 1]);
    assert_eq!(sd2.cross_attention_dim, 16);
    assert_eq!(sd2.sample_size, 9);
    let mixed = unet_config("unet_mixed");
    assert_eq!(mixed.layers_per_block, vec![1, 2, 1]);
    assert_eq!(mixed.time_embed_dim, 20);
    assert_eq!(vae_config("vae_deep").vae_scale_factor(), 8);
    assert_eq!(vae_config("vae_deep").shift_factor, Some(0.1159));
    assert_eq!(vae_config("vae_small").vae_scale_factor(), 2);
    assert!(!vae_config("vae_deep").use_quant_conv);
    assert!(!vae_config("vae_noattn").mid_block_add_attention);
}

fn config_with(name: &str, key: &str, value: serde_json::Value) -> String {
    let path = folder(name).join("config.json");
    let mut json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    json[key] = value;
    json.to_string()
}

#[test]
fn unsupported_unet_keys_are_refused_naming_the_key() {
    use serde_json::json;
    let cases = [
        ("class_embed_type", json!("timestep")),
        ("addition_embed_type", json!("text_time")),
        ("time_cond_proj_dim", json!(256)),
        ("projection_class_embeddings_input_dim", json!(2816)),
        ("num_attention_heads", json!(8)),
        ("resnet_time_scale_shift", json!("scale_shift")),
        ("dual_cross_attention", json!(true)),
        ("encoder_hid_dim", json!(32)),
        ("time_embedding_type", json!("fourier")),
        ("mid_block_type", json!("UNetMidBlock2DSimpleCrossAttn")),
        (
            "down_block_types",
            json!(["AttnDownBlock2D", "DownBlock2D"]),
        ),
        ("act_fn", json!("tanh")),
        ("norm_num_groups", json!(null)),
        ("cross_attention_dim", json!([16, 32])),
        ("sample_size", json!(null)),
    ];
    for (key, value) in cases {
        let text = config_with("unet_sd1", key, value.clone());
        match UNetConfig::from_json_str(&text, Path::new("unet/config.json")) {
            Err(e @ Error::Config { .. }) => {
                let message = e.to_string();
                eprintln!("{key} = {value}: {message}");
                assert!(message.contains(key), "{message}");
                assert!(message.starts_with("unet/config.json: "), "{message}");
            }
            other => panic!("{key} = {value} accepted: {other:?}"),
        }
    }
    // Unknown keys are ignored, as diffusers does.
    let text = config_with("unet_sd1", "some_future_key", serde_json::json!(1));
    assert!(UNetConfig::from_json_str(&text, Path::new("c.json")).is_ok());
}

#[test]
fn unsupported_vae_keys_are_refused_naming_the_key() {
    use serde_json::json;
    for (key, value) in [
        (
            "down_block_types",
            json!(["DownEncoderBlock2D", "AttnDownEncoderBlock2D"]),
        ),
        ("latents_mean", json!([0.0, 0.0, 0.0, 0.0])),
        ("norm_num_groups", json!(3)),
    ] {
        let text = config_with("vae_small", key, value.clone());
        match VaeConfig::from_json_str(&text, Path::new("vae/config.json")) {
            Err(e @ Error::Config { .. }) => {
                let message = e.to_string();
                eprintln!("{key} = {value}: {message}");
                assert!(message.contains(key), "{message}");
            }
            other => panic!("{key} = {value} accepted: {other:?}"),
        }
    }
    let not_json = VaeConfig::from_json_str("{", Path::new("vae/config.json"));
    assert!(matches!(not_json, Err(Error::Config { .. })));
}

/// Saves `name`'s weights to a temporary file after `edit` changed the tensor map.
fn edited_weights(
    name: &str,
    edit: impl FnOnce(&mut HashMap<String, Tensor>),
) -> (tempfile::TempDir, PathBuf) {
    let mut tensors = candle_core::safetensors::load(&weights(name)[0], &Device::Cpu).unwrap();
    edit(&mut tensors);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("diffusion_pytorch_model.safetensors");
    candle_core::safetensors::save(&tensors, &path).unwrap();
    (dir, path)
}

#[test]
fn wrong_shaped_tensor_is_named() {
    let key = "down_blocks.0.resnets.0.conv1.weight";
    let (_dir, path) = edited_weights("unet_sd2", |t| {
        t.insert(
            key.into(),
            Tensor::zeros((8, 3, 3, 3), DType::F16, &Device::Cpu).unwrap(),
        );
    });
    let err = UNet2DConditionModel::load(
        &unet_config("unet_sd2"),
        std::slice::from_ref(&path),
        DType::F32,
        &Device::Cpu,
    )
    .unwrap_err();
    let message = err.to_string();
    eprintln!("{message}");
    assert!(matches!(err, Error::Weights { .. }));
    assert!(
        message.contains(&format!(
            "tensor `{key}` has shape [8, 3, 3, 3], expected [8, 8, 3, 3]"
        )),
        "{message}"
    );
    assert!(message.contains(&path.display().to_string()), "{message}");
    assert_eq!(message.lines().count(), 1);
}

#[test]
fn missing_tensor_is_named() {
    let key = "decoder.mid_block.attentions.0.to_k.bias";
    let (_dir, path) = edited_weights("vae_small", |t| {
        t.remove(key);
    });
    let err = AutoencoderKl::load(&vae_config("vae_small"), &[path], DType::F32, &Device::Cpu)
        .unwrap_err();
    let message = err.to_string();
    eprintln!("{message}");
    assert!(matches!(err, Error::Weights { .. }));
    assert!(
        message.contains(&format!("tensor `{key}` is missing")),
        "{message}"
    );
}

#[test]
fn legacy_vae_attention_names_load() {
    let (_dir, path) = edited_weights("vae_small", |t| {
        for part in ["encoder", "decoder"] {
            for (new, old) in [
                ("to_q", "query"),
                ("to_k", "key"),
                ("to_v", "value"),
                ("to_out.0", "proj_attn"),
            ] {
                for suffix in ["weight", "bias"] {
                    let tensor = t
                        .remove(&format!("{part}.mid_block.attentions.0.{new}.{suffix}"))
                        .unwrap();
                    t.insert(
                        format!("{part}.mid_block.attentions.0.{old}.{suffix}"),
                        tensor,
                    );
                }
            }
        }
    });
    let vae =
        AutoencoderKl::load(&vae_config("vae_small"), &[path], DType::F32, &Device::Cpu).unwrap();
    let data = expected("vae_small");
    let decoded = vae.decode(&data["latents"]).unwrap();
    assert!(errors(&decoded, &data["decoded"]).1 < 1e-5);
}

#[test]
fn corrupt_weights_file_is_an_error_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(&weights("vae_small")[0]).unwrap();
    for (label, content) in [
        ("garbage", b"this is not a safetensors file at all".to_vec()),
        ("truncated", bytes[..bytes.len() / 2].to_vec()),
        ("empty", Vec::new()),
    ] {
        let path = dir.path().join(format!("{label}.safetensors"));
        std::fs::write(&path, content).unwrap();
        let err = AutoencoderKl::load(
            &vae_config("vae_small"),
            std::slice::from_ref(&path),
            DType::F32,
            &Device::Cpu,
        )
        .unwrap_err();
        let message = err.to_string();
        eprintln!("{label}: {message}");
        assert!(matches!(err, Error::Weights { .. }), "{label}: {err:?}");
        assert!(message.contains(&path.display().to_string()), "{message}");
    }
    let missing = dir.path().join("absent.safetensors");
    let err = AutoencoderKl::load(
        &vae_config("vae_small"),
        &[missing],
        DType::F32,
        &Device::Cpu,
    )
    .unwrap_err();
    assert!(matches!(err, Error::Io { .. }));
}

#[test]
fn wrong_input_shapes_are_refused() {
    let config = unet_config("unet_sd1");
    let unet = UNet2DConditionModel::load(&config, &weights("unet_sd1"), DType::F32, &Device::Cpu)
        .unwrap();
    let sample = Tensor::zeros((1, 3, 8, 8), DType::F32, &Device::Cpu).unwrap();
    let context = Tensor::zeros((1, 7, 16), DType::F32, &Device::Cpu).unwrap();
    assert!(matches!(
        unet.forward(&sample, 10, &context),
        Err(Error::InvalidArgument { name: "sample", .. })
    ));
    let sample = Tensor::zeros((1, 4, 8, 8), DType::F32, &Device::Cpu).unwrap();
    let context = Tensor::zeros((1, 7, 12), DType::F32, &Device::Cpu).unwrap();
    assert!(matches!(
        unet.forward(&sample, 10, &context),
        Err(Error::InvalidArgument {
            name: "encoder_hidden_states",
            ..
        })
    ));
}

/// A weights source that holds no data: it checks every request against the names and shapes
/// of a diffusers state dict (written by the generator from the full-size model on torch's meta
/// device), records it, and answers with a broadcast zero (no memory).
struct ShapeOnly {
    shapes: HashMap<String, Vec<usize>>,
    asked: std::sync::Mutex<Vec<String>>,
}

impl candle_nn::var_builder::SimpleBackend for ShapeOnly {
    fn get(
        &self,
        s: candle_core::Shape,
        name: &str,
        _: candle_nn::Init,
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        match self.shapes.get(name) {
            None => candle_core::bail!("tensor `{name}` is not in diffusers' state dict"),
            Some(want) if want.as_slice() != s.dims() => {
                candle_core::bail!(
                    "tensor `{name}` requested as {:?}, diffusers has {want:?}",
                    s.dims()
                )
            }
            Some(_) => {
                self.asked.lock().unwrap().push(name.to_string());
                Tensor::zeros((), dtype, dev)?.broadcast_as(s)
            }
        }
    }

    fn get_unchecked(&self, name: &str, _: DType, _: &Device) -> candle_core::Result<Tensor> {
        candle_core::bail!("unchecked request for `{name}`")
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.shapes.contains_key(name)
    }
}

/// Builds a full-size model from its shapes only; returns how many tensors it asked for after
/// checking that it asked for every tensor of diffusers' state dict exactly once.
fn check_full_size(
    name: &str,
    build: impl FnOnce(candle_nn::VarBuilder<'static>) -> candle_core::Result<()>,
) {
    let dir = folder("full");
    let shapes: HashMap<String, Vec<usize>> = serde_json::from_str(
        &std::fs::read_to_string(dir.join(format!("{name}.shapes.json"))).unwrap(),
    )
    .unwrap();
    let backend = std::sync::Arc::new(ShapeOnly {
        shapes: shapes.clone(),
        asked: Default::default(),
    });
    struct Shared(std::sync::Arc<ShapeOnly>);
    impl candle_nn::var_builder::SimpleBackend for Shared {
        fn get(
            &self,
            s: candle_core::Shape,
            n: &str,
            h: candle_nn::Init,
            d: DType,
            dev: &Device,
        ) -> candle_core::Result<Tensor> {
            self.0.get(s, n, h, d, dev)
        }
        fn get_unchecked(&self, n: &str, d: DType, dev: &Device) -> candle_core::Result<Tensor> {
            self.0.get_unchecked(n, d, dev)
        }
        fn contains_tensor(&self, n: &str) -> bool {
            self.0.contains_tensor(n)
        }
    }
    let vb = candle_nn::VarBuilder::from_backend(
        Box::new(Shared(backend.clone())),
        DType::F32,
        Device::Cpu,
    );
    build(vb).unwrap();
    let mut asked = backend.asked.lock().unwrap().clone();
    let total = asked.len();
    asked.sort();
    asked.dedup();
    assert_eq!(asked.len(), total, "{name}: a tensor was requested twice");
    let unused: Vec<_> = shapes
        .keys()
        .filter(|k| asked.binary_search(k).is_err())
        .collect();
    assert!(
        unused.is_empty(),
        "{name}: tensors never requested: {unused:?}"
    );
    eprintln!("{name}: all {total} tensors of diffusers' state dict requested with their shapes");
}

fn full_config(name: &str) -> String {
    std::fs::read_to_string(folder("full").join(format!("{name}.json"))).unwrap()
}

#[test]
fn full_size_sd_architectures_ask_for_diffusers_tensors() {
    for name in ["sd15_unet", "sd21_unet"] {
        let config = UNetConfig::from_json_str(&full_config(name), Path::new(name)).unwrap();
        check_full_size(name, |vb| {
            UNet2DConditionModel::new(&config, vb).map(|_| ())
        });
    }
    let sd21 = UNetConfig::from_json_str(&full_config("sd21_unet"), Path::new("sd21")).unwrap();
    assert_eq!(sd21.num_attention_heads, vec![5, 10, 20, 20]);
    assert!(sd21.use_linear_projection && sd21.upcast_attention);
    assert_eq!((sd21.cross_attention_dim, sd21.sample_size), (1024, 96));
    let vae = VaeConfig::from_json_str(&full_config("sd_vae"), Path::new("sd_vae")).unwrap();
    assert_eq!(vae.vae_scale_factor(), 8);
    check_full_size("sd_vae", |vb| AutoencoderKl::new(&vae, vb).map(|_| ()));
}

#[test]
fn sdxl_unet_is_refused_naming_its_addition_embedding() {
    let err = UNetConfig::from_json_str(&full_config("sdxl_unet"), Path::new("unet/config.json"))
        .unwrap_err();
    let message = err.to_string();
    eprintln!("{message}");
    assert!(
        message.contains("addition_embed_type") && message.contains("text_time"),
        "{message}"
    );
}

/// A real full-size UNet folder (diffusers layout), when `DDIM_TEST_UNET_DIR` names one:
/// loads it in f32 and runs one small step. Ignored by default (gigabytes, minutes).
/// `DDIM_TEST_UNET_DIR=/path/to/unet cargo test --release -p ddim-pipeline --test models -- --ignored`
#[test]
#[ignore]
fn real_unet_folder_loads_and_runs() {
    let Ok(dir) = std::env::var("DDIM_TEST_UNET_DIR") else {
        eprintln!("DDIM_TEST_UNET_DIR not set; nothing to do");
        return;
    };
    let dir = PathBuf::from(dir);
    let path = dir.join("config.json");
    let config =
        UNetConfig::from_json_str(&std::fs::read_to_string(&path).unwrap(), &path).unwrap();
    let files = vec![dir.join("diffusion_pytorch_model.safetensors")];
    let unet = UNet2DConditionModel::load(&config, &files, DType::F32, &Device::Cpu).unwrap();
    let sample = Tensor::ones((1, config.in_channels, 16, 16), DType::F32, &Device::Cpu).unwrap();
    let context = Tensor::ones(
        (1, 77, config.cross_attention_dim),
        DType::F32,
        &Device::Cpu,
    )
    .unwrap();
    let out = unet.forward(&sample, 500, &context).unwrap();
    assert_eq!(out.dims(), &[1, config.out_channels, 16, 16]);
    let values: Vec<f32> = out.flatten_all().unwrap().to_vec1().unwrap();
    assert!(values.iter().all(|v| v.is_finite()));
    eprintln!(
        "{}: output mean {:.4e}",
        dir.display(),
        values.iter().sum::<f32>() / values.len() as f32
    );
}
