//! GLWE public-key encryption (tfhe has none) and decryption.
//!
//! Encrypt `M` under `pk = (a, b = a·s + e)`: draw `r` binary and
//! `e1, e2`; output `(u, v) = (a·r + e1, b·r + e2 + M)`. Then
//! `v − u·s = e·r + e2 − e1·s + M`.

use rand_core::{CryptoRng, RngCore};
use tfhe::core_crypto::commons::math::random::{DefaultRandomGenerator, RandomGenerator, Seed};
use tfhe::core_crypto::entities::compressed_modulus_switched_glwe_ciphertext::CompressedModulusSwitchedGlweCiphertext;
use tfhe::core_crypto::prelude::{
    polynomial_algorithms::polynomial_wrapping_mul, GlweCiphertextOwned, Polynomial, TUniform,
};
use zeroize::{Zeroize, Zeroizing};

use super::keys::{LatticePublicKey, LatticeSecretKey};
use super::ntt::{polynomial_mul, NttPoly};
use super::params::{self, MESSAGE_COEFFS, POLYNOMIAL_SIZE};

/// Which polynomial product to use. `Ntt` is what the public API runs;
/// `Reference` is tfhe's own (Karatsuba) product, kept to test bit-exactness.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Backend {
    Ntt,
    #[cfg_attr(
        not(test),
        expect(dead_code, reason = "tfhe's reference path is only run by the bit-exactness tests")
    )]
    Reference,
}

/// A tfhe CSPRNG for one operation, seeded with 128 bits drawn from `rng`.
pub(crate) fn operation_generator<R: RngCore + CryptoRng>(
    rng: &mut R,
) -> RandomGenerator<DefaultRandomGenerator> {
    let mut bytes = [0u8; 16];
    rng.fill_bytes(&mut bytes);
    let seed = Seed(u128::from_le_bytes(bytes));
    bytes.zeroize();
    RandomGenerator::new(seed)
}

/// `out = key_poly * r` with the chosen backend (`r_ntt` is `Some` exactly
/// for the NTT backend).
fn product(out: &mut [u128], key_poly: &[u128], key_ntt: &NttPoly, r: &[u128], r_ntt: Option<&NttPoly>) {
    match r_ntt {
        Some(r_ntt) => polynomial_mul(out, key_ntt, r_ntt),
        None => polynomial_wrapping_mul(
            &mut Polynomial::from_container(out),
            &Polynomial::from_container(key_poly),
            &Polynomial::from_container(r),
        ),
    }
}

/// Public-key encryption of the plaintext polynomial `plaintext` (N
/// coefficients) under `pk`, with mask noise χ = TUniform(30) and body noise
/// `body_noise`. Randomness is drawn in a fixed order (r, e1, e2) so both
/// backends give the same ciphertext bit for bit.
pub(crate) fn encrypt_glwe_with_public_key(
    generator: &mut RandomGenerator<DefaultRandomGenerator>,
    pk: &LatticePublicKey,
    plaintext: &[u128],
    body_noise: TUniform<u128>,
    backend: Backend,
) -> GlweCiphertextOwned<u128> {
    debug_assert_eq!(plaintext.len(), POLYNOMIAL_SIZE);
    let mut r = Zeroizing::new(vec![0u128; POLYNOMIAL_SIZE]);
    generator.fill_slice_with_random_uniform_binary(&mut r);
    let mut e1 = Zeroizing::new(vec![0u128; POLYNOMIAL_SIZE]);
    generator.fill_slice_with_random_from_distribution(&mut e1, params::noise());
    let mut e2 = Zeroizing::new(vec![0u128; POLYNOMIAL_SIZE]);
    generator.fill_slice_with_random_from_distribution(&mut e2, body_noise);

    let mut ct = GlweCiphertextOwned::new(
        0u128,
        params::glwe_size(),
        params::polynomial_size(),
        params::ciphertext_modulus(),
    );
    {
        let (mask, body) = ct.as_mut().split_at_mut(POLYNOMIAL_SIZE);
        let mut r_ntt = match backend {
            Backend::Ntt => Some(NttPoly::forward_small(&r)),
            Backend::Reference => None,
        };
        let (a_ntt, b_ntt) = pk.ntt();
        product(mask, pk.mask(), a_ntt, &r, r_ntt.as_ref());
        product(body, pk.body(), b_ntt, &r, r_ntt.as_ref());
        if let Some(r_ntt) = r_ntt.as_mut() {
            r_ntt.zeroize();
        }
        for (m, e) in mask.iter_mut().zip(e1.iter()) {
            *m = m.wrapping_add(*e);
        }
        for ((b, e), p) in body.iter_mut().zip(e2.iter()).zip(plaintext) {
            *b = b.wrapping_add(*e).wrapping_add(*p);
        }
    }
    ct
}

/// The plaintext polynomial of a 32-byte share: bit `i` (LSB first within
/// each byte) times Δ = q/2 in coefficient `i`, zero beyond 255.
pub(crate) fn encode_share(share: &[u8; 32]) -> Zeroizing<Vec<u128>> {
    let mut pt = Zeroizing::new(vec![0u128; POLYNOMIAL_SIZE]);
    for (i, coeff) in pt.iter_mut().take(MESSAGE_COEFFS).enumerate() {
        let bit = (share[i / 8] >> (i % 8)) & 1;
        *coeff = u128::from(bit) << 127;
    }
    pt
}

/// The phase `v − u·s` of the first 256 coefficients (message plus noise).
pub(crate) fn phase(sk: &LatticeSecretKey, ct: &GlweCiphertextOwned<u128>) -> Zeroizing<Vec<u128>> {
    let (mask, body) = ct.as_ref().split_at(POLYNOMIAL_SIZE);
    let mut s_ntt = NttPoly::forward_small(sk.coeffs());
    let mask_ntt = NttPoly::forward(mask);
    let mut us = Zeroizing::new(vec![0u128; POLYNOMIAL_SIZE]);
    polynomial_mul(&mut us, &mask_ntt, &s_ntt);
    s_ntt.zeroize();
    let mut out = Zeroizing::new(vec![0u128; MESSAGE_COEFFS]);
    for ((o, b), p) in out.iter_mut().zip(body).zip(us.iter()) {
        *o = b.wrapping_sub(*p);
    }
    out
}

/// Rounds each phase coefficient to the nearest multiple of q/2 and packs the
/// bits into a 32-byte share.
pub(crate) fn decode_share(phase: &[u128]) -> Zeroizing<[u8; 32]> {
    let mut share = Zeroizing::new([0u8; 32]);
    for (i, p) in phase.iter().take(MESSAGE_COEFFS).enumerate() {
        let bit = (p.wrapping_add(1u128 << 126) >> 127) as u8;
        share[i / 8] |= bit << (i % 8);
    }
    share
}

/// A fresh public-key encryption of a share, before compression.
pub(crate) fn encrypt_share_glwe<R: RngCore + CryptoRng>(
    rng: &mut R,
    pk: &LatticePublicKey,
    share: &[u8; 32],
    backend: Backend,
) -> GlweCiphertextOwned<u128> {
    let mut generator = operation_generator(rng);
    let pt = encode_share(share);
    encrypt_glwe_with_public_key(&mut generator, pk, &pt, params::noise(), backend)
}

/// The lattice half of a stored capsule: one 32-byte share, modulus-switched
/// for storage (86 bits, 256 bodies).
#[derive(Clone, PartialEq, Eq)]
pub struct LatticeCiphertext(pub(crate) Box<CompressedModulusSwitchedGlweCiphertext<u128>>);

impl std::fmt::Debug for LatticeCiphertext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LatticeCiphertext(..)")
    }
}

/// Encrypts a 32-byte share under a lattice public key (IND-CPA under RLWE)
/// and modulus-switches it to 86 bits for storage.
pub fn encrypt_lattice_share<R: RngCore + CryptoRng>(
    rng: &mut R,
    pk: &LatticePublicKey,
    share: &[u8; 32],
) -> LatticeCiphertext {
    let glwe = encrypt_share_glwe(rng, pk, share, Backend::Ntt);
    LatticeCiphertext(Box::new(CompressedModulusSwitchedGlweCiphertext::compress(
        &glwe,
        params::stored_modulus_log(),
        params::message_bodies(),
    )))
}

/// Decrypts a stored lattice capsule.
///
/// Lattice decryption cannot detect a wrong key: it returns unrelated bytes.
/// Authenticity comes from the owner's signature and the AEAD in the hybrid
/// layer.
pub fn decrypt_lattice_share(sk: &LatticeSecretKey, ct: &LatticeCiphertext) -> Zeroizing<[u8; 32]> {
    decode_share(&phase(sk, &ct.0.extract()))
}
