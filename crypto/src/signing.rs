//! Ed25519 signing keys, verifying keys and signatures, with domain
//! separation: every signature covers `len(context) || context || message`,
//! where the context is one of the labels in [`crate::domain`].

use std::fmt;

use base64::Engine as _;
use ed25519_dalek::Signer as _;
use rand_core::{CryptoRng, RngCore};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::domain;
use crate::error::{CryptoError, DecodeError};
use crate::ids::PrincipalId;

/// A principal's Ed25519 signing key. Zeroized on drop (ed25519-dalek's
/// `zeroize` feature), kept on the heap, never printed.
pub struct SigningKey(Box<ed25519_dalek::SigningKey>);

impl SigningKey {
    /// Generates a fresh key.
    pub fn generate<R: RngCore + CryptoRng>(rng: &mut R) -> Self {
        let mut seed = Zeroizing::new([0u8; 32]);
        rng.fill_bytes(seed.as_mut());
        Self::from_seed(&seed)
    }

    /// Rebuilds a key from its 32-byte seed (as stored in a key file).
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        Self(Box::new(ed25519_dalek::SigningKey::from_bytes(seed)))
    }

    /// The 32-byte seed, for key files only.
    pub fn to_seed(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(self.0.to_bytes())
    }

    /// The public half.
    pub fn verifying_key(&self) -> VerifyingKey {
        VerifyingKey(self.0.verifying_key())
    }

    /// The id of the principal holding this key.
    pub fn principal_id(&self) -> PrincipalId {
        self.verifying_key().principal_id()
    }

    /// Signs `message` under a domain-separation `context` from [`crate::domain`].
    pub fn sign(&self, context: &[u8], message: &[u8]) -> Signature {
        Signature(self.0.sign(&framed(context, message)).to_bytes())
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SigningKey(..)")
    }
}

fn framed(context: &[u8], message: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(1 + context.len() + message.len());
    m.push(u8::try_from(context.len()).unwrap_or(u8::MAX));
    m.extend_from_slice(context);
    m.extend_from_slice(message);
    m
}

/// An Ed25519 public key.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct VerifyingKey(ed25519_dalek::VerifyingKey);

impl VerifyingKey {
    /// Parses a 32-byte public key; rejects non-canonical and weak points.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        let arr: [u8; 32] =
            bytes.try_into().map_err(|_| DecodeError::Invalid("ed25519 public key length"))?;
        let vk = ed25519_dalek::VerifyingKey::from_bytes(&arr)
            .map_err(|_| DecodeError::Invalid("ed25519 public key"))?;
        if vk.is_weak() {
            return Err(DecodeError::Invalid("ed25519 public key (weak point)"));
        }
        Ok(Self(vk))
    }

    /// The 32 public key bytes.
    pub fn to_bytes(&self) -> [u8; 32] {
        self.0.to_bytes()
    }

    /// The id of the principal holding the matching signing key.
    pub fn principal_id(&self) -> PrincipalId {
        let mut h = Sha256::new();
        h.update(domain::PRINCIPAL_ID);
        h.update(self.0.as_bytes());
        PrincipalId::from_bytes(h.finalize().into())
    }

    /// Stable fingerprint: `SHA-256(domain::FINGERPRINT || "ed25519" || key)`.
    pub fn fingerprint(&self) -> Fingerprint {
        Fingerprint::of(b"ed25519", self.0.as_bytes())
    }

    /// Verifies `signature` over `message` under `context` (strict Ed25519
    /// verification: no malleable or small-order signatures).
    pub fn verify(&self, context: &[u8], message: &[u8], signature: &Signature) -> Result<(), CryptoError> {
        let sig = ed25519_dalek::Signature::from_bytes(&signature.0);
        self.0.verify_strict(&framed(context, message), &sig).map_err(|_| CryptoError::BadSignature)
    }
}

impl fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "VerifyingKey({})", hex::encode(self.0.as_bytes()))
    }
}

impl Serialize for VerifyingKey {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(self.0.as_bytes()))
    }
}

impl<'de> Deserialize<'de> for VerifyingKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(s.as_bytes())
            .map_err(|_| serde::de::Error::custom("invalid base64 in ed25519 public key"))?;
        Self::from_bytes(&bytes).map_err(serde::de::Error::custom)
    }
}

/// An Ed25519 signature (64 bytes).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Signature([u8; 64]);

impl Signature {
    /// Wraps 64 signature bytes (validity is checked on verification).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        let arr: [u8; 64] = bytes.try_into().map_err(|_| DecodeError::Invalid("signature length"))?;
        Ok(Self(arr))
    }

    /// The 64 signature bytes.
    pub fn to_bytes(&self) -> [u8; 64] {
        self.0
    }
}

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signature({}..)", hex::encode(&self.0[..8]))
    }
}

impl Serialize for Signature {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(self.0))
    }
}

impl<'de> Deserialize<'de> for Signature {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(s.as_bytes())
            .map_err(|_| serde::de::Error::custom("invalid base64 in signature"))?;
        Self::from_bytes(&bytes).map_err(serde::de::Error::custom)
    }
}

/// A public-key fingerprint: `SHA-256(domain::FINGERPRINT || kind || encoding)`,
/// shown as `SHA256:` and 64 hex digits grouped for reading aloud.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint([u8; 32]);

impl Fingerprint {
    /// Fingerprint of a key's versioned encoding; `kind` names the key type.
    pub fn of(kind: &[u8], encoding: &[u8]) -> Self {
        let mut h = Sha256::new();
        h.update(domain::FINGERPRINT);
        h.update([u8::try_from(kind.len()).unwrap_or(u8::MAX)]);
        h.update(kind);
        h.update(encoding);
        Self(h.finalize().into())
    }

    /// Wraps a digest (as read from an encoding).
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The raw digest.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SHA256:")?;
        let hex = hex::encode(self.0);
        for (i, chunk) in hex.as_bytes().chunks(8).enumerate() {
            if i > 0 {
                f.write_str(":")?;
            }
            f.write_str(std::str::from_utf8(chunk).map_err(|_| fmt::Error)?)?;
        }
        Ok(())
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::rand_core::SeedableRng;

    #[test]
    fn sign_verify_and_domain_separation() {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(1);
        let sk = SigningKey::generate(&mut rng);
        let vk = sk.verifying_key();
        let sig = sk.sign(domain::SIG_GRANT, b"hello");
        vk.verify(domain::SIG_GRANT, b"hello", &sig).unwrap();
        assert!(vk.verify(domain::SIG_REVOCATION, b"hello", &sig).is_err());
        assert!(vk.verify(domain::SIG_GRANT, b"hellO", &sig).is_err());
        let other = SigningKey::generate(&mut rng).verifying_key();
        assert!(other.verify(domain::SIG_GRANT, b"hello", &sig).is_err());
    }

    #[test]
    fn seed_round_trip_keeps_identity() {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(2);
        let sk = SigningKey::generate(&mut rng);
        let again = SigningKey::from_seed(&sk.to_seed());
        assert_eq!(sk.principal_id(), again.principal_id());
        assert_eq!(format!("{sk:?}"), "SigningKey(..)");
    }

    #[test]
    fn bad_public_keys_are_rejected() {
        assert!(VerifyingKey::from_bytes(&[0u8; 31]).is_err());
        // The identity point is a weak (small-order) key.
        let mut id = [0u8; 32];
        id[0] = 1;
        assert!(VerifyingKey::from_bytes(&id).is_err());
        assert!(Signature::from_bytes(&[0u8; 63]).is_err());
    }
}
