//! Delegation operations: make a re-encryption key (patient side) and
//! re-encrypt a record's capsule with it (proxy side).

use rand_core::{CryptoRng, RngCore};

use crate::category::KeyClass;
use crate::envelope::RecordEnvelope;
use crate::error::CryptoError;
use crate::keys::{PatientSecretKeys, PrePublicKey};
use crate::lattice;
use crate::rekey::{ReencryptedCapsule, ReencryptionKey, Threshold, VerifiedReencryptionKey};
use crate::signing::VerifyingKey;

/// Delegates one key class of a patient to a delegate's PRE public key:
/// `threshold.shares()` Umbral key fragments (any `threshold.threshold()` of
/// them suffice), signed by the patient's Umbral signer over both public
/// keys, and a lattice key-switching key toward the delegate.
///
/// A grant needs one re-encryption key per key class its scope touches.
/// Derives the class key pair (milliseconds) and the lattice key (tens of
/// milliseconds).
pub fn generate_reencryption_key<R: RngCore + CryptoRng>(
    rng: &mut R,
    owner: &PatientSecretKeys,
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
        delegator: class_pk.fingerprint(),
        delegatee: delegatee.fingerprint(),
        kfrags,
        lattice,
    }
}

/// Re-encrypts a record's capsule toward the re-encryption key's delegate.
///
/// Refuses, before any re-encryption, an envelope whose owner signature does
/// not verify under `owner_vk` ([`CryptoError::BadSignature`]): a crafted
/// lattice capsule would be an oracle for the patient's lattice secret key.
/// Refuses a key of another class ([`CryptoError::KeyClassMismatch`]).
/// Returns one Umbral capsule fragment per key fragment and the key-switched,
/// flooded lattice share. Its cost does not depend on the record's size: the
/// ciphertext hash the signature covers is computed once, when the envelope
/// is built or decoded.
pub fn reencrypt_capsule<R: RngCore + CryptoRng>(
    rng: &mut R,
    rekey: &VerifiedReencryptionKey,
    owner_vk: &VerifyingKey,
    envelope: &RecordEnvelope,
) -> Result<ReencryptedCapsule, CryptoError> {
    envelope.verify_owner(owner_vk)?;
    let capsule = envelope.capsule();
    if capsule.key_class() != rekey.key_class() {
        return Err(CryptoError::KeyClassMismatch);
    }
    let cfrags = rekey
        .kfrags
        .iter()
        .map(|k| umbral_pre::reencrypt_with_rng(rng, &capsule.umbral, k.clone()).unverify())
        .collect();
    let lattice = lattice::reencrypt_lattice_share(rng, rekey.lattice(), &capsule.lattice);
    Ok(ReencryptedCapsule {
        key_class: capsule.key_class(),
        threshold: rekey.threshold().threshold(),
        cfrags,
        lattice,
    })
}
