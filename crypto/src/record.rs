//! Record operations: seal a record of a batch, open it with the batch key.
//!
//! A record's data key is
//! `HKDF-SHA256(ikm = batch key, info = HKDF_DATA_KEY || record id ||
//! SHA-256(header bytes) || capsule id)`: it binds the record to its header
//! and to its batch's capsule, so neither can be swapped under a
//! ciphertext. The body is framed, then sealed with AES-256-GCM (random
//! 96-bit nonce, associated data = the header's canonical bytes):
//!
//! - `0x00 || body`: stored as is;
//! - `0x01 || u32 length || raw DEFLATE of body`: compressed, used when it
//!   saves bytes (FHIR JSON shrinks two- to four-fold). Decompression is
//!   bounded by the stated length, itself at most [`MAX_BODY_LEN`].

use aes_gcm::aead::{AeadInPlace, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce, Tag};
use hkdf::Hkdf;
use rand_core::{CryptoRng, RngCore};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::batch::{decrypt_batch_key_as_owner, Batch, BatchKey};
use crate::capsule::SignedCapsule;
use crate::domain;
use crate::envelope::{RecordEnvelope, FRAME_LEN, MAX_BODY_LEN, NONCE_LEN, TAG_LEN};
use crate::error::CryptoError;
use crate::header::RecordHeader;
use crate::ids::CapsuleId;
use crate::keys::PatientSecretKeys;
use crate::signing::{SigningKey, VerifyingKey};

const FRAME_STORED: u8 = 0;
const FRAME_DEFLATE: u8 = 1;
/// Bodies shorter than this are stored as is.
const MIN_COMPRESS_LEN: usize = 64;
/// miniz_oxide's level 6, its default: most of the gain of level 9 at a
/// fraction of the time on small JSON documents.
const DEFLATE_LEVEL: u8 = 6;

/// The record's data key (see the module docs).
fn derive_data_key(
    batch: &BatchKey,
    header_bytes: &[u8],
    record_id: &[u8; 16],
    capsule: &CapsuleId,
) -> Zeroizing<[u8; 32]> {
    let header_hash: [u8; 32] = Sha256::digest(header_bytes).into();
    let hk = Hkdf::<Sha256>::new(None, batch.secret());
    let mut key = Zeroizing::new([0u8; 32]);
    hk.expand_multi_info(&[domain::HKDF_DATA_KEY, record_id, &header_hash, capsule.as_bytes()], key.as_mut())
        .unwrap_or_else(|_| unreachable!("HKDF-SHA256 always yields 32 bytes (limit 8160)"));
    key
}

/// The framed plaintext of `body` (see the module docs).
fn frame(body: &[u8]) -> Zeroizing<Vec<u8>> {
    if body.len() >= MIN_COMPRESS_LEN {
        let compressed = Zeroizing::new(miniz_oxide::deflate::compress_to_vec(body, DEFLATE_LEVEL));
        if compressed.len() + 4 < body.len() {
            let mut out = Zeroizing::new(Vec::with_capacity(FRAME_LEN + compressed.len() + TAG_LEN));
            out.push(FRAME_DEFLATE);
            // `body.len() <= MAX_BODY_LEN` (64 MiB) fits in a u32.
            out.extend_from_slice(&u32::try_from(body.len()).unwrap_or(u32::MAX).to_be_bytes());
            out.extend_from_slice(&compressed);
            return out;
        }
    }
    let mut out = Zeroizing::new(Vec::with_capacity(1 + body.len() + TAG_LEN));
    out.push(FRAME_STORED);
    out.extend_from_slice(body);
    out
}

/// The body inside a framed plaintext; every failure is
/// [`CryptoError::Decryption`] (the frame was authenticated, so a bad one
/// means a broken client, never something to explain to an attacker).
fn unframe(framed: &[u8]) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    match framed.split_first() {
        Some((&FRAME_STORED, body)) => Ok(Zeroizing::new(body.to_vec())),
        Some((&FRAME_DEFLATE, rest)) if rest.len() >= 4 => {
            let (len, data) = rest.split_at(4);
            let len = usize::try_from(u32::from_be_bytes([len[0], len[1], len[2], len[3]]))
                .map_err(|_| CryptoError::Decryption)?;
            if len > MAX_BODY_LEN {
                return Err(CryptoError::Decryption);
            }
            let mut out = Zeroizing::new(vec![0u8; len]);
            let n = miniz_oxide::inflate::decompress_slice_iter_to_slice(
                &mut out,
                std::iter::once(data),
                false,
                true,
            )
            .map_err(|_| CryptoError::Decryption)?;
            if n != len {
                return Err(CryptoError::Decryption);
            }
            Ok(out)
        }
        _ => Err(CryptoError::Decryption),
    }
}

/// Seals `body` as a record of `batch` and signs the envelope with the
/// owner's signing key: derives the record's data key from the batch key,
/// frames (and compresses, when that saves bytes) the body, encrypts it with
/// AES-256-GCM (random 96-bit nonce, associated data = `header.to_bytes()`),
/// and signs header, capsule id and ciphertext hash.
///
/// Fails with [`CryptoError::InvalidParameter`] if the header's owner is not
/// the signing key's principal or the batch's owner, if its key class is not
/// the batch's, or if the body exceeds [`MAX_BODY_LEN`].
pub fn encrypt_record<R: RngCore + CryptoRng>(
    rng: &mut R,
    owner: &SigningKey,
    batch: &Batch,
    header: RecordHeader,
    body: &[u8],
) -> Result<RecordEnvelope, CryptoError> {
    if header.owner() != owner.principal_id() || header.owner() != batch.key().owner() {
        return Err(CryptoError::InvalidParameter(
            "header owner is not the signing key's and batch's principal",
        ));
    }
    if header.key_class() != batch.key_class() {
        return Err(CryptoError::InvalidParameter("header key class is not the batch's"));
    }
    if body.len() > MAX_BODY_LEN {
        return Err(CryptoError::InvalidParameter("record body larger than MAX_BODY_LEN"));
    }
    let capsule = batch.capsule_id();
    let header_bytes = header.to_bytes();
    let key = derive_data_key(batch.key(), &header_bytes, header.record_id().as_bytes(), &capsule);
    let framed = frame(body);
    let mut nonce = [0u8; NONCE_LEN];
    rng.fill_bytes(&mut nonce);
    let mut ciphertext = Vec::with_capacity(NONCE_LEN + framed.len() + TAG_LEN);
    ciphertext.extend_from_slice(&nonce);
    ciphertext.extend_from_slice(&framed);
    drop(framed);
    let tag = Aes256Gcm::new(key.as_ref().into())
        .encrypt_in_place_detached(Nonce::from_slice(&nonce), &header_bytes, &mut ciphertext[NONCE_LEN..])
        .map_err(|_| CryptoError::InvalidParameter("record body too large for AES-GCM"))?;
    ciphertext.extend_from_slice(&tag);
    Ok(RecordEnvelope::seal(header, capsule, ciphertext, |msg| owner.sign(domain::SIG_RECORD, msg)))
}

/// Opens a record with its batch's key, after checking the owner's signature
/// with `owner_vk` and that the envelope names the key's capsule, owner and
/// key class. Every failure is the one opaque [`CryptoError::Decryption`].
pub fn decrypt_record(
    key: &BatchKey,
    owner_vk: &VerifyingKey,
    envelope: &RecordEnvelope,
) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    envelope.verify_owner(owner_vk).map_err(|_| CryptoError::Decryption)?;
    let header = envelope.header();
    let capsule = envelope.capsule_id();
    if capsule != key.capsule_id() || header.owner() != key.owner() || header.key_class() != key.key_class() {
        return Err(CryptoError::Decryption);
    }
    let data_key = derive_data_key(key, envelope.header_bytes(), header.record_id().as_bytes(), &capsule);
    let ct = envelope.ciphertext();
    if ct.len() < NONCE_LEN + TAG_LEN {
        return Err(CryptoError::Decryption);
    }
    let (nonce, rest) = ct.split_at(NONCE_LEN);
    let (body, tag) = rest.split_at(rest.len() - TAG_LEN);
    let mut plain = Zeroizing::new(body.to_vec());
    Aes256Gcm::new(data_key.as_ref().into())
        .decrypt_in_place_detached(
            Nonce::from_slice(nonce),
            envelope.header_bytes(),
            plain.as_mut_slice(),
            Tag::from_slice(tag),
        )
        .map_err(|_| CryptoError::Decryption)?;
    unframe(&plain)
}

/// Opens one record as its owner: the batch key from the capsule with the
/// owner's secret keys ([`decrypt_batch_key_as_owner`]), then the record.
/// To open many records of one batch, open the batch key once and call
/// [`decrypt_record`] for each.
pub fn decrypt_record_as_owner(
    owner: &PatientSecretKeys,
    owner_vk: &VerifyingKey,
    capsule: &SignedCapsule,
    envelope: &RecordEnvelope,
) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    let key = decrypt_batch_key_as_owner(owner, owner_vk, capsule)?;
    decrypt_record(&key, owner_vk, envelope)
}
