//! Reading the fixtures that `tools/gen_fixtures.py` wrote from the real diffusers, and
//! comparing floats in ulps.

#![allow(dead_code, unreachable_pub)] // each test binary uses part of this module

use std::collections::HashMap;
use std::path::PathBuf;

use ddim::{DdimConfig, DdimScheduler, PredictionType, StepCoefficients, ZeroSnrGuard};
use safetensors::{Dtype, SafeTensors};
use serde_json::{Map, Value};

/// Deterministic pseudo-random values in [-2, 2) (an LCG; no dependency needed).
pub fn pseudo_random(n: usize, seed: u32) -> Vec<f32> {
    let mut state = seed;
    (0..n)
        .map(|_| {
            state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (state >> 8) as f32 / (1u32 << 24) as f32 * 4.0 - 2.0
        })
        .collect()
}

pub fn data_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data")
}

/// The manifest and every tensor of the fixture set.
pub struct Fixtures {
    pub manifest: Value,
    f32s: HashMap<String, Vec<f32>>,
    i32s: HashMap<String, Vec<i32>>,
    shapes: HashMap<String, Vec<usize>>,
}

impl Fixtures {
    pub fn load() -> Self {
        let dir = data_dir().join("diffusers");
        let manifest: Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("manifest.json")).unwrap())
                .unwrap();
        let bytes = std::fs::read(dir.join("tensors.safetensors")).unwrap();
        let tensors = SafeTensors::deserialize(&bytes).unwrap();
        let (mut f32s, mut i32s, mut shapes) = (HashMap::new(), HashMap::new(), HashMap::new());
        for (name, view) in tensors.tensors() {
            shapes.insert(name.clone(), view.shape().to_vec());
            let data = view.data();
            match view.dtype() {
                Dtype::F32 => {
                    let v = data
                        .chunks_exact(4)
                        .map(|c| f32::from_le_bytes(c.try_into().unwrap()));
                    f32s.insert(name, v.collect());
                }
                Dtype::I32 => {
                    let v = data
                        .chunks_exact(4)
                        .map(|c| i32::from_le_bytes(c.try_into().unwrap()));
                    i32s.insert(name, v.collect());
                }
                other => panic!("unexpected dtype {other:?} for {name}"),
            }
        }
        Self {
            manifest,
            f32s,
            i32s,
            shapes,
        }
    }

    pub fn section(&self, name: &str) -> &[Value] {
        self.manifest[name]
            .as_array()
            .unwrap_or_else(|| panic!("no section {name}"))
    }

    pub fn f32(&self, name: &Value) -> &[f32] {
        let name = name.as_str().unwrap();
        self.f32s
            .get(name)
            .unwrap_or_else(|| panic!("no f32 tensor {name}"))
    }

    pub fn i32(&self, name: &Value) -> &[i32] {
        let name = name.as_str().unwrap();
        self.i32s
            .get(name)
            .unwrap_or_else(|| panic!("no i32 tensor {name}"))
    }

    pub fn shape(&self, name: &Value) -> &[usize] {
        &self.shapes[name.as_str().unwrap()]
    }
}

/// A DDIM config from the manifest's dict of `__init__` kwargs, loaded the way diffusers
/// loads a config dict.
pub fn config(kwargs: &Value) -> DdimConfig {
    let object: &Map<String, Value> = kwargs.as_object().unwrap();
    DdimConfig::load_json_object(object).unwrap().config
}

/// The distance between two f32 in units in the last place (0 for equal values, including
/// equal infinities and two NaNs; u32::MAX when only one is NaN).
pub fn ulps(a: f32, b: f32) -> u32 {
    if a.is_nan() || b.is_nan() {
        return if a.is_nan() && b.is_nan() {
            0
        } else {
            u32::MAX
        };
    }
    if a == b {
        return 0;
    }
    let key = |x: f32| {
        let bits = x.to_bits() as i64;
        if bits & 0x8000_0000 != 0 {
            -(bits & 0x7fff_ffff)
        } else {
            bits
        }
    };
    (key(a) - key(b)).unsigned_abs().min(u64::from(u32::MAX)) as u32
}

/// The worst disagreement seen across comparisons, for the report each test prints.
#[derive(Debug, Default, Clone, Copy)]
pub struct Worst {
    pub max_ulps: u32,
    pub max_abs: f64,
    pub max_rel: f64,
    pub compared: usize,
    pub bit_exact: usize,
    /// Pairs where one side is finite and the other not, or NaN against a number.
    pub non_finite_mismatches: usize,
}

impl Worst {
    /// Compares two arrays element by element; returns the worst ulp distance of this pair.
    pub fn compare(&mut self, ours: &[f32], theirs: &[f32], what: &str) -> u32 {
        assert_eq!(ours.len(), theirs.len(), "{what}: length");
        let mut worst = 0;
        for (&a, &b) in ours.iter().zip(theirs) {
            let comparable = a.is_finite() && b.is_finite();
            if !(comparable || a == b || a.is_nan() && b.is_nan()) {
                self.non_finite_mismatches += 1;
                continue;
            }
            let u = ulps(a, b);
            worst = worst.max(u);
            self.compared += 1;
            if u == 0 {
                self.bit_exact += 1;
            } else if a.is_finite() && b.is_finite() {
                let abs = f64::from((a - b).abs());
                self.max_abs = self.max_abs.max(abs);
                let scale = f64::from(a.abs().max(b.abs()));
                self.max_rel = self.max_rel.max(abs / scale);
            }
        }
        self.max_ulps = self.max_ulps.max(worst);
        worst
    }

    pub fn report(&self, what: &str) {
        println!(
            "{what}: {} values, {:.2}% bit-exact, max {} ulp, max abs err {:.3e}, max rel err {:.3e}, {} non-finite mismatches",
            self.compared,
            100.0 * self.bit_exact as f64 / self.compared.max(1) as f64,
            self.max_ulps,
            self.max_abs,
            self.max_rel,
            self.non_finite_mismatches
        );
    }
}

/// A scheduler with diffusers' behaviour everywhere, including ε-prediction on a zero-SNR
/// schedule (the library refuses that by default; the fixtures record diffusers' inf/NaN).
#[allow(dead_code)]
pub fn parity_scheduler(config: DdimConfig) -> ddim::Result<DdimScheduler> {
    DdimScheduler::new(config).map(|s| s.with_zero_snr_guard(ZeroSnrGuard::Off))
}

/// A JSON count of the fixtures.
pub fn usize_of(v: &Value) -> usize {
    v.as_u64().unwrap() as usize
}

/// A JSON list of counts (timesteps) of the fixtures.
pub fn usizes(v: &Value) -> Vec<usize> {
    v.as_array().unwrap().iter().map(usize_of).collect()
}

/// How much a 1-ulp change in a scalar coefficient can move the step's outputs: the largest
/// input magnitude times the worst amplification on the way. Divisions amplify
/// (x̂₀ = (x − √b·m)/√a divides by √ᾱ_t; ε̂ from x̂₀ by √(1 − ᾱ_t)), and so do the
/// cancellations inside the coefficients: σ² has the factor 1 − ᾱ_t/ᾱ_prev (small for close
/// timesteps), and the direction coefficient is √((1 − ᾱ_prev) − σ²) (small when η ≈ 1).
pub fn sensitivity(
    c: &StepCoefficients,
    prediction: PredictionType,
    clipped_eps: bool,
    inputs: &[&[f32]],
) -> f64 {
    let (sa, sb) = (
        f64::from(c.sqrt_alpha_prod_t),
        f64::from(c.sqrt_beta_prod_t),
    );
    let mut gain: f64 = match prediction {
        PredictionType::Epsilon => 1.0 / sa,
        PredictionType::Sample => 1.0 / sb,
        PredictionType::VPrediction => 1.0,
    };
    if clipped_eps {
        gain = gain.max(1.0 / sb);
    }
    let (a, a_prev) = (f64::from(c.alpha_prod_t), f64::from(c.alpha_prod_t_prev));
    let direction_sq = f64::from(c.direction).powi(2);
    if direction_sq > 0.0 {
        gain = gain.max((1.0 - a_prev) / direction_sq);
    }
    if c.eta > 0.0 && a < a_prev {
        gain = gain.max(1.0 / (1.0 - a / a_prev));
    }
    let magnitude = inputs
        .iter()
        .flat_map(|v| v.iter())
        .filter(|v| v.is_finite())
        .fold(0.0f64, |m, v| m.max(f64::from(v.abs())));
    magnitude * gain.max(1.0)
}

/// One scheduler per combination of the step's modes that selects its own code path: every
/// prediction type, each with no bound, with clipping and with thresholding (other settings
/// from `base`), `steps` timesteps set; with a label naming the combination.
pub fn mode_schedulers(base: &DdimConfig, steps: usize) -> Vec<(String, DdimScheduler)> {
    let mut schedulers = Vec::new();
    for prediction_type in PredictionType::ALL.iter().copied() {
        for (clip_sample, thresholding) in [(false, false), (true, false), (false, true)] {
            let config = DdimConfig {
                prediction_type,
                clip_sample,
                thresholding,
                ..base.clone()
            };
            let mut scheduler = DdimScheduler::new(config).unwrap();
            scheduler.set_timesteps(steps).unwrap();
            let label = format!("{prediction_type} clip={clip_sample} threshold={thresholding}");
            schedulers.push((label, scheduler));
        }
    }
    schedulers
}
