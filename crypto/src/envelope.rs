//! The record envelope: header, the id of the batch capsule the record's
//! key derives from, the AES-256-GCM ciphertext and the owner's Ed25519
//! signature over header, capsule id and ciphertext hash. This is what the
//! server stores and serves; it checks the owner's signature without any
//! secret.
//!
//! The signed part without the body is a [`SignedRecordHeader`]: a listing
//! can carry it, so a reader checks who published a record and what it is
//! without downloading the body.

use std::fmt;

use sha2::{Digest, Sha256};

use crate::domain;
use crate::encoding::{Decoder, Encoder};
use crate::error::{CryptoError, DecodeError};
use crate::header::{RecordHeader, MAX_HEADER_LEN};
use crate::ids::CapsuleId;
use crate::signing::{Signature, VerifyingKey};

const MAGIC: &[u8; 4] = b"MREV";
const SIGNED_MAGIC: &[u8; 4] = b"MRRS";
const SIGNED_HEADER_MAGIC: &[u8; 4] = b"MRSH";
/// Encoding version of [`RecordEnvelope`] and of the signed message.
/// Version 1 (a whole capsule in every envelope) is no longer read.
const VERSION: u8 = 2;
/// Encoding version of [`SignedRecordHeader`].
const SIGNED_HEADER_VERSION: u8 = 1;
/// Largest record body (plaintext) that can be sealed: 64 MiB.
pub const MAX_BODY_LEN: usize = 64 * 1024 * 1024;
/// AES-GCM nonce length (96 bits), stored in front of the ciphertext.
pub(crate) const NONCE_LEN: usize = 12;
/// AES-GCM tag length.
pub(crate) const TAG_LEN: usize = 16;
/// Framing inside the ciphertext: an encoding byte and, for a compressed
/// body, its length (see [`crate::encrypt_record`]).
pub(crate) const FRAME_LEN: usize = 1 + 4;
/// Largest ciphertext: nonce, framing, body, tag.
pub const MAX_CIPHERTEXT_LEN: usize = NONCE_LEN + FRAME_LEN + MAX_BODY_LEN + TAG_LEN;
/// Largest encoded [`RecordEnvelope`] accepted (checked before parsing).
pub const MAX_ENVELOPE_LEN: usize = MAX_HEADER_LEN + MAX_CIPHERTEXT_LEN + 160;
/// Largest encoded [`SignedRecordHeader`] accepted.
pub const MAX_SIGNED_HEADER_LEN: usize = MAX_HEADER_LEN + 160;

/// The message the owner signs (context [`domain::SIG_RECORD`]).
fn signed_message(header_bytes: &[u8], capsule: &CapsuleId, ciphertext_hash: &[u8; 32]) -> Vec<u8> {
    let mut e = Encoder::with_capacity(SIGNED_MAGIC, VERSION, header_bytes.len() + 80);
    e.bytes(header_bytes).fixed(capsule.as_bytes()).fixed(ciphertext_hash);
    e.finish()
}

pub(crate) fn hash_ciphertext(ciphertext: &[u8]) -> [u8; 32] {
    Sha256::digest(ciphertext).into()
}

fn decode_header(header_bytes: &[u8]) -> Result<RecordHeader, DecodeError> {
    let header = RecordHeader::from_bytes(header_bytes)?;
    if header.to_bytes() != header_bytes {
        return Err(DecodeError::Invalid("non-canonical record header"));
    }
    Ok(header)
}

/// What the owner signs of a record: the header, the capsule id and the
/// SHA-256 of the ciphertext, with the signature. Lets a reader check a
/// record's origin and metadata without its body.
#[derive(Clone, PartialEq, Eq)]
pub struct SignedRecordHeader {
    header: RecordHeader,
    header_bytes: Vec<u8>,
    capsule: CapsuleId,
    ciphertext_hash: [u8; 32],
    signature: Signature,
}

impl SignedRecordHeader {
    /// The record header.
    pub fn header(&self) -> &RecordHeader {
        &self.header
    }

    /// The header's canonical bytes.
    pub fn header_bytes(&self) -> &[u8] {
        &self.header_bytes
    }

    /// The id of the batch capsule the record's key derives from.
    pub fn capsule_id(&self) -> CapsuleId {
        self.capsule
    }

    /// SHA-256 of the ciphertext, as signed.
    pub fn ciphertext_hash(&self) -> &[u8; 32] {
        &self.ciphertext_hash
    }

    /// The owner's signature.
    pub fn signature(&self) -> &Signature {
        &self.signature
    }

    /// Checks that `owner` is the header's owner (its principal id) and that
    /// the signature over header, capsule id and ciphertext hash verifies.
    /// Fails with [`CryptoError::BadSignature`].
    pub fn verify_owner(&self, owner: &VerifyingKey) -> Result<(), CryptoError> {
        if owner.principal_id() != self.header.owner() {
            return Err(CryptoError::BadSignature);
        }
        let msg = signed_message(&self.header_bytes, &self.capsule, &self.ciphertext_hash);
        owner.verify(domain::SIG_RECORD, &msg, &self.signature)
    }

    /// Versioned encoding: magic `MRSH`, version, header (u32 length
    /// prefix), capsule id, ciphertext hash, signature.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut e =
            Encoder::with_capacity(SIGNED_HEADER_MAGIC, SIGNED_HEADER_VERSION, self.header_bytes.len() + 140);
        e.bytes(&self.header_bytes)
            .fixed(self.capsule.as_bytes())
            .fixed(&self.ciphertext_hash)
            .fixed(&self.signature.to_bytes());
        e.finish()
    }

    /// Decodes at most [`MAX_SIGNED_HEADER_LEN`] bytes (structure only: call
    /// [`Self::verify_owner`] before trusting it).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut d =
            Decoder::open(bytes, SIGNED_HEADER_MAGIC, &[SIGNED_HEADER_VERSION], MAX_SIGNED_HEADER_LEN)?;
        let header_bytes = d.bytes(MAX_HEADER_LEN)?;
        let header = decode_header(header_bytes)?;
        let capsule = CapsuleId::from_bytes(d.array()?);
        let ciphertext_hash = d.array()?;
        let signature = Signature::from_bytes(d.take(64)?)?;
        d.finish()?;
        Ok(Self { header, header_bytes: header_bytes.to_vec(), capsule, ciphertext_hash, signature })
    }
}

impl fmt::Debug for SignedRecordHeader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SignedRecordHeader")
            .field("record_id", &self.header.record_id())
            .field("owner", &self.header.owner())
            .field("capsule", &self.capsule)
            .finish_non_exhaustive()
    }
}

/// A sealed record: signed header (header, capsule id, ciphertext hash,
/// signature) and the ciphertext (`nonce || AES-256-GCM ciphertext || tag`,
/// associated data = the header's canonical bytes).
#[derive(Clone)]
pub struct RecordEnvelope {
    signed: SignedRecordHeader,
    ciphertext: Vec<u8>,
}

impl RecordEnvelope {
    /// Assembles an envelope and signs it (used by `encrypt_record`).
    pub(crate) fn seal(
        header: RecordHeader,
        capsule: CapsuleId,
        ciphertext: Vec<u8>,
        sign: impl FnOnce(&[u8]) -> Signature,
    ) -> Self {
        let header_bytes = header.to_bytes();
        let ciphertext_hash = hash_ciphertext(&ciphertext);
        let signature = sign(&signed_message(&header_bytes, &capsule, &ciphertext_hash));
        Self {
            signed: SignedRecordHeader { header, header_bytes, capsule, ciphertext_hash, signature },
            ciphertext,
        }
    }

    /// Rebuilds an envelope from its signed header and its ciphertext (as a
    /// store keeps them apart). Fails if the ciphertext is not the one the
    /// header's hash names, or too short to hold a nonce and a tag.
    pub fn from_signed_header(signed: SignedRecordHeader, ciphertext: Vec<u8>) -> Result<Self, DecodeError> {
        check_ciphertext_len(&ciphertext)?;
        if hash_ciphertext(&ciphertext) != signed.ciphertext_hash {
            return Err(DecodeError::Invalid("ciphertext does not match its signed hash"));
        }
        Ok(Self { signed, ciphertext })
    }

    /// The record header.
    pub fn header(&self) -> &RecordHeader {
        &self.signed.header
    }

    /// The header's canonical bytes (the AES-GCM associated data).
    pub fn header_bytes(&self) -> &[u8] {
        &self.signed.header_bytes
    }

    /// The id of the batch capsule the record's key derives from.
    pub fn capsule_id(&self) -> CapsuleId {
        self.signed.capsule
    }

    /// The signed header (everything but the ciphertext).
    pub fn signed_header(&self) -> &SignedRecordHeader {
        &self.signed
    }

    /// `nonce || ciphertext || tag`.
    pub fn ciphertext(&self) -> &[u8] {
        &self.ciphertext
    }

    /// SHA-256 of [`Self::ciphertext`], as covered by the owner's signature.
    pub fn ciphertext_hash(&self) -> &[u8; 32] {
        &self.signed.ciphertext_hash
    }

    /// Length of the sealed body (its framing and, if it was compressed,
    /// the compressed length: what the server can see).
    pub fn body_len(&self) -> usize {
        self.ciphertext.len().saturating_sub(NONCE_LEN + TAG_LEN)
    }

    /// The owner's signature.
    pub fn signature(&self) -> &Signature {
        &self.signed.signature
    }

    /// See [`SignedRecordHeader::verify_owner`]. Needs no secret: the server
    /// calls it on upload.
    pub fn verify_owner(&self, owner: &VerifyingKey) -> Result<(), CryptoError> {
        self.signed.verify_owner(owner)
    }

    /// Versioned encoding: magic `MREV`, version 2, header (u32 length
    /// prefix), capsule id (32 bytes), ciphertext (u32 length prefix),
    /// signature (64 bytes).
    pub fn to_bytes(&self) -> Vec<u8> {
        let cap = self.signed.header_bytes.len() + self.ciphertext.len() + 120;
        let mut e = Encoder::with_capacity(MAGIC, VERSION, cap);
        e.bytes(&self.signed.header_bytes)
            .fixed(self.signed.capsule.as_bytes())
            .bytes(&self.ciphertext)
            .fixed(&self.signed.signature.to_bytes());
        e.finish()
    }

    /// Decodes an envelope of at most `limit` bytes (and never more than
    /// [`MAX_ENVELOPE_LEN`]). Checks structure only: call
    /// [`Self::verify_owner`] before trusting it.
    pub fn from_bytes(bytes: &[u8], limit: usize) -> Result<Self, DecodeError> {
        let mut d = Decoder::open(bytes, MAGIC, &[VERSION], limit.min(MAX_ENVELOPE_LEN))?;
        let header_bytes = d.bytes(MAX_HEADER_LEN)?;
        let header = decode_header(header_bytes)?;
        let capsule = CapsuleId::from_bytes(d.array()?);
        let ciphertext = d.bytes(MAX_CIPHERTEXT_LEN)?;
        check_ciphertext_len(ciphertext)?;
        let signature = Signature::from_bytes(d.take(64)?)?;
        d.finish()?;
        Ok(Self {
            signed: SignedRecordHeader {
                header,
                header_bytes: header_bytes.to_vec(),
                capsule,
                ciphertext_hash: hash_ciphertext(ciphertext),
                signature,
            },
            ciphertext: ciphertext.to_vec(),
        })
    }
}

fn check_ciphertext_len(ciphertext: &[u8]) -> Result<(), DecodeError> {
    if ciphertext.len() < NONCE_LEN + TAG_LEN + 1 {
        return Err(DecodeError::Invalid("ciphertext shorter than nonce, framing and tag"));
    }
    if ciphertext.len() > MAX_CIPHERTEXT_LEN {
        return Err(DecodeError::TooLarge { limit: MAX_CIPHERTEXT_LEN, actual: ciphertext.len() });
    }
    Ok(())
}

impl fmt::Debug for RecordEnvelope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecordEnvelope")
            .field("record_id", &self.header().record_id())
            .field("owner", &self.header().owner())
            .field("key_class", &self.header().key_class())
            .field("capsule", &self.signed.capsule)
            .field("body_len", &self.body_len())
            .finish_non_exhaustive()
    }
}
