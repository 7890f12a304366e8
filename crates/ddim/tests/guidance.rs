//! Classifier-free guidance and `rescale_noise_cfg` against the real diffusers 0.42.1
//! (fixtures from `tools/gen_guidance_fixtures.py`), plus the element types, the zero-std
//! policy and the argument checks.

mod common;

use std::collections::HashMap;

use common::{pseudo_random, ulps, Worst};
use ddim::guidance::{classifier_free_guidance, rescale_noise_cfg};
use ddim::half::{bf16, f16};
use ddim::{Element, Error};
use safetensors::{Dtype, SafeTensors};
use serde_json::Value;

struct Data {
    manifest: Value,
    f32s: HashMap<String, Vec<f32>>,
    f64s: HashMap<String, Vec<f64>>,
}

fn load() -> Data {
    let dir = common::data_dir().join("guidance");
    let manifest: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("manifest.json")).unwrap()).unwrap();
    let bytes = std::fs::read(dir.join("tensors.safetensors")).unwrap();
    let tensors = SafeTensors::deserialize(&bytes).unwrap();
    let (mut f32s, mut f64s) = (HashMap::new(), HashMap::new());
    for (name, view) in tensors.tensors() {
        match view.dtype() {
            Dtype::F32 => {
                let v = view.data().chunks_exact(4);
                f32s.insert(
                    name,
                    v.map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                        .collect(),
                );
            }
            Dtype::F64 => {
                let v = view.data().chunks_exact(8);
                f64s.insert(
                    name,
                    v.map(|c| f64::from_le_bytes(c.try_into().unwrap()))
                        .collect(),
                );
            }
            other => panic!("unexpected dtype {other:?} for {name}"),
        }
    }
    Data {
        manifest,
        f32s,
        f64s,
    }
}

impl Data {
    fn f32(&self, name: &Value) -> &[f32] {
        &self.f32s[name.as_str().unwrap()]
    }
    fn f64(&self, name: &Value) -> &[f64] {
        &self.f64s[name.as_str().unwrap()]
    }
    fn cases(&self, dtype: &str) -> Vec<&Value> {
        let all = self.manifest["cases"].as_array().unwrap();
        all.iter().filter(|c| c["dtype"] == dtype).collect()
    }
}

fn num(case: &Value, key: &str) -> f32 {
    case[key].as_f64().unwrap() as f32
}

fn ulps64(a: f64, b: f64) -> u64 {
    if a == b || a.is_nan() && b.is_nan() {
        return 0;
    }
    let key = |x: f64| {
        let bits = x.to_bits() as i128;
        if bits & (1 << 63) != 0 {
            -(bits & 0x7fff_ffff_ffff_ffff)
        } else {
            bits
        }
    };
    (key(a) - key(b)).unsigned_abs() as u64
}

#[test]
fn f32_matches_diffusers() {
    let data = load();
    let cases = data.cases("f32");
    assert!(cases.len() >= 20, "{} f32 cases", cases.len());
    let (mut cfg_worst, mut out_worst) = (Worst::default(), Worst::default());
    let mut dominated_worst = Worst::default();
    let mut per_case = Vec::new();
    for case in &cases {
        let (uncond, text) = (data.f32(&case["uncond"]), data.f32(&case["text"]));
        let (cfg_expected, expected) = (data.f32(&case["cfg"]), data.f32(&case["out"]));
        let batch = case["batch_size"].as_u64().unwrap() as usize;
        let (w, phi) = (num(case, "guidance_scale"), num(case, "guidance_rescale"));

        let mut cfg = vec![0.0f32; uncond.len()];
        classifier_free_guidance(uncond, text, w, &mut cfg).unwrap();
        cfg_worst.compare(&cfg, cfg_expected, "cfg");

        // The rescale starts from diffusers' own guided prediction, so each check is separate.
        let mut out = cfg_expected.to_vec();
        rescale_noise_cfg(&mut out, text, phi, batch).unwrap();
        let u = if case["mean_dominates"] == true {
            dominated_worst.compare(&out, expected, "rescale_noise_cfg")
        } else {
            out_worst.compare(&out, expected, "rescale_noise_cfg")
        };
        per_case.push(format!("{:?} w={w} phi={phi}: {u} ulp", case["shape"]));
    }
    for line in &per_case {
        println!("  {line}");
    }
    cfg_worst.report("classifier_free_guidance vs diffusers (f32)");
    out_worst.report("rescale_noise_cfg vs diffusers (f32)");
    dominated_worst.report("rescale_noise_cfg vs diffusers (f32, |mean| >= 100 std)");
    assert_eq!(
        cfg_worst.max_ulps, 0,
        "the guidance combination is plain f32 arithmetic"
    );
    assert_eq!(out_worst.max_ulps, 0, "ordinary samples are bit-exact");
    let non_finite = cfg_worst.non_finite_mismatches
        + out_worst.non_finite_mismatches
        + dominated_worst.non_finite_mismatches;
    assert_eq!(non_finite, 0);
    // A batch of one takes its mean from torch's float32 cascade sum: with a correctly rounded
    // sum instead, these samples were up to 4 ulp off.
    assert!(dominated_worst.compared > 10_000);
    assert_eq!(
        dominated_worst.max_ulps, 0,
        "mean-dominated samples are bit-exact"
    );
}

#[test]
fn f64_matches_diffusers() {
    let data = load();
    let cases = data.cases("f64");
    assert!(cases.len() >= 3);
    let (mut cfg_max, mut out_max, mut compared) = (0u64, 0u64, 0usize);
    for case in &cases {
        let (uncond, text) = (data.f64(&case["uncond"]), data.f64(&case["text"]));
        let (cfg_expected, expected) = (data.f64(&case["cfg"]), data.f64(&case["out"]));
        let batch = case["batch_size"].as_u64().unwrap() as usize;
        let (w, phi) = (num(case, "guidance_scale"), num(case, "guidance_rescale"));
        let mut cfg = vec![0.0f64; uncond.len()];
        classifier_free_guidance(uncond, text, w, &mut cfg).unwrap();
        let mut out = cfg_expected.to_vec();
        rescale_noise_cfg(&mut out, text, phi, batch).unwrap();
        for (a, b) in cfg.iter().zip(cfg_expected) {
            cfg_max = cfg_max.max(ulps64(*a, *b));
        }
        let mut worst = 0;
        for (a, b) in out.iter().zip(expected) {
            worst = worst.max(ulps64(*a, *b));
        }
        println!("  f64 {:?} phi={phi}: {worst} ulp", case["shape"]);
        out_max = out_max.max(worst);
        compared += out.len();
    }
    println!("f64: {compared} values, cfg max {cfg_max} ulp, rescale max {out_max} ulp");
    assert_eq!(cfg_max, 0);
    assert_eq!(out_max, 0);
}

/// Half precision computes in f32 from the widened inputs and rounds once: exactly the f32
/// result of the widened inputs, rounded.
fn check_half<T: Element<Compute = f32> + PartialEq>(round: fn(f32) -> T, widen: fn(T) -> f32) {
    let batch = 3;
    let n = batch * 4 * 5;
    let uncond: Vec<T> = pseudo_random(n, 1).into_iter().map(round).collect();
    let text: Vec<T> = pseudo_random(n, 2).into_iter().map(round).collect();
    let (uw, tw): (Vec<f32>, Vec<f32>) = (
        uncond.iter().map(|&v| widen(v)).collect(),
        text.iter().map(|&v| widen(v)).collect(),
    );
    let mut cfg = vec![round(0.0); n];
    classifier_free_guidance(&uncond, &text, 7.5, &mut cfg).unwrap();
    let mut cfg32 = vec![0.0f32; n];
    classifier_free_guidance(&uw, &tw, 7.5, &mut cfg32).unwrap();
    let rounded: Vec<T> = cfg32.iter().map(|&v| round(v)).collect();
    assert!(cfg == rounded, "cfg");

    let cfg_wide: Vec<f32> = cfg.iter().map(|&v| widen(v)).collect();
    rescale_noise_cfg(&mut cfg, &text, 0.7, batch).unwrap();
    let mut expected = cfg_wide;
    rescale_noise_cfg(&mut expected, &tw, 0.7, batch).unwrap();
    let rounded: Vec<T> = expected.iter().map(|&v| round(v)).collect();
    assert!(cfg == rounded, "rescale");
}

#[test]
fn half_precision_rounds_the_f32_result_once() {
    check_half(f16::from_f32, f16::to_f32);
    check_half(bf16::from_f32, bf16::to_f32);
}

#[test]
fn constant_sample_is_an_error_and_changes_nothing() {
    let data = load();
    let zero = data.manifest["zero_std"].as_array().unwrap();
    assert!(!zero.is_empty());
    for case in zero {
        // What diffusers does with it: non-finite values in the constant sample only.
        assert_eq!(case["diffusers_sample0_finite"], true);
        assert_eq!(case["diffusers_sample1_finite"], false);
        let (cfg, text) = (data.f32(&case["cfg"]), data.f32(&case["text"]));
        let mut ours = cfg.to_vec();
        let err = rescale_noise_cfg(&mut ours, text, 0.7, 2).unwrap_err();
        assert!(matches!(err, Error::ZeroStdCfg { sample: 1 }), "{err}");
        assert!(err.to_string().contains("sample 1"), "{err}");
        assert_eq!(ours, cfg, "noise_cfg must be left unchanged on error");
        // Each sample on its own: the non-constant one rescales as in the batch call.
        let per = cfg.len() / 2;
        let mut first = cfg[..per].to_vec();
        rescale_noise_cfg(&mut first, &text[..per], 0.7, 1).unwrap();
        assert!(first.iter().all(|v| v.is_finite()));
    }
}

#[test]
fn zero_text_spread_is_fine() {
    // std_text = 0 gives ratio 0: the result is (1 − φ)·noise_cfg, as in diffusers.
    let mut cfg = pseudo_random(8, 5);
    let original = cfg.clone();
    rescale_noise_cfg(&mut cfg, &[0.5f32; 8], 0.75, 1).unwrap();
    for (a, b) in cfg.iter().zip(&original) {
        assert_eq!(*a, 0.75f32 * (b * 0.0) + 0.25 * b);
    }
}

#[test]
fn phi_zero_leaves_finite_values_unchanged() {
    let mut cfg = pseudo_random(2 * 16, 7);
    let original = cfg.clone();
    rescale_noise_cfg(&mut cfg, &pseudo_random(2 * 16, 8), 0.0, 2).unwrap();
    assert!(cfg.iter().zip(&original).all(|(a, b)| ulps(*a, *b) == 0));
}

#[test]
fn bad_arguments_are_errors() {
    let a = pseudo_random(12, 1);
    let b = pseudo_random(12, 2);
    let mut out = vec![0.0f32; 12];
    let e = classifier_free_guidance(&a, &b[..11], 7.5, &mut out).unwrap_err();
    assert!(matches!(
        e,
        Error::LengthMismatch {
            name: "noise_pred_text",
            expected: 12,
            got: 11
        }
    ));
    let e = classifier_free_guidance(&a, &b, 7.5, &mut out[..10]).unwrap_err();
    assert!(matches!(e, Error::LengthMismatch { name: "out", .. }));
    for bad in [f32::NAN, f32::INFINITY] {
        let e = classifier_free_guidance(&a, &b, bad, &mut out).unwrap_err();
        assert!(matches!(
            e,
            Error::InvalidStepOption {
                name: "guidance_scale",
                ..
            }
        ));
        let e = rescale_noise_cfg(&mut out, &b, bad, 1).unwrap_err();
        assert!(matches!(
            e,
            Error::InvalidStepOption {
                name: "guidance_rescale",
                ..
            }
        ));
    }
    let mut cfg = a.clone();
    for batch in [0, 5] {
        let e = rescale_noise_cfg(&mut cfg, &b, 0.7, batch).unwrap_err();
        assert!(matches!(e, Error::BatchSizeMismatch { len: 12, .. }), "{e}");
    }
    let e = rescale_noise_cfg(&mut cfg, &b, 0.7, 12).unwrap_err();
    assert!(matches!(
        e,
        Error::SampleTooSmall {
            per_sample: 1,
            minimum: 2
        }
    ));
    let e = rescale_noise_cfg(&mut cfg, &b[..6], 0.7, 1).unwrap_err();
    assert!(matches!(e, Error::LengthMismatch { .. }));
    assert_eq!(cfg, a, "errors leave noise_cfg unchanged");
}
