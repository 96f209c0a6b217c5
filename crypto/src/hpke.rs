//! HPKE (RFC 9180) in base mode with one fixed suite, for the report shares
//! a patient's client encrypts to each aggregator of a private study:
//! DHKEM(X25519, HKDF-SHA256) (KEM id 0x0020), HKDF-SHA256 (KDF id 0x0001)
//! and AES-256-GCM (AEAD id 0x0002). The construction is the `hpke` crate's
//! (built on `x25519-dalek` and RustCrypto's `aes-gcm`); this module only
//! fixes the suite, wraps the keys (the secret key zeroizes on drop and never
//! prints) and turns every failure into one opaque [`CryptoError::Decryption`].
//!
//! Callers bind context with `info` (who the share is for, which study) and
//! `aad` (the report id and public parts), so a ciphertext cannot be moved to
//! another report, study or aggregator.

use std::fmt;

use hpke::aead::AesGcm256;
use hpke::kdf::HkdfSha256;
use hpke::kem::X25519HkdfSha256;
use hpke::{Deserializable, Kem as _, OpModeR, OpModeS, Serializable};
use rand_core::{CryptoRng, RngCore};
use zeroize::Zeroizing;

use crate::error::CryptoError;

type Kem = X25519HkdfSha256;

/// RFC 9180 KEM id of DHKEM(X25519, HKDF-SHA256).
pub const HPKE_KEM_ID: u16 = 0x0020;
/// RFC 9180 KDF id of HKDF-SHA256.
pub const HPKE_KDF_ID: u16 = 0x0001;
/// RFC 9180 AEAD id of AES-256-GCM.
pub const HPKE_AEAD_ID: u16 = 0x0002;
/// Length of an encapsulated key (an X25519 public key).
pub const HPKE_ENC_LEN: usize = 32;
/// Length of the AES-256-GCM tag each ciphertext carries.
pub const HPKE_TAG_LEN: usize = 16;
/// Length of an HPKE public or secret key of this suite.
pub const HPKE_KEY_LEN: usize = 32;

/// An aggregator's HPKE public key (X25519).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct HpkePublicKey([u8; HPKE_KEY_LEN]);

impl HpkePublicKey {
    /// Wraps 32 bytes; refuses the all-zero key (every X25519 exchange
    /// with it is refused by HPKE anyway).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, CryptoError> {
        let arr: [u8; HPKE_KEY_LEN] =
            bytes.try_into().map_err(|_| CryptoError::InvalidParameter("HPKE public key length"))?;
        if arr == [0u8; HPKE_KEY_LEN] {
            return Err(CryptoError::InvalidParameter("HPKE public key is zero"));
        }
        <Kem as hpke::Kem>::PublicKey::from_bytes(&arr)
            .map_err(|_| CryptoError::InvalidParameter("HPKE public key"))?;
        Ok(Self(arr))
    }

    /// The raw key.
    pub fn as_bytes(&self) -> &[u8; HPKE_KEY_LEN] {
        &self.0
    }
}

impl fmt::Debug for HpkePublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HpkePublicKey(")?;
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))?;
        write!(f, ")")
    }
}

/// An aggregator's HPKE secret key. Zeroized on drop; `Debug` shows
/// nothing; no `Serialize`.
pub struct HpkeSecretKey {
    secret: Box<<Kem as hpke::Kem>::PrivateKey>,
    public: HpkePublicKey,
}

impl fmt::Debug for HpkeSecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("HpkeSecretKey(..)")
    }
}

impl HpkeSecretKey {
    /// A fresh key pair from `rng` (RFC 9180 `DeriveKeyPair` over 32 random bytes).
    pub fn generate<R: RngCore + CryptoRng>(rng: &mut R) -> Self {
        let mut ikm = Zeroizing::new([0u8; 32]);
        rng.fill_bytes(ikm.as_mut());
        Self::derive(ikm.as_ref())
    }

    /// RFC 9180 `DeriveKeyPair(ikm)`: deterministic, for known-answer tests
    /// and keys derived from a secret seed. `ikm` must hold at least 32
    /// bytes of secret entropy.
    pub fn derive(ikm: &[u8]) -> Self {
        let (sk, _) = Kem::derive_keypair(ikm);
        Self::from_private(sk)
    }

    /// The key from its 32 stored bytes.
    pub fn from_bytes(bytes: &[u8; HPKE_KEY_LEN]) -> Result<Self, CryptoError> {
        let sk = <Kem as hpke::Kem>::PrivateKey::from_bytes(bytes)
            .map_err(|_| CryptoError::InvalidParameter("HPKE secret key"))?;
        Ok(Self::from_private(sk))
    }

    fn from_private(sk: <Kem as hpke::Kem>::PrivateKey) -> Self {
        let pk = Kem::sk_to_pk(&sk);
        let mut public = [0u8; HPKE_KEY_LEN];
        public.copy_from_slice(&pk.to_bytes());
        Self { secret: Box::new(sk), public: HpkePublicKey(public) }
    }

    /// The 32 secret bytes, for the key file.
    pub fn to_bytes(&self) -> Zeroizing<[u8; HPKE_KEY_LEN]> {
        let mut out = Zeroizing::new([0u8; HPKE_KEY_LEN]);
        out.copy_from_slice(&self.secret.to_bytes());
        out
    }

    /// The public key.
    pub fn public_key(&self) -> HpkePublicKey {
        self.public
    }
}

/// One HPKE ciphertext: the encapsulated key and the AEAD ciphertext (with
/// its tag).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HpkeCiphertext {
    /// The encapsulated key.
    pub enc: [u8; HPKE_ENC_LEN],
    /// AES-256-GCM ciphertext followed by its 16-byte tag.
    pub ciphertext: Vec<u8>,
}

/// rand_core 0.6 → the rand_core generation `hpke` uses (0.10).
struct RngBridge<'a, R: RngCore + CryptoRng>(&'a mut R);

impl<R: RngCore + CryptoRng> hpke::rand_core::TryRng for RngBridge<'_, R> {
    type Error = std::convert::Infallible;
    fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
        Ok(self.0.next_u32())
    }
    fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
        Ok(self.0.next_u64())
    }
    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Self::Error> {
        self.0.fill_bytes(dst);
        Ok(())
    }
}

impl<R: RngCore + CryptoRng> hpke::rand_core::TryCryptoRng for RngBridge<'_, R> {}

/// Encrypts `plaintext` to `recipient` (HPKE base mode, single shot).
pub fn hpke_seal<R: RngCore + CryptoRng>(
    rng: &mut R,
    recipient: &HpkePublicKey,
    info: &[u8],
    aad: &[u8],
    plaintext: &[u8],
) -> Result<HpkeCiphertext, CryptoError> {
    let pk = <Kem as hpke::Kem>::PublicKey::from_bytes(recipient.as_bytes())
        .map_err(|_| CryptoError::InvalidParameter("HPKE public key"))?;
    let (encapped, ciphertext) = hpke::single_shot_seal_with_rng::<AesGcm256, HkdfSha256, Kem>(
        &OpModeS::Base,
        &pk,
        info,
        plaintext,
        aad,
        &mut RngBridge(rng),
    )
    .map_err(|_| CryptoError::InvalidParameter("HPKE encapsulation"))?;
    let mut enc = [0u8; HPKE_ENC_LEN];
    enc.copy_from_slice(&encapped.to_bytes());
    Ok(HpkeCiphertext { enc, ciphertext })
}

/// Decrypts an [`hpke_seal`] ciphertext. Every failure (wrong key, wrong
/// `info` or `aad`, tampered bytes, a degenerate encapsulated key) is the
/// same opaque [`CryptoError::Decryption`].
pub fn hpke_open(
    key: &HpkeSecretKey,
    info: &[u8],
    aad: &[u8],
    ciphertext: &HpkeCiphertext,
) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    let encapped =
        <Kem as hpke::Kem>::EncappedKey::from_bytes(&ciphertext.enc).map_err(|_| CryptoError::Decryption)?;
    hpke::single_shot_open::<AesGcm256, HkdfSha256, Kem>(
        &OpModeR::Base,
        &key.secret,
        &encapped,
        info,
        &ciphertext.ciphertext,
        aad,
    )
    .map(Zeroizing::new)
    .map_err(|_| CryptoError::Decryption)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    #[test]
    fn seal_open_round_trip_and_every_binding_is_checked() {
        let mut rng = StdRng::seed_from_u64(7);
        let sk = HpkeSecretKey::generate(&mut rng);
        let pk = sk.public_key();
        let ct = hpke_seal(&mut rng, &pk, b"info", b"aad", b"secret share").unwrap();
        assert_eq!(ct.ciphertext.len(), b"secret share".len() + HPKE_TAG_LEN);
        assert_eq!(&hpke_open(&sk, b"info", b"aad", &ct).unwrap()[..], b"secret share");
        // Wrong info, wrong aad, another key, a flipped bit anywhere: one opaque error.
        assert!(matches!(hpke_open(&sk, b"other", b"aad", &ct), Err(CryptoError::Decryption)));
        assert!(matches!(hpke_open(&sk, b"info", b"other", &ct), Err(CryptoError::Decryption)));
        let other = HpkeSecretKey::generate(&mut rng);
        assert!(matches!(hpke_open(&other, b"info", b"aad", &ct), Err(CryptoError::Decryption)));
        for i in 0..ct.ciphertext.len() {
            let mut bad = ct.clone();
            bad.ciphertext[i] ^= 1;
            assert!(matches!(hpke_open(&sk, b"info", b"aad", &bad), Err(CryptoError::Decryption)));
        }
        let mut bad = ct.clone();
        bad.enc[3] ^= 0x40;
        assert!(matches!(hpke_open(&sk, b"info", b"aad", &bad), Err(CryptoError::Decryption)));
        let mut truncated = ct.clone();
        truncated.ciphertext.truncate(HPKE_TAG_LEN - 1);
        assert!(matches!(hpke_open(&sk, b"info", b"aad", &truncated), Err(CryptoError::Decryption)));
        let zero = HpkeCiphertext { enc: [0; HPKE_ENC_LEN], ciphertext: ct.ciphertext.clone() };
        assert!(matches!(hpke_open(&sk, b"info", b"aad", &zero), Err(CryptoError::Decryption)));
    }

    #[test]
    fn keys_round_trip_and_never_print() {
        let mut rng = StdRng::seed_from_u64(8);
        let sk = HpkeSecretKey::generate(&mut rng);
        let again = HpkeSecretKey::from_bytes(&sk.to_bytes()).unwrap();
        assert_eq!(again.public_key(), sk.public_key());
        assert_eq!(format!("{sk:?}"), "HpkeSecretKey(..)");
        assert_eq!(HpkePublicKey::from_bytes(sk.public_key().as_bytes()).unwrap(), sk.public_key());
        assert!(HpkePublicKey::from_bytes(&[0u8; 32]).is_err());
        assert!(HpkePublicKey::from_bytes(&[1u8; 31]).is_err());
    }
}
