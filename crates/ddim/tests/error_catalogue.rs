//! The bad-input catalogue, docs/errors.md, as a test: every row of its library tables is run
//! and must give exactly the documented error variant and message (or warnings), and every
//! variant of `ddim::Error` must have a row. The file is read at compile time, so the doc
//! cannot drift from the code. (tests/errors.rs and tests/real_configs.rs test the same
//! errors' values and the loading of the real configs in more depth.)

use ddim::{
    DdimConfig, DdimInverseConfig, DdimInverseScheduler, DdimScheduler, Error, EtaPolicy,
    PrevTimestepRule, SpacingOverride, StepOptions, TimestepSpacing, VarianceKind,
};

const CATALOGUE: &str = include_str!("../../../docs/errors.md");
const ERROR_RS: &str = include_str!("../src/error.rs");

/// A table cell without its code delimiters (`` `x` `` or ``` `` x `` ```).
fn code(cell: &str) -> &str {
    let cell = cell.trim();
    if let Some(inner) = cell.strip_prefix("`` ").and_then(|c| c.strip_suffix(" ``")) {
        inner
    } else {
        cell.trim_matches('`')
    }
}

/// The first code span of a cell: `Error::InvalidConfig` of "`Error::InvalidConfig` (T = 0)".
fn first_code(cell: &str) -> &str {
    cell.split('`').nth(1).unwrap_or(cell)
}

/// The rows (cells) of every table whose second column is a library input.
fn library_rows() -> Vec<Vec<&'static str>> {
    CATALOGUE
        .lines()
        .filter(|l| l.starts_with("| "))
        .map(|l| {
            let l = l.trim().trim_start_matches('|').trim_end_matches('|');
            l.split(" | ").map(str::trim).collect::<Vec<_>>()
        })
        .filter(|cells| {
            cells.len() == 3
                && ["json: ", "file: ", "call: "]
                    .iter()
                    .any(|p| code(cells[1]).starts_with(p))
        })
        .collect()
}

fn scheduler(n: usize) -> DdimScheduler {
    let mut s = DdimScheduler::new(DdimConfig::default()).unwrap();
    s.set_timesteps(n).unwrap();
    s
}

/// The calls named `call: …` in the catalogue.
fn call(name: &str) -> Result<(), Error> {
    let x = [0.5f32, -0.25, 0.75, 1.0];
    let m = [0.1f32, 0.2, 0.3, 0.4];
    let s = scheduler(50);
    let opts = |eta: f32, batch_size: usize| StepOptions {
        eta,
        batch_size: Some(batch_size),
        ..Default::default()
    };
    match name {
        "nan-beta-end" => DdimScheduler::new(DdimConfig {
            beta_end: f64::NAN,
            ..DdimConfig::default()
        })
        .map(drop),
        "set-timesteps-0" => s.clone().set_timesteps(0),
        "set-timesteps-1001" => s.clone().set_timesteps(1001),
        "leading-offset-reaches-T" => DdimScheduler::new(DdimConfig {
            steps_offset: 1,
            timestep_spacing: TimestepSpacing::Leading,
            ..DdimConfig::default()
        })?
        .set_timesteps(1000),
        "step-before-set-timesteps" => DdimScheduler::new(DdimConfig::default())?
            .step(&m, 980, &x, &StepOptions::default())
            .map(drop),
        "step-at-1000" => s.step(&m, 1000, &x, &StepOptions::default()).map(drop),
        "next-in-schedule-at-999" => s
            .clone()
            .with_prev_timestep_rule(PrevTimestepRule::NextInSchedule)
            .step(&m, 999, &x, &StepOptions::default())
            .map(drop),
        "model-output-3-sample-4" => s.step(&m[..3], 980, &x, &opts(0.0, 1)).map(drop),
        "variance-noise-2-sample-4" => {
            let z = [0.0f32; 2];
            let o = StepOptions {
                variance_noise: Some(&z[..]),
                ..opts(1.0, 1)
            };
            s.step(&m, 980, &x, &o).map(drop)
        }
        "step-into-short-output" => {
            let (mut p, mut o) = ([0.0f32; 3], [0.0f32; 4]);
            s.step_into(&m, 980, &x, &opts(0.0, 1), &mut p, &mut o)
        }
        "add-noise-noise-3-sample-4" => s.add_noise(&x, &m[..3], &[10]).map(drop),
        "batch-3-of-4" => s.step(&m, 980, &x, &opts(0.0, 3)).map(drop),
        "batch-0" => s.step(&m, 980, &x, &opts(0.0, 0)).map(drop),
        "add-noise-no-timesteps" => s.add_noise(&x, &m, &[]).map(drop),
        "thresholding-without-batch-size" => {
            let mut t = DdimScheduler::new(DdimConfig {
                thresholding: true,
                ..DdimConfig::default()
            })?;
            t.set_timesteps(50)?;
            t.step(&m, 980, &x, &StepOptions::default()).map(drop)
        }
        "eta-negative" => s.step(&m, 980, &x, &opts(-1.0, 1)).map(drop),
        "eta-nan" => s.step(&m, 980, &x, &opts(f32::NAN, 1)).map(drop),
        "eta-5-at-500" => {
            let z = [0.0f32; 4];
            let o = StepOptions {
                variance_noise: Some(&z[..]),
                ..opts(5.0, 1)
            };
            s.step(&m, 500, &x, &o).map(drop)
        }
        "noise-and-generator" => {
            use rand::SeedableRng;
            let z = [0.0f32; 4];
            let o = StepOptions {
                variance_noise: Some(&z[..]),
                ..opts(1.0, 1)
            };
            let mut rng = rand::rngs::StdRng::seed_from_u64(0);
            s.step_with_rng(&m, 980, &x, &o, &mut rng).map(drop)
        }
        "eta-1-without-noise" => s.step(&m, 980, &x, &opts(1.0, 1)).map(drop),
        "check-finite-nan-model-output" => {
            let bad = [0.1f32, 0.2, f32::NAN, f32::INFINITY];
            let o = StepOptions {
                check_finite: true,
                ..Default::default()
            };
            s.step(&bad, 980, &x, &o).map(drop)
        }
        "check-finite-inf-sample" => {
            let bad = [f32::NEG_INFINITY, 0.2, 0.3, 0.4];
            let o = StepOptions {
                check_finite: true,
                ..Default::default()
            };
            s.step(&m, 980, &bad, &o).map(drop)
        }
        other => pipeline_call(other),
    }
}

/// Calls of the inverse scheduler, img2img, guidance, custom and quad timesteps and the
/// eta policies.
fn pipeline_call(name: &str) -> Result<(), Error> {
    use ddim::guidance::{classifier_free_guidance, rescale_noise_cfg};
    let x = [0.5f32, -0.25, 0.75, 1.0];
    let m = [0.1f32, 0.2, 0.3, 0.4];
    let s = scheduler(50);
    let noisy_step = |s: &DdimScheduler, eta: f32, t: usize| {
        let z = [0.0f32; 4];
        let o = StepOptions {
            eta,
            variance_noise: Some(&z[..]),
            ..Default::default()
        };
        s.step(&m, t, &x, &o).map(drop)
    };
    match name {
        "inverse-linspace" => DdimInverseScheduler::new(DdimInverseConfig {
            timestep_spacing: TimestepSpacing::Linspace,
            ..DdimInverseConfig::default()
        })?
        .set_timesteps(10),
        "inverse-matching-thresholded" => {
            let forward = DdimScheduler::new(DdimConfig {
                thresholding: true,
                ..DdimConfig::default()
            })?;
            DdimInverseScheduler::matching(&forward).map(drop)
        }
        "inverse-step-before-set-timesteps" => {
            DdimInverseScheduler::new(DdimInverseConfig::default())?
                .step(&m, 20, &x)
                .map(drop)
        }
        "inverse-step-at-1000" => {
            let mut inverse = DdimInverseScheduler::new(DdimInverseConfig::default())?;
            inverse.set_timesteps(50)?;
            inverse.step(&m, 1000, &x).map(drop)
        }
        "inverse-model-output-3-sample-4" => {
            let mut inverse = DdimInverseScheduler::new(DdimInverseConfig::default())?;
            inverse.set_timesteps(50)?;
            inverse.step(&m[..3], 20, &x).map(drop)
        }
        "img2img-strength-1.5" => ddim::img2img::img2img_timesteps(&s, 1.5).map(drop),
        "img2img-strength-0.01-of-50" => ddim::img2img::img2img_timesteps(&s, 0.01).map(drop),
        "img2img-before-set-timesteps" => {
            let fresh = DdimScheduler::new(DdimConfig::default())?;
            ddim::img2img::img2img_timesteps(&fresh, 0.8).map(drop)
        }
        "cfg-scale-inf" => {
            let mut out = [0.0f32; 4];
            classifier_free_guidance(&m, &x, f32::INFINITY, &mut out)
        }
        "cfg-text-3-uncond-4" => {
            let mut out = [0.0f32; 4];
            classifier_free_guidance(&m, &x[..3], 7.5, &mut out)
        }
        "rescale-batch-4-of-4" => rescale_noise_cfg(&mut m.clone(), &x, 0.7, 4),
        "rescale-batch-3-of-4" => rescale_noise_cfg(&mut m.clone(), &x, 0.7, 3),
        "rescale-constant-cfg" => rescale_noise_cfg(&mut [0.1f32, 0.2, 0.3, 0.3], &x, 0.7, 2),
        "rescale-nan-phi" => rescale_noise_cfg(&mut m.clone(), &x, f32::NAN, 2),
        "slerp-t-nan" => ddim::slerp(f64::NAN, &m, &x, &mut [0.0; 4]),
        "lerp-inf-input" => ddim::lerp(0.5, &[f32::INFINITY, 0.0], &[0.0, 1.0], &mut [0.0; 2]),
        "slerp-v1-3-v0-4" => ddim::slerp(0.5, &m, &x[..3], &mut [0.0; 4]),
        "custom-timesteps-increasing" => s.clone().set_timesteps_custom(&[10, 20]),
        "custom-timesteps-empty" => s.clone().set_timesteps_custom(&[]),
        "custom-timesteps-1000" => s.clone().set_timesteps_custom(&[1000, 500]),
        "quad-1000-steps" => s
            .clone()
            .with_spacing_override(SpacingOverride::Quad)
            .set_timesteps(1000),
        "quad-offset-reaches-T" => DdimScheduler::new(DdimConfig {
            num_train_timesteps: 10,
            steps_offset: 8,
            ..DdimConfig::default()
        })?
        .with_spacing_override(SpacingOverride::Quad)
        .set_timesteps(3),
        "zero-snr-epsilon-trailing" => DdimScheduler::new(DdimConfig {
            rescale_betas_zero_snr: true,
            timestep_spacing: TimestepSpacing::Trailing,
            ..DdimConfig::default()
        })?
        .set_timesteps(10),
        "zero-snr-epsilon-custom" => DdimScheduler::new(DdimConfig {
            rescale_betas_zero_snr: true,
            ..DdimConfig::default()
        })?
        .set_timesteps_custom(&[999, 500]),
        "eta-5-at-500-diffusers-policy" => {
            noisy_step(&s.clone().with_eta_policy(EtaPolicy::Diffusers), 5.0, 500)
        }
        "eta-5-at-500-clamp-sigma" => {
            noisy_step(&s.clone().with_eta_policy(EtaPolicy::ClampSigma), 5.0, 500)
        }
        "eta-1.5-at-500-ddpm-larger" => noisy_step(
            &s.clone().with_variance_kind(VarianceKind::DdpmLarger),
            1.5,
            500,
        ),
        other => rng_call(other),
    }
}

/// Calls of the torch-compatible generators.
fn rng_call(name: &str) -> Result<(), Error> {
    use ddim::rng::{randn_latents, randn_latents_per_item, GpuProperties, TorchCpuGenerator};
    let x = [0.5f32, -0.25, 0.75, 1.0];
    let m = [0.1f32, 0.2, 0.3, 0.4];
    let s = scheduler(50);
    let eta_batch = |eta: f32, batch_size: usize| StepOptions {
        eta,
        batch_size: Some(batch_size),
        ..Default::default()
    };
    match name {
        "randn-latents-empty-shape" => {
            randn_latents::<f32, _>(&[], &mut TorchCpuGenerator::new(0)).map(drop)
        }
        "randn-latents-overflow" => {
            randn_latents::<f32, _>(&[2, usize::MAX], &mut TorchCpuGenerator::new(0)).map(drop)
        }
        "randn-latents-3-generators-batch-2" => {
            let mut gens = [0, 1, 2].map(TorchCpuGenerator::new);
            randn_latents_per_item::<f32, _>(&[2, 4], &mut gens).map(drop)
        }
        "step-with-2-generators-no-batch-size" => {
            let mut gens = [0, 1].map(TorchCpuGenerator::new);
            let o = StepOptions {
                eta: 1.0,
                ..Default::default()
            };
            s.step_with_generators(&m, 980, &x, &o, &mut gens).map(drop)
        }
        "step-with-3-generators-batch-2" => {
            let mut gens = [0, 1, 2].map(TorchCpuGenerator::new);
            s.step_with_generators(&m, 980, &x, &eta_batch(1.0, 2), &mut gens)
                .map(drop)
        }
        "step-with-generator-and-noise" => {
            let z = [0.0f32; 4];
            let o = StepOptions {
                variance_noise: Some(&z[..]),
                ..eta_batch(1.0, 1)
            };
            s.step_with_generator(&m, 980, &x, &o, &mut TorchCpuGenerator::new(0))
                .map(drop)
        }
        "randn-latents-2^62-values" => {
            randn_latents::<f32, _>(&[1, 1 << 62], &mut TorchCpuGenerator::new(0)).map(drop)
        }
        "linspace-usize-max" => ddim::schedule::linspace_f32(0.0, 1.0, usize::MAX).map(drop),
        "img2img-skipped-min-positive" => {
            ddim::img2img::skipped_steps(3, f64::MIN_POSITIVE).map(drop)
        }
        "gpu-properties-0-sm" => GpuProperties::new(0, 2048).map(drop),
        "gpu-properties-128-threads" => GpuProperties::new(132, 128).map(drop),
        "cuda-window-past-numel" => {
            let gpu = GpuProperties::new(132, 2048)?;
            let mut g = ddim::rng::TorchCudaGenerator::new(0, gpu);
            g.randn_window_f32(10, 8, &mut [0.0; 3])
        }
        other => hub_call(other),
    }
}

/// Calls of the Hugging Face cache lookup. The cache folders are relative to crates/ddim (where
/// the test runs), so the messages are the same on every machine.
fn hub_call(name: &str) -> Result<(), Error> {
    use ddim::config::hub::find_scheduler_config;
    use std::path::PathBuf;
    let absent = [PathBuf::from("tests/data/no-such-hub")];
    match name {
        "hub-model-id-three-parts" => find_scheduler_config(&absent, "a/b/c", None).map(drop),
        "hub-model-id-dashes" => find_scheduler_config(&absent, "org--x/model", None).map(drop),
        "hub-revision-dotdot" => {
            find_scheduler_config(&absent, "org/model", Some("../../etc")).map(drop)
        }
        "hub-model-id-newline" => {
            find_scheduler_config(&absent, "org/name\nsecond line", None).map(drop)
        }
        "hub-no-cache-folder" => find_scheduler_config(&[], "org/model", None).map(drop),
        "hub-absent-folder" => find_scheduler_config(&absent, "org/model", None).map(drop),
        "hub-ref-without-snapshot" => {
            // A cache whose refs/main names a commit that has no snapshot folder.
            let dir = PathBuf::from("../../target/tmp/error-catalogue-hub");
            let refs = dir.join("models--org--model/refs");
            std::fs::create_dir_all(&refs).unwrap();
            std::fs::write(refs.join("main"), "0123abc\n").unwrap();
            find_scheduler_config(&[dir], "org/model", None).map(drop)
        }
        other => backend_call(other),
    }
}

/// Calls of the tensor backends (only with their features; see `needs_feature`).
fn backend_call(name: &str) -> Result<(), Error> {
    match name {
        #[cfg(feature = "ndarray")]
        "ndarray-model-output-transposed" => {
            use ddim::backend::ndarray as nd;
            let s = scheduler(50);
            let x = ndarray::Array2::<f32>::zeros((2, 3));
            let m = ndarray::Array2::<f32>::zeros((3, 2));
            nd::step(&s, m.view(), 980, x.view(), &Default::default()).map(drop)
        }
        #[cfg(feature = "ndarray")]
        "ndarray-add-noise-3-timesteps-batch-2" => {
            let s = scheduler(50);
            let x = ndarray::Array2::<f32>::zeros((2, 3));
            ddim::backend::ndarray::add_noise(&s, x.view(), x.view(), &[1, 2, 3]).map(drop)
        }
        #[cfg(feature = "candle")]
        name if name.starts_with("candle-") => candle_call(name),
        other => panic!("docs/errors.md names an unknown call `{other}`"),
    }
}

#[cfg(feature = "candle")]
fn candle_call(name: &str) -> Result<(), Error> {
    use candle_core::{DType, Device, Tensor};
    use ddim::backend::candle as cb;
    let s = scheduler(50);
    let tensor = |shape: (usize, usize), dtype| Tensor::zeros(shape, dtype, &Device::Cpu).unwrap();
    let x = tensor((2, 3), DType::F32);
    let opts = ddim::backend::TensorStepOptions::default();
    match name {
        "candle-u32-sample" => {
            let ints = tensor((2, 3), DType::U32);
            cb::step(&s, &ints, 980, &ints, &opts).map(drop)
        }
        "candle-f16-model-output" => {
            cb::step(&s, &tensor((2, 3), DType::F16), 980, &x, &opts).map(drop)
        }
        "candle-in-place-shared-storage" => {
            cb::step_in_place(&s, &x.clone(), 980, &x, &opts).map(drop)
        }
        "candle-model-output-transposed" => {
            cb::step(&s, &tensor((3, 2), DType::F32), 980, &x, &opts).map(drop)
        }
        "candle-op-error" => {
            // A failing candle op comes back as `Error::Candle`, holding candle's error (its
            // first line: candle appends a backtrace when RUST_BACKTRACE is set).
            let e = ddim::Error::from(x.reshape(7).unwrap_err());
            let first_line = e.to_string().lines().next().unwrap_or("").to_string();
            assert!(matches!(e, ddim::Error::Candle(_)));
            Err(ddim::Error::Candle(candle_core::Error::Msg(
                first_line.trim_start_matches("candle: ").to_string(),
            )))
        }
        other => panic!("docs/errors.md names an unknown call `{other}`"),
    }
}

/// The feature a `call: …` row needs, if any: rows of a backend whose feature is off are
/// skipped (CI runs this test with every feature).
fn needs_feature(input: &str) -> Option<&'static str> {
    let name = input.strip_prefix("call: ")?;
    [("ndarray-", "ndarray"), ("candle-", "candle")]
        .into_iter()
        .find(|(prefix, _)| name.starts_with(prefix))
        .map(|(_, feature)| feature)
}

fn feature_on(feature: &str) -> bool {
    (feature == "ndarray" && cfg!(feature = "ndarray"))
        || (feature == "candle" && cfg!(feature = "candle"))
}

/// What a row's input does: the error, or the warnings of a config that loads (and builds).
fn run(input: &str) -> Result<Vec<String>, Error> {
    let loaded = if let Some(text) = input.strip_prefix("json: ") {
        DdimConfig::load_json_str(text)?
    } else if let Some(path) = input.strip_prefix("file: ") {
        DdimConfig::load_file(path)?
    } else {
        call(input.strip_prefix("call: ").unwrap())?;
        return Ok(Vec::new());
    };
    DdimScheduler::new(loaded.config)?;
    Ok(loaded.warnings.iter().map(ToString::to_string).collect())
}

#[test]
fn every_documented_error_has_its_message() {
    let rows = library_rows();
    assert!(rows.len() > 40, "the catalogue's tables were not found");
    let mut failures = Vec::new();
    for cells in &rows {
        let (what, input, want) = (first_code(cells[0]), code(cells[1]), code(cells[2]));
        if needs_feature(input).is_some_and(|f| !feature_on(f)) {
            continue;
        }
        let got = match (run(input), what.strip_prefix("Error::")) {
            (Err(e), Some(variant)) => {
                let debug = format!("{e:?}");
                let name = variant;
                if !debug.starts_with(name) {
                    failures.push(format!("{input}: expected Error::{name}, got {debug}"));
                }
                e.to_string()
            }
            (Err(e), None) => format!("unexpected error: {e}"),
            (Ok(warnings), _) if warnings.is_empty() => "(none)".to_string(),
            (Ok(warnings), _) => warnings.join("; "),
        };
        if got != want {
            failures.push(format!("{input}\n   doc: {want}\n  code: {got}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Every variant declared in src/error.rs has at least one row.
#[test]
fn every_error_variant_is_catalogued() {
    let variants: Vec<&str> = ERROR_RS
        .lines()
        .filter_map(|l| l.strip_prefix("    "))
        .filter(|l| l.starts_with(|c: char| c.is_ascii_uppercase()))
        .filter_map(|l| l.split([' ', ',', '{', '(']).next())
        .collect();
    assert!(variants.contains(&"InvalidConfig") && variants.contains(&"NonFinite"));
    let documented: Vec<String> = library_rows()
        .iter()
        .map(|cells| first_code(cells[0]).to_string())
        .collect();
    for v in variants {
        let tag = format!("Error::{v}");
        assert!(
            documented.contains(&tag),
            "{tag} has no row in docs/errors.md"
        );
    }
}
