//! [`TorchCpuGenerator`]: `torch.Generator('cpu')` (MT19937) and torch's CPU `randn`/`rand`.

use half::{bf16, f16};

use super::dispatch::{self, Kernel};
use super::mathfun;
use super::mt19937::Mt19937;
use super::{NoiseGenerator, RandnElement};

/// Which of torch's CPU `normal_` kernels to reproduce for the 16-value blocks.
///
/// Only float32, float16 and bfloat16 calls of at least 16 values differ between them; the
/// small path (< 16 values) and float64 are the same.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum CpuKernel {
    /// The AVX2 kernel (`avx_mathfun.h` polynomials with GCC's FMA contractions): what the
    /// official x86-64 Linux wheels run on any CPU with AVX2, AVX-512 ones included. Computed
    /// with IEEE operations only, so it gives the same bits on every platform.
    #[default]
    Avx2,
    /// The scalar kernel (`ATEN_CPU_CAPABILITY=default`, aarch64 builds): `logf`, `cosf`, `sinf`
    /// of the platform's libm. Bit-exact with torch where both use glibc.
    Scalar,
}

/// Whether the generator may run its AVX2 + FMA code (x86-64).
///
/// The crate is built for baseline x86-64 (SSE2), where the AVX2 kernel's fused
/// multiply-adds must be emulated in f64. With [`Detect`](Self::Detect), the float32,
/// float16 and bfloat16 `randn` and the float32 `rand` run a second copy of the same code,
/// compiled with the `avx2` and `fma` target features, when the CPU has them (checked at
/// runtime; the check is cached): about 2.8× faster, **the same bits** (both are exact IEEE
/// arithmetic; the tests run every recorded torch value through both). [`Portable`](Self::Portable)
/// always runs the baseline code, e.g. to compare the two. Off x86-64 both are the portable
/// code.
///
/// ```
/// use ddim::rng::{CpuDispatch, NoiseGenerator, TorchCpuGenerator};
/// let mut fast = TorchCpuGenerator::new(0);
/// let mut portable = TorchCpuGenerator::new(0).with_dispatch(CpuDispatch::Portable);
/// let (mut a, mut b) = ([0f32; 64], [0f32; 64]);
/// fast.fill_randn(&mut a);
/// portable.fill_randn(&mut b);
/// assert_eq!(a.map(f32::to_bits), b.map(f32::to_bits));
/// assert!(!portable.uses_simd());
/// # Ok::<(), ddim::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum CpuDispatch {
    /// The AVX2 + FMA code if this CPU supports AVX2 and FMA (as torch's AVX2 kernel
    /// requires), else the portable code.
    #[default]
    Detect,
    /// Always the portable code.
    Portable,
}

/// Values drawn and transformed at a time by the float32 path (16 KiB: stays in L1).
const CHUNK: usize = 4096;

/// `2⁻²⁴` and `2⁻⁵³`: the steps of torch's float and double uniforms.
const F32_STEP: f32 = 1.0 / 16_777_216.0;
const F64_STEP: f64 = 1.0 / 9_007_199_254_740_992.0;

/// torch's float uniform: the low 24 bits of one draw, times 2⁻²⁴ (exact, in [0, 1)).
#[inline(always)]
#[allow(clippy::cast_precision_loss)] // < 2²⁴: exact
fn uniform_f32(x: u32) -> f32 {
    (x & 0x00ff_ffff) as f32 * F32_STEP
}

/// torch's double uniform: the low 53 bits of `random64()`, times 2⁻⁵³.
#[inline(always)]
#[allow(clippy::cast_precision_loss)] // < 2⁵³: exact
fn uniform_f64(x: u64) -> f64 {
    (x & ((1 << 53) - 1)) as f64 * F64_STEP
}

/// A `torch.Generator('cpu')`: MT19937 plus the cached second value of the scalar Box–Muller
/// path, with torch's `randn` and `rand` on top, bit for bit.
///
/// * **Seeding** ([`new`](Self::new), [`manual_seed`](Self::manual_seed)): torch stores the
///   seed as a u64 (a negative Python int wraps: −1 is 2⁶⁴ − 1, see
///   [`from_signed_seed`](Self::from_signed_seed)); MT19937 uses its low 32 bits, so seeds
///   5 and 2³² + 5 give the same numbers.
/// * **`randn` of n < 16 values**: per value, the double Box–Muller of two 53-bit uniforms
///   u₁, u₂: r = √(−2·ln(1 − u₂)) (`log1p`), θ = 2π·u₁, value r·cos θ, and r·sin θ is cached
///   in the generator for the next value (even in a later call); then rounded to the dtype.
/// * **`randn` of n ≥ 16 values**: n 24-bit uniforms, each 16-block transformed by
///   `NormalFill16` (see [`CpuKernel`]); if 16 ∤ n, 16 *fresh* uniforms make the last 16
///   values. float64 uses 53-bit uniforms and double maths; float16/bfloat16 draw and transform
///   block by block in float32, then round.
/// * **`rand`**: one uniform per value (24-bit for f32, f16, bf16; 53-bit for f64); a half value
///   that rounds up to 1 becomes 0.
///
/// ```
/// use ddim::rng::{NoiseGenerator, TorchCpuGenerator};
/// // torch.randn(5, generator=torch.Generator().manual_seed(0))
/// let mut g = TorchCpuGenerator::new(0);
/// let mut x = [0f32; 5];
/// g.fill_randn(&mut x);
/// assert_eq!(x, [1.5409961, -0.2934289, -2.1787894, 0.56843126, -1.0845224]);
/// # Ok::<(), ddim::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct TorchCpuGenerator {
    mt: Mt19937,
    seed: u64,
    next_double_normal: Option<f64>,
    kernel: CpuKernel,
    dispatch: CpuDispatch,
}

impl Default for TorchCpuGenerator {
    /// A fresh `torch.Generator()`: seed [`DEFAULT_SEED`](Self::DEFAULT_SEED).
    fn default() -> Self {
        Self::new(Self::DEFAULT_SEED)
    }
}

impl TorchCpuGenerator {
    /// The seed of a fresh `torch.Generator()`: 67280421310721.
    pub const DEFAULT_SEED: u64 = 67_280_421_310_721;

    /// `torch.Generator('cpu').manual_seed(seed)`, with the AVX2 kernel.
    pub fn new(seed: u64) -> Self {
        Self {
            mt: Mt19937::new(seed),
            seed,
            next_double_normal: None,
            kernel: CpuKernel::default(),
            dispatch: CpuDispatch::default(),
        }
    }

    /// Seeds from a signed integer as torch does with a negative Python int: modulo 2⁶⁴
    /// (−1 becomes 2⁶⁴ − 1).
    ///
    /// ```
    /// use ddim::rng::TorchCpuGenerator;
    /// assert_eq!(TorchCpuGenerator::from_signed_seed(-1).initial_seed(), u64::MAX);
    /// # Ok::<(), ddim::Error>(())
    /// ```
    pub fn from_signed_seed(seed: i64) -> Self {
        Self::new(u64::from_ne_bytes(seed.to_ne_bytes()))
    }

    /// The same generator with another block kernel.
    pub fn with_kernel(mut self, kernel: CpuKernel) -> Self {
        self.kernel = kernel;
        self
    }

    /// The block kernel in use.
    pub fn kernel(&self) -> CpuKernel {
        self.kernel
    }

    /// The same generator with another [`CpuDispatch`] (the values do not change).
    pub fn with_dispatch(mut self, dispatch: CpuDispatch) -> Self {
        self.dispatch = dispatch;
        self
    }

    /// The dispatch policy in use.
    pub fn dispatch(&self) -> CpuDispatch {
        self.dispatch
    }

    /// Whether this generator runs the AVX2 + FMA code on this CPU.
    pub fn uses_simd(&self) -> bool {
        self.dispatch == CpuDispatch::Detect && dispatch::simd_available()
    }

    /// Reseeds: `generator.manual_seed(seed)`; also clears the cached normal.
    pub fn manual_seed(&mut self, seed: u64) -> &mut Self {
        self.mt = Mt19937::new(seed);
        self.seed = seed;
        self.next_double_normal = None;
        self
    }

    /// The seed last set (`generator.initial_seed()`).
    pub fn initial_seed(&self) -> u64 {
        self.seed
    }

    /// The next raw 32-bit MT19937 output (`generator.random()`).
    pub fn next_u32(&mut self) -> u32 {
        self.mt.next_u32()
    }

    /// torch's `random64()`: two draws, the first is the high word.
    pub fn next_u64(&mut self) -> u64 {
        self.mt.next_u64()
    }

    /// `torch.rand(out.len(), generator=self, dtype=T)`: uniforms in [0, 1).
    ///
    /// ```
    /// use ddim::rng::TorchCpuGenerator;
    /// let mut g = TorchCpuGenerator::new(0);
    /// let mut u = [0f32; 2];
    /// g.fill_rand(&mut u);
    /// assert_eq!(u[0], (2357136044u32 & 0xffffff) as f32 / 16777216.0);
    /// # Ok::<(), ddim::Error>(())
    /// ```
    pub fn fill_rand<T: RandnElement>(&mut self, out: &mut [T]) {
        T::fill_rand_torch_cpu(self, out);
    }

    /// at::normal_distribution<double>: the scalar Box–Muller with the cached value.
    fn normal_f64(&mut self) -> f64 {
        if let Some(v) = self.next_double_normal.take() {
            return v * 1.0 + 0.0;
        }
        let u1 = uniform_f64(self.mt.next_u64());
        let u2 = uniform_f64(self.mt.next_u64());
        let r = (-2.0 * (-u2).ln_1p()).sqrt();
        let theta = 2.0 * std::f64::consts::PI * u1;
        self.next_double_normal = Some(r * theta.sin());
        r * theta.cos() * 1.0 + 0.0
    }

    /// The small path (n < 16) for any dtype: doubles rounded by `cast`.
    fn small<T>(&mut self, out: &mut [T], cast: impl Fn(f64) -> T) {
        for v in out {
            *v = cast(self.normal_f64());
        }
    }

    /// Whether to ask [`dispatch::run`] for the AVX2 + FMA code.
    fn simd(&self) -> bool {
        self.dispatch == CpuDispatch::Detect
    }

    /// float16/bfloat16 (n ≥ 16): each block drawn and transformed in f32, then rounded;
    /// the tail block draws 16 fresh uniforms after the ⌊n/16⌋·16 used.
    fn half_blocks<T: Copy>(&mut self, out: &mut [T], cast: impl Fn(f32) -> T) {
        let simd = self.simd();
        let job = HalfBlocks {
            mt: &mut self.mt,
            kernel: self.kernel,
            out,
            cast,
        };
        dispatch::run(job, simd);
    }

    fn half_rand<T>(&mut self, out: &mut [T], cast: impl Fn(f32) -> T, is_one: impl Fn(&T) -> bool)
    where
        T: Copy,
    {
        for v in out.iter_mut() {
            let x = cast(uniform_f32(self.mt.next_u32()));
            *v = if is_one(&x) { cast(0.0) } else { x };
        }
    }
}

impl NoiseGenerator for TorchCpuGenerator {
    #[allow(clippy::cast_possible_truncation)] // static_cast<float>(double), as torch
    fn fill_randn_f32(&mut self, out: &mut [f32]) {
        let n = out.len();
        if n < 16 {
            self.small(out, |v| v as f32);
            return;
        }
        let simd = self.simd();
        let job = RandnF32 {
            mt: &mut self.mt,
            kernel: self.kernel,
            out,
        };
        dispatch::run(job, simd);
    }

    fn fill_randn_f64(&mut self, out: &mut [f64]) {
        let n = out.len();
        if n < 16 {
            self.small(out, |v| v);
            return;
        }
        for v in out.iter_mut() {
            *v = uniform_f64(self.mt.next_u64());
        }
        let whole = n - n % 16;
        if let Some(blocks) = out.get_mut(..whole) {
            mathfun::fill_f64(blocks);
        }
        if whole < n {
            let mut tail = [0f64; 16];
            for v in &mut tail {
                *v = uniform_f64(self.mt.next_u64());
            }
            mathfun::fill_f64(&mut tail);
            if let Some(last) = out.get_mut(n - 16..) {
                last.copy_from_slice(&tail);
            }
        }
    }

    #[allow(clippy::cast_possible_truncation)] // static_cast<Half>(double) goes through float
    fn fill_randn_f16(&mut self, out: &mut [f16]) {
        if out.len() < 16 {
            self.small(out, |v| f16::from_f32(v as f32));
        } else {
            self.half_blocks(out, f16::from_f32);
        }
    }

    #[allow(clippy::cast_possible_truncation)] // static_cast<BFloat16>(double) goes through float
    fn fill_randn_bf16(&mut self, out: &mut [bf16]) {
        if out.len() < 16 {
            self.small(out, |v| bf16::from_f32(v as f32));
        } else {
            self.half_blocks(out, bf16::from_f32);
        }
    }
}

impl TorchCpuGenerator {
    pub(super) fn rand_f32(&mut self, out: &mut [f32]) {
        let simd = self.simd();
        dispatch::run(
            RandF32 {
                mt: &mut self.mt,
                out,
            },
            simd,
        );
    }

    pub(super) fn rand_f64(&mut self, out: &mut [f64]) {
        for v in out {
            *v = uniform_f64(self.mt.next_u64());
        }
    }

    pub(super) fn rand_f16(&mut self, out: &mut [f16]) {
        self.half_rand(out, f16::from_f32, |x| *x == f16::ONE);
    }

    pub(super) fn rand_bf16(&mut self, out: &mut [bf16]) {
        self.half_rand(out, bf16::from_f32, |x| *x == bf16::ONE);
    }
}

// The hot loops, as `dispatch::Kernel`s: compiled for baseline x86-64 and with AVX2 + FMA
// (everything they call is `#[inline(always)]`, so it is compiled into each copy).

/// The block kernel on `data` (a multiple of 16 values).
#[inline(always)]
fn transform_f32<const FMA: bool>(kernel: CpuKernel, data: &mut [f32]) {
    // One thread, as torch (which generates under the generator's lock). Splitting the
    // blocks over rayon's pool gave no gain on the shared 2-core machine (docs/torch-rng.md).
    match kernel {
        CpuKernel::Avx2 => mathfun::fill_avx2::<FMA>(data),
        CpuKernel::Scalar => mathfun::fill_scalar(data),
    }
}

/// `randn` float32 of n ≥ 16 values.
struct RandnF32<'a> {
    mt: &'a mut Mt19937,
    kernel: CpuKernel,
    out: &'a mut [f32],
}

impl Kernel for RandnF32<'_> {
    type Output = ();

    #[inline(always)]
    fn run<const FMA: bool>(self) {
        let Self { mt, kernel, out } = self;
        let n = out.len();
        // The n uniforms, then every whole 16-block transformed in place; done a cache-sized
        // chunk at a time (chunks are multiples of 16, so blocks never straddle two).
        for chunk in out.chunks_mut(CHUNK) {
            mt.fill_map(chunk, uniform_f32);
            let whole = chunk.len() - chunk.len() % 16;
            if let Some(blocks) = chunk.get_mut(..whole) {
                transform_f32::<FMA>(kernel, blocks);
            }
        }
        if n % 16 != 0 {
            let mut tail = [0f32; 16];
            mt.fill_map(&mut tail, uniform_f32);
            transform_f32::<FMA>(kernel, &mut tail);
            if let Some(last) = out.get_mut(n.saturating_sub(16)..) {
                last.copy_from_slice(&tail);
            }
        }
    }
}

/// `randn` float16/bfloat16 of n ≥ 16 values: block by block in f32, rounded by `cast`.
struct HalfBlocks<'a, T, F> {
    mt: &'a mut Mt19937,
    kernel: CpuKernel,
    out: &'a mut [T],
    cast: F,
}

impl<T: Copy, F: Fn(f32) -> T> Kernel for HalfBlocks<'_, T, F> {
    type Output = ();

    #[inline(always)]
    fn run<const FMA: bool>(self) {
        let Self {
            mt,
            kernel,
            out,
            cast,
        } = self;
        let mut buf = [0f32; 16];
        let mut chunks = out.chunks_exact_mut(16);
        for chunk in &mut chunks {
            mt.fill_map(&mut buf, uniform_f32);
            transform_f32::<FMA>(kernel, &mut buf);
            for (o, &v) in chunk.iter_mut().zip(&buf) {
                *o = cast(v);
            }
        }
        if !chunks.into_remainder().is_empty() {
            mt.fill_map(&mut buf, uniform_f32);
            transform_f32::<FMA>(kernel, &mut buf);
            let start = out.len().saturating_sub(16);
            for (o, &v) in out.iter_mut().skip(start).zip(&buf) {
                *o = cast(v);
            }
        }
    }
}

/// `rand` float32: the uniforms alone.
struct RandF32<'a> {
    mt: &'a mut Mt19937,
    out: &'a mut [f32],
}

impl Kernel for RandF32<'_> {
    type Output = ();

    #[inline(always)]
    fn run<const FMA: bool>(self) {
        self.mt.fill_map(self.out, uniform_f32);
    }
}
