//! Exact negacyclic products modulo 2^128 with `tfhe-ntt`'s `native128`
//! multi-prime plan (ten 32-bit primes, CRT reconstruction).
//!
//! The integer product of two polynomials with coefficients below 2^128 and
//! N = 4096 has coefficients below N * 2^256 = 2^268 in absolute value; a sum
//! of up to 2^16 such products stays below 2^284, far under half the product
//! of the ten primes (> 2^300), so the CRT reconstruction is exact and the
//! result reduced mod 2^128 equals tfhe's schoolbook/Karatsuba product bit for
//! bit. (The f64 FFT is *not* exact modulo 2^128 and is not used.) The
//! bit-exactness is tested against tfhe's `polynomial_wrapping_mul` and
//! `keyswitch_glwe_ciphertext`.

use std::sync::OnceLock;

use tfhe_ntt::native128::Plan32;
use zeroize::Zeroize;

use super::params::POLYNOMIAL_SIZE;

/// Number of CRT primes of the `native128` plan.
const PRIMES: usize = 10;

/// The process-wide NTT plan (twiddle tables only; no secrets, no I/O).
fn plan() -> &'static Plan32 {
    static PLAN: OnceLock<Plan32> = OnceLock::new();
    PLAN.get_or_init(|| {
        #[expect(
            clippy::expect_used,
            reason = "N = 4096 is a power of two with roots of unity for every native128 prime; \
                      a None here is a build defect, covered by every test"
        )]
        Plan32::try_new(POLYNOMIAL_SIZE).expect("native128 NTT plan for N = 4096")
    })
}

/// A polynomial in NTT form: ten residue vectors of N u32 each.
#[derive(Clone)]
pub(crate) struct NttPoly {
    data: Vec<u32>,
}

impl std::fmt::Debug for NttPoly {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NttPoly(..)")
    }
}

impl Zeroize for NttPoly {
    fn zeroize(&mut self) {
        self.data.zeroize();
    }
}

fn split_mut(data: &mut [u32]) -> [&mut [u32]; PRIMES] {
    let mut out: [&mut [u32]; PRIMES] = Default::default();
    for (slot, chunk) in out.iter_mut().zip(data.chunks_exact_mut(POLYNOMIAL_SIZE)) {
        *slot = chunk;
    }
    out
}

fn prime_plans() -> [&'static tfhe_ntt::prime32::Plan; PRIMES] {
    let p = plan();
    [
        p.ntt_0(),
        p.ntt_1(),
        p.ntt_2(),
        p.ntt_3(),
        p.ntt_4(),
        p.ntt_5(),
        p.ntt_6(),
        p.ntt_7(),
        p.ntt_8(),
        p.ntt_9(),
    ]
}

impl NttPoly {
    /// The NTT form of zero (an accumulator).
    pub(crate) fn zero() -> Self {
        Self { data: vec![0; PRIMES * POLYNOMIAL_SIZE] }
    }

    /// Forward transform of a polynomial with N coefficients mod 2^128.
    ///
    /// Residues are computed with 64-bit arithmetic
    /// (`c mod p = ((hi mod p)·(2^64 mod p) + lo mod p) mod p`) rather than
    /// 128-bit divisions; they equal those of `Plan32::fwd` (tested).
    pub(crate) fn forward(poly: &[u128]) -> Self {
        debug_assert_eq!(poly.len(), POLYNOMIAL_SIZE);
        let mut out = Self::zero();
        for (plan, chunk) in prime_plans().iter().zip(out.data.chunks_exact_mut(POLYNOMIAL_SIZE)) {
            let p = u64::from(plan.modulus());
            // 2^64 mod p, via (2^64 − p) mod p computed without overflow.
            let two64 = (u64::MAX - p + 1) % p;
            for (dst, &c) in chunk.iter_mut().zip(poly) {
                let hi = ((c >> 64) as u64) % p;
                let lo = (c as u64) % p;
                // hi, two64, lo < p < 2^32: the sum is below 2^64.
                *dst = ((hi * two64 + lo) % p) as u32;
            }
            plan.fwd(chunk);
        }
        out
    }

    /// The same transform through `Plan32::fwd` (128-bit divisions); the
    /// reference for the residue computation above.
    #[cfg(test)]
    pub(crate) fn forward_plan32(poly: &[u128]) -> Self {
        let mut out = Self::zero();
        let [m0, m1, m2, m3, m4, m5, m6, m7, m8, m9] = split_mut(&mut out.data);
        plan().fwd(poly, m0, m1, m2, m3, m4, m5, m6, m7, m8, m9);
        out
    }

    #[cfg(test)]
    pub(crate) fn residues(&self) -> &[u32] {
        &self.data
    }

    /// Forward transform of a polynomial whose coefficients are small signed
    /// integers stored as wrapping `u128` (gadget digits, binary secrets):
    /// residues are computed without 128-bit divisions. Every coefficient
    /// must be in `[-2^31, 2^31)` as a signed value; then the residues equal
    /// those of [`NttPoly::forward`] modulo each prime up to the sign lift,
    /// and the products modulo 2^128 are identical (the integer products are
    /// congruent modulo 2^128 and exact). Larger values fall back to the
    /// general transform.
    pub(crate) fn forward_small(poly: &[u128]) -> Self {
        debug_assert_eq!(poly.len(), POLYNOMIAL_SIZE);
        let small = poly.iter().all(|&c| {
            let v = c as i128;
            (-(1i128 << 31)..(1i128 << 31)).contains(&v)
        });
        if !small {
            return Self::forward(poly);
        }
        let mut out = Self::zero();
        for (plan, chunk) in prime_plans().iter().zip(out.data.chunks_exact_mut(POLYNOMIAL_SIZE)) {
            let p = i64::from(plan.modulus());
            for (dst, &c) in chunk.iter_mut().zip(poly) {
                // |c| < 2^31, checked above, so the casts are exact and the
                // result of rem_euclid (in [0, p)) fits in u32.
                *dst = ((c as i128) as i64).rem_euclid(p) as u32;
            }
            plan.fwd(chunk);
        }
        out
    }

    /// `self += lhs ⊙ rhs` (pointwise, per prime).
    pub(crate) fn mul_accumulate(&mut self, lhs: &Self, rhs: &Self) {
        for (((plan, acc), l), r) in prime_plans()
            .iter()
            .zip(self.data.chunks_exact_mut(POLYNOMIAL_SIZE))
            .zip(lhs.data.chunks_exact(POLYNOMIAL_SIZE))
            .zip(rhs.data.chunks_exact(POLYNOMIAL_SIZE))
        {
            plan.mul_accumulate(acc, l, r);
        }
    }

    /// Inverse transform (normalised) into `out`, N coefficients mod 2^128.
    /// Consumes the accumulator, which is zeroized afterwards.
    pub(crate) fn inverse_into(mut self, out: &mut [u128]) {
        debug_assert_eq!(out.len(), POLYNOMIAL_SIZE);
        for (plan, chunk) in prime_plans().iter().zip(self.data.chunks_exact_mut(POLYNOMIAL_SIZE)) {
            plan.normalize(chunk);
        }
        let [m0, m1, m2, m3, m4, m5, m6, m7, m8, m9] = split_mut(&mut self.data);
        plan().inv(out, m0, m1, m2, m3, m4, m5, m6, m7, m8, m9);
        self.data.zeroize();
    }
}

/// `out = lhs * rhs mod (X^N + 1, 2^128)` with exact NTT products.
pub(crate) fn polynomial_mul(out: &mut [u128], lhs: &NttPoly, rhs: &NttPoly) {
    let mut acc = NttPoly::zero();
    acc.mul_accumulate(lhs, rhs);
    acc.inverse_into(out);
}
