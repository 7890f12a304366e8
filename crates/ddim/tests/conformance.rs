//! One conformance suite for every backend: the slice path, ndarray (standard and
//! non-standard layouts) and candle (fused kernel, candle ops, strided tensors), each element
//! type, on the diffusers fixtures of `tests/data/diffusers/` (steps, add_noise,
//! get_velocity, full loops).
//!
//! Two checks per backend and case:
//!
//! 1. **Against the slice path of the same dtype** (`Slice<T>`, the reference whose parity
//!    with diffusers `golden.rs` measures in detail): bit for bit on the CPU; on another
//!    device (`DDIM_TEST_DEVICE=cuda`), within 8 unit roundoffs of the dtype times the case's
//!    sensitivity.
//! 2. **Against diffusers** (float32 on torch CPU): within a per-dtype multiple of the case's
//!    sensitivity (the largest input magnitude times the step's amplification, as in
//!    `golden.rs`), allowing for the element type's own rounding.
//!
//! Each test prints a table of the largest differences it saw per backend (run with
//! `--nocapture`); `docs/backends.md` quotes them.

#[path = "conformance/backends.rs"]
mod backends;
mod common;

use std::collections::BTreeMap;

use backends::{Backend, Dtype, Slice, StepInputs};
use common::{config, parity_scheduler, sensitivity, usize_of, usizes, Fixtures};

fn all_backends() -> Vec<Box<dyn Backend>> {
    #[allow(unused_mut)]
    let mut list: Vec<Box<dyn Backend>> = vec![
        Box::new(Slice::<f32>::new()),
        Box::new(Slice::<f64>::new()),
        Box::new(Slice::<half::f16>::new()),
        Box::new(Slice::<half::bf16>::new()),
    ];
    #[cfg(feature = "ndarray")]
    {
        use backends::{NdLayout, Ndarray};
        for layout in [NdLayout::Standard, NdLayout::Reversed] {
            list.push(Box::new(Ndarray::<f32>::new(layout)));
            list.push(Box::new(Ndarray::<f64>::new(layout)));
        }
    }
    #[cfg(feature = "candle")]
    {
        use backends::Candle;
        use ddim::backend::candle::Dispatch;
        for dispatch in [Dispatch::Auto, Dispatch::Ops] {
            list.push(Box::new(Candle::<half::f16>::new(dispatch, false)));
            list.push(Box::new(Candle::<half::bf16>::new(dispatch, false)));
            list.push(Box::new(Candle::<f32>::new(dispatch, false)));
            list.push(Box::new(Candle::<f64>::new(dispatch, false)));
        }
        list.push(Box::new(Candle::<f32>::new(Dispatch::Auto, true)));
        list.push(Box::new(Candle::<half::bf16>::new(Dispatch::Auto, true)));
    }
    list
}

/// The reference backend of a dtype.
fn reference(dtype: Dtype) -> Box<dyn Backend> {
    match dtype {
        Dtype::F16 => Box::new(Slice::<half::f16>::new()),
        Dtype::Bf16 => Box::new(Slice::<half::bf16>::new()),
        Dtype::F32 => Box::new(Slice::<f32>::new()),
        Dtype::F64 => Box::new(Slice::<f64>::new()),
    }
}

/// The tolerance against diffusers, in units of the case's sensitivity: diffusers' own f32
/// rounding (8 ulps, as `golden.rs`) plus, for the half types, their rounding of the inputs
/// and outputs.
fn diffusers_tolerance(dtype: Dtype) -> f64 {
    let f32_part = 8.0 * f64::from(f32::EPSILON);
    match dtype {
        Dtype::F32 | Dtype::F64 => f32_part,
        Dtype::F16 | Dtype::Bf16 => f32_part + 4.0 * dtype.unit_roundoff(),
    }
}

fn f64s(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| f64::from(x)).collect()
}

/// The largest differences one backend showed.
#[derive(Debug, Default, Clone, Copy)]
struct Stats {
    cases: usize,
    values: usize,
    /// Values bit-identical to the reference of the dtype.
    identical: usize,
    /// max |ours − reference| / (unit roundoff · scale).
    vs_reference: f64,
    /// max |ours − diffusers| / scale.
    vs_diffusers: f64,
}

struct Table(BTreeMap<String, Stats>);

impl Table {
    fn new() -> Self {
        Self(BTreeMap::new())
    }

    fn print(&self, what: &str) {
        println!("{what}: backend | cases | values | identical to slice path | max diff to slice path (unit roundoffs x scale) | max diff to diffusers (x scale)");
        for (name, s) in &self.0 {
            println!(
                "  {name} | {} | {} | {:.2}% | {:.3} | {:.3e}",
                s.cases,
                s.values,
                100.0 * s.identical as f64 / s.values.max(1) as f64,
                s.vs_reference,
                s.vs_diffusers
            );
        }
    }
}

/// Compares one output of a backend with its reference and with diffusers.
#[allow(clippy::too_many_arguments)]
fn check_output(
    stats: &mut Stats,
    backend: &dyn Backend,
    what: &str,
    ours: &[f64],
    reference: &[f64],
    theirs: &[f32],
    scale: f64,
    residue: bool,
) {
    let dtype = backend.dtype();
    let u = dtype.unit_roundoff();
    assert_eq!(ours.len(), theirs.len(), "{what}");
    for (i, ((&a, &r), &b)) in ours.iter().zip(reference).zip(theirs).enumerate() {
        stats.values += 1;
        if a.to_bits() == r.to_bits() || a.is_nan() && r.is_nan() {
            stats.identical += 1;
        } else {
            assert!(
                !backend.exact(),
                "{} {what}[{i}]: {a} vs slice path {r}",
                backend.name()
            );
            let d = (a - r).abs() / (u * scale.max(r.abs()));
            assert!(
                d <= 8.0,
                "{} {what}[{i}]: {a} vs slice path {r}",
                backend.name()
            );
            stats.vs_reference = stats.vs_reference.max(d);
        }
        let b = f64::from(b);
        if !(a.is_finite() && b.is_finite()) {
            // diffusers #5969 (NaN from √ of a rounding-level negative; 0 here), and f16's
            // range: x̂₀ and ε̂ are at most twice the scale (inputs times the step's gain);
            // where that passes 65504 they can overflow to ±∞ in f16 (and a quantile between
            // two infinities is NaN).
            let nan_5969 = b.is_nan() && !a.is_nan() && residue;
            let f16_overflow = dtype == Dtype::F16 && 2.0 * scale.max(b.abs()) >= 65504.0;
            assert!(
                a == b || a.is_nan() && b.is_nan() || nan_5969 || f16_overflow,
                "{} {what}[{i}]: {a} vs diffusers {b}",
                backend.name()
            );
            continue;
        }
        let scale = scale.max(b.abs());
        let err = (a - b).abs() / scale;
        let bound = diffusers_tolerance(dtype)
            + if residue {
                (8.0 * f64::from(f32::EPSILON)).sqrt()
            } else {
                0.0
            };
        assert!(
            err <= bound,
            "{} {what}[{i}]: {a} vs diffusers {b}: {err:.3e} of the scale {scale:.3e}",
            backend.name()
        );
        if !residue {
            stats.vs_diffusers = stats.vs_diffusers.max(err);
        }
    }
}

#[test]
fn steps_conform() {
    let fx = Fixtures::load();
    let backends = all_backends();
    let mut table = Table::new();
    for case in fx.section("step_cases") {
        let id = case["id"].as_str().unwrap();
        let mut scheduler = parity_scheduler(config(&case["config"])).unwrap();
        if scheduler.set_timesteps(usize_of(&case["n"])).is_err() {
            continue; // leading + steps_offset reaching T: refused (golden.rs checks why)
        }
        let (m32, x32) = (fx.f32(&case["model_output"]), fx.f32(&case["sample"]));
        let z32 = case["variance_noise"]
            .as_str()
            .map(|_| fx.f32(&case["variance_noise"]));
        let (m, x, z) = (f64s(m32), f64s(x32), z32.map(f64s));
        let shape = fx.shape(&case["sample"]);
        assert_eq!(shape[0], usize_of(&case["batch_size"]), "{id}");
        let eta = case["eta"].as_f64().unwrap() as f32;
        let ucmo = case["use_clipped_model_output"].as_bool().unwrap();
        let t = usize_of(&case["timestep"]);
        let inputs = StepInputs {
            m: &m,
            t,
            x: &x,
            shape,
            eta,
            ucmo,
            z: z.as_deref(),
        };
        let run = |b: &dyn Backend| b.step(&scheduler, &inputs);
        let Ok(c) = scheduler.step_coefficients(t, eta) else {
            // η > 1 beyond σ² ≤ 1 − ᾱ_prev: every backend refuses.
            for b in &backends {
                assert!(run(b.as_ref()).is_err(), "{} {id}", b.name());
            }
            continue;
        };
        let scale = sensitivity(
            &c,
            scheduler.config().prediction_type,
            ucmo,
            &[m32, x32, z32.unwrap_or(&[])],
        );
        let residue = eta > 0.0
            && c.alpha_prod_t_prev < 1.0
            && f64::from(c.direction).powi(2)
                <= 8.0 * f64::from(f32::EPSILON) * f64::from(1.0 - c.alpha_prod_t_prev);
        let references: BTreeMap<_, _> = [Dtype::F16, Dtype::Bf16, Dtype::F32, Dtype::F64]
            .into_iter()
            .map(|d| (format!("{d:?}"), run(reference(d).as_ref()).unwrap()))
            .collect();
        for b in &backends {
            let (prev, x0) = run(b.as_ref()).unwrap_or_else(|e| panic!("{} {id}: {e}", b.name()));
            let (rp, rx) = &references[&format!("{:?}", b.dtype())];
            let stats = table.0.entry(b.name()).or_default();
            stats.cases += 1;
            let what = format!("{id} prev_sample");
            let theirs = fx.f32(&case["prev_sample"]);
            check_output(stats, b.as_ref(), &what, &prev, rp, theirs, scale, residue);
            let what = format!("{id} pred_original_sample");
            let theirs = fx.f32(&case["pred_original_sample"]);
            check_output(stats, b.as_ref(), &what, &x0, rx, theirs, scale, residue);
        }
    }
    table.print("step");
    assert!(table.0.values().all(|s| s.cases > 1000));
}

#[test]
fn add_noise_and_velocity_conform() {
    let fx = Fixtures::load();
    let backends = all_backends();
    let mut table = Table::new();
    for (section, a, velocity) in [
        ("add_noise_cases", "original_samples", false),
        ("velocity_cases", "sample", true),
    ] {
        for case in fx.section(section) {
            let Ok(scheduler) = parity_scheduler(config(&case["config"])) else {
                continue; // β outside [0, 1]: refused, see golden.rs
            };
            let ts = usizes(&case["timesteps"]);
            let (x32, z32) = (fx.f32(&case[a]), fx.f32(&case["noise"]));
            let (x, z) = (f64s(x32), f64s(z32));
            let shape = fx.shape(&case[a]);
            let theirs = fx.f32(&case["expected"]);
            let scale = x32
                .iter()
                .chain(z32)
                .fold(0.0f64, |m, v| m.max(f64::from(v.abs())));
            for b in &backends {
                let run = |b: &dyn Backend| {
                    b.combine(&scheduler, &x, &z, shape, &ts, velocity)
                        .unwrap_or_else(|e| panic!("{} {section}: {e}", b.name()))
                };
                let ours = run(b.as_ref());
                let r = run(reference(b.dtype()).as_ref());
                let stats = table.0.entry(b.name()).or_default();
                stats.cases += 1;
                check_output(stats, b.as_ref(), section, &ours, &r, theirs, scale, false);
            }
        }
    }
    table.print("add_noise / get_velocity");
}

#[test]
fn loops_conform() {
    let fx = Fixtures::load();
    let backends = all_backends();
    let mut worst: BTreeMap<String, (f64, bool)> = BTreeMap::new();
    for case in fx.section("loops") {
        let id = case["id"].as_str().unwrap();
        let mut scheduler = parity_scheduler(config(&case["config"])).unwrap();
        scheduler.set_timesteps(usize_of(&case["n"])).unwrap();
        let timesteps = usizes(&case["timesteps"]);
        let initial = f64s(fx.f32(&case["initial_sample"]));
        let shape = fx.shape(&case["initial_sample"]);
        let noise = case["noise_per_step"]
            .as_str()
            .map(|_| f64s(fx.f32(&case["noise_per_step"])));
        let eta = case["eta"].as_f64().unwrap() as f32;
        let ucmo = case["use_clipped_model_output"].as_bool().unwrap();
        // diffusers' dummy model, sample · t/(t + 1), in f32 as diffusers evaluates it (the
        // same model for every backend; the backend rounds it to its dtype).
        let run = |b: &dyn Backend| {
            let mut x = initial.clone();
            for (i, &t) in timesteps.iter().enumerate() {
                let tf = t as f32;
                let m: Vec<f64> = x
                    .iter()
                    .map(|&v| f64::from(v as f32 * tf / (tf + 1.0)))
                    .collect();
                let z = noise.as_ref().map(|z| &z[i * x.len()..(i + 1) * x.len()]);
                let inputs = StepInputs {
                    m: &m,
                    t,
                    x: &x,
                    shape,
                    eta,
                    ucmo,
                    z,
                };
                x = b.step(&scheduler, &inputs).unwrap().0;
            }
            x
        };
        let theirs = fx.f32(&case["final_sample"]);
        let top = theirs
            .iter()
            .filter(|v| v.is_finite())
            .fold(0.0f64, |m, v| m.max(f64::from(v.abs())));
        for b in &backends {
            let ours = run(b.as_ref());
            let r = run(reference(b.dtype()).as_ref());
            let identical = ours
                .iter()
                .zip(&r)
                .all(|(a, r)| a.to_bits() == r.to_bits() || a.is_nan() && r.is_nan());
            assert!(identical || !b.exact(), "{} {id}", b.name());
            let rel = ours
                .iter()
                .zip(theirs)
                .map(|(a, &b)| (a - f64::from(b)).abs() / top)
                .fold(0.0, f64::max);
            // Half precision is compared with the slice path only: a loop through a step
            // that divides by √ᾱ_t ≈ 0 (cosine's or trailing's first step) amplifies its
            // input rounding past any useful bound (measured: up to 2.7 of the largest value
            // for bf16, 0.33 for f16).
            let half = matches!(b.dtype(), Dtype::F16 | Dtype::Bf16);
            assert!(
                half || rel <= 1e-5,
                "{} {id}: {rel:.3e} of the largest value",
                b.name()
            );
            let w = worst.entry(b.name()).or_insert((0.0, true));
            w.0 = w.0.max(rel);
            w.1 &= identical;
        }
    }
    println!("full loops: backend | identical to the slice path | max diff to diffusers (of the largest value)");
    for (name, (rel, identical)) in &worst {
        println!("  {name} | {identical} | {rel:.3e}");
    }
}
