//! Batch capsules: the hybrid KEM that protects one batch key.
//!
//! A [`Capsule`] holds two encapsulated 32-byte shares for one owner and one
//! key class, one under Umbral and one under the lattice scheme; the batch
//! key is HKDF-SHA256 of both shares (see [`crate::batch`]), so it stays
//! secret while either scheme holds. One capsule serves a whole batch (what
//! one import or upload produces for one key class): its size does not
//! depend on the records, nor on how many there are.
//!
//! A [`SignedCapsule`] is the capsule with its owner's Ed25519 signature
//! over the capsule's bytes ([`domain::SIG_CAPSULE`]); its id
//! ([`CapsuleId`]) is the SHA-256 digest of those bytes. The proxy
//! re-encrypts only signed capsules whose owner is the re-encryption key's
//! delegator ([`crate::reencrypt_capsule`]).

use std::fmt;

use sha2::{Digest, Sha256};

use crate::category::KeyClass;
use crate::domain;
use crate::encoding::{Decoder, Encoder};
use crate::error::{CryptoError, DecodeError};
use crate::ids::{CapsuleId, PrincipalId};
use crate::lattice::{LatticeCiphertext, LATTICE_CIPHERTEXT_LEN};
use crate::signing::{Signature, VerifyingKey};
use crate::umbral_codec;

const MAGIC: &[u8; 4] = b"MRCP";
const SIGNED_MAGIC: &[u8; 4] = b"MRSC";
/// Encoding version of [`Capsule`]. Version 1 (one capsule per record,
/// without an owner) is no longer read.
const VERSION: u8 = 2;
/// Encoding version of [`SignedCapsule`].
const SIGNED_VERSION: u8 = 1;
/// Length of the Umbral-encapsulated share: XChaCha20-Poly1305 nonce (24),
/// the 32-byte share, tag (16).
pub(crate) const UMBRAL_SHARE_CT_LEN: usize = 24 + 32 + 16;
/// Largest lattice ciphertext accepted inside a capsule (the lattice
/// encoding's exact length).
pub const MAX_LATTICE_CIPHERTEXT_LEN: usize = LATTICE_CIPHERTEXT_LEN;
/// Largest encoded [`Capsule`] accepted.
pub const MAX_CAPSULE_LEN: usize =
    MAX_LATTICE_CIPHERTEXT_LEN + umbral_codec::MAX_UMBRAL_OBJECT_LEN + UMBRAL_SHARE_CT_LEN + 96;
/// Largest encoded [`SignedCapsule`] accepted (checked before parsing).
pub const MAX_SIGNED_CAPSULE_LEN: usize = MAX_CAPSULE_LEN + 80;

/// A batch's hybrid key capsule (public): the owner, the key class whose PRE
/// key encapsulates the shares, and the two encapsulations.
#[derive(Clone, PartialEq)]
pub struct Capsule {
    pub(crate) owner: PrincipalId,
    pub(crate) key_class: KeyClass,
    pub(crate) umbral: umbral_pre::Capsule,
    /// The Umbral share under umbral-pre's DEM, keyed by the capsule.
    pub(crate) umbral_share: Box<[u8]>,
    pub(crate) lattice: LatticeCiphertext,
}

impl Capsule {
    /// The owner (patient) whose class key encapsulates the shares.
    pub fn owner(&self) -> PrincipalId {
        self.owner
    }

    /// The key class whose PRE key encapsulates the shares.
    pub fn key_class(&self) -> KeyClass {
        self.key_class
    }

    /// Versioned encoding: magic `MRCP`, version 2, owner id, key class
    /// code, Umbral capsule, Umbral share ciphertext, lattice ciphertext
    /// (each with a u32 length prefix).
    pub fn to_bytes(&self) -> Vec<u8> {
        let lattice = self.lattice.to_bytes();
        let mut e = Encoder::with_capacity(MAGIC, VERSION, lattice.len() + 256);
        e.fixed(self.owner.as_bytes())
            .u8(self.key_class.code())
            .bytes(&umbral_codec::encode(&self.umbral))
            .bytes(&self.umbral_share)
            .bytes(&lattice);
        e.finish()
    }

    /// Decodes at most [`MAX_CAPSULE_LEN`] bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut d = Decoder::open(bytes, MAGIC, &[VERSION], MAX_CAPSULE_LEN)?;
        let owner = PrincipalId::from_bytes(d.array()?);
        let key_class = KeyClass::from_code(d.u8()?)?;
        let umbral = umbral_codec::decode(d.bytes(umbral_codec::MAX_UMBRAL_OBJECT_LEN)?, "umbral capsule")?;
        let umbral_share = d.bytes(UMBRAL_SHARE_CT_LEN)?;
        if umbral_share.len() != UMBRAL_SHARE_CT_LEN {
            return Err(DecodeError::Invalid("umbral share length"));
        }
        let lattice = LatticeCiphertext::from_bytes(d.bytes(MAX_LATTICE_CIPHERTEXT_LEN)?)?;
        d.finish()?;
        Ok(Self { owner, key_class, umbral, umbral_share: umbral_share.into(), lattice })
    }
}

impl fmt::Debug for Capsule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Capsule")
            .field("owner", &self.owner)
            .field("key_class", &self.key_class)
            .finish_non_exhaustive()
    }
}

/// The id of a capsule's bytes.
pub(crate) fn capsule_id(capsule_bytes: &[u8]) -> CapsuleId {
    let mut h = Sha256::new();
    h.update(domain::CAPSULE_ID);
    h.update(capsule_bytes);
    CapsuleId::from_bytes(h.finalize().into())
}

/// A capsule with its owner's signature over its bytes. What the patient
/// uploads once per batch, the server stores by [`CapsuleId`] and the proxy
/// re-encrypts.
#[derive(Clone)]
pub struct SignedCapsule {
    capsule: Capsule,
    capsule_bytes: Vec<u8>,
    id: CapsuleId,
    signature: Signature,
}

impl SignedCapsule {
    /// Signs `capsule` (used by [`crate::generate_batch`]).
    pub(crate) fn sign(capsule: Capsule, sign: impl FnOnce(&[u8]) -> Signature) -> Self {
        let capsule_bytes = capsule.to_bytes();
        let id = capsule_id(&capsule_bytes);
        let signature = sign(&capsule_bytes);
        Self { capsule, capsule_bytes, id, signature }
    }

    /// The capsule's id: the digest of its bytes.
    pub fn id(&self) -> CapsuleId {
        self.id
    }

    /// The capsule.
    pub fn capsule(&self) -> &Capsule {
        &self.capsule
    }

    /// The owner the capsule names (checked against the signer by
    /// [`Self::verify_owner`]).
    pub fn owner(&self) -> PrincipalId {
        self.capsule.owner
    }

    /// The key class.
    pub fn key_class(&self) -> KeyClass {
        self.capsule.key_class
    }

    /// The capsule's bytes, exactly as signed.
    pub fn capsule_bytes(&self) -> &[u8] {
        &self.capsule_bytes
    }

    /// The owner's signature.
    pub fn signature(&self) -> &Signature {
        &self.signature
    }

    /// Checks that `owner` is the capsule's owner (its principal id) and that
    /// the signature over the capsule's bytes verifies. Needs no secret: the
    /// server calls it on upload and before every re-encryption. Fails with
    /// [`CryptoError::BadSignature`].
    pub fn verify_owner(&self, owner: &VerifyingKey) -> Result<(), CryptoError> {
        if owner.principal_id() != self.capsule.owner {
            return Err(CryptoError::BadSignature);
        }
        owner.verify(domain::SIG_CAPSULE, &self.capsule_bytes, &self.signature)
    }

    /// Versioned encoding: magic `MRSC`, version, capsule (u32 length
    /// prefix), signature (64 bytes).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut e = Encoder::with_capacity(SIGNED_MAGIC, SIGNED_VERSION, self.capsule_bytes.len() + 80);
        e.bytes(&self.capsule_bytes).fixed(&self.signature.to_bytes());
        e.finish()
    }

    /// Decodes at most [`MAX_SIGNED_CAPSULE_LEN`] bytes. Checks structure
    /// only: call [`Self::verify_owner`] before trusting it.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut d = Decoder::open(bytes, SIGNED_MAGIC, &[SIGNED_VERSION], MAX_SIGNED_CAPSULE_LEN)?;
        let capsule_bytes = d.bytes(MAX_CAPSULE_LEN)?;
        let capsule = Capsule::from_bytes(capsule_bytes)?;
        let signature = Signature::from_bytes(d.take(64)?)?;
        d.finish()?;
        Ok(Self { capsule, capsule_bytes: capsule_bytes.to_vec(), id: capsule_id(capsule_bytes), signature })
    }
}

impl fmt::Debug for SignedCapsule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SignedCapsule")
            .field("id", &self.id)
            .field("owner", &self.capsule.owner)
            .field("key_class", &self.capsule.key_class)
            .finish_non_exhaustive()
    }
}
