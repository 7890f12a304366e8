//! The torch-compatible generators: TorchCpuGenerator and TorchCudaGenerator with arbitrary
//! seeds, GPU properties, sizes (bounded), element types and successive calls;
//! `randn_latents(_per_item)` with arbitrary shapes and generator counts; `step_with_generator(s)`.
//! Invariants: no panic; a generator is deterministic (two with one seed give the same bits,
//! call after call); `randn_latents` is one `fill_randn` over the whole shape; the per-item
//! form with one generator equals `randn_latents`; a CUDA window equals the slice of the
//! full call; `rand` values lie in [0, 1); a failed step draws nothing.
#![no_main]

use arbitrary::Arbitrary;
use ddim::half::{bf16, f16};
use ddim::rng::{
    randn_latents, randn_latents_per_item, GpuProperties, NoiseGenerator, TorchCpuGenerator,
    TorchCudaGenerator,
};
use ddim::{DdimConfig, DdimScheduler, StepOptions};
use libfuzzer_sys::fuzz_target;

/// The most values one call draws (the generators' cost is linear in it).
const MAX_LEN: usize = 1024;

#[derive(Debug, Arbitrary)]
enum Call {
    RandnF32(u16),
    RandnF64(u16),
    RandnF16(u16),
    RandnBf16(u16),
    RandF32(u16),
    RandF64(u16),
    RandF16(u16),
    RandBf16(u16),
    NextU32,
    NextU64,
    Reseed(u64),
    CudaWindow { numel: u16, start: u16, len: u16 },
    CudaOffset(u64),
}

#[derive(Debug, Arbitrary)]
struct Input {
    seed: u64,
    signed_seed: Option<i64>,
    multiprocessor_count: u32,
    max_threads_per_multiprocessor: u32,
    calls: Vec<Call>,
    shape: Vec<u16>,
    generator_seeds: Vec<u64>,
    eta: f32,
    batch_size: u8,
    timestep: u16,
    step_len: u16,
}

fn len(n: u16) -> usize {
    usize::from(n) % (MAX_LEN + 1)
}

fn same_bits<T: Copy + PartialEq + std::fmt::Debug>(a: &[T], b: &[T], bits: fn(T) -> u64) {
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(b) {
        assert_eq!(bits(*x), bits(*y));
    }
}

fn in_unit(v: f64) -> bool {
    (0.0..1.0).contains(&v)
}

/// Runs the calls on two generators built the same way and checks they agree.
fn cpu_calls(input: &Input) {
    let make = || match input.signed_seed {
        Some(s) => TorchCpuGenerator::from_signed_seed(s),
        None => TorchCpuGenerator::new(input.seed),
    };
    let (mut a, mut b) = (make(), make());
    assert_eq!(a.initial_seed(), b.initial_seed());
    for call in input.calls.iter().take(8) {
        match *call {
            Call::RandnF32(n) | Call::CudaWindow { numel: n, .. } => {
                let (mut x, mut y) = (vec![0f32; len(n)], vec![0f32; len(n)]);
                a.fill_randn_f32(&mut x);
                b.fill_randn(&mut y);
                same_bits(&x, &y, |v| u64::from(v.to_bits()));
            }
            Call::RandnF64(n) => {
                let (mut x, mut y) = (vec![0f64; len(n)], vec![0f64; len(n)]);
                a.fill_randn_f64(&mut x);
                b.fill_randn(&mut y);
                same_bits(&x, &y, f64::to_bits);
            }
            Call::RandnF16(n) => {
                let (mut x, mut y) = (vec![f16::ZERO; len(n)], vec![f16::ZERO; len(n)]);
                a.fill_randn_f16(&mut x);
                b.fill_randn(&mut y);
                same_bits(&x, &y, |v| u64::from(v.to_bits()));
            }
            Call::RandnBf16(n) => {
                let (mut x, mut y) = (vec![bf16::ZERO; len(n)], vec![bf16::ZERO; len(n)]);
                a.fill_randn_bf16(&mut x);
                b.fill_randn(&mut y);
                same_bits(&x, &y, |v| u64::from(v.to_bits()));
            }
            Call::RandF32(n) => {
                let (mut x, mut y) = (vec![0f32; len(n)], vec![0f32; len(n)]);
                a.fill_rand(&mut x);
                b.fill_rand(&mut y);
                same_bits(&x, &y, |v| u64::from(v.to_bits()));
                assert!(x.iter().all(|&v| in_unit(f64::from(v))));
            }
            Call::RandF64(n) => {
                let (mut x, mut y) = (vec![0f64; len(n)], vec![0f64; len(n)]);
                a.fill_rand(&mut x);
                b.fill_rand(&mut y);
                same_bits(&x, &y, f64::to_bits);
                assert!(x.iter().all(|&v| in_unit(v)));
            }
            Call::RandF16(n) => {
                let (mut x, mut y) = (vec![f16::ZERO; len(n)], vec![f16::ZERO; len(n)]);
                a.fill_rand(&mut x);
                b.fill_rand(&mut y);
                same_bits(&x, &y, |v| u64::from(v.to_bits()));
                assert!(x.iter().all(|&v| in_unit(f64::from(v))));
            }
            Call::RandBf16(n) => {
                let (mut x, mut y) = (vec![bf16::ZERO; len(n)], vec![bf16::ZERO; len(n)]);
                a.fill_rand(&mut x);
                b.fill_rand(&mut y);
                same_bits(&x, &y, |v| u64::from(v.to_bits()));
                assert!(x.iter().all(|&v| in_unit(f64::from(v))));
            }
            Call::NextU32 => assert_eq!(a.next_u32(), b.next_u32()),
            Call::NextU64 => assert_eq!(a.next_u64(), b.next_u64()),
            Call::Reseed(s) | Call::CudaOffset(s) => {
                a.manual_seed(s);
                b.manual_seed(s);
                assert_eq!(a.initial_seed(), s);
            }
        }
    }
}

fn cuda_calls(input: &Input, gpu: GpuProperties) {
    let (mut a, mut b) = (
        TorchCudaGenerator::new(input.seed, gpu),
        TorchCudaGenerator::new(input.seed, gpu),
    );
    for call in input.calls.iter().take(8) {
        match *call {
            Call::RandnF32(n) | Call::RandF32(n) => {
                let (mut x, mut y) = (vec![0f32; len(n)], vec![0f32; len(n)]);
                a.fill_randn_f32(&mut x);
                b.fill_randn(&mut y);
                same_bits(&x, &y, |v| u64::from(v.to_bits()));
            }
            Call::RandnF64(n) | Call::RandF64(n) => {
                let (mut x, mut y) = (vec![0f64; len(n)], vec![0f64; len(n)]);
                a.fill_randn_f64(&mut x);
                b.fill_randn(&mut y);
                same_bits(&x, &y, f64::to_bits);
            }
            Call::RandnF16(n) | Call::RandF16(n) => {
                let (mut x, mut y) = (vec![f16::ZERO; len(n)], vec![f16::ZERO; len(n)]);
                a.fill_randn_f16(&mut x);
                b.fill_randn(&mut y);
                same_bits(&x, &y, |v| u64::from(v.to_bits()));
            }
            Call::RandnBf16(n) | Call::RandBf16(n) => {
                let (mut x, mut y) = (vec![bf16::ZERO; len(n)], vec![bf16::ZERO; len(n)]);
                a.fill_randn_bf16(&mut x);
                b.fill_randn(&mut y);
                same_bits(&x, &y, |v| u64::from(v.to_bits()));
            }
            Call::NextU32 | Call::NextU64 => {}
            Call::Reseed(s) => {
                a.manual_seed(s);
                b.manual_seed(s);
                assert_eq!(a.initial_seed(), s);
                assert_eq!(a.offset(), b.offset());
            }
            Call::CudaOffset(o) => {
                a.set_offset(o);
                b.set_offset(o);
            }
            Call::CudaWindow {
                numel,
                start,
                len: l,
            } => {
                let numel = len(numel);
                let mut full = vec![0f32; numel];
                a.fill_randn_f32(&mut full);
                let mut window = vec![0f32; len(l)];
                let start = usize::from(start);
                match b.randn_window_f32(numel as u64, start as u64, &mut window) {
                    Ok(()) => {
                        assert!(start + window.len() <= numel);
                        same_bits(&window, &full[start..start + window.len()], |v| {
                            u64::from(v.to_bits())
                        });
                    }
                    Err(_) => {
                        assert!(start + window.len() > numel);
                        // Keep the two generators in step for the next calls.
                        b.fill_randn_f32(&mut full);
                    }
                }
                assert_eq!(a.offset(), b.offset());
            }
        }
    }
}

fn latents(input: &Input) {
    let shape: Vec<usize> = input
        .shape
        .iter()
        .take(6)
        .map(|&d| usize::from(d))
        .collect();
    let numel = shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d));
    if !matches!(numel, Some(n) if n <= MAX_LEN) && !shape.is_empty() {
        return;
    }
    let one: Result<Vec<f32>, _> = randn_latents(&shape, &mut TorchCpuGenerator::new(input.seed));
    let Ok(one) = one else {
        assert!(shape.is_empty());
        return;
    };
    assert_eq!(Some(one.len()), numel);
    let mut direct = vec![0f32; one.len()];
    TorchCpuGenerator::new(input.seed).fill_randn(&mut direct);
    same_bits(&one, &direct, |v| u64::from(v.to_bits()));
    let mut single = [TorchCpuGenerator::new(input.seed)];
    let per: Vec<f32> = randn_latents_per_item(&shape, &mut single).unwrap();
    same_bits(&one, &per, |v| u64::from(v.to_bits()));
    let mut gens: Vec<TorchCpuGenerator> = input
        .generator_seeds
        .iter()
        .take(8)
        .map(|&s| TorchCpuGenerator::new(s))
        .collect();
    match randn_latents_per_item::<f64, _>(&shape, &mut gens) {
        Ok(v) => {
            assert_eq!(v.len(), one.len());
            assert!(gens.len() == 1 || gens.len() == shape[0]);
        }
        Err(e) => {
            assert!(
                matches!(e, ddim::Error::GeneratorCountMismatch { .. }),
                "{e}"
            );
        }
    }
}

fn steps(input: &Input) {
    let mut scheduler = DdimScheduler::new(DdimConfig::default()).unwrap();
    scheduler.set_timesteps(50).unwrap();
    let n = usize::from(input.step_len) % 257;
    let x: Vec<f32> = (0..n).map(|i| (i as f32 * 0.37).sin()).collect();
    let m: Vec<f32> = (0..n).map(|i| (i as f32 * 0.11).cos()).collect();
    let options = StepOptions {
        eta: input.eta,
        batch_size: usize::from(input.batch_size),
        ..Default::default()
    };
    let timestep = usize::from(input.timestep);
    let mut g = TorchCpuGenerator::new(input.seed);
    let before = g.clone().next_u64();
    let first = scheduler.step_with_generator(&m, timestep, &x, &options, &mut g);
    if first.is_err() {
        assert_eq!(g.next_u64(), before, "a failed step drew numbers");
    } else {
        let again = scheduler
            .step_with_generator(
                &m,
                timestep,
                &x,
                &options,
                &mut TorchCpuGenerator::new(input.seed),
            )
            .unwrap();
        let first = first.unwrap();
        same_bits(&first.prev_sample, &again.prev_sample, |v| {
            u64::from(v.to_bits())
        });
    }
    let mut gens: Vec<TorchCpuGenerator> = input
        .generator_seeds
        .iter()
        .take(8)
        .map(|&s| TorchCpuGenerator::new(s))
        .collect();
    let firsts: Vec<u64> = gens.iter().map(|g| g.clone().next_u64()).collect();
    if scheduler
        .step_with_generators(&m, timestep, &x, &options, &mut gens)
        .is_err()
    {
        let after: Vec<u64> = gens.iter_mut().map(|g| g.next_u64()).collect();
        assert_eq!(firsts, after, "a failed step drew numbers");
    }
}

fuzz_target!(|input: Input| {
    cpu_calls(&input);
    if let Ok(gpu) = GpuProperties::new(
        input.multiprocessor_count,
        input.max_threads_per_multiprocessor,
    ) {
        cuda_calls(&input, gpu);
    } else {
        assert!(input.multiprocessor_count == 0 || input.max_threads_per_multiprocessor < 256);
    }
    latents(&input);
    steps(&input);
});
