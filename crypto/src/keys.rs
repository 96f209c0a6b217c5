//! Hybrid PRE key pairs (Umbral + lattice) and the patient's key hierarchy.
//!
//! - A [`PreSecretKey`] is derived from a 32-byte seed: HKDF-SHA256 with
//!   [`domain::HKDF_PRE_UMBRAL`] and [`domain::HKDF_PRE_LATTICE`] gives one
//!   seed per scheme. A doctor holds one such key pair.
//! - A patient holds one [`MasterSecret`]; [`PatientSecretKeys`] derives the
//!   seed of each [`KeyClass`]'s key pair with HKDF
//!   ([`domain::HKDF_KEY_CLASS`] followed by the class code) and the Umbral
//!   signing key for key fragments ([`domain::HKDF_UMBRAL_SIGNER`]).
//!   Its public half is [`PatientPublicKeys`].
//!
//! Secret types print as `Type(..)`, zeroize on drop and live on the heap.

use std::fmt;

use hkdf::Hkdf;
use rand_core::{CryptoRng, RngCore};
use sha2::Sha256;
use zeroize::{Zeroize, Zeroizing};

use crate::category::KeyClass;
use crate::domain;
use crate::encoding::{Decoder, Encoder};
use crate::error::DecodeError;
use crate::lattice::{self, LatticePublicKey, LatticeSecretKey};
use crate::signing::Fingerprint;

/// Encoding version of [`PrePublicKey`] and [`PatientPublicKeys`].
const PUBLIC_KEY_VERSION: u8 = 1;
const PRE_PK_MAGIC: &[u8; 4] = b"MRPK";
const PATIENT_PK_MAGIC: &[u8; 4] = b"MRPP";
/// Size of a compressed secp256k1 point (an Umbral public key).
pub(crate) const UMBRAL_PK_LEN: usize = 33;
/// Largest lattice public key accepted inside a [`PrePublicKey`] encoding
/// (the lattice encoding's exact length).
pub const MAX_LATTICE_PUBLIC_KEY_LEN: usize = lattice::LATTICE_PUBLIC_KEY_LEN;
/// Largest encoded [`PrePublicKey`] accepted.
pub const MAX_PRE_PUBLIC_KEY_LEN: usize = MAX_LATTICE_PUBLIC_KEY_LEN + 64;
/// Largest encoded [`PatientPublicKeys`] accepted (8 class keys and the
/// Umbral verifying key).
pub const MAX_PATIENT_PUBLIC_KEYS_LEN: usize = 8 * (MAX_PRE_PUBLIC_KEY_LEN + 4) + 64;

/// HKDF-SHA256 expand of `ikm` (no salt) to 32 bytes under `info` parts.
pub(crate) fn hkdf32(ikm: &[u8], info: &[&[u8]]) -> Zeroizing<[u8; 32]> {
    let hk = Hkdf::<Sha256>::new(None, ikm);
    let mut out = Zeroizing::new([0u8; 32]);
    hk.expand_multi_info(info, out.as_mut())
        .unwrap_or_else(|_| unreachable!("HKDF-SHA256 always yields 32 bytes (limit 8160)"));
    out
}

fn umbral_secret_from_seed(seed: &[u8; 32]) -> umbral_pre::SecretKey {
    // `from_secure_randomness` only fails on a seed of the wrong length; the
    // seed is a `[u8; 32]` and umbral's factory seed size is 32.
    umbral_pre::SecretKeyFactory::from_secure_randomness(seed)
        .unwrap_or_else(|_| unreachable!("umbral-pre's key factory seed is 32 bytes"))
        .make_key(domain::UMBRAL_KEY_LABEL)
}

/// A 32-byte secret seed, boxed and zeroized on drop.
pub(crate) struct Seed(Box<[u8; 32]>);

impl Seed {
    pub(crate) fn new(bytes: &[u8; 32]) -> Self {
        Self(Box::new(*bytes))
    }

    pub(crate) fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl Drop for Seed {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

/// A patient's 32-byte master secret: every class key pair and the Umbral
/// key-fragment signer derive from it. Stored only inside a [`crate::KeyFile`].
pub struct MasterSecret(Seed);

impl MasterSecret {
    /// Draws a fresh master secret.
    pub fn generate<R: RngCore + CryptoRng>(rng: &mut R) -> Self {
        let mut b = Zeroizing::new([0u8; 32]);
        rng.fill_bytes(b.as_mut());
        Self(Seed::new(&b))
    }

    /// Rebuilds a master secret from its bytes (as stored in a key file).
    pub fn from_bytes(bytes: &[u8; 32]) -> Self {
        Self(Seed::new(bytes))
    }

    /// The secret bytes, for key files only.
    pub fn to_bytes(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(*self.0 .0)
    }
}

impl fmt::Debug for MasterSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterSecret(..)")
    }
}

/// The secret half of a hybrid PRE key pair: an Umbral secret key and a
/// lattice secret key, both derived from one 32-byte seed.
pub struct PreSecretKey(Box<PreSecretInner>);

struct PreSecretInner {
    seed: Seed,
    umbral: umbral_pre::SecretKey,
    lattice: LatticeSecretKey,
}

impl PreSecretKey {
    /// Draws a fresh key pair seed (a doctor's PRE key).
    pub fn generate<R: RngCore + CryptoRng>(rng: &mut R) -> Self {
        let mut seed = Zeroizing::new([0u8; 32]);
        rng.fill_bytes(seed.as_mut());
        Self::from_seed(&seed)
    }

    /// Derives the key pair from its 32-byte seed (deterministic).
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        Self::derive(seed).0
    }

    /// Draws a fresh 32-byte seed without deriving the keys.
    pub(crate) fn generate_seed<R: RngCore + CryptoRng>(rng: &mut R) -> Zeroizing<[u8; 32]> {
        let mut seed = Zeroizing::new([0u8; 32]);
        rng.fill_bytes(seed.as_mut());
        seed
    }

    fn derive(seed: &[u8; 32]) -> (Self, PrePublicKey) {
        let umbral_seed = hkdf32(seed, &[domain::HKDF_PRE_UMBRAL]);
        let lattice_seed = hkdf32(seed, &[domain::HKDF_PRE_LATTICE]);
        let umbral = umbral_secret_from_seed(&umbral_seed);
        let (lattice_sk, lattice_pk) = lattice::generate_lattice_keypair(&lattice_seed);
        let pk = PrePublicKey { umbral: umbral.public_key(), lattice: lattice_pk };
        let sk = Self(Box::new(PreSecretInner { seed: Seed::new(seed), umbral, lattice: lattice_sk }));
        (sk, pk)
    }

    /// The 32-byte seed, for key files only.
    pub fn to_seed(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(*self.0.seed.0)
    }

    /// The public half. Re-derives the lattice public key from the seed
    /// (milliseconds): keep the result rather than calling this in a loop.
    pub fn public_key(&self) -> PrePublicKey {
        Self::derive(&self.0.seed.0).1
    }

    pub(crate) fn umbral(&self) -> &umbral_pre::SecretKey {
        &self.0.umbral
    }

    pub(crate) fn lattice(&self) -> &LatticeSecretKey {
        &self.0.lattice
    }
}

impl fmt::Debug for PreSecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PreSecretKey(..)")
    }
}

/// A hybrid PRE key pair (a doctor's, or one of a patient's key classes).
pub struct PreKeyPair {
    secret: PreSecretKey,
    public: PrePublicKey,
}

impl PreKeyPair {
    /// Draws a fresh key pair.
    pub fn generate<R: RngCore + CryptoRng>(rng: &mut R) -> Self {
        let mut seed = Zeroizing::new([0u8; 32]);
        rng.fill_bytes(seed.as_mut());
        Self::from_seed(&seed)
    }

    /// Derives the key pair from its 32-byte seed (deterministic).
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        let (secret, public) = PreSecretKey::derive(seed);
        Self { secret, public }
    }

    /// The secret half.
    pub fn secret_key(&self) -> &PreSecretKey {
        &self.secret
    }

    /// The public half.
    pub fn public_key(&self) -> &PrePublicKey {
        &self.public
    }

    /// Splits the pair.
    pub fn into_parts(self) -> (PreSecretKey, PrePublicKey) {
        (self.secret, self.public)
    }
}

impl fmt::Debug for PreKeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PreKeyPair").field("secret", &self.secret).field("public", &self.public).finish()
    }
}

/// The public half of a hybrid PRE key pair: an Umbral public key and a
/// lattice public key.
#[derive(Clone, PartialEq)]
pub struct PrePublicKey {
    umbral: umbral_pre::PublicKey,
    lattice: LatticePublicKey,
}

impl PrePublicKey {
    pub(crate) fn umbral(&self) -> &umbral_pre::PublicKey {
        &self.umbral
    }

    pub(crate) fn lattice(&self) -> &LatticePublicKey {
        &self.lattice
    }

    fn encode_into(&self, e: &mut Encoder) {
        e.fixed(&self.umbral.to_compressed_bytes());
        e.bytes(&self.lattice.to_bytes());
    }

    fn decode_from(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        let umbral = umbral_pre::PublicKey::try_from_compressed_bytes(d.take(UMBRAL_PK_LEN)?)
            .map_err(|_| DecodeError::Invalid("umbral public key"))?;
        let lattice = LatticePublicKey::from_bytes(d.bytes(MAX_LATTICE_PUBLIC_KEY_LEN)?)?;
        Ok(Self { umbral, lattice })
    }

    /// Versioned encoding: magic `MRPK`, version, Umbral key (33 bytes,
    /// compressed point), lattice key (u32 length prefix).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut e = Encoder::new(PRE_PK_MAGIC, PUBLIC_KEY_VERSION);
        self.encode_into(&mut e);
        e.finish()
    }

    /// Decodes a public key of at most [`MAX_PRE_PUBLIC_KEY_LEN`] bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut d = Decoder::open(bytes, PRE_PK_MAGIC, &[PUBLIC_KEY_VERSION], MAX_PRE_PUBLIC_KEY_LEN)?;
        let pk = Self::decode_from(&mut d)?;
        d.finish()?;
        Ok(pk)
    }

    /// Stable fingerprint of the versioned encoding.
    pub fn fingerprint(&self) -> Fingerprint {
        Fingerprint::of(domain::FINGERPRINT_PRE_KEY, &self.to_bytes())
    }
}

impl fmt::Debug for PrePublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PrePublicKey(umbral {})", hex::encode(self.umbral.to_compressed_bytes()))
    }
}

/// A patient's secret PRE state: the master secret, from which each key
/// class's [`PreSecretKey`] is derived on demand, and the Umbral signer that
/// signs key fragments.
pub struct PatientSecretKeys {
    master: MasterSecret,
    signer: umbral_pre::Signer,
}

impl PatientSecretKeys {
    /// Derives the patient's keys from the master secret.
    pub fn from_master(master: MasterSecret) -> Self {
        let signer_seed = hkdf32(&master.0 .0[..], &[domain::HKDF_UMBRAL_SIGNER]);
        let signer = umbral_pre::Signer::new(umbral_secret_from_seed(&signer_seed));
        Self { master, signer }
    }

    /// Draws a fresh master secret and derives the keys from it.
    pub fn generate<R: RngCore + CryptoRng>(rng: &mut R) -> Self {
        Self::from_master(MasterSecret::generate(rng))
    }

    /// The master secret (for key files).
    pub fn master(&self) -> &MasterSecret {
        &self.master
    }

    fn class_seed(&self, class: KeyClass) -> Zeroizing<[u8; 32]> {
        hkdf32(&self.master.0 .0[..], &[domain::HKDF_KEY_CLASS, &[class.code()]])
    }

    /// The key pair of one key class (derives a lattice key: milliseconds).
    pub fn class_key_pair(&self, class: KeyClass) -> PreKeyPair {
        PreKeyPair::from_seed(&self.class_seed(class))
    }

    /// The secret key of one key class.
    pub fn class_secret_key(&self, class: KeyClass) -> PreSecretKey {
        PreSecretKey::from_seed(&self.class_seed(class))
    }

    /// The Umbral public key that verifies this patient's key fragments.
    pub fn umbral_verifying_key(&self) -> UmbralVerifyingKey {
        UmbralVerifyingKey(self.signer.verifying_key())
    }

    pub(crate) fn signer(&self) -> &umbral_pre::Signer {
        &self.signer
    }

    /// All public keys (derives all eight class key pairs).
    pub fn public_keys(&self) -> PatientPublicKeys {
        let classes = KeyClass::ALL.map(|c| self.class_key_pair(c).into_parts().1);
        PatientPublicKeys { classes: Box::new(classes), umbral_verifying_key: self.umbral_verifying_key() }
    }
}

impl fmt::Debug for PatientSecretKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PatientSecretKeys(..)")
    }
}

/// The Umbral (secp256k1 ECDSA) public key that verifies a patient's key
/// fragments.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct UmbralVerifyingKey(umbral_pre::PublicKey);

impl UmbralVerifyingKey {
    pub(crate) fn inner(&self) -> &umbral_pre::PublicKey {
        &self.0
    }

    /// The 33-byte compressed point.
    pub fn to_bytes(&self) -> [u8; UMBRAL_PK_LEN] {
        let mut out = [0u8; UMBRAL_PK_LEN];
        out.copy_from_slice(&self.0.to_compressed_bytes());
        out
    }

    /// Parses a 33-byte compressed point.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        if bytes.len() != UMBRAL_PK_LEN {
            return Err(DecodeError::Invalid("umbral verifying key length"));
        }
        umbral_pre::PublicKey::try_from_compressed_bytes(bytes)
            .map(Self)
            .map_err(|_| DecodeError::Invalid("umbral verifying key"))
    }
}

impl fmt::Debug for UmbralVerifyingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "UmbralVerifyingKey({})", hex::encode(self.to_bytes()))
    }
}

/// A patient's public PRE keys: the eight key classes' [`PrePublicKey`]s and
/// the Umbral key that verifies the patient's key fragments.
#[derive(Clone, PartialEq)]
pub struct PatientPublicKeys {
    classes: Box<[PrePublicKey; 8]>,
    umbral_verifying_key: UmbralVerifyingKey,
}

impl PatientPublicKeys {
    /// The public key of one key class.
    pub fn class(&self, class: KeyClass) -> &PrePublicKey {
        &self.classes[usize::from(class.code())]
    }

    /// The Umbral key that verifies this patient's key fragments.
    pub fn umbral_verifying_key(&self) -> &UmbralVerifyingKey {
        &self.umbral_verifying_key
    }

    /// Versioned encoding: magic `MRPP`, version, Umbral verifying key (33
    /// bytes), then the eight class keys in code order, each as the body of a
    /// [`PrePublicKey`] encoding with a u32 length prefix.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut e = Encoder::new(PATIENT_PK_MAGIC, PUBLIC_KEY_VERSION);
        e.fixed(&self.umbral_verifying_key.to_bytes());
        for pk in self.classes.iter() {
            e.bytes(&pk.to_bytes());
        }
        e.finish()
    }

    /// Decodes at most [`MAX_PATIENT_PUBLIC_KEYS_LEN`] bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut d =
            Decoder::open(bytes, PATIENT_PK_MAGIC, &[PUBLIC_KEY_VERSION], MAX_PATIENT_PUBLIC_KEYS_LEN)?;
        let umbral_verifying_key = UmbralVerifyingKey::from_bytes(d.take(UMBRAL_PK_LEN)?)?;
        let mut keys = Vec::with_capacity(8);
        for _ in KeyClass::ALL {
            keys.push(PrePublicKey::from_bytes(d.bytes(MAX_PRE_PUBLIC_KEY_LEN)?)?);
        }
        d.finish()?;
        let classes: Box<[PrePublicKey; 8]> =
            keys.into_boxed_slice().try_into().map_err(|_| DecodeError::Invalid("class key count"))?;
        Ok(Self { classes, umbral_verifying_key })
    }

    /// Stable fingerprint of the versioned encoding.
    pub fn fingerprint(&self) -> Fingerprint {
        Fingerprint::of(domain::FINGERPRINT_PATIENT_KEYS, &self.to_bytes())
    }
}

impl fmt::Debug for PatientPublicKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PatientPublicKeys")
            .field("umbral_verifying_key", &self.umbral_verifying_key)
            .finish_non_exhaustive()
    }
}
