//! `cargo bench -p ddim --bench randn`: `torch.randn`-compatible normals (float32) per latent
//! shape, with a fresh `TorchCpuGenerator` per call as `torch.Generator().manual_seed(s)`
//! followed by `torch.randn(shape, generator=g)`. `tools/bench/bench_torch_randn.py` times
//! torch itself on the same shapes; BENCHMARKS.md has the ratios of one run.

use ddim::rng::{
    CpuDispatch, CpuKernel, GpuProperties, NoiseGenerator, TorchCpuGenerator, TorchCudaGenerator,
};
use divan::Bencher;

fn main() {
    divan::main();
}

/// (B, C, H, W): an SD-1.5 latent and a batch of 16 SD-2 latents.
const SHAPES: [[usize; 4]; 2] = [[1, 4, 64, 64], [16, 4, 128, 128]];

fn randn(bencher: Bencher, shape: [usize; 4], kernel: CpuKernel, dispatch: CpuDispatch) {
    let n: usize = shape.iter().product();
    let mut out = vec![0f32; n];
    bencher
        .counter(divan::counter::ItemsCount::new(n))
        .bench_local(|| {
            let mut g = TorchCpuGenerator::new(divan::black_box(42))
                .with_kernel(kernel)
                .with_dispatch(dispatch);
            g.fill_randn(&mut out);
        });
}

/// The AVX2 kernel (default; what x86-64 torch wheels run), with the default runtime
/// dispatch (the AVX2 + FMA copy on a CPU that has them).
#[divan::bench(args = SHAPES)]
fn randn_f32(bencher: Bencher, shape: [usize; 4]) {
    randn(bencher, shape, CpuKernel::Avx2, CpuDispatch::Detect);
}

/// The same, forced onto the portable code (f64-emulated fused multiply-adds).
#[divan::bench(args = SHAPES)]
fn randn_f32_portable_path(bencher: Bencher, shape: [usize; 4]) {
    randn(bencher, shape, CpuKernel::Avx2, CpuDispatch::Portable);
}

/// The scalar kernel (libm `logf`/`cosf`/`sinf`).
#[divan::bench(args = SHAPES)]
fn randn_f32_scalar_kernel(bencher: Bencher, shape: [usize; 4]) {
    randn(bencher, shape, CpuKernel::Scalar, CpuDispatch::Detect);
}

/// `torch.rand` (MT19937 and the 24-bit uniforms alone): the floor under `randn`.
#[divan::bench(args = SHAPES)]
fn rand_f32(bencher: Bencher, shape: [usize; 4]) {
    let n: usize = shape.iter().product();
    let mut out = vec![0f32; n];
    bencher
        .counter(divan::counter::ItemsCount::new(n))
        .bench_local(|| TorchCpuGenerator::new(divan::black_box(42)).fill_rand(&mut out));
}

/// Seeding alone (MT19937 state set-up), the fixed cost of each call above.
#[divan::bench]
fn manual_seed() -> TorchCpuGenerator {
    TorchCpuGenerator::new(divan::black_box(42))
}

/// The CUDA Philox model (not a speed target: a reference implementation).
#[divan::bench(args = [[1, 4, 64, 64]])]
fn randn_f32_cuda_model(bencher: Bencher, shape: [usize; 4]) {
    let n: usize = shape.iter().product();
    let mut out = vec![0f32; n];
    bencher
        .counter(divan::counter::ItemsCount::new(n))
        .bench_local(|| {
            TorchCudaGenerator::new(42, GpuProperties::H100_SXM).fill_randn(&mut out);
        });
}
