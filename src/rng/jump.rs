//! Jump-ahead of xoshiro256 by an arbitrary number of steps, so that several threads can generate
//! consecutive segments of one input stream (the split-N step of the direct simulator) and the
//! numbers stay those of a single thread, bit for bit.
//!
//! The state transition T of xoshiro256 is linear over GF(2), with a primitive characteristic
//! polynomial P of degree 256 (Blackman & Vigna 2018, "Scrambled linear pseudorandom number
//! generators", §4 and §9). By Cayley–Hamilton, T^d = q(T) with q(x) = x^d mod P, a polynomial of
//! degree < 256, and q(T)s = Σ_i q_i T^i s costs 256 steps whatever d is. That is how the reference
//! `jump()` works (its constants are x^(2^128) mod P); here q is computed for any d. P itself is
//! found once, by Berlekamp–Massey on 512 output bits (Massey 1969): the sequence of one state bit
//! satisfies the recurrence of the minimal polynomial of T, which is P because P is irreducible.
//!
//! Written by hand: the rand_xoshiro crate offers only the fixed 2^128 and 2^192 jumps.

use super::xoshiro256pp_next;
use std::sync::OnceLock;

/// A GF(2) polynomial of degree ≤ 256: bit i of word i / 64 is the coefficient of x^i.
type Poly = [u64; 5];

/// Advance of a xoshiro256 state by a fixed number d of steps: q(x) = x^d mod P.
///
/// ```
/// use hdsgd::rng::{jump::Jump, xoshiro256pp_next};
/// let mut a = [1u64, 2, 3, 4];
/// let mut b = a;
/// for _ in 0..1000 {
///     xoshiro256pp_next(&mut a);
/// }
/// Jump::new(1000).apply(&mut b);
/// assert_eq!(a, b);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Jump {
    /// Coefficients of q (degree < 256).
    q: [u64; 4],
}

impl Jump {
    /// The jump by `steps` steps (O(256² log steps) bit operations, once).
    pub fn new(steps: u128) -> Self {
        let p = characteristic();
        let mut r: Poly = [1, 0, 0, 0, 0];
        for bit in (0..128).rev() {
            r = mul_mod(&r, &r, p);
            if steps >> bit & 1 == 1 {
                r = times_x_mod(&r, p);
            }
        }
        debug_assert_eq!(r[4], 0);
        Jump {
            q: [r[0], r[1], r[2], r[3]],
        }
    }

    /// The coefficients of q, in the layout of the reference `jump()` constants.
    pub fn coefficients(&self) -> [u64; 4] {
        self.q
    }

    /// s ← T^d s (256 generator steps).
    pub fn apply(&self, s: &mut [u64; 4]) {
        let mut acc = [0u64; 4];
        for word in self.q {
            for b in 0..64 {
                if word >> b & 1 == 1 {
                    for k in 0..4 {
                        acc[k] ^= s[k];
                    }
                }
                xoshiro256pp_next(s);
            }
        }
        *s = acc;
    }

    /// [`Self::apply`] on L lanes stored word-major (word w of lane ℓ at `s[w][ℓ]`, the layout of
    /// [`super::FastNormal`]); the lane loop is what the compiler vectorises.
    pub fn apply_lanes<const L: usize>(&self, s: &mut [[u64; L]; 4]) {
        let mut acc = [[0u64; L]; 4];
        for word in self.q {
            for b in 0..64 {
                let mask = 0u64.wrapping_sub(word >> b & 1);
                for k in 0..4 {
                    for l in 0..L {
                        acc[k][l] ^= s[k][l] & mask;
                    }
                }
                for l in 0..L {
                    let t = s[1][l] << 17;
                    s[2][l] ^= s[0][l];
                    s[3][l] ^= s[1][l];
                    s[1][l] ^= s[2][l];
                    s[0][l] ^= s[3][l];
                    s[2][l] ^= t;
                    s[3][l] = s[3][l].rotate_left(45);
                }
            }
        }
        *s = acc;
    }
}

/// P, the characteristic polynomial of the xoshiro256 transition (bit 256 set).
fn characteristic() -> &'static Poly {
    static P: OnceLock<Poly> = OnceLock::new();
    P.get_or_init(|| {
        // 512 bits of the sequence of bit 0 of s[0], from an arbitrary nonzero state.
        let mut s = [0x0123_4567_89ab_cdef, 0xfedc_ba98_7654_3210, 0x0f1e_2d3c_4b5a_6978, 1];
        let bits: Vec<u8> = (0..512)
            .map(|_| {
                let b = (s[0] & 1) as u8;
                xoshiro256pp_next(&mut s);
                b
            })
            .collect();
        let (c, l) = berlekamp_massey(&bits);
        assert_eq!(l, 256, "xoshiro256 has a degree-256 minimal polynomial");
        // The connection polynomial C(x) = 1 + c_1 x + … + c_L x^L gives a_t = Σ c_i a_{t−i};
        // the characteristic polynomial is its reciprocal x^L C(1/x).
        let mut p: Poly = [0; 5];
        for i in 0..=l {
            if c[i] == 1 {
                let e = l - i;
                p[e / 64] |= 1 << (e % 64);
            }
        }
        p
    })
}

/// Berlekamp–Massey over GF(2): the shortest LFSR (connection polynomial C, coefficients c_0..c_L
/// with c_0 = 1, and its length L) generating `s`.
fn berlekamp_massey(s: &[u8]) -> (Vec<u8>, usize) {
    let n = s.len();
    let (mut c, mut b) = (vec![0u8; n + 1], vec![0u8; n + 1]);
    c[0] = 1;
    b[0] = 1;
    let (mut l, mut m) = (0usize, 1usize);
    for i in 0..n {
        let mut d = s[i];
        for j in 1..=l {
            d ^= c[j] & s[i - j];
        }
        if d == 0 {
            m += 1;
        } else if 2 * l <= i {
            let t = c.clone();
            for j in m..=n {
                c[j] ^= b[j - m];
            }
            l = i + 1 - l;
            b = t;
            m = 1;
        } else {
            for j in m..=n {
                c[j] ^= b[j - m];
            }
            m += 1;
        }
    }
    c.truncate(l + 1);
    (c, l)
}

/// x·a mod p, for deg a < 256.
fn times_x_mod(a: &Poly, p: &Poly) -> Poly {
    let mut r = [0u64; 5];
    for w in 0..5 {
        r[w] = a[w] << 1 | if w > 0 { a[w - 1] >> 63 } else { 0 };
    }
    if r[4] & 1 == 1 {
        for w in 0..5 {
            r[w] ^= p[w];
        }
    }
    r
}

/// a·b mod p, for deg a, b < 256 (Horner on the bits of a).
fn mul_mod(a: &Poly, b: &Poly, p: &Poly) -> Poly {
    let mut r: Poly = [0; 5];
    for i in (0..256).rev() {
        r = times_x_mod(&r, p);
        if a[i / 64] >> (i % 64) & 1 == 1 {
            for w in 0..5 {
                r[w] ^= b[w];
            }
        }
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    /// x^(2^128) mod P is the reference jump polynomial (Blackman & Vigna's `jump()` constants):
    /// this checks P, the modular arithmetic and the bit layout at once.
    #[test]
    fn reproduces_the_reference_jump() {
        // 2^128 does not fit a u128: square x^(2^127) once more.
        let h = Jump::new(1u128 << 127).coefficients();
        let h: Poly = [h[0], h[1], h[2], h[3], 0];
        let q = mul_mod(&h, &h, characteristic());
        assert_eq!(q[4], 0);
        assert_eq!(
            [q[0], q[1], q[2], q[3]],
            [
                0x180e_c6d3_3cfd_0aba,
                0xd5a6_1266_f0c9_392c,
                0xa958_2618_e03f_c9aa,
                0x39ab_dc45_29b1_661c
            ]
        );
    }

    /// Jumping by d equals d single steps, for small and awkward d, on one state and on lanes.
    #[test]
    fn jump_equals_stepping() {
        for d in [0u128, 1, 2, 3, 63, 64, 255, 256, 257, 1000, 12_345] {
            let start = [0x9e37_79b9_7f4a_7c15u64, 7, 0xdead_beef, 42];
            let mut a = start;
            for _ in 0..d {
                xoshiro256pp_next(&mut a);
            }
            let j = Jump::new(d);
            let mut b = start;
            j.apply(&mut b);
            assert_eq!(a, b, "d = {d}");
            let mut lanes = [[0u64; 3]; 4];
            for l in 0..3 {
                for w in 0..4 {
                    lanes[w][l] = start[w].rotate_left(l as u32 * 7) ^ l as u64;
                }
            }
            let mut expect = lanes;
            for l in 0..3 {
                let mut st = [expect[0][l], expect[1][l], expect[2][l], expect[3][l]];
                for _ in 0..d {
                    xoshiro256pp_next(&mut st);
                }
                for w in 0..4 {
                    expect[w][l] = st[w];
                }
            }
            j.apply_lanes(&mut lanes);
            assert_eq!(lanes, expect, "d = {d}, lanes");
        }
    }

    /// Jumps compose: T^a T^b = T^(a+b), also for distances far beyond what stepping can check.
    #[test]
    fn jumps_compose() {
        let (a, b) = (987_654_321_987u128, 123_456_789_012_345u128);
        let mut s = [3u64, 1, 4, 1];
        let mut t = s;
        Jump::new(a).apply(&mut s);
        Jump::new(b).apply(&mut s);
        Jump::new(a + b).apply(&mut t);
        assert_eq!(s, t);
    }
}
