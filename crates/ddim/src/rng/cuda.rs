//! [`TorchCudaGenerator`]: a software model of `torch.randn` with a `torch.Generator('cuda')`.

use half::{bf16, f16};

use super::philox::philox4x32_10;
use super::NoiseGenerator;
use crate::error::{Error, Result};

/// The two properties of a GPU that torch's launch geometry, and so the CUDA random numbers of
/// tensors larger than the launched thread count, depend on (`cudaDeviceProp`).
///
/// ```
/// use ddim::rng::GpuProperties;
/// let gpu = GpuProperties::new(132, 2048)?; // torch.cuda.get_device_properties(0)
/// assert_eq!(gpu, GpuProperties::H100_SXM);
/// assert_eq!(gpu.max_threads(), 270_336);
/// # Ok::<(), ddim::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GpuProperties {
    multiprocessor_count: u32,
    max_threads_per_multiprocessor: u32,
}

impl GpuProperties {
    /// Threads per block of torch's random kernels.
    pub const BLOCK_SIZE: u32 = 256;
    /// H100 SXM (and H200): 132 SMs, 2048 threads each.
    pub const H100_SXM: Self = Self::preset(132, 2048);
    /// H100 PCIe: 114 SMs, 2048 threads each.
    pub const H100_PCIE: Self = Self::preset(114, 2048);
    /// A100: 108 SMs, 2048 threads each.
    pub const A100: Self = Self::preset(108, 2048);
    /// V100: 80 SMs, 2048 threads each.
    pub const V100: Self = Self::preset(80, 2048);
    /// L40 / L40S: 142 SMs, 1536 threads each.
    pub const L40: Self = Self::preset(142, 1536);
    /// RTX 4090: 128 SMs, 1536 threads each.
    pub const RTX_4090: Self = Self::preset(128, 1536);
    /// RTX 3090: 82 SMs, 1536 threads each.
    pub const RTX_3090: Self = Self::preset(82, 1536);
    /// A10G: 80 SMs, 1536 threads each.
    pub const A10G: Self = Self::preset(80, 1536);
    /// L4: 58 SMs, 1536 threads each.
    pub const L4: Self = Self::preset(58, 1536);
    /// T4: 40 SMs, 1024 threads each.
    pub const T4: Self = Self::preset(40, 1024);

    const fn preset(multiprocessor_count: u32, max_threads_per_multiprocessor: u32) -> Self {
        Self {
            multiprocessor_count,
            max_threads_per_multiprocessor,
        }
    }

    /// A GPU from `multiProcessorCount` and `maxThreadsPerMultiProcessor`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidGpuProperties`] when there is no SM, or fewer threads per SM than one
    /// block of 256 (torch would launch no thread).
    pub fn new(multiprocessor_count: u32, max_threads_per_multiprocessor: u32) -> Result<Self> {
        if multiprocessor_count == 0 || max_threads_per_multiprocessor < Self::BLOCK_SIZE {
            return Err(Error::InvalidGpuProperties {
                multiprocessor_count,
                max_threads_per_multiprocessor,
            });
        }
        Ok(Self::preset(
            multiprocessor_count,
            max_threads_per_multiprocessor,
        ))
    }

    /// The number of streaming multiprocessors.
    pub fn multiprocessor_count(&self) -> u32 {
        self.multiprocessor_count
    }

    /// The most resident threads per multiprocessor.
    pub fn max_threads_per_multiprocessor(&self) -> u32 {
        self.max_threads_per_multiprocessor
    }

    /// The most threads a random kernel launches: 256 · SMs · ⌊threads per SM / 256⌋.
    pub fn max_threads(&self) -> u64 {
        u64::from(Self::BLOCK_SIZE)
            * u64::from(self.multiprocessor_count)
            * u64::from(self.max_threads_per_multiprocessor / Self::BLOCK_SIZE)
    }

    /// Threads launched for `numel` values: 256 · min(⌈numel/256⌉, SMs · blocks per SM).
    pub fn launch_threads(&self, numel: u64) -> u64 {
        let block = u64::from(Self::BLOCK_SIZE);
        // Saturating: near u64::MAX the rounded-up count would wrap to 0 threads.
        numel
            .div_ceil(block)
            .saturating_mul(block)
            .min(self.max_threads())
    }
}

/// 2⁻³² as cuRAND writes it (`CURAND_2POW32_INV`), and 2⁻³²·2π rounded to float.
const INV_2POW32: f32 = 2.328_306_4e-10;
const INV_2POW32_2PI: f32 = INV_2POW32 * 6.283_185_5;

/// A model of `torch.Generator('cuda')`: a 64-bit seed and the Philox offset, advanced per call
/// as torch does, for a GPU described by [`GpuProperties`].
///
/// A call for n values launches T = [`GpuProperties::launch_threads`]`(n)` threads; thread t
/// runs iterations k = 0, 1, …, each one `curand4` = Philox4x32-10 with counter
/// (offset/4 + k, t) (64-bit halves) and key = the seed, giving U values (U = 4 for
/// f32/f16/bf16, 2 for f64) that land at indices k·T·U + ii·T + t. The offset then grows by
/// 4·(⌊(n − 1)/(T·U)⌋ + 1). Values come from the Box–Muller transform of
/// `curand_normal4` (float: u = x·2⁻³² + 2⁻³³, v = y·2π·2⁻³² + π·2⁻³², r = √(−2 ln u),
/// values r·sin v and r·cos v) or `curand_normal2_double` (53-bit u, v, `sincospi`).
///
/// **Not bit-exact**: the GPU computes sin and cos with `__sincosf`, a hardware approximation
/// (absolute error about 2⁻²¹) whose bits are not documented; this model uses correctly
/// rounded values (sin/cos and ln in f64, rounded to f32). Expected difference: about 1e-7 to
/// 1e-6, a few 1e-6 at worst. Everything else (which counter gives which element, the offsets)
/// is exact.
///
/// ```
/// use ddim::rng::{GpuProperties, NoiseGenerator, TorchCudaGenerator};
/// let mut g = TorchCudaGenerator::new(0, GpuProperties::H100_SXM);
/// let mut x = [0f32; 4];
/// g.fill_randn(&mut x);
/// assert!((x[0] - -0.9246624).abs() < 1e-5);
/// assert_eq!(g.offset(), 4);
/// # Ok::<(), ddim::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct TorchCudaGenerator {
    seed: u64,
    offset: u64,
    gpu: GpuProperties,
}

impl TorchCudaGenerator {
    /// `torch.Generator('cuda').manual_seed(seed)` on the GPU `gpu`.
    pub fn new(seed: u64, gpu: GpuProperties) -> Self {
        Self {
            seed,
            offset: 0,
            gpu,
        }
    }

    /// Reseeds (the full 64 bits are used) and resets the offset.
    pub fn manual_seed(&mut self, seed: u64) -> &mut Self {
        self.seed = seed;
        self.offset = 0;
        self
    }

    /// The seed last set.
    pub fn initial_seed(&self) -> u64 {
        self.seed
    }

    /// The Philox offset, in 32-bit draws per thread (`generator.get_offset()`).
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Sets the Philox offset (`generator.set_offset(offset)`).
    pub fn set_offset(&mut self, offset: u64) -> &mut Self {
        self.offset = offset;
        self
    }

    /// The GPU whose launch geometry is modelled.
    pub fn gpu(&self) -> GpuProperties {
        self.gpu
    }

    /// Values `start .. start + out.len()` of a float32 `torch.randn(numel)`, without computing
    /// the others; the offset advances as for the whole call.
    ///
    /// ```
    /// use ddim::rng::{GpuProperties, NoiseGenerator, TorchCudaGenerator};
    /// let (mut a, mut b) = (
    ///     TorchCudaGenerator::new(1, GpuProperties::A100),
    ///     TorchCudaGenerator::new(1, GpuProperties::A100),
    /// );
    /// let mut all = vec![0f32; 300_000];
    /// a.fill_randn(&mut all);
    /// let mut last = [0f32; 3];
    /// b.randn_window_f32(300_000, 299_997, &mut last)?;
    /// assert_eq!(last, all[299_997..]);
    /// assert_eq!(a.offset(), b.offset());
    /// # Ok::<(), ddim::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::LengthMismatch`] when the window ends past `numel`.
    pub fn randn_window_f32(&mut self, numel: u64, start: u64, out: &mut [f32]) -> Result<()> {
        let end = u64::try_from(out.len())
            .ok()
            .and_then(|len| start.checked_add(len));
        match end {
            Some(end) if end <= numel => {
                self.fill_f32_at(numel, start, out);
                Ok(())
            }
            _ => Err(Error::LengthMismatch {
                name: "window end (start + out.len())",
                expected: usize::try_from(numel).unwrap_or(usize::MAX),
                got: usize::try_from(start)
                    .unwrap_or(usize::MAX)
                    .saturating_add(out.len()),
            }),
        }
    }

    /// Plans one call of `numel` values with unroll `u`: (threads, counter base), and advances
    /// the offset. `None` (and no change) for an empty call, which torch does not launch.
    fn launch(&mut self, numel: u64, unroll: u64) -> Option<(u64, u64)> {
        if numel == 0 {
            return None;
        }
        let threads = self.gpu.launch_threads(numel);
        let base = self.offset / 4;
        let calls = (numel - 1) / (threads * unroll) + 1;
        self.offset = self.offset.wrapping_add(calls * 4);
        Some((threads, base))
    }

    /// Philox output for thread `t`, iteration `k` of a call with counter base `base`.
    #[inline]
    #[allow(clippy::cast_possible_truncation)] // splitting u64 into its 32-bit halves
    fn curand4(&self, base: u64, k: u64, t: u64) -> [u32; 4] {
        let c = base.wrapping_add(k);
        philox4x32_10(
            [c as u32, (c >> 32) as u32, t as u32, (t >> 32) as u32],
            [self.seed as u32, (self.seed >> 32) as u32],
        )
    }

    fn fill_f32_at(&mut self, numel: u64, start: u64, out: &mut [f32]) {
        let Some((threads, base)) = self.launch(numel, 4) else {
            return;
        };
        // `out` first: the zip then stops before `start..` steps past u64::MAX.
        for (v, i) in out.iter_mut().zip(start..) {
            let (t, q) = (i % threads, i / threads);
            let x = self.curand4(base, q / 4, t);
            let ii = q % 4;
            let (a, b) = if ii < 2 { (x[0], x[1]) } else { (x[2], x[3]) };
            let (s, c) = box_muller_f32(a, b);
            *v = if ii % 2 == 0 { s } else { c };
        }
    }

    fn fill_cast<T>(&mut self, out: &mut [T], cast: impl Fn(f32) -> T) {
        let mut buf = vec![0f32; out.len()];
        self.fill_f32_at(len_u64(out.len()), 0, &mut buf);
        for (o, v) in out.iter_mut().zip(buf) {
            *o = cast(v);
        }
    }
}

fn len_u64(len: usize) -> u64 {
    u64::try_from(len).unwrap_or(u64::MAX)
}

/// `_curand_box_muller` on two words: (r·sin v, r·cos v), sin/cos/ln correctly rounded.
#[inline]
#[allow(clippy::cast_possible_truncation, clippy::cast_precision_loss)] // (float)x, as cuRAND
fn box_muller_f32(x: u32, y: u32) -> (f32, f32) {
    let u = (x as f32).mul_add(INV_2POW32, INV_2POW32 / 2.0);
    let v = (y as f32).mul_add(INV_2POW32_2PI, INV_2POW32_2PI / 2.0);
    let r = (-2.0 * (f64::from(u).ln() as f32)).sqrt();
    let v = f64::from(v);
    (v.sin() as f32 * r, v.cos() as f32 * r)
}

/// `_curand_box_muller_double`: 53-bit u, v from the four words; (r·sin πv, r·cos πv).
#[inline]
#[allow(clippy::cast_precision_loss)] // < 2⁵³: exact
fn box_muller_f64(x: [u32; 4]) -> (f64, f64) {
    const INV53: f64 = 1.0 / 9_007_199_254_740_992.0;
    let zx = u64::from(x[0]) ^ (u64::from(x[1]) << 21);
    let zy = u64::from(x[2]) ^ (u64::from(x[3]) << 21);
    let u = zx as f64 * INV53 + INV53 / 2.0;
    let v = zy as f64 * (2.0 * INV53) + INV53;
    let r = (-2.0 * u.ln()).sqrt();
    let angle = std::f64::consts::PI * v;
    (angle.sin() * r, angle.cos() * r)
}

impl NoiseGenerator for TorchCudaGenerator {
    fn fill_randn_f32(&mut self, out: &mut [f32]) {
        self.fill_f32_at(len_u64(out.len()), 0, out);
    }

    fn fill_randn_f64(&mut self, out: &mut [f64]) {
        let Some((threads, base)) = self.launch(len_u64(out.len()), 2) else {
            return;
        };
        for (i, v) in (0u64..).zip(out.iter_mut()) {
            let (t, q) = (i % threads, i / threads);
            let (s, c) = box_muller_f64(self.curand4(base, q / 2, t));
            *v = if q % 2 == 0 { s } else { c };
        }
    }

    fn fill_randn_f16(&mut self, out: &mut [f16]) {
        self.fill_cast(out, f16::from_f32);
    }

    fn fill_randn_bf16(&mut self, out: &mut [bf16]) {
        self.fill_cast(out, bf16::from_f32);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn launch_geometry() {
        let h100 = GpuProperties::H100_SXM;
        assert_eq!(h100.launch_threads(1), 256);
        assert_eq!(h100.launch_threads(16_384), 16_384);
        assert_eq!(h100.launch_threads(10_000_000), 270_336);
        assert_eq!(GpuProperties::T4.max_threads(), 40_960);
        assert_eq!(GpuProperties::L4.max_threads(), 89_088);
        assert!(GpuProperties::new(0, 2048).is_err());
        assert!(GpuProperties::new(10, 255).is_err());
    }

    #[test]
    fn offsets_advance_like_torch() {
        let mut g = TorchCudaGenerator::new(0, GpuProperties::H100_SXM);
        g.fill_randn_f32(&mut []);
        assert_eq!(g.offset(), 0);
        g.fill_randn_f32(&mut [0.0; 8]);
        assert_eq!(g.offset(), 4);
        // 4·T + 1 values need two iterations per thread.
        let n = 4 * 270_336 + 1;
        let _ = g.launch(n, 4);
        assert_eq!(g.offset(), 12);
        g.manual_seed(3);
        assert_eq!(g.offset(), 0);
    }
}
