//! The record envelope: header, hybrid capsule, AES-256-GCM ciphertext and
//! the owner's Ed25519 signature over all three. This is what the server
//! stores and serves; it checks the owner's signature without any secret.

use std::fmt;

use sha2::{Digest, Sha256};

use crate::capsule::{Capsule, MAX_CAPSULE_LEN};
use crate::domain;
use crate::encoding::{Decoder, Encoder};
use crate::error::{CryptoError, DecodeError};
use crate::header::{RecordHeader, MAX_HEADER_LEN};
use crate::signing::{Signature, VerifyingKey};

const MAGIC: &[u8; 4] = b"MREV";
const SIGNED_MAGIC: &[u8; 4] = b"MRRS";
/// Encoding version of [`RecordEnvelope`].
const VERSION: u8 = 1;
/// Largest record body (plaintext) that can be sealed: 64 MiB.
pub const MAX_BODY_LEN: usize = 64 * 1024 * 1024;
/// AES-GCM nonce length (96 bits), stored in front of the ciphertext.
pub(crate) const NONCE_LEN: usize = 12;
/// AES-GCM tag length.
pub(crate) const TAG_LEN: usize = 16;
/// Largest ciphertext: nonce, body, tag.
pub const MAX_CIPHERTEXT_LEN: usize = NONCE_LEN + MAX_BODY_LEN + TAG_LEN;
/// Largest encoded [`RecordEnvelope`] accepted (checked before parsing).
pub const MAX_ENVELOPE_LEN: usize = MAX_HEADER_LEN + MAX_CAPSULE_LEN + MAX_CIPHERTEXT_LEN + 128;

/// A sealed record: header, capsule bytes, ciphertext (`nonce || AES-256-GCM
/// ciphertext || tag`, associated data = the header's canonical bytes) and the
/// owner's signature over `header || capsule || SHA-256(ciphertext)`.
#[derive(Clone)]
pub struct RecordEnvelope {
    header: RecordHeader,
    header_bytes: Vec<u8>,
    capsule: Capsule,
    capsule_bytes: Vec<u8>,
    ciphertext: Vec<u8>,
    ciphertext_hash: [u8; 32],
    signature: Signature,
}

/// The message the owner signs (context [`domain::SIG_RECORD`]).
pub(crate) fn signed_message(
    header_bytes: &[u8],
    capsule_bytes: &[u8],
    ciphertext_hash: &[u8; 32],
) -> Vec<u8> {
    let mut e = Encoder::with_capacity(SIGNED_MAGIC, VERSION, header_bytes.len() + capsule_bytes.len() + 48);
    e.bytes(header_bytes).bytes(capsule_bytes).fixed(ciphertext_hash);
    e.finish()
}

pub(crate) fn hash_ciphertext(ciphertext: &[u8]) -> [u8; 32] {
    Sha256::digest(ciphertext).into()
}

impl RecordEnvelope {
    /// Assembles an envelope from its parts (used by `encrypt_record`).
    pub(crate) fn from_parts(
        header: RecordHeader,
        capsule: Capsule,
        ciphertext: Vec<u8>,
        sign: impl FnOnce(&[u8]) -> Signature,
    ) -> Self {
        let header_bytes = header.to_bytes();
        let capsule_bytes = capsule.to_bytes();
        let ciphertext_hash = hash_ciphertext(&ciphertext);
        let signature = sign(&signed_message(&header_bytes, &capsule_bytes, &ciphertext_hash));
        Self { header, header_bytes, capsule, capsule_bytes, ciphertext, ciphertext_hash, signature }
    }

    /// The record header.
    pub fn header(&self) -> &RecordHeader {
        &self.header
    }

    /// The header's canonical bytes (the AES-GCM associated data).
    pub fn header_bytes(&self) -> &[u8] {
        &self.header_bytes
    }

    /// The hybrid capsule.
    pub fn capsule(&self) -> &Capsule {
        &self.capsule
    }

    /// The capsule's bytes, exactly as signed.
    pub fn capsule_bytes(&self) -> &[u8] {
        &self.capsule_bytes
    }

    /// `nonce || ciphertext || tag`.
    pub fn ciphertext(&self) -> &[u8] {
        &self.ciphertext
    }

    /// SHA-256 of [`Self::ciphertext`], as covered by the owner's signature.
    pub fn ciphertext_hash(&self) -> &[u8; 32] {
        &self.ciphertext_hash
    }

    /// Length of the plaintext body.
    pub fn body_len(&self) -> usize {
        self.ciphertext.len().saturating_sub(NONCE_LEN + TAG_LEN)
    }

    /// The owner's signature.
    pub fn signature(&self) -> &Signature {
        &self.signature
    }

    /// Checks that `owner` is the header's owner (its principal id) and that
    /// the signature over header, capsule and ciphertext hash verifies.
    /// Needs no secret: the server calls it on upload and before every
    /// re-encryption. Fails with [`CryptoError::BadSignature`].
    pub fn verify_owner(&self, owner: &VerifyingKey) -> Result<(), CryptoError> {
        if owner.principal_id() != self.header.owner() {
            return Err(CryptoError::BadSignature);
        }
        let msg = signed_message(&self.header_bytes, &self.capsule_bytes, &self.ciphertext_hash);
        owner.verify(domain::SIG_RECORD, &msg, &self.signature)
    }

    /// Versioned encoding: magic `MREV`, version, header, capsule,
    /// ciphertext (each with a u32 length prefix), signature (64 bytes).
    pub fn to_bytes(&self) -> Vec<u8> {
        let cap = self.header_bytes.len() + self.capsule_bytes.len() + self.ciphertext.len() + 96;
        let mut e = Encoder::with_capacity(MAGIC, VERSION, cap);
        e.bytes(&self.header_bytes)
            .bytes(&self.capsule_bytes)
            .bytes(&self.ciphertext)
            .fixed(&self.signature.to_bytes());
        e.finish()
    }

    /// Decodes an envelope of at most `limit` bytes (and never more than
    /// [`MAX_ENVELOPE_LEN`]). Checks structure only: call
    /// [`Self::verify_owner`] before trusting it.
    pub fn from_bytes(bytes: &[u8], limit: usize) -> Result<Self, DecodeError> {
        let mut d = Decoder::open(bytes, MAGIC, &[VERSION], limit.min(MAX_ENVELOPE_LEN))?;
        let header_bytes = d.bytes(MAX_HEADER_LEN)?;
        let header = RecordHeader::from_bytes(header_bytes)?;
        if header.to_bytes() != header_bytes {
            return Err(DecodeError::Invalid("non-canonical record header"));
        }
        let capsule_bytes = d.bytes(MAX_CAPSULE_LEN)?;
        let capsule = Capsule::from_bytes(capsule_bytes)?;
        if capsule.key_class() != header.key_class() {
            return Err(DecodeError::Invalid("capsule key class does not match header"));
        }
        let ciphertext = d.bytes(MAX_CIPHERTEXT_LEN)?;
        if ciphertext.len() < NONCE_LEN + TAG_LEN {
            return Err(DecodeError::Invalid("ciphertext shorter than nonce and tag"));
        }
        let signature = Signature::from_bytes(d.take(64)?)?;
        d.finish()?;
        Ok(Self {
            header,
            header_bytes: header_bytes.to_vec(),
            capsule,
            capsule_bytes: capsule_bytes.to_vec(),
            ciphertext: ciphertext.to_vec(),
            ciphertext_hash: hash_ciphertext(ciphertext),
            signature,
        })
    }
}

impl fmt::Debug for RecordEnvelope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecordEnvelope")
            .field("record_id", &self.header.record_id())
            .field("owner", &self.header.owner())
            .field("key_class", &self.header.key_class())
            .field("body_len", &self.body_len())
            .finish_non_exhaustive()
    }
}
