//! Record operations: seal a record for its owner, open it as the owner, open
//! it as a delegate from a re-encrypted capsule.

use aes_gcm::aead::{AeadInPlace, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce, Tag};
use hkdf::Hkdf;
use rand_core::{CryptoRng, RngCore};
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::capsule::{Capsule, UMBRAL_SHARE_CT_LEN};
use crate::domain;
use crate::envelope::{RecordEnvelope, MAX_BODY_LEN, NONCE_LEN, TAG_LEN};
use crate::error::CryptoError;
use crate::header::RecordHeader;
use crate::ids::RecordId;
use crate::keys::{PatientPublicKeys, PatientSecretKeys, PreSecretKey};
use crate::lattice;
use crate::rekey::ReencryptedCapsule;
use crate::signing::{SigningKey, VerifyingKey};

/// The data key: HKDF-SHA256 with the record id as salt, both shares as
/// input key material and [`domain::HKDF_DATA_KEY`] as info.
fn derive_data_key(
    record_id: &RecordId,
    umbral_share: &[u8; 32],
    lattice_share: &[u8; 32],
) -> Zeroizing<[u8; 32]> {
    let mut ikm = Zeroizing::new([0u8; 64]);
    ikm[..32].copy_from_slice(umbral_share);
    ikm[32..].copy_from_slice(lattice_share);
    let hk = Hkdf::<Sha256>::new(Some(record_id.as_bytes()), ikm.as_ref());
    let mut key = Zeroizing::new([0u8; 32]);
    hk.expand(domain::HKDF_DATA_KEY, key.as_mut())
        .unwrap_or_else(|_| unreachable!("HKDF-SHA256 always yields 32 bytes (limit 8160)"));
    key
}

fn umbral_share_from(bytes: &[u8]) -> Result<Zeroizing<[u8; 32]>, CryptoError> {
    let mut share = Zeroizing::new([0u8; 32]);
    if bytes.len() != 32 {
        return Err(CryptoError::Decryption);
    }
    share.copy_from_slice(bytes);
    Ok(share)
}

/// Seals `body` under the owner's PRE key of `header.key_class()` and signs
/// the envelope with the owner's signing key.
///
/// Draws a fresh 32-byte share for each scheme, derives the data key from
/// both, encrypts the body with AES-256-GCM (random 96-bit nonce, associated
/// data = `header.to_bytes()`), and signs header, capsule and ciphertext hash.
///
/// Fails with [`CryptoError::InvalidParameter`] if the header's owner is not
/// the signing key's principal or the body exceeds [`MAX_BODY_LEN`].
pub fn encrypt_record<R: RngCore + CryptoRng>(
    rng: &mut R,
    owner: &SigningKey,
    owner_keys: &PatientPublicKeys,
    header: RecordHeader,
    body: &[u8],
) -> Result<RecordEnvelope, CryptoError> {
    if header.owner() != owner.principal_id() {
        return Err(CryptoError::InvalidParameter("header owner is not the signing key's principal"));
    }
    if body.len() > MAX_BODY_LEN {
        return Err(CryptoError::InvalidParameter("record body larger than MAX_BODY_LEN"));
    }
    let class = header.key_class();
    let pk = owner_keys.class(class);

    let mut umbral_share = Zeroizing::new([0u8; 32]);
    rng.fill_bytes(umbral_share.as_mut());
    let mut lattice_share = Zeroizing::new([0u8; 32]);
    rng.fill_bytes(lattice_share.as_mut());

    let (umbral_capsule, umbral_ct) =
        umbral_pre::encrypt_with_rng(rng, pk.umbral(), umbral_share.as_ref())
            .map_err(|_| CryptoError::InvalidParameter("umbral encapsulation failed"))?;
    debug_assert_eq!(umbral_ct.len(), UMBRAL_SHARE_CT_LEN);
    let lattice_ct = lattice::encrypt_lattice_share(rng, pk.lattice(), &lattice_share);
    let capsule =
        Capsule { key_class: class, umbral: umbral_capsule, umbral_share: umbral_ct, lattice: lattice_ct };

    let key = derive_data_key(&header.record_id(), &umbral_share, &lattice_share);
    let mut nonce = [0u8; NONCE_LEN];
    rng.fill_bytes(&mut nonce);
    let header_bytes = header.to_bytes();
    let mut ciphertext = Vec::with_capacity(NONCE_LEN + body.len() + TAG_LEN);
    ciphertext.extend_from_slice(&nonce);
    ciphertext.extend_from_slice(body);
    let cipher = Aes256Gcm::new(key.as_ref().into());
    let tag = cipher
        .encrypt_in_place_detached(Nonce::from_slice(&nonce), &header_bytes, &mut ciphertext[NONCE_LEN..])
        .map_err(|_| CryptoError::InvalidParameter("record body too large for AES-GCM"))?;
    ciphertext.extend_from_slice(&tag);

    Ok(RecordEnvelope::from_parts(header, capsule, ciphertext, |msg| owner.sign(domain::SIG_RECORD, msg)))
}

/// AES-256-GCM decryption of the envelope's body under `key`.
fn open_body(envelope: &RecordEnvelope, key: &[u8; 32]) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    let ct = envelope.ciphertext();
    if ct.len() < NONCE_LEN + TAG_LEN {
        return Err(CryptoError::Decryption);
    }
    let (nonce, rest) = ct.split_at(NONCE_LEN);
    let (body, tag) = rest.split_at(rest.len() - TAG_LEN);
    let mut plain = Zeroizing::new(body.to_vec());
    Aes256Gcm::new(key.into())
        .decrypt_in_place_detached(
            Nonce::from_slice(nonce),
            envelope.header_bytes(),
            plain.as_mut_slice(),
            Tag::from_slice(tag),
        )
        .map_err(|_| CryptoError::Decryption)?;
    Ok(plain)
}

/// Opens a record with the owner's secret keys, after checking the owner's
/// signature with `owner_vk`. Every failure is [`CryptoError::Decryption`].
pub fn decrypt_record_as_owner(
    owner: &PatientSecretKeys,
    owner_vk: &VerifyingKey,
    envelope: &RecordEnvelope,
) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    envelope.verify_owner(owner_vk).map_err(|_| CryptoError::Decryption)?;
    let capsule = envelope.capsule();
    let sk = owner.class_secret_key(capsule.key_class());
    let mut umbral_plain = umbral_pre::decrypt_original(sk.umbral(), &capsule.umbral, &capsule.umbral_share)
        .map_err(|_| CryptoError::Decryption)?;
    let umbral_share = umbral_share_from(&umbral_plain);
    zeroize::Zeroize::zeroize(&mut umbral_plain);
    let umbral_share = umbral_share?;
    let lattice_share = lattice::decrypt_lattice_share(sk.lattice(), &capsule.lattice);
    let key = derive_data_key(&envelope.header().record_id(), &umbral_share, &lattice_share);
    open_body(envelope, &key)
}

/// Opens a record as a delegate from a capsule re-encrypted toward
/// `delegate`.
///
/// Checks, before decrypting: the owner's signature over the envelope
/// (`owner_vk`), that the re-encrypted capsule is for the record's key class,
/// and each Umbral capsule fragment's proof against the owner's class key, the
/// owner's fragment-signing key and the delegate's key; at least `threshold`
/// must verify. Every failure is the one opaque [`CryptoError::Decryption`].
pub fn decrypt_record_as_delegate(
    delegate: &PreSecretKey,
    owner_vk: &VerifyingKey,
    owner_keys: &PatientPublicKeys,
    envelope: &RecordEnvelope,
    reencrypted: &ReencryptedCapsule,
) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    envelope.verify_owner(owner_vk).map_err(|_| CryptoError::Decryption)?;
    let capsule = envelope.capsule();
    let class = capsule.key_class();
    if reencrypted.key_class != class || reencrypted.threshold == 0 {
        return Err(CryptoError::Decryption);
    }
    let class_pk = owner_keys.class(class);
    let signer = owner_keys.umbral_verifying_key().inner();
    let delegate_umbral_pk = delegate.umbral().public_key();
    let verified: Vec<umbral_pre::VerifiedCapsuleFrag> = reencrypted
        .cfrags
        .iter()
        .filter_map(|c| {
            c.clone().verify(&capsule.umbral, signer, class_pk.umbral(), &delegate_umbral_pk).ok()
        })
        .collect();
    if verified.len() < usize::from(reencrypted.threshold) {
        return Err(CryptoError::Decryption);
    }
    let mut umbral_plain = umbral_pre::decrypt_reencrypted(
        delegate.umbral(),
        class_pk.umbral(),
        &capsule.umbral,
        verified,
        &capsule.umbral_share,
    )
    .map_err(|_| CryptoError::Decryption)?;
    let umbral_share = umbral_share_from(&umbral_plain);
    zeroize::Zeroize::zeroize(&mut umbral_plain);
    let umbral_share = umbral_share?;
    let lattice_share = lattice::decrypt_reencrypted_lattice_share(delegate.lattice(), &reencrypted.lattice);
    let key = derive_data_key(&envelope.header().record_id(), &umbral_share, &lattice_share);
    open_body(envelope, &key)
}
