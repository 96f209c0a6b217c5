//! Delegation operations: make a re-encryption key (patient side) and
//! re-encrypt a batch capsule with it (proxy side).

use rand_core::{CryptoRng, RngCore};

use crate::capsule::SignedCapsule;
use crate::category::KeyClass;
use crate::error::CryptoError;
use crate::ids::PrincipalId;
use crate::keys::{PatientSecretKeys, PrePublicKey};
use crate::lattice::{self, Backend};
use crate::rekey::{ReencryptedCapsule, ReencryptionKey, Threshold, VerifiedReencryptionKey};
use crate::signing::VerifyingKey;

/// Delegates one key class of a patient to a delegate's PRE public key:
/// `threshold.shares()` Umbral key fragments (any `threshold.threshold()` of
/// them suffice), signed by the patient's Umbral signer over both public
/// keys, and a lattice key-switching key toward the delegate. The key names
/// `owner_id`, the patient's principal id: it re-encrypts only that
/// principal's capsules.
///
/// A grant needs one re-encryption key per key class its scope touches.
/// Derives the class key pair (milliseconds) and the lattice key (tens of
/// milliseconds).
pub fn generate_reencryption_key<R: RngCore + CryptoRng>(
    rng: &mut R,
    owner: &PatientSecretKeys,
    owner_id: PrincipalId,
    class: KeyClass,
    delegatee: &PrePublicKey,
    threshold: Threshold,
) -> ReencryptionKey {
    let (class_sk, class_pk) = owner.class_key_pair(class).into_parts();
    let kfrags = umbral_pre::generate_kfrags_with_rng(
        rng,
        class_sk.umbral(),
        delegatee.umbral(),
        owner.signer(),
        usize::from(threshold.threshold()),
        usize::from(threshold.shares()),
        true,
        true,
    )
    .into_vec()
    .into_iter()
    .map(umbral_pre::VerifiedKeyFrag::unverify)
    .collect();
    let lattice = lattice::generate_lattice_reencryption_key(rng, class_sk.lattice(), delegatee.lattice());
    ReencryptionKey {
        key_class: class,
        threshold,
        delegator_principal: owner_id,
        delegator: class_pk.fingerprint(),
        delegatee: delegatee.fingerprint(),
        kfrags,
        lattice,
    }
}

/// The checks every re-encryption makes first (see [`reencrypt_capsule`]).
fn check_capsule(
    rekey: &VerifiedReencryptionKey,
    owner_vk: &VerifyingKey,
    capsule: &SignedCapsule,
) -> Result<(), CryptoError> {
    let owner = owner_vk.principal_id();
    if capsule.owner() != owner || rekey.delegator_principal() != owner {
        return Err(CryptoError::WrongOwner);
    }
    capsule.verify_owner(owner_vk)?;
    if capsule.key_class() != rekey.key_class() {
        return Err(CryptoError::KeyClassMismatch);
    }
    Ok(())
}

fn reencrypt_with<R: RngCore + CryptoRng>(
    rng: &mut R,
    rekey: &VerifiedReencryptionKey,
    owner_vk: &VerifyingKey,
    capsule: &SignedCapsule,
    backend: Backend,
) -> Result<ReencryptedCapsule, CryptoError> {
    check_capsule(rekey, owner_vk, capsule)?;
    let c = capsule.capsule();
    let cfrags = rekey
        .kfrags
        .iter()
        .map(|k| umbral_pre::reencrypt_with_rng(rng, &c.umbral, k.clone()).unverify())
        .collect();
    let lattice = lattice::reencrypt_lattice_share_with(rng, rekey.lattice(), &c.lattice, backend);
    Ok(ReencryptedCapsule { key_class: c.key_class(), capsule: capsule.id(), cfrags, lattice })
}

/// Re-encrypts a batch capsule toward the re-encryption key's delegate.
///
/// Refuses, before any re-encryption:
/// - unless the capsule's owner, the key's delegating patient and `owner_vk`'s
///   principal are one and the same ([`CryptoError::WrongOwner`]): a capsule
///   crafted and signed by anyone else would turn the victim's lattice key
///   into a decryption oracle (16 crafted capsules recover the whole key);
/// - a capsule whose owner signature does not verify under `owner_vk`
///   ([`CryptoError::BadSignature`]);
/// - a key of another class ([`CryptoError::KeyClassMismatch`]).
///
/// Returns one Umbral capsule fragment per key fragment and the
/// key-switched, flooded lattice share. Its cost does not depend on how many
/// records the batch holds: a proxy re-encrypts each (capsule, grant) once
/// and keeps the result.
pub fn reencrypt_capsule<R: RngCore + CryptoRng>(
    rng: &mut R,
    rekey: &VerifiedReencryptionKey,
    owner_vk: &VerifyingKey,
    capsule: &SignedCapsule,
) -> Result<ReencryptedCapsule, CryptoError> {
    reencrypt_with(rng, rekey, owner_vk, capsule, Backend::Ntt)
}

/// [`reencrypt_capsule`], with the same checks, computing the lattice key
/// switch with tfhe's own Karatsuba products instead of the exact NTT: the
/// same output bit for bit, many times slower. Kept as the reference for
/// the lattice benchmark; production code has no reason to call it.
#[doc(hidden)]
pub fn reencrypt_capsule_tfhe_reference<R: RngCore + CryptoRng>(
    rng: &mut R,
    rekey: &VerifiedReencryptionKey,
    owner_vk: &VerifyingKey,
    capsule: &SignedCapsule,
) -> Result<ReencryptedCapsule, CryptoError> {
    reencrypt_with(rng, rekey, owner_vk, capsule, Backend::Reference)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use rand_chacha::rand_core::SeedableRng;
    use rand_chacha::ChaCha20Rng;

    use super::*;
    use crate::capsule::{Capsule, SignedCapsule};
    use crate::domain;
    use crate::keys::{PatientPublicKeys, PreKeyPair};
    use crate::lattice::tests::{attack_shifts, crafted_ciphertext, recover_secret};
    use crate::signing::SigningKey;

    struct Principal {
        signing: SigningKey,
        keys: PatientSecretKeys,
        public: PatientPublicKeys,
    }

    fn principal(rng: &mut ChaCha20Rng) -> Principal {
        let signing = SigningKey::generate(rng);
        let keys = PatientSecretKeys::generate(rng);
        let public = keys.public_keys();
        Principal { signing, keys, public }
    }

    /// A capsule with a crafted lattice half, claiming `owner`, signed by
    /// `signer` (a well-formed Umbral half under the victim's class key, so
    /// it decodes and looks like any other capsule).
    fn crafted(
        rng: &mut ChaCha20Rng,
        owner: PrincipalId,
        signer: &SigningKey,
        victim: &PatientPublicKeys,
        shift: usize,
    ) -> SignedCapsule {
        let (umbral, umbral_share) =
            umbral_pre::encrypt_with_rng(rng, victim.class(KeyClass::Laboratory).umbral(), &[0u8; 32])
                .unwrap();
        let capsule = Capsule {
            owner,
            key_class: KeyClass::Laboratory,
            umbral,
            umbral_share,
            lattice: crafted_ciphertext(shift),
        };
        let signed = SignedCapsule::sign(capsule, |b| signer.sign(domain::SIG_CAPSULE, b));
        // Through the wire encoding, as a server would receive it.
        SignedCapsule::from_bytes(&signed.to_bytes()).unwrap()
    }

    /// Review finding F1, through the library: an attacker who is a
    /// principal itself signs 16 crafted capsules and asks for them to be
    /// re-encrypted with a victim patient's key toward a doctor it colludes
    /// with. Before the fix `reencrypt_capsule` checked only that the
    /// capsule's signer was the `owner_vk` passed in, and the 16 results
    /// gave the victim's whole lattice key. Now every one is refused,
    /// whichever key the caller passes as the owner's, and the victim's
    /// honest capsules still re-encrypt.
    #[test]
    fn the_crafted_capsule_attack_fails_through_the_library() {
        let mut rng = ChaCha20Rng::seed_from_u64(5);
        let victim = principal(&mut rng);
        let attacker = principal(&mut rng);
        let doctor = PreKeyPair::generate(&mut rng);
        let victim_vk = victim.signing.verifying_key();
        let attacker_vk = attacker.signing.verifying_key();
        let rekey = generate_reencryption_key(
            &mut rng,
            &victim.keys,
            victim.signing.principal_id(),
            KeyClass::Laboratory,
            doctor.public_key(),
            Threshold::ONE_OF_ONE,
        )
        .verify(&victim_vk, &victim.public, doctor.public_key())
        .map_err(|(e, _)| e)
        .unwrap();

        let mut shares = Vec::new();
        for shift in attack_shifts() {
            // The attacker's own capsule, signed by the attacker.
            let own =
                crafted(&mut rng, attacker.signing.principal_id(), &attacker.signing, &victim.public, shift);
            for vk in [&attacker_vk, &victim_vk] {
                assert!(matches!(
                    reencrypt_capsule(&mut rng, &rekey, vk, &own),
                    Err(CryptoError::WrongOwner)
                ));
            }
            // A capsule claiming to be the victim's, signed by the attacker.
            let forged =
                crafted(&mut rng, victim.signing.principal_id(), &attacker.signing, &victim.public, shift);
            assert!(matches!(
                reencrypt_capsule(&mut rng, &rekey, &attacker_vk, &forged),
                Err(CryptoError::WrongOwner)
            ));
            assert!(matches!(
                reencrypt_capsule(&mut rng, &rekey, &victim_vk, &forged),
                Err(CryptoError::BadSignature)
            ));
            assert!(matches!(
                reencrypt_capsule_tfhe_reference(&mut rng, &rekey, &attacker_vk, &own),
                Err(CryptoError::WrongOwner)
            ));
            // What the refusal prevents: the same capsule through the raw
            // (crate-private) lattice oracle.
            let raw = lattice::reencrypt_lattice_share_with(
                &mut rng,
                rekey.lattice(),
                &own.capsule().lattice,
                Backend::Ntt,
            );
            shares.push(*lattice::decrypt_reencrypted_lattice_share(doctor.secret_key().lattice(), &raw));
        }
        let victim_lattice = victim.keys.class_secret_key(KeyClass::Laboratory);
        assert_eq!(recover_secret(&shares), victim_lattice.lattice().coeffs());

        // The victim's own capsule still re-encrypts and opens.
        let batch =
            crate::generate_batch(&mut rng, &victim.signing, &victim.public, KeyClass::Laboratory).unwrap();
        let delivered = reencrypt_capsule(&mut rng, &rekey, &victim_vk, batch.capsule()).unwrap();
        let key = crate::decrypt_batch_key_as_delegate(
            doctor.secret_key(),
            &victim_vk,
            &victim.public,
            batch.capsule(),
            &delivered,
            Threshold::ONE_OF_ONE,
        )
        .unwrap();
        assert_eq!(key.secret(), batch.key().secret());
    }
}
