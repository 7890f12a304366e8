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
//! cannot be vectorised. So the AVX2 block first runs with every fma computed in f64
//! (`a·b` is exact there, the sum is rounded once to f64 and then to f32); that double rounding
//! differs from a true fma only when the f64 sum lands exactly halfway between two f32 values,
//! which is detected. A block where that happened (about 2⁻²⁵ of blocks) is recomputed with
//! `f32::mul_add`. With `-C target-feature=+fma` the true fma is used directly.

use std::f64::consts::PI;

/// How the kernel's fused multiply-adds are computed.
trait Fma {
    /// `a·b + c`, rounded once to f32; sets `flag` when the result may be off.
    fn fma(a: f32, b: f32, c: f32, flag: &mut u32) -> f32;
}

/// The true fma (`f32::mul_add`): exact, never flags.
struct Fused;

impl Fma for Fused {
    #[inline(always)]
    fn fma(a: f32, b: f32, c: f32, _flag: &mut u32) -> f32 {
        a.mul_add(b, c)
    }
}

/// In f64, flagging results that may carry a double-rounding error.
struct ViaF64;

impl Fma for ViaF64 {
    #[inline(always)]
    #[allow(clippy::cast_possible_truncation)] // the f64 → f32 rounding is the point
    fn fma(a: f32, b: f32, c: f32, flag: &mut u32) -> f32 {
        // a·b has at most 48 significant bits: exact in f64.
        let s = f64::from(a) * f64::from(b) + f64::from(c);
        // Halfway between two f32 values: the 29 bits f32 drops are exactly 1000…0.
        *flag |= u32::from((s.to_bits() & 0x1fff_ffff) == 0x1000_0000);
        s as f32
    }
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

/// `log256_ps` for x in (0, 1] (u₁ = 1 − u ≥ 2⁻²⁴ is always normal, so its clamp to the
/// smallest normal never acts and is left out).
#[inline(always)]
#[allow(clippy::cast_possible_wrap, clippy::cast_precision_loss)] // biased exponent ≤ 255
fn log_ps<F: Fma>(x: f32, flag: &mut u32) -> f32 {
    let bits = x.to_bits();
    let exponent = (bits >> 23) as i32 - 127;
    let m = f32::from_bits((bits & !0x7f80_0000) | 0x3f00_0000); // in [0.5, 1)
    let below = m < SQRTHF;
    let mut e = exponent as f32 + 1.0;
    e -= if below { 1.0 } else { 0.0 };
    // x = (m − 1) + m below √½, else m − 1 (+ 0): two roundings, as the vector code does.
    let mut x = (m - 1.0) + if below { m } else { 0.0 };
    let z = x * x;
    let mut y = LOG_P[0];
    for p in &LOG_P[1..] {
        y = F::fma(y, x, *p, flag);
    }
    y *= x;
    y = F::fma(y, z, e * LOG_Q1, flag);
    y -= z * 0.5;
    x += y;
    x + e * LOG_Q2
}

/// `sincos256_ps` for x ≥ 0: (sin x, cos x).
#[inline(always)]
#[allow(clippy::cast_possible_truncation, clippy::cast_precision_loss)] // 0 ≤ x·4/π < 9
fn sincos_ps<F: Fma>(x: f32, flag: &mut u32) -> (f32, f32) {
    let j = (x * FOPI) as i32; // cvttps: truncation
    let j = (j + 1) & !1;
    let y = j as f32;
    let sin_sign = if j & 4 != 0 { 0x8000_0000u32 } else { 0 };
    let cos_sign = if !(j - 2) & 4 != 0 { 0x8000_0000u32 } else { 0 };
    let sin_poly_for_sin = j & 2 == 0;
    let mut x = F::fma(y, DP1, x, flag);
    x = F::fma(y, DP2, x, flag);
    x = F::fma(y, DP3, x, flag);
    let z = x * x;
    let mut yc = F::fma(COS_P[0], z, COS_P[1], flag);
    yc = F::fma(yc, z, COS_P[2], flag);
    yc *= z;
    yc = F::fma(yc, z, -(z * 0.5), flag);
    yc += 1.0;
    let mut ys = F::fma(SIN_P[0], z, SIN_P[1], flag);
    ys = F::fma(ys, z, SIN_P[2], flag);
    ys *= z;
    ys = F::fma(ys, x, x, flag);
    let (s, c) = if sin_poly_for_sin { (ys, yc) } else { (yc, ys) };
    (
        f32::from_bits(s.to_bits() ^ sin_sign),
        f32::from_bits(c.to_bits() ^ cos_sign),
    )
}

/// One block through the AVX2 kernel's arithmetic, with fma strategy `F`; returns the flags.
#[inline(always)]
fn block_avx2<F: Fma>(d: &mut [f32; 16]) -> u32 {
    let mut flag = 0u32;
    let (lo, hi) = d.split_at_mut(8);
    for (a, b) in lo.iter_mut().zip(hi.iter_mut()) {
        let radius = (-2.0 * log_ps::<F>(1.0 - *a, &mut flag)).sqrt();
        let (s, c) = sincos_ps::<F>(TWO_PI_F32 * *b, &mut flag);
        *a = radius * c + 0.0;
        *b = radius * s + 0.0;
    }
    flag
}

/// The AVX2 kernel on every 16-block of `data` (`data.len()` a multiple of 16).
pub(crate) fn fill_avx2(data: &mut [f32]) {
    for chunk in data.chunks_exact_mut(16) {
        if let Ok(block) = <&mut [f32; 16]>::try_from(chunk) {
            if cfg!(target_feature = "fma") {
                block_avx2::<Fused>(block);
            } else {
                let input = *block;
                if block_avx2::<ViaF64>(block) != 0 {
                    *block = input;
                    block_avx2::<Fused>(block);
                }
            }
        }
    }
}

/// The scalar kernel on every 16-block of `data`.
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

    #[test]
    fn f64_emulated_fma_agrees_with_the_fused_one_when_unflagged() {
        // Random blocks: the fast path (when it does not flag) equals the exact one.
        let mut state = 12345u32;
        for _ in 0..2000 {
            let mut block = [0f32; 16];
            for v in &mut block {
                state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                *v = (state >> 8) as f32 / (1u32 << 24) as f32;
            }
            let (mut fast, mut exact) = (block, block);
            let flagged = block_avx2::<ViaF64>(&mut fast) != 0;
            block_avx2::<Fused>(&mut exact);
            if !flagged {
                assert_eq!(fast.map(f32::to_bits), exact.map(f32::to_bits));
            }
        }
    }

    #[test]
    fn zero_uniform_gives_plus_zero() {
        // u = 0 ⇒ u₁ = 1, ln 1 = 0, r = √(−0) = −0; torch writes +0 (§A.7 note).
        let mut block = [0f32; 16];
        fill_avx2(&mut block);
        assert!(block.iter().all(|v| v.to_bits() == 0));
    }
}
