//! torch's 16-value Box–Muller block (`NormalFill16`) for the three CPU kernels.
//!
//! A block of 16 uniforms d₀ … d₁₅ in [0, 1) becomes 16 normals, lane j paired with j + 8:
//!
//! u₁ = 1 − d_j, u₂ = d_{j+8}, r = √(−2·ln u₁), θ = 2π·u₂,
//! d_j ← r·cos θ, d_{j+8} ← r·sin θ.
//!
//! * **AVX2** (x86-64 wheels): `ln`, `sin` and `cos` are the Cephes polynomials of
//!   `avx_mathfun.h` (`log256_ps`, `sincos256_ps`) in float32, with the multiply-adds that GCC
//!   fused into FMAs fused here too (torch-randn.md §A.7). Every operation is an IEEE
//!   mul/add/fma/sqrt, so the result is the same bits on any platform.
//! * **Scalar** (`ATEN_CPU_CAPABILITY=default`, non-x86 builds): `logf`, `cosf`, `sinf` of the
//!   platform's libm, θ computed in double then rounded (§A.8). Bit-exact with torch where the
//!   libm is glibc's.
//! * **f64**: the scalar template in double (§A.10), libm `log`, `cos`, `sin`.
//!
//! Each output is `fma(n, std = 1, mean = 0)`, which is `n + 0`: exact, except that it turns
//! −0 into +0 as torch does.
//!
//! The FMAs: without the `fma` target feature, `f32::mul_add` is a libm call per operation and
//! cannot be vectorised. So the AVX2 kernel computes each fma in f64 (`a·b` is exact there;
//! the sum is rounded to f64, then to f32). That double rounding could differ from a true fma
//! where the f64 sum lands exactly halfway between two f32 values, but the kernel's inputs are
//! finite (each lane gets one of 2²⁴ uniforms) and on every one of them the result equals the
//! true fma's: the test `wide_fma_is_exact_on_every_input` checks all 2²⁴ (a sampled version
//! runs by default). On a CPU with AVX2 and FMA, `rng::dispatch` runs a copy of the kernel
//! compiled with those features, where the true fma (`f32::mul_add`) is one instruction; the
//! same test checks that copy on all 2²⁴ inputs too. The lanes of a block go through the
//! kernel together, as arrays, so their dependency chains overlap.

use std::f64::consts::PI;

/// The 8 lanes of a block: lane j pairs value j with value j + 8.
const W: usize = 8;
type Lanes = [f32; W];

/// The true fma, lane by lane (`f32::mul_add`): a·b + c rounded once.
#[inline(always)]
fn fma(a: Lanes, b: Lanes, c: Lanes) -> Lanes {
    zip3(a, b, c, f32::mul_add)
}

/// Lanes holding f32 values as f64 (exactly), for the portable kernel.
type Wide = [f64; W];

#[inline(always)]
fn widen(a: Lanes) -> Wide {
    let mut out = [0f64; W];
    for (o, &a) in out.iter_mut().zip(&a) {
        *o = f64::from(a);
    }
    out
}

#[inline(always)]
#[allow(clippy::cast_possible_truncation)] // the values are f32 values: exact
fn narrow(a: Wide) -> Lanes {
    let mut out = [0f32; W];
    for (o, &a) in out.iter_mut().zip(&a) {
        *o = a as f32;
    }
    out
}

/// The fma in f64: a·b is exact there (at most 48 significant bits), the sum is rounded to
/// f64 and then to f32 (the result is kept widened). That double rounding could differ from
/// one fma rounding only where the f64 sum lands exactly halfway between two f32 values; over
/// the kernel's whole input domain it never does (see the module docs).
#[inline(always)]
#[allow(clippy::cast_possible_truncation)] // the f64 → f32 rounding is the point
fn fma_wide(a: Wide, b: Wide, c: Wide) -> Wide {
    let mut out = a;
    for ((o, &b), &c) in out.iter_mut().zip(&b).zip(&c) {
        *o = f64::from((*o * b + c) as f32);
    }
    out
}

/// An f32 product of widened lanes (the product is exact in f64, then rounded once).
#[inline(always)]
#[allow(clippy::cast_possible_truncation)]
fn mul_wide(a: Wide, b: Wide) -> Wide {
    let mut out = a;
    for (o, &b) in out.iter_mut().zip(&b) {
        *o = f64::from((*o * b) as f32);
    }
    out
}

// Lane-wise helpers: each is one short loop the compiler unrolls and vectorises; writing the
// kernel with them keeps the 8 lanes' dependency chains independent (more parallelism than a
// loop over lanes that runs the whole kernel per lane).
#[inline(always)]
fn map(a: Lanes, f: impl Fn(f32) -> f32) -> Lanes {
    let mut out = a;
    for v in &mut out {
        *v = f(*v);
    }
    out
}

#[inline(always)]
fn zip(a: Lanes, b: Lanes, f: impl Fn(f32, f32) -> f32) -> Lanes {
    let mut out = a;
    for (v, &b) in out.iter_mut().zip(&b) {
        *v = f(*v, b);
    }
    out
}

#[inline(always)]
fn zip3(a: Lanes, b: Lanes, c: Lanes, f: impl Fn(f32, f32, f32) -> f32) -> Lanes {
    let mut out = a;
    for ((v, &b), &c) in out.iter_mut().zip(&b).zip(&c) {
        *v = f(*v, b, c);
    }
    out
}

// avx_mathfun.h constants, as float32 literals.
const SQRTHF: f32 = 0.707_106_77;
const LOG_P: [f32; 9] = [
    0.070_376_836,
    -0.115_146_1,
    0.116_769_984,
    -0.124_201_41,
    0.142_493_23,
    -0.166_680_57,
    0.200_007_14,
    -0.249_999_94,
    0.333_333_3,
];
const LOG_Q1: f32 = -2.121_944_4e-4;
const LOG_Q2: f32 = 0.693_359_4; // 0.693359375 exactly
const FOPI: f32 = 1.273_239_5;
const DP1: f32 = -0.785_156_25;
const DP2: f32 = -2.418_756_5e-4;
const DP3: f32 = -3.774_895e-8;
const SIN_P: [f32; 3] = [-1.951_529_6e-4, 0.008_332_161, -0.166_666_55];
const COS_P: [f32; 3] = [2.443_315_7e-5, -0.001_388_731_6, 0.041_666_646];
/// `2.0f * c10::pi<double>` stored in a float vector: 6.2831855 (0x40C90FDB).
#[allow(clippy::cast_possible_truncation)] // rounding 2π to f32 is what torch does
const TWO_PI_F32: f32 = (2.0 * PI) as f32;

// The kernel, `avx_mathfun.h`'s operations in their order:
//
// * log, x ∈ (0, 1] (u₁ = 1 − u ≥ 2⁻²⁴ is always normal, so the clamp to the smallest normal
//   never acts and is left out): x = m·2^e with m ∈ [0.5, 1); below √½, e −= 1 and
//   x = (m − 1) + m, else x = m − 1; z = x²; y = Horner(P, x) with fused steps; y = y·x;
//   y = fma(y, z, e·q₁); y −= z/2; log = (x + y) + e·q₂; radius = √(−2·log).
// * sincos, θ = 2π·u₂ ≥ 0: j = trunc(θ·4/π), j = (j + 1) & ~1, x = θ − j·(DP1 + DP2 + DP3)
//   (fused steps), z = x²; the cosine and sine polynomials (fused steps); swap and signs from
//   j's bits 1 and 2.
//
// The log's nine-step Horner chain is the long one; the two variants below interleave its
// steps with the sine and cosine polynomials so that the processor overlaps them.

/// The log's steps before its Horner chain: (x, z = x², e).
#[inline(always)]
#[allow(clippy::cast_possible_wrap, clippy::cast_precision_loss)] // biased exponent ≤ 255
fn log_prologue(lo: Lanes) -> (Lanes, Lanes, Lanes) {
    let u1 = map(lo, |u| 1.0 - u);
    let m = map(u1, |x| {
        f32::from_bits((x.to_bits() & !0x7f80_0000) | 0x3f00_0000)
    });
    let e = zip(u1, m, |x, m| {
        let e = ((x.to_bits() >> 23) as i32 - 127) as f32 + 1.0;
        e - if m < SQRTHF { 1.0 } else { 0.0 }
    });
    // Two roundings, as the vector code does.
    let x = map(m, |m| (m - 1.0) + if m < SQRTHF { m } else { 0.0 });
    (x, zip(x, x, |a, b| a * b), e)
}

/// The log after `y = fma(y·x, z, e·q₁)`, and the radius.
#[inline(always)]
fn log_epilogue(x: Lanes, z: Lanes, e: Lanes, y: Lanes) -> Lanes {
    let y = zip(y, z, |y, z| y - z * 0.5);
    let log = zip(zip(x, y, |x, y| x + y), e, |x, e| x + e * LOG_Q2);
    map(log, |l| (-2.0 * l).sqrt())
}

/// The range reduction up to its fused last step: (j, y = j as f32, θ − y·DP1 − y·DP2).
#[inline(always)]
#[allow(clippy::cast_possible_wrap, clippy::cast_precision_loss)] // 0 ≤ j < 2²³
fn sincos_prologue(hi: Lanes) -> ([i32; W], Lanes, Lanes) {
    // j = cvttps (truncation) of θ·4/π ∈ [0, 9), written so that it vectorises (Rust's
    // saturating `as i32` does not): t = q + 2²³ rounds q to the nearest integer, held in
    // t's low mantissa bits; one less where that rounded up.
    let theta = map(hi, |u| TWO_PI_F32 * u);
    let mut j = [0i32; W];
    for (j, &x) in j.iter_mut().zip(&theta) {
        let q = x * FOPI;
        let t = q + 8_388_608.0;
        let nearest = (t.to_bits() & 0x7f_ffff) as i32;
        *j = ((nearest - i32::from(t - 8_388_608.0 > q)) + 1) & !1;
    }
    let mut y = [0f32; W];
    for (y, &j) in y.iter_mut().zip(&j) {
        *y = j as f32;
    }
    // y ≤ 8 is a 4-bit integer and DP1, DP2 have 8 and 12 significant bits: those products
    // are exact, so the fused and the plain multiply-add are the same rounding.
    let x = zip(y, theta, |y, x| y * DP1 + x);
    (j, y, zip(y, x, |y, x| y * DP2 + x))
}

/// Picks the polynomials and signs (sign-bit XOR): (sin, cos).
#[inline(always)]
fn sincos_epilogue(j: [i32; W], ys: Lanes, yc: Lanes) -> (Lanes, Lanes) {
    let (mut sin, mut cos) = ([0f32; W], [0f32; W]);
    for ((((s, c), &j), &ys), &yc) in sin.iter_mut().zip(&mut cos).zip(&j).zip(&ys).zip(&yc) {
        let sin_sign = if j & 4 != 0 { 0x8000_0000u32 } else { 0 };
        let cos_sign = if !(j - 2) & 4 != 0 { 0x8000_0000u32 } else { 0 };
        let (a, b) = if j & 2 == 0 { (ys, yc) } else { (yc, ys) };
        *s = f32::from_bits(a.to_bits() ^ sin_sign);
        *c = f32::from_bits(b.to_bits() ^ cos_sign);
    }
    (sin, cos)
}

/// (radius, sin θ, cos θ) of lanes (u₁ = `lo`, u₂ = `hi`) with the true fma.
#[inline(always)]
fn radius_sin_cos_fused(lo: Lanes, hi: Lanes) -> (Lanes, Lanes, Lanes) {
    let (lx, lz, e) = log_prologue(lo);
    let (j, y, sx) = sincos_prologue(hi);
    let mut ly = fma([LOG_P[0]; W], lx, [LOG_P[1]; W]);
    let sx = fma(y, [DP3; W], sx);
    let z = zip(sx, sx, |a, b| a * b);
    ly = fma(ly, lx, [LOG_P[2]; W]);
    let mut yc = fma([COS_P[0]; W], z, [COS_P[1]; W]);
    let mut ys = fma([SIN_P[0]; W], z, [SIN_P[1]; W]);
    ly = fma(ly, lx, [LOG_P[3]; W]);
    yc = fma(yc, z, [COS_P[2]; W]);
    ys = fma(ys, z, [SIN_P[2]; W]);
    ly = fma(ly, lx, [LOG_P[4]; W]);
    yc = zip(yc, z, |a, b| a * b);
    ys = zip(ys, z, |a, b| a * b);
    yc = fma(yc, z, map(z, |z| -(z * 0.5)));
    ys = fma(ys, sx, sx);
    ly = fma(ly, lx, [LOG_P[5]; W]);
    ly = fma(ly, lx, [LOG_P[6]; W]);
    ly = fma(ly, lx, [LOG_P[7]; W]);
    ly = fma(ly, lx, [LOG_P[8]; W]);
    ly = zip(ly, lx, |a, b| a * b);
    ly = fma(ly, lz, map(e, |e| e * LOG_Q1));
    let (sin, cos) = sincos_epilogue(j, ys, map(yc, |v| v + 1.0));
    (log_epilogue(lx, lz, e, ly), sin, cos)
}

/// The same with every fma in f64 ([`fma_wide`]), the fused chains kept widened between
/// steps (no narrowing and widening shuffles): the portable fast path.
#[inline(always)]
fn radius_sin_cos_wide(lo: Lanes, hi: Lanes) -> (Lanes, Lanes, Lanes) {
    let (lx, lz, e) = log_prologue(lo);
    let (j, y, sx) = sincos_prologue(hi);
    let k = |c: f32| [f64::from(c); W];
    let (x, yw) = (widen(lx), widen(y));
    let mut ly = fma_wide(k(LOG_P[0]), x, k(LOG_P[1]));
    let sx = fma_wide(yw, k(DP3), widen(sx));
    let z = mul_wide(sx, sx);
    ly = fma_wide(ly, x, k(LOG_P[2]));
    let mut yc = fma_wide(k(COS_P[0]), z, k(COS_P[1]));
    let mut ys = fma_wide(k(SIN_P[0]), z, k(SIN_P[1]));
    ly = fma_wide(ly, x, k(LOG_P[3]));
    yc = fma_wide(yc, z, k(COS_P[2]));
    ys = fma_wide(ys, z, k(SIN_P[2]));
    ly = fma_wide(ly, x, k(LOG_P[4]));
    yc = mul_wide(yc, z);
    ys = mul_wide(ys, z);
    let mut half_z = z;
    for v in &mut half_z {
        *v = -(*v * 0.5); // exact
    }
    yc = fma_wide(yc, z, half_z);
    ys = fma_wide(ys, sx, sx);
    ly = fma_wide(ly, x, k(LOG_P[5]));
    ly = fma_wide(ly, x, k(LOG_P[6]));
    ly = fma_wide(ly, x, k(LOG_P[7]));
    ly = fma_wide(ly, x, k(LOG_P[8]));
    let ly = zip(narrow(ly), lx, |a, b| a * b);
    let ly = fma_wide(widen(ly), widen(lz), widen(map(e, |e| e * LOG_Q1)));
    let (sin, cos) = sincos_epilogue(j, narrow(ys), map(narrow(yc), |v| v + 1.0));
    (log_epilogue(lx, lz, e, narrow(ly)), sin, cos)
}

/// (radius, sin θ, cos θ) with the true fma where it is an instruction (`FMA`: the
/// dispatched AVX2 + FMA path, or a build with the `fma` target feature), in f64 otherwise.
#[inline(always)]
fn radius_sin_cos<const FMA: bool>(lo: Lanes, hi: Lanes) -> (Lanes, Lanes, Lanes) {
    if FMA {
        radius_sin_cos_fused(lo, hi)
    } else {
        radius_sin_cos_wide(lo, hi)
    }
}

/// Box–Muller with the AVX2 kernel's arithmetic on one block (a: lanes 0–7, b: lanes 8–15):
/// a ← r·cos θ, b ← r·sin θ (each `fma(·, 1, 0)`, i.e. + 0, which turns −0 into +0).
#[inline(always)]
fn block_avx2<const FMA: bool>(a: &mut [f32], b: &mut [f32]) {
    let (mut lo, mut hi) = ([0f32; W], [0f32; W]);
    lo.copy_from_slice(a);
    hi.copy_from_slice(b);
    let (radius, sin, cos) = radius_sin_cos::<FMA>(lo, hi);
    a.copy_from_slice(&zip(radius, cos, |r, c| r * c + 0.0));
    b.copy_from_slice(&zip(radius, sin, |r, s| r * s + 0.0));
}

/// The AVX2 kernel on every 16-block of `data` (`data.len()` a multiple of 16); `FMA` as in
/// [`dispatch::Kernel`](super::dispatch::Kernel).
#[inline(always)]
pub(crate) fn fill_avx2<const FMA: bool>(data: &mut [f32]) {
    for block in data.chunks_exact_mut(16) {
        let (a, b) = block.split_at_mut(W);
        block_avx2::<FMA>(a, b);
    }
}

/// The scalar kernel on every 16-block of `data`.
#[inline(always)]
#[allow(clippy::cast_possible_truncation)] // θ = (float)(2π·u₂ in double), as torch
pub(crate) fn fill_scalar(data: &mut [f32]) {
    for chunk in data.chunks_exact_mut(16) {
        let (lo, hi) = chunk.split_at_mut(8);
        for (a, b) in lo.iter_mut().zip(hi.iter_mut()) {
            let radius = (-2.0 * (1.0 - *a).ln()).sqrt();
            let theta = (2.0 * PI * f64::from(*b)) as f32;
            *a = radius * theta.cos() + 0.0;
            *b = radius * theta.sin() + 0.0;
        }
    }
}

/// The double-precision block on every 16-block of `data`.
pub(crate) fn fill_f64(data: &mut [f64]) {
    for chunk in data.chunks_exact_mut(16) {
        let (lo, hi) = chunk.split_at_mut(8);
        for (a, b) in lo.iter_mut().zip(hi.iter_mut()) {
            let radius = (-2.0 * (1.0 - *a).ln()).sqrt();
            let theta = 2.0 * PI * *b;
            *a = radius * theta.cos() + 0.0;
            *b = radius * theta.sin() + 0.0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::dispatch::{self, Kernel};
    use super::*;

    #[test]
    fn constants_have_the_header_bits() {
        assert_eq!(TWO_PI_F32.to_bits(), 0x40c9_0fdb);
        // Each literal above is the float32 rounding of the header's decimal text.
        let header: [(f32, &str); 22] = [
            (SQRTHF, "0.707106781186547524"),
            (LOG_P[0], "7.0376836292E-2"),
            (LOG_P[1], "-1.1514610310E-1"),
            (LOG_P[2], "1.1676998740E-1"),
            (LOG_P[3], "-1.2420140846E-1"),
            (LOG_P[4], "1.4249322787E-1"),
            (LOG_P[5], "-1.6668057665E-1"),
            (LOG_P[6], "2.0000714765E-1"),
            (LOG_P[7], "-2.4999993993E-1"),
            (LOG_P[8], "3.3333331174E-1"),
            (LOG_Q1, "-2.12194440e-4"),
            (LOG_Q2, "0.693359375"),
            (FOPI, "1.27323954473516"),
            (DP1, "-0.78515625"),
            (DP2, "-2.4187564849853515625e-4"),
            (DP3, "-3.77489497744594108e-8"),
            (SIN_P[0], "-1.9515295891E-4"),
            (SIN_P[1], "8.3321608736E-3"),
            (SIN_P[2], "-1.6666654611E-1"),
            (COS_P[0], "2.443315711809948E-005"),
            (COS_P[1], "-1.388731625493765E-003"),
            (COS_P[2], "4.166664568298827E-002"),
        ];
        for (ours, text) in header {
            assert_eq!(
                ours.to_bits(),
                text.parse::<f32>().unwrap().to_bits(),
                "{text}"
            );
            assert_eq!(ours, text.parse::<f64>().unwrap() as f32, "{text}");
        }
    }

    /// The kernel's three parts, run through [`dispatch::run`].
    struct Parts(Lanes);

    impl Kernel for Parts {
        type Output = (Lanes, Lanes, Lanes);
        #[inline(always)]
        fn run<const FMA: bool>(self) -> Self::Output {
            radius_sin_cos::<FMA>(self.0, self.0)
        }
    }

    /// The f64 kernel, the portable path and the dispatched path (hardware FMA on an
    /// AVX2 + FMA CPU) against the true fma (`f32::mul_add`) on every `stride`-th of the 2²⁴ uniforms a lane can get
    /// (u = k·2⁻²⁴): the radius from 1 − u and the sine and cosine of 2π·u. (Each output lane
    /// is r(u₁)·cos θ(u₂) or r(u₁)·sin θ(u₂), so equal parts give equal outputs for all pairs.)
    fn check_wide_fma(stride: u32) -> usize {
        let mut checked = 0;
        let mut k = 0u32;
        while k < 1 << 24 {
            let mut u = [0f32; W];
            for (i, v) in (0u32..).zip(u.iter_mut()) {
                *v = ((k + i * stride) & 0xff_ffff) as f32 / 16_777_216.0;
            }
            let exact = radius_sin_cos_fused(u, u);
            let paths = [
                ("f64 emulation", radius_sin_cos_wide(u, u)),
                ("portable path", dispatch::run(Parts(u), false)),
                ("dispatched path", dispatch::run(Parts(u), true)),
            ];
            for (path, got) in paths {
                let names = ["radius", "sin", "cos"];
                for ((g, e), name) in [got.0, got.1, got.2]
                    .iter()
                    .zip([exact.0, exact.1, exact.2])
                    .zip(names)
                {
                    assert_eq!(
                        g.map(f32::to_bits),
                        e.map(f32::to_bits),
                        "{path}: {name} at {u:?}"
                    );
                }
            }
            checked += W;
            k += W as u32 * stride;
        }
        checked
    }

    #[test]
    fn wide_fma_is_exact_on_sampled_inputs() {
        println!(
            "dispatched path uses AVX2 + FMA: {}",
            dispatch::simd_available()
        );
        assert!(check_wide_fma(97) > 170_000);
    }

    /// The whole domain (16.7 M inputs; ~2 s in release, minutes in a debug build):
    /// `cargo test -p ddim --release --lib -- --ignored wide_fma_is_exact_on_every_input`.
    #[test]
    #[ignore = "exhaustive: run in release"]
    fn wide_fma_is_exact_on_every_input() {
        assert_eq!(check_wide_fma(1), 1 << 24);
    }

    #[test]
    fn zero_uniform_gives_plus_zero() {
        // u = 0 ⇒ u₁ = 1, ln 1 = 0, r = √(−0) = −0; torch writes +0 (§A.7 note).
        let mut block = [0f32; 16];
        fill_avx2::<false>(&mut block);
        assert!(block.iter().all(|v| v.to_bits() == 0));
        let mut block = [0f32; 16];
        fill_avx2::<true>(&mut block);
        assert!(block.iter().all(|v| v.to_bits() == 0));
    }
}
