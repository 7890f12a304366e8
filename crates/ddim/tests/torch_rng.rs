//! `ddim::rng` against vectors recorded from the real torch 2.15.0 / diffusers 0.42.1 by
//! `tools/gen_rng_fixtures.py` (CPU: bit for bit; CUDA: against the reference model).

use std::collections::HashMap;

use ddim::element::Compute;
use ddim::half::{bf16, f16};
use ddim::rng::{
    randn_latents, randn_latents_per_item, CpuDispatch, CpuKernel, GpuProperties, NoiseGenerator,
    RandnElement, TorchCpuGenerator, TorchCudaGenerator,
};
use ddim::{DdimConfig, DdimScheduler, StepOptions};
use safetensors::{Dtype, SafeTensors};
use serde_json::Value;

struct Fixtures {
    manifest: Value,
    /// Every tensor as its values' bit patterns (widened to u64) and its dtype.
    tensors: HashMap<String, (Dtype, Vec<u64>)>,
}

fn load() -> Fixtures {
    let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/torch_rng");
    let manifest: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("manifest.json")).unwrap()).unwrap();
    let bytes = std::fs::read(dir.join("tensors.safetensors")).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let mut tensors = HashMap::new();
    for (name, view) in st.tensors() {
        let width = match view.dtype() {
            Dtype::F64 => 8,
            Dtype::F32 => 4,
            Dtype::F16 | Dtype::BF16 => 2,
            other => panic!("unexpected dtype {other:?}"),
        };
        let bits = view
            .data()
            .chunks_exact(width)
            .map(|c| {
                let mut b = [0u8; 8];
                b[..width].copy_from_slice(c);
                u64::from_le_bytes(b)
            })
            .collect();
        tensors.insert(name, (view.dtype(), bits));
    }
    Fixtures { manifest, tensors }
}

impl Fixtures {
    fn bits(&self, name: &Value) -> &[u64] {
        &self.tensors[name.as_str().unwrap()].1
    }
    fn f32s(&self, name: &Value) -> Vec<f32> {
        let (dtype, bits) = &self.tensors[name.as_str().unwrap()];
        assert_eq!(*dtype, Dtype::F32);
        bits.iter().map(|&b| f32::from_bits(b as u32)).collect()
    }
    fn section(&self, name: &str) -> &[Value] {
        self.manifest[name].as_array().unwrap()
    }
}

/// A seed written as Python int text, reduced mod 2⁶⁴ as `manual_seed` does.
fn seed(v: &Value) -> u64 {
    let s: i128 = v.as_str().unwrap().parse().unwrap();
    s.rem_euclid(1 << 64) as u64
}

trait Bits: RandnElement {
    fn bits(self) -> u64;
}
impl Bits for f32 {
    fn bits(self) -> u64 {
        self.to_bits().into()
    }
}
impl Bits for f64 {
    fn bits(self) -> u64 {
        self.to_bits()
    }
}
impl Bits for f16 {
    fn bits(self) -> u64 {
        self.to_bits().into()
    }
}
impl Bits for bf16 {
    fn bits(self) -> u64 {
        self.to_bits().into()
    }
}

/// Both code paths of the CPU generator: the AVX2 + FMA copy where the CPU has it (the
/// default), and the portable one. Every CPU check runs over both.
const DISPATCHES: [CpuDispatch; 2] = [CpuDispatch::Detect, CpuDispatch::Portable];

fn cpu_generator(seed: u64, dispatch: CpuDispatch) -> TorchCpuGenerator {
    TorchCpuGenerator::new(seed).with_dispatch(dispatch)
}

fn draw<T: Bits>(g: &mut TorchCpuGenerator, op: &str, n: usize) -> Vec<u64> {
    let mut v = vec![T::from_compute(<T::Compute as Compute>::ZERO); n];
    match op {
        "randn" => g.fill_randn(&mut v),
        "rand" => g.fill_rand(&mut v),
        other => panic!("unknown op {other}"),
    }
    v.into_iter().map(Bits::bits).collect()
}

#[test]
fn cpu_generator_matches_torch_bit_for_bit() {
    let fx = load();
    println!(
        "AVX2 + FMA path in use: {}",
        TorchCpuGenerator::new(0).uses_simd()
    );
    for dispatch in DISPATCHES {
        matches_torch_bit_for_bit(&fx, dispatch);
    }
}

fn matches_torch_bit_for_bit(fx: &Fixtures, dispatch: CpuDispatch) {
    let (mut values, mut calls, mut mismatches) = (0usize, 0usize, Vec::new());
    let mut kernels = HashMap::new();
    for case in fx.section("cpu") {
        let kernel = match case["kernel"].as_str().unwrap() {
            "avx2" => CpuKernel::Avx2,
            "scalar" => CpuKernel::Scalar,
            other => panic!("unknown kernel {other}"),
        };
        *kernels.entry(case["kernel"].as_str().unwrap()).or_insert(0) += 1;
        let mut g = cpu_generator(seed(&case["seed"]), dispatch).with_kernel(kernel);
        for (j, call) in case["calls"].as_array().unwrap().iter().enumerate() {
            let n: usize = call["shape"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d.as_u64().unwrap() as usize)
                .product();
            let op = call["op"].as_str().unwrap();
            let got = match call["dtype"].as_str().unwrap() {
                "f32" => draw::<f32>(&mut g, op, n),
                "f64" => draw::<f64>(&mut g, op, n),
                "f16" => draw::<f16>(&mut g, op, n),
                "bf16" => draw::<bf16>(&mut g, op, n),
                other => panic!("unknown dtype {other}"),
            };
            let want = fx.bits(&call["tensor"]);
            assert_eq!(got.len(), want.len());
            let bad = got.iter().zip(want).filter(|(a, b)| a != b).count();
            if bad > 0 {
                mismatches.push(format!(
                    "{dispatch:?}: seed {} kernel {kernel:?} call {j} ({op} {} n={n}): {bad} of \
                     {n} differ",
                    case["seed"], call["dtype"]
                ));
            }
            values += n;
            calls += 1;
        }
    }
    println!("{dispatch:?}: {calls} calls, {values} values, cases per kernel {kernels:?}");
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
    assert!(calls > 300 && kernels["scalar"] > 0);
}

/// zlib's CRC-32 (IEEE, reflected, init and final xor 0xFFFFFFFF).
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

#[test]
fn large_cpu_calls_match_torch() {
    let fx = load();
    for (dispatch, case) in DISPATCHES
        .into_iter()
        .flat_map(|d| fx.section("cpu_large").iter().map(move |c| (d, c)))
    {
        let n: usize = case["shape"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d.as_u64().unwrap() as usize)
            .product();
        let mut v = vec![0f32; n];
        cpu_generator(seed(&case["seed"]), dispatch).fill_randn(&mut v);
        let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
        let head = fx.f32s(&case["head"]);
        let tail = fx.f32s(&case["tail"]);
        let what = format!("{dispatch:?}: seed {} n {n}", case["seed"]);
        assert_eq!(v[..64], head[..], "{what}: head");
        assert_eq!(v[n - 64..], tail[..], "{what}: tail");
        assert_eq!(
            u64::from(crc32(&bytes)),
            case["crc32"].as_u64().unwrap(),
            "{what}: crc32 of all values"
        );
    }
}

#[test]
fn seeds_wrap_and_use_only_32_bits_on_cpu() {
    let draw = |s: u64| {
        let mut v = [0f32; 40];
        TorchCpuGenerator::new(s).fill_randn(&mut v);
        v
    };
    assert_eq!(draw(5), draw((1 << 32) + 5));
    assert_eq!(
        TorchCpuGenerator::from_signed_seed(-12345).initial_seed(),
        (-12345i64) as u64
    );
    let mut g = TorchCpuGenerator::new(3);
    let first = {
        let mut v = [0f32; 3];
        g.fill_randn(&mut v);
        v
    };
    g.manual_seed(3); // also clears the cached normal
    let mut again = [0f32; 3];
    g.fill_randn(&mut again);
    assert_eq!(first, again);
    assert_eq!(
        TorchCpuGenerator::default().initial_seed(),
        67_280_421_310_721
    );
}

fn config_from(v: &Value) -> DdimConfig {
    DdimConfig::from_json_str(&v.to_string()).unwrap()
}

fn max_ulps(a: &[f32], b: &[f32]) -> (u32, f32) {
    // ulps here are of each value itself (large near zero); the bound is on the abs diff.
    let mut worst = (0u32, 0f32);
    for (&x, &y) in a.iter().zip(b) {
        let key = |v: f32| {
            let i = v.to_bits() as i32;
            if i < 0 {
                i32::MIN - i
            } else {
                i
            }
        };
        let ulps = (key(x) as i64 - key(y) as i64).unsigned_abs() as u32;
        worst.0 = worst.0.max(ulps);
        worst.1 = worst.1.max((x - y).abs());
    }
    worst
}

#[test]
fn eta_one_ddim_loops_reproduce_diffusers() {
    let fx = load();
    for dispatch in DISPATCHES {
        ddim_loops_reproduce_diffusers(&fx, dispatch);
    }
}

fn ddim_loops_reproduce_diffusers(fx: &Fixtures, dispatch: CpuDispatch) {
    for case in fx.section("ddim_loops") {
        let name = case["name"].as_str().unwrap();
        let shape: Vec<usize> = case["shape"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d.as_u64().unwrap() as usize)
            .collect();
        let mut scheduler = DdimScheduler::new(config_from(&case["config"])).unwrap();
        scheduler
            .set_timesteps(case["steps"].as_u64().unwrap() as usize)
            .unwrap();
        let timesteps: Vec<usize> = case["timesteps"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_u64().unwrap() as usize)
            .collect();
        assert_eq!(scheduler.timesteps(), timesteps, "{name}");
        let options = StepOptions {
            eta: case["eta"].as_f64().unwrap() as f32,
            batch_size: Some(shape[0]),
            ..Default::default()
        };
        let scale = case["model_scale"].as_f64().unwrap() as f32;
        let constants: Vec<f32> = case["model_constants"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_f64().unwrap() as f32)
            .collect();
        let model = |x: &[f32], c: f32| x.iter().map(|&v| v * scale + c).collect::<Vec<f32>>();

        // One generator, or a list (diffusers' `generator=[...]`).
        let (mut single, mut list, per_item) = match &case["seeds"] {
            Value::Array(seeds) => {
                let list: Vec<_> = seeds
                    .iter()
                    .map(|s| cpu_generator(seed(s), dispatch))
                    .collect();
                (TorchCpuGenerator::default(), list, true)
            }
            s => (cpu_generator(seed(s), dispatch), Vec::new(), false),
        };
        let mut sample = if per_item {
            randn_latents_per_item::<f32, _>(&shape, &mut list).unwrap()
        } else {
            randn_latents::<f32, _>(&shape, &mut single).unwrap()
        };
        assert_eq!(sample, fx.f32s(&case["latents"]), "{name}: latents");
        for (&t, &c) in timesteps.iter().zip(&constants) {
            let eps = model(&sample, c);
            let out = if per_item {
                scheduler.step_with_generators(&eps, t, &sample, &options, &mut list)
            } else {
                scheduler.step_with_generator(&eps, t, &sample, &options, &mut single)
            };
            sample = out.unwrap().prev_sample;
        }
        let want = fx.f32s(&case["final_sample"]);
        let (ulps, abs) = max_ulps(&sample, &want);
        let bitwise = sample.iter().zip(&want).filter(|(a, b)| a == b).count();
        let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
        let rel = abs / scale;
        println!(
            "{dispatch:?} {name}: final sample vs diffusers: {bitwise} of {} bit-identical, max abs diff \
             {abs:.3e} = {rel:.2e} of the largest value {scale:.3} (max {ulps} ulp)",
            want.len()
        );
        // The noise is the same bit for bit (the latents are checked above); what is left is
        // torch's MKL sqrt against IEEE sqrt, as in the golden loops (README: parity figures).
        assert!(rel < 1e-5, "{name}: {rel:.3e} of the largest value");
    }
}

#[test]
fn generator_errors_draw_nothing() {
    let mut scheduler = DdimScheduler::new(DdimConfig::default()).unwrap();
    scheduler.set_timesteps(10).unwrap();
    let options = StepOptions {
        eta: 1.0,
        batch_size: Some(2),
        ..Default::default()
    };
    let mut gens = vec![TorchCpuGenerator::new(0); 3];
    let err = scheduler
        .step_with_generators(&[0.0f32; 8], 900, &[0.0; 8], &options, &mut gens)
        .unwrap_err();
    assert!(matches!(
        err,
        ddim::Error::GeneratorCountMismatch {
            generators: 3,
            batch_size: 2
        }
    ));
    let mut g = TorchCpuGenerator::new(0);
    let noise = [0f32; 8];
    let both = StepOptions {
        variance_noise: Some(&noise),
        ..options
    };
    assert!(matches!(
        scheduler.step_with_generator(&[0.0f32; 8], 900, &[0.0; 8], &both, &mut g),
        Err(ddim::Error::NoiseAndGenerator)
    ));
    assert!(scheduler
        .step_with_generator(&[0.0f32; 7], 900, &[0.0; 8], &options, &mut g)
        .is_err());
    // Nothing was drawn: the stream still starts at the first value.
    assert_eq!(g.next_u32(), 2_357_136_044);
    assert!(randn_latents::<f32, _>(&[], &mut g).is_err());
    assert!(randn_latents_per_item::<f32, _>(&[3, 4], &mut gens[..2]).is_err());
}

fn parse_cuda_seed(v: &Value) -> u64 {
    seed(v)
}

#[test]
fn cuda_generator_matches_the_reference_model() {
    let fx = load();
    let (mut total, mut identical, mut worst) = (0usize, 0usize, 0f32);
    for case in fx.section("cuda_model") {
        let gpu = GpuProperties::new(
            case["sm_count"].as_u64().unwrap() as u32,
            case["max_threads_per_sm"].as_u64().unwrap() as u32,
        )
        .unwrap();
        let mut g = TorchCudaGenerator::new(parse_cuda_seed(&case["seed"]), gpu);
        for call in case["calls"].as_array().unwrap() {
            let n = call["n"].as_u64().unwrap() as usize;
            assert_eq!(g.offset(), call["offset_before"].as_u64().unwrap());
            let mut v = vec![0f32; n];
            g.fill_randn(&mut v);
            assert_eq!(g.offset(), call["offset_after"].as_u64().unwrap());
            let want = fx.f32s(&call["tensor"]);
            for (&a, &b) in v.iter().zip(&want) {
                total += 1;
                identical += usize::from(a.to_bits() == b.to_bits());
                worst = worst.max((a - b).abs() / b.abs().max(1.0));
            }
        }
    }
    println!("cuda model: {identical} of {total} identical, max rel diff {worst:e}");
    // The same model; numpy's float64 sin/cos may differ from libm's in the last f64 bits.
    assert!(worst <= 2.4e-7, "max relative difference {worst:e}");
    assert!(identical * 100 >= total * 99);
}

#[test]
fn cuda_generator_reproduces_public_gpu_prints() {
    // torch-randn.md §B.8: values printed by real GPUs in public reports (4 decimals).
    let mut g = TorchCudaGenerator::new(0, GpuProperties::H100_SXM);
    let mut v = [0f32; 8];
    g.fill_randn(&mut v);
    let printed = [
        -0.9247, -0.4253, -2.6438, 0.1452, -0.1209, -0.5797, -0.6229, -0.3284,
    ];
    for (a, b) in v.iter().zip(printed) {
        assert!((a - b).abs() < 6e-5, "{a} vs {b}");
    }
    // pytorch#143086: seed 1, 9,483,264 values; the last three differ between H100 and A100.
    let n = 9_483_264u64;
    for (gpu, last) in [
        (GpuProperties::H100_SXM, [-0.6970, -0.7780, 0.3267]),
        (GpuProperties::A100, [0.1549, -0.6797, -0.1656]),
    ] {
        let mut g = TorchCudaGenerator::new(1, gpu);
        let mut tail = [0f32; 3];
        g.randn_window_f32(n, n - 3, &mut tail).unwrap();
        for (a, b) in tail.iter().zip(last) {
            assert!((a - b).abs() < 6e-5, "{gpu:?}: {a} vs {b}");
        }
        let mut head = [0f32; 3];
        TorchCudaGenerator::new(1, gpu)
            .randn_window_f32(n, 0, &mut head)
            .unwrap();
        for (a, b) in head.iter().zip([-0.2963, 2.6764, -0.1408]) {
            assert!((a - b).abs() < 6e-5, "{a} vs {b}");
        }
    }
    // CUDA uses the full 64-bit seed: 5 and 2³² + 5 differ (unlike the CPU generator).
    let mut a = [0f32; 4];
    let mut b = [0f32; 4];
    TorchCudaGenerator::new(5, GpuProperties::A100).fill_randn(&mut a);
    TorchCudaGenerator::new((1 << 32) + 5, GpuProperties::A100).fill_randn(&mut b);
    assert_ne!(a, b);
}

#[test]
fn cuda_other_dtypes_follow_the_float_pipeline() {
    let mut g = TorchCudaGenerator::new(42, GpuProperties::A100);
    let mut x = vec![0f32; 1000];
    g.fill_randn(&mut x);
    let mut g = TorchCudaGenerator::new(42, GpuProperties::A100);
    let mut h = vec![f16::ZERO; 1000];
    g.fill_randn(&mut h);
    assert!(x.iter().zip(&h).all(|(a, b)| f16::from_f32(*a) == *b));
    let mut g = TorchCudaGenerator::new(42, GpuProperties::A100);
    let mut d = vec![0f64; 1000];
    g.fill_randn(&mut d);
    assert_eq!(g.offset(), 4);
    let mean = d.iter().sum::<f64>() / 1000.0;
    let var = d.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / 1000.0;
    assert!(
        mean.abs() < 0.15 && (var - 1.0).abs() < 0.15,
        "{mean} {var}"
    );
}

#[test]
fn errors_name_the_values_and_limits() {
    let e = GpuProperties::new(0, 2048).unwrap_err();
    assert_eq!(
        e.to_string(),
        "invalid gpu properties: 0 multiprocessors with 2048 threads each \
         (need at least 1 multiprocessor and 256 threads)"
    );
    let mut g = TorchCpuGenerator::new(0);
    let e = randn_latents::<f32, _>(&[], &mut g).unwrap_err();
    assert_eq!(e.to_string(), "invalid shape []: it has no batch dimension");
    let e = randn_latents::<f32, _>(&[usize::MAX, 2], &mut g).unwrap_err();
    assert!(e
        .to_string()
        .starts_with("invalid shape [18446744073709551615, 2]: it has more than"));
    let mut gens = vec![TorchCpuGenerator::new(0); 3];
    let e = randn_latents_per_item::<f32, _>(&[2, 4], &mut gens).unwrap_err();
    assert_eq!(
        e.to_string(),
        "got 3 random generators for a batch of 2: give one, or one per batch item"
    );
    let mut cuda = TorchCudaGenerator::new(0, GpuProperties::T4);
    assert!(cuda.randn_window_f32(10, 8, &mut [0.0; 3]).is_err());
    assert_eq!(cuda.offset(), 0, "a refused window draws nothing");
    // None of the failed calls drew from the CPU generator.
    assert_eq!(g.next_u32(), 2_357_136_044);
}

#[test]
fn both_dispatch_paths_give_the_same_bits() {
    // Beyond the recorded calls: lengths around the 16-block tail and the 4096-value chunks,
    // successive calls on one generator, every dtype and op the dispatch covers, both kernels.
    let lengths = [16, 17, 31, 48, 100, 4095, 4096, 4097, 10_000, 3];
    for kernel in [CpuKernel::Avx2, CpuKernel::Scalar] {
        for s in [0, 9, u64::MAX] {
            let mut g =
                [DISPATCHES[0], DISPATCHES[1]].map(|d| cpu_generator(s, d).with_kernel(kernel));
            let [a, b] = &mut g;
            assert_eq!(a.dispatch(), CpuDispatch::Detect);
            assert!(!b.uses_simd());
            for &n in &lengths {
                for (dtype, op) in [("f32", "randn"), ("f16", "randn"), ("bf16", "randn")]
                    .into_iter()
                    .chain([("f32", "rand"), ("f64", "randn")])
                {
                    let (x, y) = match dtype {
                        "f32" => (draw::<f32>(a, op, n), draw::<f32>(b, op, n)),
                        "f16" => (draw::<f16>(a, op, n), draw::<f16>(b, op, n)),
                        "bf16" => (draw::<bf16>(a, op, n), draw::<bf16>(b, op, n)),
                        _ => (draw::<f64>(a, op, n), draw::<f64>(b, op, n)),
                    };
                    assert_eq!(x, y, "{kernel:?} seed {s} {op} {dtype} n={n}");
                }
            }
            assert_eq!(a.next_u64(), b.next_u64());
        }
    }
}
