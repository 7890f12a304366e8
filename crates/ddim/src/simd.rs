//! Which instruction set the step kernels run on, chosen once at run time.
//!
//! The fused step loops are compiled three times from the same safe code: for the crate's
//! target (SSE2 on baseline x86-64: 4 f32 lanes), for AVX2 (8 lanes) and for AVX-512F (16
//! lanes); the widest the CPU supports is used. The loops use only IEEE operations (no
//! `mul_add`, and Rust never contracts `a * b + c`), so every path gives the same bits;
//! `tests/kernel_paths.rs` checks it over every golden fixture on each path this machine has.

use std::sync::atomic::{AtomicU8, Ordering};

use crate::rng::dispatch::{avx512_available, simd_available, Isa};

/// The code the step kernels run.
///
/// ```
/// let path = ddim::kernel_path();
/// ddim::force_portable_kernels(true);
/// assert_eq!(ddim::kernel_path(), ddim::KernelPath::Portable);
/// ddim::force_portable_kernels(false);
/// assert_eq!(ddim::kernel_path(), path);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum KernelPath {
    /// The crate's own target features (SSE2 on baseline x86-64; every other target).
    Portable,
    /// AVX2 (x86-64).
    Avx2,
    /// AVX-512F (x86-64).
    Avx512,
}

impl KernelPath {
    /// Lower-case name: `portable`, `avx2`, `avx512`.
    pub fn as_str(self) -> &'static str {
        match self {
            KernelPath::Portable => "portable",
            KernelPath::Avx2 => "avx2",
            KernelPath::Avx512 => "avx512",
        }
    }
}

impl std::fmt::Display for KernelPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// 0: the widest available; 1 + the path's rank: at most that path.
static LIMIT: AtomicU8 = AtomicU8::new(0);

fn rank(path: KernelPath) -> u8 {
    match path {
        KernelPath::Portable => 0,
        KernelPath::Avx2 => 1,
        KernelPath::Avx512 => 2,
    }
}

/// Limits every later step, in the whole process, to `path` (or the widest narrower one this
/// CPU supports); `None` (the default) lets it use the widest available. The results are the
/// same bits on every path: this exists to measure and to check that.
pub fn force_kernel_path(path: Option<KernelPath>) {
    LIMIT.store(path.map_or(0, |p| 1 + rank(p)), Ordering::Relaxed);
}

/// Shorthand for `force_kernel_path(Some(KernelPath::Portable))` (`true`) or
/// `force_kernel_path(None)` (`false`).
pub fn force_portable_kernels(portable: bool) {
    force_kernel_path(portable.then_some(KernelPath::Portable));
}

/// The code steps run now: the widest this CPU supports within the limit of
/// [`force_kernel_path`].
pub fn kernel_path() -> KernelPath {
    let limit = match LIMIT.load(Ordering::Relaxed) {
        0 => 2,
        l => l - 1,
    };
    if limit >= 2 && avx512_available() {
        KernelPath::Avx512
    } else if limit >= 1 && simd_available() {
        KernelPath::Avx2
    } else {
        KernelPath::Portable
    }
}

/// The dispatch target of [`kernel_path`].
pub(crate) fn isa() -> Isa {
    match kernel_path() {
        KernelPath::Portable => Isa::Portable,
        KernelPath::Avx2 => Isa::Avx2,
        KernelPath::Avx512 => Isa::Avx512,
    }
}
