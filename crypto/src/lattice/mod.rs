//! Post-quantum lattice proxy re-encryption (BV-PRE over RLWE) on `tfhe`
//! core_crypto, as specified in `shared/LATTICE-PRE.md` and documented in
//! `crypto/docs/lattice-pre.md`.
//!
//! This is the low-level half of the hybrid capsule. Most callers want the
//! hybrid API at the crate root; these items are public for the benchmarks
//! and for tests that measure each half alone. Re-encryption itself is not
//! public here (review finding F9): it is reachable only through
//! [`crate::reencrypt_capsule`], which checks the capsule's owner and
//! signature first.
//!
//! Parameters: ring `Z_q[X]/(X^4096 + 1)`, q = 2^128, GLWE dimension 1,
//! binary secrets, noise χ = TUniform(30), Δ = q/2 (one share bit per
//! coefficient 0..255), gadget base 2^8 with 12 levels, flooding
//! TUniform(125).
//!
//! API contract:
//! - keys are derived deterministically from a 32-byte seed;
//! - randomness comes only from the `rng` parameter (pure crate): each
//!   operation seeds a tfhe CSPRNG with 128 bits drawn from it;
//! - every type has `to_bytes` / `from_bytes` with a versioned, size-limited
//!   encoding that checks the parameters on decode;
//! - secret types zeroize on drop and print as `Type(..)`.
//!
//! # Security caveats (read before use)
//! - A crafted capsule makes re-encryption an oracle on the delegator's
//!   secret key (16 capsules with chosen masks recover all of it); hence
//!   re-encryption is crate-private and the hybrid API re-encrypts only
//!   capsules signed by the key's own delegator.
//! - The proxy colluding with the delegatee recovers the delegator's lattice
//!   secret key (inherent to BV-PRE); keys are split per key class.
//! - Decryption with a wrong key returns unrelated bytes, not an error.
//! - The construction has had no external review.
//!
//! # Example
//! ```
//! use medrelay_crypto::lattice::*;
//! use rand_chacha::{rand_core::SeedableRng, ChaCha20Rng};
//!
//! let mut rng = ChaCha20Rng::seed_from_u64(7);
//! let (patient_sk, patient_pk) = generate_lattice_keypair(&[1u8; 32]);
//! let (doctor_sk, doctor_pk) = generate_lattice_keypair(&[2u8; 32]);
//!
//! let share = [42u8; 32];
//! let capsule = encrypt_lattice_share(&mut rng, &patient_pk, &share);
//! assert_eq!(*decrypt_lattice_share(&patient_sk, &capsule), share);
//!
//! let rekey = generate_lattice_reencryption_key(&mut rng, &patient_sk, &doctor_pk);
//! let bytes = rekey.to_bytes();
//! assert_eq!(LatticeReencryptionKey::from_bytes(&bytes).unwrap(), rekey);
//! // Re-encryption goes through `medrelay_crypto::reencrypt_capsule`.
//! ```

mod codec;
mod encrypt;
mod keys;
mod ntt;
mod params;
mod reencrypt;
mod rekey;

#[cfg(test)]
mod api_tests;
#[cfg(test)]
pub(crate) mod tests;

pub(crate) use encrypt::Backend;
pub use encrypt::{decrypt_lattice_share, encrypt_lattice_share, LatticeCiphertext};
pub use keys::{generate_lattice_keypair, LatticePublicKey, LatticeSecretKey};
pub(crate) use reencrypt::reencrypt_lattice_share_with;

/// The raw lattice key switch, for the `lattice` benchmark only: compiled
/// in with the `bench-internals` feature, never in a default build (review
/// finding F9: the raw operation is a decryption oracle on crafted input;
/// applications re-encrypt through [`crate::reencrypt_capsule`]).
#[cfg(feature = "bench-internals")]
#[doc(hidden)]
pub mod bench_internals {
    use rand_core::{CryptoRng, RngCore};

    use super::{Backend, LatticeCiphertext, LatticeReencryptedCiphertext, LatticeReencryptionKey};

    /// Key switch + flood on the NTT path.
    pub fn reencrypt_lattice_share<R: RngCore + CryptoRng>(
        rng: &mut R,
        rekey: &LatticeReencryptionKey,
        ct: &LatticeCiphertext,
    ) -> LatticeReencryptedCiphertext {
        super::reencrypt_lattice_share_with(rng, rekey, ct, Backend::Ntt)
    }

    /// The same with tfhe's own products.
    pub fn reencrypt_lattice_share_tfhe_reference<R: RngCore + CryptoRng>(
        rng: &mut R,
        rekey: &LatticeReencryptionKey,
        ct: &LatticeCiphertext,
    ) -> LatticeReencryptedCiphertext {
        super::reencrypt_lattice_share_with(rng, rekey, ct, Backend::Reference)
    }
}
pub use reencrypt::{decrypt_reencrypted_lattice_share, LatticeReencryptedCiphertext};
pub use rekey::{generate_lattice_reencryption_key, LatticeReencryptionKey};

/// Exact encoded length of a [`LatticePublicKey`] (also its size limit).
pub const LATTICE_PUBLIC_KEY_LEN: usize = codec::PUBLIC_KEY_LEN;
/// Exact encoded length of a [`LatticeCiphertext`] (also its size limit).
pub const LATTICE_CIPHERTEXT_LEN: usize = codec::CIPHERTEXT_LEN;
/// Exact encoded length of a [`LatticeReencryptionKey`] (also its size limit).
pub const LATTICE_REENCRYPTION_KEY_LEN: usize = codec::REKEY_LEN;
/// Exact encoded length of a [`LatticeReencryptedCiphertext`] (also its size limit).
pub const LATTICE_REENCRYPTED_LEN: usize = codec::REENCRYPTED_LEN;
