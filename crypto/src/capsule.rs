//! The hybrid key capsule of a record: two encapsulated 32-byte shares, one
//! under Umbral and one under the lattice scheme, for one key class. The
//! record's data key is HKDF-SHA256 of both shares, so the record stays
//! confidential while either scheme holds. Its size does not depend on the
//! record body.

use std::fmt;

use crate::category::KeyClass;
use crate::encoding::{Decoder, Encoder};
use crate::error::DecodeError;
use crate::lattice::{LatticeCiphertext, LATTICE_CIPHERTEXT_LEN};
use crate::umbral_codec;

const MAGIC: &[u8; 4] = b"MRCP";
/// Encoding version of [`Capsule`].
const VERSION: u8 = 1;
/// Length of the Umbral-encapsulated share: XChaCha20-Poly1305 nonce (24),
/// the 32-byte share, tag (16).
pub(crate) const UMBRAL_SHARE_CT_LEN: usize = 24 + 32 + 16;
/// Largest lattice ciphertext accepted inside a capsule (the lattice
/// encoding's exact length).
pub const MAX_LATTICE_CIPHERTEXT_LEN: usize = LATTICE_CIPHERTEXT_LEN;
/// Largest encoded [`Capsule`] accepted.
pub const MAX_CAPSULE_LEN: usize =
    MAX_LATTICE_CIPHERTEXT_LEN + umbral_codec::MAX_UMBRAL_OBJECT_LEN + UMBRAL_SHARE_CT_LEN + 64;

/// A record's hybrid key capsule (public; signed by the owner as part of the
/// record envelope).
#[derive(Clone, PartialEq)]
pub struct Capsule {
    pub(crate) key_class: KeyClass,
    pub(crate) umbral: umbral_pre::Capsule,
    /// The Umbral share under umbral-pre's DEM, keyed by the capsule.
    pub(crate) umbral_share: Box<[u8]>,
    pub(crate) lattice: LatticeCiphertext,
}

impl Capsule {
    /// The key class whose PRE key encapsulates the shares.
    pub fn key_class(&self) -> KeyClass {
        self.key_class
    }

    /// Versioned encoding: magic `MRCP`, version, key class code, Umbral
    /// capsule, Umbral share ciphertext, lattice ciphertext (each with a u32
    /// length prefix).
    pub fn to_bytes(&self) -> Vec<u8> {
        let lattice = self.lattice.to_bytes();
        let mut e = Encoder::with_capacity(MAGIC, VERSION, lattice.len() + 256);
        e.u8(self.key_class.code())
            .bytes(&umbral_codec::encode(&self.umbral))
            .bytes(&self.umbral_share)
            .bytes(&lattice);
        e.finish()
    }

    /// Decodes at most [`MAX_CAPSULE_LEN`] bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut d = Decoder::open(bytes, MAGIC, &[VERSION], MAX_CAPSULE_LEN)?;
        let key_class = KeyClass::from_code(d.u8()?)?;
        let umbral = umbral_codec::decode(d.bytes(umbral_codec::MAX_UMBRAL_OBJECT_LEN)?, "umbral capsule")?;
        let umbral_share = d.bytes(UMBRAL_SHARE_CT_LEN)?;
        if umbral_share.len() != UMBRAL_SHARE_CT_LEN {
            return Err(DecodeError::Invalid("umbral share length"));
        }
        let lattice = LatticeCiphertext::from_bytes(d.bytes(MAX_LATTICE_CIPHERTEXT_LEN)?)?;
        d.finish()?;
        Ok(Self { key_class, umbral, umbral_share: umbral_share.into(), lattice })
    }
}

impl fmt::Debug for Capsule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Capsule").field("key_class", &self.key_class).finish_non_exhaustive()
    }
}
