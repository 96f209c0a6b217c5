//! Re-encryption keys and re-encrypted capsules (data types and encodings).
//!
//! A [`ReencryptionKey`] delegates one key class of one patient to one
//! delegate: it names the delegating patient (principal id), carries `n`
//! Umbral key fragments (threshold `t`, distinct fragment ids), signed by the
//! patient's Umbral signer and bound to both public keys, and a lattice
//! key-switching key toward the delegate's lattice public key. The server
//! accepts it only through [`ReencryptionKey::verify`], which returns a
//! [`VerifiedReencryptionKey`]; only that type re-encrypts, and only
//! capsules of the patient it names. A [`ReencryptedCapsule`] is what the
//! delegate receives for one batch capsule.

use std::fmt;

use sha2::{Digest, Sha256};

use crate::category::KeyClass;
use crate::domain;
use crate::encoding::{Decoder, Encoder};
use crate::error::{CryptoError, DecodeError};
use crate::ids::{CapsuleId, PrincipalId};
use crate::keys::{PatientPublicKeys, PrePublicKey};
use crate::lattice::{
    LatticeReencryptedCiphertext, LatticeReencryptionKey, LATTICE_REENCRYPTED_LEN,
    LATTICE_REENCRYPTION_KEY_LEN,
};
use crate::signing::{Fingerprint, VerifyingKey};
use crate::umbral_codec;

const REKEY_MAGIC: &[u8; 4] = b"MRRK";
const RECAPSULE_MAGIC: &[u8; 4] = b"MRRC";
/// Encoding version of [`ReencryptionKey`] and [`ReencryptedCapsule`].
/// Version 2 added the delegating principal to the key and the capsule id
/// to the re-encrypted capsule (and dropped its threshold: the delegate
/// takes the threshold from the patient's signed grant).
const VERSION: u8 = 2;
/// Most key fragments (`shares`) in one re-encryption key.
pub const MAX_SHARES: u8 = 16;
/// Largest lattice re-encryption key accepted inside a [`ReencryptionKey`]
/// (the lattice encoding's exact length).
pub const MAX_LATTICE_REKEY_LEN: usize = LATTICE_REENCRYPTION_KEY_LEN;
/// Largest encoded [`ReencryptionKey`] accepted.
pub const MAX_REKEY_LEN: usize =
    MAX_LATTICE_REKEY_LEN + (umbral_codec::MAX_UMBRAL_OBJECT_LEN + 4) * MAX_SHARES as usize + 160;
/// Largest lattice re-encrypted share accepted inside a [`ReencryptedCapsule`]
/// (the lattice encoding's exact length).
pub const MAX_LATTICE_REENCRYPTED_LEN: usize = LATTICE_REENCRYPTED_LEN;
/// Largest encoded [`ReencryptedCapsule`] accepted.
pub const MAX_REENCRYPTED_CAPSULE_LEN: usize =
    MAX_LATTICE_REENCRYPTED_LEN + (umbral_codec::MAX_UMBRAL_OBJECT_LEN + 4) * MAX_SHARES as usize + 96;

/// Threshold and number of shares of a re-encryption key, validated:
/// `1 <= threshold <= shares <= MAX_SHARES`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Threshold {
    threshold: u8,
    shares: u8,
}

impl Threshold {
    /// `threshold`-of-`shares`.
    pub fn new(threshold: u8, shares: u8) -> Result<Self, CryptoError> {
        if threshold == 0 {
            return Err(CryptoError::InvalidParameter("threshold must be at least 1"));
        }
        if threshold > shares {
            return Err(CryptoError::InvalidParameter("threshold exceeds shares"));
        }
        if shares > MAX_SHARES {
            return Err(CryptoError::InvalidParameter("more than MAX_SHARES shares"));
        }
        Ok(Self { threshold, shares })
    }

    /// 1-of-1: one proxy holds the whole key.
    pub const ONE_OF_ONE: Self = Self { threshold: 1, shares: 1 };

    /// Fragments needed to decrypt.
    pub fn threshold(self) -> u8 {
        self.threshold
    }

    /// Fragments issued.
    pub fn shares(self) -> u8 {
        self.shares
    }
}

/// A key fragment's id (umbral-pre keeps it private; its human-readable
/// serialization names it `id`). `None` if the fragment does not serialize,
/// which counts as a bad fragment.
fn kfrag_id(kfrag: &umbral_pre::KeyFrag) -> Option<String> {
    let value = serde_json::to_value(kfrag).ok()?;
    value.get("id")?.as_str().map(str::to_owned)
}

/// An unverified re-encryption key, as uploaded by a patient.
#[derive(Clone, PartialEq)]
pub struct ReencryptionKey {
    pub(crate) key_class: KeyClass,
    pub(crate) threshold: Threshold,
    pub(crate) delegator_principal: PrincipalId,
    pub(crate) delegator: Fingerprint,
    pub(crate) delegatee: Fingerprint,
    pub(crate) kfrags: Vec<umbral_pre::KeyFrag>,
    pub(crate) lattice: LatticeReencryptionKey,
}

impl ReencryptionKey {
    /// The key class it delegates.
    pub fn key_class(&self) -> KeyClass {
        self.key_class
    }

    /// Threshold and shares of the Umbral fragments.
    pub fn threshold(&self) -> Threshold {
        self.threshold
    }

    /// The delegating patient (principal id).
    pub fn delegator_principal(&self) -> PrincipalId {
        self.delegator_principal
    }

    /// Fingerprint of the delegating class public key.
    pub fn delegator(&self) -> Fingerprint {
        self.delegator
    }

    /// Fingerprint of the delegate's PRE public key.
    pub fn delegatee(&self) -> Fingerprint {
        self.delegatee
    }

    /// SHA-256 digest of the encoding, for binding the key into a signed grant.
    pub fn digest(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(domain::REKEY_DIGEST);
        h.update(self.to_bytes());
        h.finalize().into()
    }

    /// Checks that the key delegates the class key of the patient whose
    /// signing key is `patient_vk` (its principal id is the one the key
    /// names) and whose PRE public keys are `patient` to `delegatee`: the
    /// fingerprints of both public keys, the lattice public key the key
    /// floods under (it must be the delegate's registered one), one key
    /// fragment per share with no fragment id repeated, and the patient's
    /// Umbral signature on every fragment over both public keys. Consumes
    /// the key; on failure gives it back.
    ///
    /// The lattice key-switching key itself carries no proof: a patient can
    /// only hurt their own delegate with a bad one (decryption then fails).
    /// Bind the key into the patient's signed grant with [`Self::digest`].
    #[expect(clippy::result_large_err, reason = "gives the key back on failure, as umbral-pre does")]
    pub fn verify(
        self,
        patient_vk: &VerifyingKey,
        patient: &PatientPublicKeys,
        delegatee: &PrePublicKey,
    ) -> Result<VerifiedReencryptionKey, (CryptoError, Self)> {
        if patient_vk.principal_id() != self.delegator_principal {
            return Err((CryptoError::WrongOwner, self));
        }
        let class_pk = patient.class(self.key_class);
        if class_pk.fingerprint() != self.delegator || delegatee.fingerprint() != self.delegatee {
            return Err((CryptoError::BadSignature, self));
        }
        if self.lattice.delegatee() != delegatee.lattice() {
            return Err((CryptoError::BadSignature, self));
        }
        if self.kfrags.len() != usize::from(self.threshold.shares()) {
            return Err((CryptoError::BadSignature, self));
        }
        let mut ids = std::collections::BTreeSet::new();
        if !self.kfrags.iter().all(|k| kfrag_id(k).is_some_and(|id| ids.insert(id))) {
            return Err((CryptoError::InvalidParameter("repeated key fragment id"), self));
        }
        let signer = patient.umbral_verifying_key().inner();
        let verified: Result<Vec<_>, _> = self
            .kfrags
            .iter()
            .map(|k| k.clone().verify(signer, Some(class_pk.umbral()), Some(delegatee.umbral())))
            .collect();
        let Ok(kfrags) = verified else {
            return Err((CryptoError::BadSignature, self));
        };
        Ok(VerifiedReencryptionKey { inner: self, kfrags })
    }

    /// Marks the key verified without checking it.
    ///
    /// **Warning:** only for keys read back from storage that this process
    /// verified with [`Self::verify`] before storing them. A key that was
    /// never verified lets anyone make the proxy emit useless fragments.
    pub fn skip_verification(self) -> VerifiedReencryptionKey {
        let kfrags = self.kfrags.iter().cloned().map(umbral_pre::KeyFrag::skip_verification).collect();
        VerifiedReencryptionKey { inner: self, kfrags }
    }

    /// Versioned encoding: magic `MRRK`, version 2, key class, threshold,
    /// shares, delegating principal id, delegator and delegatee
    /// fingerprints, `shares` key fragments, lattice key (each with a u32
    /// length prefix).
    pub fn to_bytes(&self) -> Vec<u8> {
        let lattice = self.lattice.to_bytes();
        let mut e = Encoder::with_capacity(REKEY_MAGIC, VERSION, lattice.len() + 1024);
        e.u8(self.key_class.code())
            .u8(self.threshold.threshold())
            .u8(self.threshold.shares())
            .fixed(self.delegator_principal.as_bytes())
            .fixed(self.delegator.as_bytes())
            .fixed(self.delegatee.as_bytes());
        for k in &self.kfrags {
            e.bytes(&umbral_codec::encode(k));
        }
        e.bytes(&lattice);
        e.finish()
    }

    /// Decodes at most [`MAX_REKEY_LEN`] bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut d = Decoder::open(bytes, REKEY_MAGIC, &[VERSION], MAX_REKEY_LEN)?;
        let key_class = KeyClass::from_code(d.u8()?)?;
        let threshold =
            Threshold::new(d.u8()?, d.u8()?).map_err(|_| DecodeError::Invalid("threshold/shares"))?;
        let delegator_principal = PrincipalId::from_bytes(d.array()?);
        let delegator = Fingerprint::from_bytes(d.array()?);
        let delegatee = Fingerprint::from_bytes(d.array()?);
        let mut kfrags = Vec::with_capacity(usize::from(threshold.shares()));
        for _ in 0..threshold.shares() {
            kfrags.push(umbral_codec::decode(
                d.bytes(umbral_codec::MAX_UMBRAL_OBJECT_LEN)?,
                "umbral key fragment",
            )?);
        }
        let lattice = LatticeReencryptionKey::from_bytes(d.bytes(MAX_LATTICE_REKEY_LEN)?)?;
        d.finish()?;
        Ok(Self { key_class, threshold, delegator_principal, delegator, delegatee, kfrags, lattice })
    }
}

impl fmt::Debug for ReencryptionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReencryptionKey")
            .field("key_class", &self.key_class)
            .field("threshold", &self.threshold)
            .field("delegator_principal", &self.delegator_principal)
            .field("delegator", &self.delegator)
            .field("delegatee", &self.delegatee)
            .finish_non_exhaustive()
    }
}

/// A re-encryption key whose fragments were verified against the patient's
/// and the delegate's public keys. Only this type re-encrypts. It can be
/// encoded (for storage) but not decoded: decode a [`ReencryptionKey`] and
/// verify it again.
pub struct VerifiedReencryptionKey {
    inner: ReencryptionKey,
    pub(crate) kfrags: Vec<umbral_pre::VerifiedKeyFrag>,
}

impl VerifiedReencryptionKey {
    /// The key class it delegates.
    pub fn key_class(&self) -> KeyClass {
        self.inner.key_class
    }

    /// Threshold and shares.
    pub fn threshold(&self) -> Threshold {
        self.inner.threshold
    }

    /// The delegating patient: the only owner whose capsules this key
    /// re-encrypts.
    pub fn delegator_principal(&self) -> PrincipalId {
        self.inner.delegator_principal
    }

    /// Fingerprint of the delegating class public key.
    pub fn delegator(&self) -> Fingerprint {
        self.inner.delegator
    }

    /// Fingerprint of the delegate's PRE public key.
    pub fn delegatee(&self) -> Fingerprint {
        self.inner.delegatee
    }

    /// See [`ReencryptionKey::digest`].
    pub fn digest(&self) -> [u8; 32] {
        self.inner.digest()
    }

    /// The encoding of the underlying [`ReencryptionKey`].
    pub fn to_bytes(&self) -> Vec<u8> {
        self.inner.to_bytes()
    }

    pub(crate) fn lattice(&self) -> &LatticeReencryptionKey {
        &self.inner.lattice
    }
}

impl fmt::Debug for VerifiedReencryptionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("VerifiedReencryptionKey").field(&self.inner).finish()
    }
}

/// A batch capsule re-encrypted toward a delegate: the capsule's id and
/// key class, one Umbral capsule fragment per key fragment (each with a
/// proof the delegate checks) and the key-switched, flooded lattice share.
/// It says nothing about how many fragments are needed: the delegate takes
/// the threshold from the patient's signed grant.
#[derive(Clone, PartialEq)]
pub struct ReencryptedCapsule {
    pub(crate) key_class: KeyClass,
    pub(crate) capsule: CapsuleId,
    pub(crate) cfrags: Vec<umbral_pre::CapsuleFrag>,
    pub(crate) lattice: LatticeReencryptedCiphertext,
}

impl ReencryptedCapsule {
    /// The key class of the capsule.
    pub fn key_class(&self) -> KeyClass {
        self.key_class
    }

    /// The capsule it was made from.
    pub fn capsule_id(&self) -> CapsuleId {
        self.capsule
    }

    /// Capsule fragments present.
    pub fn fragment_count(&self) -> usize {
        self.cfrags.len()
    }

    /// Keeps only the first `n` capsule fragments (e.g. to forward a subset).
    pub fn truncate_fragments(&mut self, n: usize) {
        self.cfrags.truncate(n);
    }

    /// Versioned encoding: magic `MRRC`, version 2, key class, capsule id,
    /// fragment count, fragments and lattice share (each with a u32 length
    /// prefix).
    pub fn to_bytes(&self) -> Vec<u8> {
        let lattice = self.lattice.to_bytes();
        let mut e = Encoder::with_capacity(RECAPSULE_MAGIC, VERSION, lattice.len() + 512);
        e.u8(self.key_class.code())
            .fixed(self.capsule.as_bytes())
            .u8(u8::try_from(self.cfrags.len()).unwrap_or(u8::MAX));
        for c in &self.cfrags {
            e.bytes(&umbral_codec::encode(c));
        }
        e.bytes(&lattice);
        e.finish()
    }

    /// Decodes at most [`MAX_REENCRYPTED_CAPSULE_LEN`] bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut d = Decoder::open(bytes, RECAPSULE_MAGIC, &[VERSION], MAX_REENCRYPTED_CAPSULE_LEN)?;
        let key_class = KeyClass::from_code(d.u8()?)?;
        let capsule = CapsuleId::from_bytes(d.array()?);
        let count = d.u8()?;
        if count == 0 || count > MAX_SHARES {
            return Err(DecodeError::Invalid("fragment count"));
        }
        let mut cfrags = Vec::with_capacity(usize::from(count));
        for _ in 0..count {
            cfrags.push(umbral_codec::decode(
                d.bytes(umbral_codec::MAX_UMBRAL_OBJECT_LEN)?,
                "umbral capsule fragment",
            )?);
        }
        let lattice = LatticeReencryptedCiphertext::from_bytes(d.bytes(MAX_LATTICE_REENCRYPTED_LEN)?)?;
        d.finish()?;
        Ok(Self { key_class, capsule, cfrags, lattice })
    }
}

impl fmt::Debug for ReencryptedCapsule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReencryptedCapsule")
            .field("key_class", &self.key_class)
            .field("capsule", &self.capsule)
            .field("fragments", &self.cfrags.len())
            .finish_non_exhaustive()
    }
}
