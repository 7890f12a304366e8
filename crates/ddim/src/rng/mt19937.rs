//! The Mersenne Twister MT19937 as torch's `at::mt19937` runs it (`MT19937RNGEngine.h`).
//!
//! Seeding is the standard `init_genrand` with the low 32 bits of the seed:
//! s₀ = seed mod 2³², s_j = 1812433253·(s_{j−1} ⊕ (s_{j−1} ≫ 30)) + j (mod 2³²), j = 1 … 623.
//! The first draw regenerates the whole state (torch sets `left = 1`), and each output is the
//! tempered state word. The stream equals `std::mt19937((uint32_t)seed)`.

const N: usize = 624;
const M: usize = 397;
const MATRIX_A: u32 = 0x9908_b0df;
const UPPER_MASK: u32 = 0x8000_0000;
const LOWER_MASK: u32 = 0x7fff_ffff;

/// MT19937 with torch's seeding and output order.
#[derive(Clone)]
pub(crate) struct Mt19937 {
    state: [u32; N],
    /// Tempered outputs of the current state, drawn from `next`.
    out: [u32; N],
    next: usize,
}

impl std::fmt::Debug for Mt19937 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mt19937")
            .field("next", &self.next)
            .finish_non_exhaustive()
    }
}

#[inline(always)]
fn twist(a: u32, b: u32, c: u32) -> u32 {
    // y = upper bit of a | lower 31 bits of b; c ⊕ (y ≫ 1) ⊕ (MATRIX_A if b is odd).
    let y = (a & UPPER_MASK) | (b & LOWER_MASK);
    c ^ (y >> 1) ^ ((b & 1).wrapping_neg() & MATRIX_A)
}

#[inline(always)]
fn temper(mut y: u32) -> u32 {
    y ^= y >> 11;
    y ^= (y << 7) & 0x9d2c_5680;
    y ^= (y << 15) & 0xefc6_0000;
    y ^ (y >> 18)
}

impl Mt19937 {
    /// Seeds with the low 32 bits of `seed` (torch keeps the full u64 but the engine uses
    /// only these).
    pub(crate) fn new(seed: u64) -> Self {
        let mut state = [0u32; N];
        #[allow(clippy::cast_possible_truncation)] // masked to 32 bits first
        let mut prev = (seed & 0xffff_ffff) as u32;
        for (j, s) in (0u32..).zip(state.iter_mut()) {
            if j > 0 {
                prev = 1_812_433_253u32
                    .wrapping_mul(prev ^ (prev >> 30))
                    .wrapping_add(j);
            }
            *s = prev;
        }
        Self {
            state,
            out: [0; N],
            next: N,
        }
    }

    /// Regenerates the state and its tempered outputs (the standard twist, in three runs so
    /// that each is a simple loop over slices).
    // Every index below is < N by the loop bounds (k + M < N in the first run, k + 1 < N and
    // k + M − N < M in the second).
    #[allow(clippy::indexing_slicing)]
    #[inline(always)] // into `fill_map`, so that it is compiled into the AVX2 + FMA copy too
    fn refill_inline(&mut self) {
        let st = &mut self.state;
        // k in 0..N−M: reads st[k+1] and st[k+M], neither rewritten yet.
        for k in 0..N - M {
            st[k] = twist(st[k], st[k + 1], st[k + M]);
        }
        // k in N−M..N−1: st[k+M−N] was rewritten above, as the recurrence requires.
        for k in N - M..N - 1 {
            st[k] = twist(st[k], st[k + 1], st[k + M - N]);
        }
        st[N - 1] = twist(st[N - 1], st[0], st[M - 1]);
        for (o, &s) in self.out.iter_mut().zip(st.iter()) {
            *o = temper(s);
        }
        self.next = 0;
    }

    /// [`refill_inline`](Self::refill_inline), not inlined (for the one-word draws).
    #[inline(never)]
    fn refill(&mut self) {
        self.refill_inline();
    }

    /// The next 32-bit output.
    #[inline]
    pub(crate) fn next_u32(&mut self) -> u32 {
        if self.next >= N {
            self.refill();
        }
        let v = self.out.get(self.next).copied().unwrap_or(0);
        self.next += 1;
        v
    }

    /// torch's `random64()`: two draws, the first is the high word.
    #[inline]
    pub(crate) fn next_u64(&mut self) -> u64 {
        let hi = u64::from(self.next_u32());
        (hi << 32) | u64::from(self.next_u32())
    }

    /// Fills `dest` with successive outputs, mapped by `f` (a whole state's worth at a time).
    /// Always inlined: `rng::dispatch` compiles it into its AVX2 + FMA copy.
    #[inline(always)]
    pub(crate) fn fill_map<T>(&mut self, dest: &mut [T], f: impl Fn(u32) -> T) {
        let mut rest = dest;
        while !rest.is_empty() {
            if self.next >= N {
                self.refill_inline();
            }
            let avail = self.out.get(self.next..).unwrap_or(&[]);
            let take = avail.len().min(rest.len());
            let (head, tail) = rest.split_at_mut(take);
            for (d, &u) in head.iter_mut().zip(avail) {
                *d = f(u);
            }
            self.next += take;
            rest = tail;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_answers() {
        // torch-randn.md §A.3.
        let mut mt = Mt19937::new(0);
        let got: Vec<u32> = (0..5).map(|_| mt.next_u32()).collect();
        assert_eq!(
            got,
            [2357136044, 2546248239, 3071714933, 3626093760, 2588848963]
        );
        let mut mt = Mt19937::new(42);
        let got: Vec<u32> = (0..4).map(|_| mt.next_u32()).collect();
        assert_eq!(got, [1608637542, 3421126067, 4083286876, 787846414]);
        // Only the low 32 bits of the seed count.
        let (mut a, mut b) = (Mt19937::new(5), Mt19937::new((1 << 32) + 5));
        assert_eq!(a.next_u64(), b.next_u64());
    }

    #[test]
    fn bulk_fill_matches_single_draws() {
        let mut a = Mt19937::new(7);
        let mut b = Mt19937::new(7);
        let _ = a.next_u32();
        let _ = b.next_u32();
        let mut bulk = vec![0u32; 2000];
        a.fill_map(&mut bulk, |u| u);
        let single: Vec<u32> = (0..2000).map(|_| b.next_u32()).collect();
        assert_eq!(bulk, single);
        assert_eq!(a.next_u32(), b.next_u32());
    }
}
