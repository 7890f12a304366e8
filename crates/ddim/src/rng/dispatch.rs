//! Runtime CPU dispatch for the generator's hot loops and the step kernels ([`run_isa`]): the
//! crate's only `unsafe`.
//!
//! A [`Kernel`] is written once, generic over `FMA` (whether `f32::mul_add` is a hardware
//! instruction where it runs), with `#[inline(always)]` on everything it calls. [`run`]
//! compiles it twice:
//!
//! * inside [`run_avx2_fma`], a function built with the `avx2` and `fma` target features,
//!   chosen when the CPU reports both at runtime: 8-lane AVX2 integer and float code with
//!   true fused multiply-adds (what `-C target-cpu=x86-64-v3` gives the whole crate; the
//!   rest of that level — BMI1/2, F16C, LZCNT, MOVBE — was measured to add nothing here);
//! * in the crate's own target features (SSE2 on baseline x86-64): the portable path, which
//!   emulates the fused multiply-adds exactly in f64 (see `mathfun`).
//!
//! Both give the same bits: only IEEE operations are used and a fused multiply-add is exact
//! either way (`mathfun`'s tests check all 2²⁴ kernel inputs on both paths, and
//! `tests/torch_rng.rs` every recorded torch value). Targets other than x86-64 always take the
//! portable path.
//!
//! DESIGN.md allows `unsafe` for a measured SIMD kernel, isolated in one module with a scalar
//! fallback: this is that module. The workspace lint is `deny(unsafe_code)`, this module alone
//! allows it, and `tests/unsafe_isolated.rs` checks that no other source file uses `unsafe`.
#![allow(unsafe_code)]

/// A computation compiled once per dispatch path.
pub(crate) trait Kernel {
    /// What the computation returns.
    type Output;
    /// Runs it; `FMA` says whether `f32::mul_add` compiles to a hardware instruction here.
    /// Implementations are `#[inline(always)]` (and so is everything they call), so that the
    /// code is compiled with the features of [`run_avx2_fma`] when it runs there.
    fn run<const FMA: bool>(self) -> Self::Output;
}

/// Whether this CPU (and OS) supports the features [`run_avx2_fma`] is compiled with: AVX2
/// and FMA, the features torch's own AVX2 kernel needs. The standard library caches the
/// detection, so this costs a couple of loads. Always `false` on other targets.
pub(crate) fn simd_available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Runs `kernel` with the AVX2 + FMA code when `simd` is asked for and the CPU has the
/// features, otherwise with the portable code (which is also the only path off x86-64).
#[inline]
pub(crate) fn run<K: Kernel>(kernel: K, simd: bool) -> K::Output {
    #[cfg(target_arch = "x86_64")]
    if simd && simd_available() {
        // SAFETY: `run_avx2_fma` is unsafe only because it is compiled with target features
        // (avx2, fma) that the baseline x86-64 target does not guarantee; running it on a CPU
        // without them would be undefined behaviour. `simd_available()` has just checked at
        // runtime that this CPU and OS support both. It has no other precondition: its body
        // is safe code.
        return unsafe { run_avx2_fma(kernel) };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = simd;
    kernel.run::<{ cfg!(target_feature = "fma") }>()
}

/// Whether this CPU supports the features [`run_avx512`] is compiled with (AVX-512F, AVX2,
/// FMA). Always `false` on other targets.
pub(crate) fn avx512_available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f") && simd_available()
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// The instruction sets a kernel can be compiled for, widest last.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Isa {
    /// The crate's own target features (SSE2 on baseline x86-64).
    Portable,
    /// AVX2 + FMA.
    Avx2,
    /// AVX-512F (+ AVX2, FMA).
    Avx512,
}

/// Runs `kernel` compiled for `isa`, or for the portable target when the CPU lacks it (the
/// step kernels, which use only IEEE operations and no `mul_add`: the same bits on every
/// path).
#[inline]
pub(crate) fn run_isa<K: Kernel>(kernel: K, isa: Isa) -> K::Output {
    #[cfg(target_arch = "x86_64")]
    match isa {
        Isa::Avx512 if avx512_available() => {
            // SAFETY: `run_avx512` is unsafe only because it is compiled with target features
            // (avx512f, avx2, fma) beyond the baseline; `avx512_available()` has just checked
            // at runtime that this CPU and OS support all three. Its body is safe code.
            return unsafe { run_avx512(kernel) };
        }
        Isa::Avx2 if simd_available() => {
            // SAFETY: as in `run`: `simd_available()` has just checked AVX2 and FMA, the
            // features `run_avx2_fma` is compiled with; its body is safe code.
            return unsafe { run_avx2_fma(kernel) };
        }
        _ => {}
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = isa;
    kernel.run::<{ cfg!(target_feature = "fma") }>()
}

/// `kernel` compiled with AVX-512F, AVX2 and FMA (16 f32 lanes).
///
/// # Safety
///
/// The CPU must support AVX-512F, AVX2 and FMA ([`avx512_available`]).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn run_avx512<K: Kernel>(kernel: K) -> K::Output {
    kernel.run::<true>()
}

/// `kernel` compiled with AVX2 and FMA: its `#[inline(always)]` body is compiled into this
/// function, so LLVM vectorises it for AVX2 and turns `f32::mul_add` into `vfmadd`.
///
/// # Safety
///
/// The CPU must support AVX2 and FMA ([`simd_available`]).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn run_avx2_fma<K: Kernel>(kernel: K) -> K::Output {
    kernel.run::<true>()
}
