//! Re-encryption: key switching, flooding, and compression for delivery.

use rand_core::{CryptoRng, RngCore};
use tfhe::core_crypto::commons::math::random::{DefaultRandomGenerator, RandomGenerator};
use tfhe::core_crypto::entities::compressed_modulus_switched_glwe_ciphertext::CompressedModulusSwitchedGlweCiphertext;
use tfhe::core_crypto::prelude::{keyswitch_glwe_ciphertext, GlweCiphertextOwned, SignedDecomposer};
use zeroize::Zeroizing;

use super::encrypt::{
    decode_share, encrypt_glwe_with_public_key, operation_generator, phase, Backend, LatticeCiphertext,
};
use super::keys::LatticeSecretKey;
use super::ntt::NttPoly;
use super::params::{self, MESSAGE_COEFFS, POLYNOMIAL_SIZE};
use super::rekey::LatticeReencryptionKey;

/// A re-encrypted (key-switched, flooded, modulus-switched to 12 bits) share,
/// as delivered to the delegate.
#[derive(Clone, PartialEq, Eq)]
pub struct LatticeReencryptedCiphertext(pub(crate) Box<CompressedModulusSwitchedGlweCiphertext<u128>>);

impl std::fmt::Debug for LatticeReencryptedCiphertext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LatticeReencryptedCiphertext(..)")
    }
}

fn new_glwe() -> GlweCiphertextOwned<u128> {
    GlweCiphertextOwned::new(
        0u128,
        params::glwe_size(),
        params::polynomial_size(),
        params::ciphertext_modulus(),
    )
}

/// Key switching with exact NTT products; bit-identical to tfhe's
/// `keyswitch_glwe_ciphertext`: `out = (0, b) − Σ_l d_l · ksk_l` with the
/// same signed gadget decomposition (tfhe's `SignedDecomposer`).
fn keyswitch_ntt(
    rekey: &LatticeReencryptionKey,
    input: &GlweCiphertextOwned<u128>,
) -> GlweCiphertextOwned<u128> {
    let (in_mask, in_body) = input.as_ref().split_at(POLYNOMIAL_SIZE);
    let decomposer = SignedDecomposer::<u128>::new(params::decomp_base_log(), params::decomp_level_count());
    let entries = rekey.ntt();
    let mut acc_mask = NttPoly::zero();
    let mut acc_body = NttPoly::zero();
    let mut terms = decomposer.decompose_slice(in_mask);
    let mut entries_iter = entries.iter();
    while let (Some((ksk_mask, ksk_body)), Some(term)) = (entries_iter.next(), terms.next_term()) {
        let digits = NttPoly::forward_small(term.as_slice());
        acc_mask.mul_accumulate(&digits, ksk_mask);
        acc_body.mul_accumulate(&digits, ksk_body);
    }
    let mut out = new_glwe();
    {
        let (out_mask, out_body) = out.as_mut().split_at_mut(POLYNOMIAL_SIZE);
        acc_mask.inverse_into(out_mask);
        for m in out_mask.iter_mut() {
            *m = m.wrapping_neg();
        }
        acc_body.inverse_into(out_body);
        for (o, b) in out_body.iter_mut().zip(in_body) {
            *o = b.wrapping_sub(*o);
        }
    }
    out
}

/// Key switching with the chosen backend.
pub(crate) fn keyswitch(
    rekey: &LatticeReencryptionKey,
    input: &GlweCiphertextOwned<u128>,
    backend: Backend,
) -> GlweCiphertextOwned<u128> {
    match backend {
        Backend::Ntt => keyswitch_ntt(rekey, input),
        Backend::Reference => {
            let mut out = new_glwe();
            keyswitch_glwe_ciphertext(rekey.ksk(), input, &mut out);
            out
        }
    }
}

/// Adds a public-key encryption of zero under the delegatee's key whose body
/// noise is TUniform(125) (|flood| ≤ q/8), then zeroes every body coefficient
/// beyond 255 (unflooded coefficients would leak noisy linear equations in
/// the delegator's key).
pub(crate) fn flood(
    generator: &mut RandomGenerator<DefaultRandomGenerator>,
    rekey: &LatticeReencryptionKey,
    switched: &mut GlweCiphertextOwned<u128>,
    backend: Backend,
) {
    let zeros = Zeroizing::new(vec![0u128; POLYNOMIAL_SIZE]);
    let fresh = encrypt_glwe_with_public_key(generator, rekey.delegatee(), &zeros, params::flood(), backend);
    for (s, f) in switched.as_mut().iter_mut().zip(fresh.as_ref()) {
        *s = s.wrapping_add(*f);
    }
    for b in &mut switched.as_mut()[POLYNOMIAL_SIZE + MESSAGE_COEFFS..] {
        *b = 0;
    }
}

/// Key switch + flood, before compression (the tests measure its noise).
pub(crate) fn reencrypt_glwe<R: RngCore + CryptoRng>(
    rng: &mut R,
    rekey: &LatticeReencryptionKey,
    input: &GlweCiphertextOwned<u128>,
    backend: Backend,
) -> GlweCiphertextOwned<u128> {
    let mut generator = operation_generator(rng);
    let mut out = keyswitch(rekey, input, backend);
    flood(&mut generator, rekey, &mut out, backend);
    out
}

pub(crate) fn compress_delivered(glwe: &GlweCiphertextOwned<u128>) -> LatticeReencryptedCiphertext {
    LatticeReencryptedCiphertext(Box::new(CompressedModulusSwitchedGlweCiphertext::compress(
        glwe,
        params::delivered_modulus_log(),
        params::message_bodies(),
    )))
}

/// Re-encrypts a stored lattice capsule toward the re-encryption key's
/// delegatee: key switching (exact NTT products, or tfhe's reference
/// products), flooding, then modulus switching to 12 bits for delivery.
///
/// Crate-private on purpose (review finding F9): a crafted capsule (chosen
/// mask) turns re-encryption into an oracle on the delegator's secret key,
/// so the only way in is [`crate::reencrypt_capsule`], which re-encrypts
/// only capsules their owner signed, with that same owner's key.
pub(crate) fn reencrypt_lattice_share_with<R: RngCore + CryptoRng>(
    rng: &mut R,
    rekey: &LatticeReencryptionKey,
    ct: &LatticeCiphertext,
    backend: Backend,
) -> LatticeReencryptedCiphertext {
    let input = ct.0.extract();
    compress_delivered(&reencrypt_glwe(rng, rekey, &input, backend))
}

/// [`reencrypt_lattice_share_with`] on the NTT path.
#[cfg(test)]
pub(crate) fn reencrypt_lattice_share<R: RngCore + CryptoRng>(
    rng: &mut R,
    rekey: &LatticeReencryptionKey,
    ct: &LatticeCiphertext,
) -> LatticeReencryptedCiphertext {
    reencrypt_lattice_share_with(rng, rekey, ct, Backend::Ntt)
}

/// Decrypts a re-encrypted share with the delegatee's secret key.
///
/// As for [`super::decrypt_lattice_share`], a wrong key yields unrelated
/// bytes, never an error.
pub fn decrypt_reencrypted_lattice_share(
    sk: &LatticeSecretKey,
    ct: &LatticeReencryptedCiphertext,
) -> Zeroizing<[u8; 32]> {
    decode_share(&phase(sk, &ct.0.extract()))
}
