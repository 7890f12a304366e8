//! Philox4x32-10 (Salmon et al. 2011), as in cuRAND's `curand_philox4x32_x.h` and ATen's
//! `PhiloxRNGEngine.h`.

const M0: u32 = 0xD251_1F53;
const M1: u32 = 0xCD9E_8D57;
const W0: u32 = 0x9E37_79B9;
const W1: u32 = 0xBB67_AE85;

/// (high, low) 32-bit halves of the 64-bit product a·b.
#[inline(always)]
fn mul_hi_lo(a: u32, b: u32) -> (u32, u32) {
    let p = u64::from(a) * u64::from(b);
    let [l0, l1, l2, l3, h0, h1, h2, h3] = p.to_le_bytes();
    (
        u32::from_le_bytes([h0, h1, h2, h3]),
        u32::from_le_bytes([l0, l1, l2, l3]),
    )
}

/// The Philox4x32 block function with 10 rounds: counter `ctr`, key `key` → 4 random words.
///
/// One round maps (c₀, c₁, c₂, c₃) with p₀ = M₀·c₀, p₁ = M₁·c₂ (64-bit products) to
/// (hi(p₁) ⊕ c₁ ⊕ k₀, lo(p₁), hi(p₀) ⊕ c₃ ⊕ k₁, lo(p₀)); between rounds the key is bumped by
/// the Weyl constants (k₀ += 0x9E3779B9, k₁ += 0xBB67AE85).
///
/// ```
/// // Known answer (Random123 / cuRAND): counter 0, key 0.
/// assert_eq!(
///     ddim::rng::philox4x32_10([0; 4], [0; 2]),
///     [0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8]
/// );
/// # Ok::<(), ddim::Error>(())
/// ```
#[inline]
pub fn philox4x32_10(ctr: [u32; 4], key: [u32; 2]) -> [u32; 4] {
    let [mut c0, mut c1, mut c2, mut c3] = ctr;
    let [mut k0, mut k1] = key;
    for round in 0..10 {
        let (hi0, lo0) = mul_hi_lo(M0, c0);
        let (hi1, lo1) = mul_hi_lo(M1, c2);
        (c0, c1, c2, c3) = (hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0);
        if round < 9 {
            k0 = k0.wrapping_add(W0);
            k1 = k1.wrapping_add(W1);
        }
    }
    [c0, c1, c2, c3]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_answers() {
        // torch-randn.md §B.2 (Random123's KATs).
        assert_eq!(
            philox4x32_10([u32::MAX; 4], [u32::MAX; 2]),
            [0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd]
        );
        assert_eq!(
            philox4x32_10(
                [0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344],
                [0xa4093822, 0x299f31d0]
            ),
            [0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1]
        );
        // §B.8: seed 0, counter (0, 0, t, 0) for threads t = 1, 2; seed 42, t = 0.
        assert_eq!(
            philox4x32_10([0, 0, 1, 0], [0, 0]),
            [0x844515e1, 0xf08d6eaa, 0x0f19c053, 0x83f875f0]
        );
        assert_eq!(
            philox4x32_10([0, 0, 2, 0], [0, 0]),
            [0x0661d677, 0xb6826759, 0x262148c6, 0x773c5ff0]
        );
        assert_eq!(
            philox4x32_10([0; 4], [42, 0]),
            [0x9ceaf053, 0x77f5493b, 0x12bf50ad, 0x5742b3d7]
        );
    }
}
