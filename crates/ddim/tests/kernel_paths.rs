//! The step kernels give the same bits on every instruction set this machine supports
//! (portable, AVX2, AVX-512), over every golden step fixture, out of place and in place.
//! The paths are switched for the whole process, so this file holds a single test.

mod common;

use common::{config, parity_scheduler, usize_of, Fixtures};
use ddim::{force_kernel_path, kernel_path, KernelPath, StepOptions};

#[test]
fn every_path_gives_the_same_bits_on_every_golden_case() {
    let fx = Fixtures::load();
    let mut paths = vec![KernelPath::Portable];
    for p in [KernelPath::Avx2, KernelPath::Avx512] {
        force_kernel_path(Some(p));
        if kernel_path() == p {
            paths.push(p);
        }
    }
    eprintln!("paths on this machine: {paths:?}");
    let mut results: Vec<Vec<Vec<u32>>> = Vec::new();
    for &path in &paths {
        force_kernel_path(Some(path));
        assert_eq!(kernel_path(), path);
        let mut outputs = Vec::new();
        for case in fx.section("step_cases") {
            let mut scheduler = parity_scheduler(config(&case["config"])).unwrap();
            if scheduler.set_timesteps(usize_of(&case["n"])).is_err() {
                continue;
            }
            let noise = case["variance_noise"]
                .as_str()
                .map(|_| fx.f32(&case["variance_noise"]));
            let options = StepOptions {
                eta: case["eta"].as_f64().unwrap() as f32,
                use_clipped_model_output: case["use_clipped_model_output"].as_bool().unwrap(),
                variance_noise: noise,
                batch_size: Some(usize_of(&case["batch_size"])),
                ..Default::default()
            };
            let t = usize_of(&case["timestep"]);
            let (m, x) = (fx.f32(&case["model_output"]), fx.f32(&case["sample"]));
            let Ok(out) = scheduler.step(m, t, x, &options) else {
                continue;
            };
            let (mut m2, mut x2) = (m.to_vec(), x.to_vec());
            scheduler
                .step_in_place(&mut m2, t, &mut x2, &options)
                .unwrap();
            let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<u32>>();
            assert_eq!(bits(&x2), bits(&out.prev_sample), "{path:?} in place");
            outputs.push(bits(&out.prev_sample));
            outputs.push(bits(&out.pred_original_sample));
        }
        results.push(outputs);
    }
    force_kernel_path(None);
    let cases = results[0].len() / 2;
    assert!(cases > 50, "{cases}");
    for (path, r) in paths.iter().zip(&results).skip(1) {
        // NaN payloads can differ between paths; every fixture value here is compared bitwise
        // as the golden tests produce no NaN outside the refused cases.
        assert_eq!(r, &results[0], "{path:?} differs from the portable path");
    }
    eprintln!("{cases} golden step cases: identical bits on {paths:?}");
}
