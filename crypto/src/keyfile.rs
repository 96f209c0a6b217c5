//! Passphrase-protected key files: a principal's whole secret state (its
//! Ed25519 signing key seed, plus a patient's master secret or a doctor's PRE
//! key seed), sealed with Argon2id + AES-256-GCM.
//!
//! Layout (version 1): magic `MRKF`, version, kind, Argon2id memory (KiB),
//! iterations, parallelism (u32 each), salt (16 bytes), nonce (12 bytes),
//! then the AES-256-GCM ciphertext of the seeds with a u32 length prefix.
//! The associated data is [`domain::KEY_FILE_AAD`] followed by every byte
//! before the ciphertext, so the parameters and the kind are authenticated.

use std::fmt;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use argon2::{Algorithm, Argon2, Params, Version};
use rand_core::{CryptoRng, RngCore};
use zeroize::Zeroizing;

use crate::domain;
use crate::encoding::{Decoder, Encoder};
use crate::error::{CryptoError, DecodeError};
use crate::keys::{hkdf32, MasterSecret, PatientSecretKeys, PreSecretKey, Seed};
use crate::signing::SigningKey;

const MAGIC: &[u8; 4] = b"MRKF";
const VERSION: u8 = 1;
const SALT_LEN: usize = 16;
const NONCE_LEN: usize = 12;
/// Largest key file accepted.
pub const MAX_KEY_FILE_LEN: usize = 512;
/// Largest Argon2id memory cost accepted in a key file: 1 GiB (in KiB).
pub const MAX_ARGON2_MEMORY_KIB: u32 = 1024 * 1024;
/// Largest Argon2id iteration count accepted in a key file.
pub const MAX_ARGON2_ITERATIONS: u32 = 64;
/// Largest Argon2id parallelism accepted in a key file.
pub const MAX_ARGON2_PARALLELISM: u32 = 16;

/// Argon2id cost parameters of a key file, bounded so that a hostile file
/// cannot make opening it take unbounded memory or time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Argon2Params {
    memory_kib: u32,
    iterations: u32,
    parallelism: u32,
}

impl Argon2Params {
    /// Validates the parameters: memory 8·parallelism KiB ..= 1 GiB,
    /// iterations 1..=64, parallelism 1..=16.
    pub fn new(memory_kib: u32, iterations: u32, parallelism: u32) -> Result<Self, CryptoError> {
        if !(1..=MAX_ARGON2_PARALLELISM).contains(&parallelism) {
            return Err(CryptoError::InvalidParameter("argon2 parallelism"));
        }
        if !(1..=MAX_ARGON2_ITERATIONS).contains(&iterations) {
            return Err(CryptoError::InvalidParameter("argon2 iterations"));
        }
        if memory_kib < 8 * parallelism || memory_kib > MAX_ARGON2_MEMORY_KIB {
            return Err(CryptoError::InvalidParameter("argon2 memory"));
        }
        Ok(Self { memory_kib, iterations, parallelism })
    }

    /// Memory cost in KiB.
    pub fn memory_kib(self) -> u32 {
        self.memory_kib
    }

    /// Iterations.
    pub fn iterations(self) -> u32 {
        self.iterations
    }

    /// Parallelism (lanes).
    pub fn parallelism(self) -> u32 {
        self.parallelism
    }

    fn derive_key(self, passphrase: &[u8], salt: &[u8]) -> Result<Zeroizing<[u8; 32]>, CryptoError> {
        let params = Params::new(self.memory_kib, self.iterations, self.parallelism, Some(32))
            .map_err(|_| CryptoError::InvalidParameter("argon2 parameters"))?;
        let mut key = Zeroizing::new([0u8; 32]);
        Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
            .hash_password_into(passphrase, salt, key.as_mut())
            .map_err(|_| CryptoError::InvalidParameter("argon2 input"))?;
        Ok(key)
    }
}

impl Default for Argon2Params {
    /// 64 MiB, 3 iterations, 1 lane (RFC 9106's second recommended option).
    fn default() -> Self {
        Self { memory_kib: 64 * 1024, iterations: 3, parallelism: 1 }
    }
}

/// What kind of principal a key file belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyFileKind {
    /// A patient: signing key and PRE master secret.
    Patient,
    /// A doctor: signing key and one PRE key pair seed.
    Doctor,
    /// A principal that only signs (auditor, operator).
    SigningOnly,
}

impl KeyFileKind {
    fn code(self) -> u8 {
        match self {
            KeyFileKind::Patient => 1,
            KeyFileKind::Doctor => 2,
            KeyFileKind::SigningOnly => 3,
        }
    }

    fn from_code(code: u8) -> Result<Self, DecodeError> {
        match code {
            1 => Ok(KeyFileKind::Patient),
            2 => Ok(KeyFileKind::Doctor),
            3 => Ok(KeyFileKind::SigningOnly),
            _ => Err(DecodeError::Invalid("key file kind")),
        }
    }

    fn secret_len(self) -> usize {
        match self {
            KeyFileKind::Patient | KeyFileKind::Doctor => 64,
            KeyFileKind::SigningOnly => 32,
        }
    }
}

/// A principal's whole secret state. Create one with `new_*`, write it with
/// [`KeyFile::seal`], read it back with [`KeyFile::open`].
pub struct KeyFile {
    kind: KeyFileKind,
    signing_seed: Seed,
    /// Patient master secret or doctor PRE seed; all zero for signing-only.
    pre_seed: Seed,
}

impl KeyFile {
    fn from_seeds(kind: KeyFileKind, signing: &[u8; 32], pre: &[u8; 32]) -> Self {
        Self { kind, signing_seed: Seed::new(signing), pre_seed: Seed::new(pre) }
    }

    /// A new patient: a fresh master secret; the signing key is derived from
    /// it (HKDF, [`domain::HKDF_SIGNING_KEY`]), so the master secret alone
    /// recovers every key.
    pub fn new_patient<R: RngCore + CryptoRng>(rng: &mut R) -> Self {
        let master = MasterSecret::generate(rng);
        Self::from_patient_master(&master)
    }

    /// The key file of a patient with an existing master secret.
    pub fn from_patient_master(master: &MasterSecret) -> Self {
        let master = master.to_bytes();
        let signing = hkdf32(master.as_ref(), &[domain::HKDF_SIGNING_KEY]);
        Self::from_seeds(KeyFileKind::Patient, &signing, &master)
    }

    /// A new doctor: fresh signing key seed and PRE key seed.
    pub fn new_doctor<R: RngCore + CryptoRng>(rng: &mut R) -> Self {
        let signing = SigningKey::generate(rng).to_seed();
        let pre = PreSecretKey::generate_seed(rng);
        Self::from_seeds(KeyFileKind::Doctor, &signing, &pre)
    }

    /// A new principal that only signs (auditor, operator).
    pub fn new_signing_only<R: RngCore + CryptoRng>(rng: &mut R) -> Self {
        let signing = SigningKey::generate(rng).to_seed();
        Self::from_seeds(KeyFileKind::SigningOnly, &signing, &[0u8; 32])
    }

    /// The kind of principal.
    pub fn kind(&self) -> KeyFileKind {
        self.kind
    }

    /// The Ed25519 signing key.
    pub fn signing_key(&self) -> SigningKey {
        SigningKey::from_seed(self.signing_seed.as_bytes())
    }

    /// A patient's PRE keys (derived from the master secret); `None` for
    /// other kinds.
    pub fn patient_keys(&self) -> Option<PatientSecretKeys> {
        (self.kind == KeyFileKind::Patient)
            .then(|| PatientSecretKeys::from_master(MasterSecret::from_bytes(self.pre_seed.as_bytes())))
    }

    /// A doctor's PRE secret key (derives the lattice key: milliseconds);
    /// `None` for other kinds.
    pub fn doctor_key(&self) -> Option<PreSecretKey> {
        (self.kind == KeyFileKind::Doctor).then(|| PreSecretKey::from_seed(self.pre_seed.as_bytes()))
    }

    /// Encrypts the key file under `passphrase` with the given Argon2id cost
    /// (use [`Argon2Params::default`] outside tests).
    pub fn seal<R: RngCore + CryptoRng>(
        &self,
        rng: &mut R,
        passphrase: &[u8],
        params: Argon2Params,
    ) -> Result<Vec<u8>, CryptoError> {
        let mut salt = [0u8; SALT_LEN];
        rng.fill_bytes(&mut salt);
        let mut nonce = [0u8; NONCE_LEN];
        rng.fill_bytes(&mut nonce);
        let key = params.derive_key(passphrase, &salt)?;

        let mut e = Encoder::new(MAGIC, VERSION);
        e.u8(self.kind.code())
            .u32(params.memory_kib)
            .u32(params.iterations)
            .u32(params.parallelism)
            .fixed(&salt)
            .fixed(&nonce);
        let prefix = e.finish();

        let mut plain = Zeroizing::new(Vec::with_capacity(64));
        plain.extend_from_slice(self.signing_seed.as_bytes());
        if self.kind.secret_len() == 64 {
            plain.extend_from_slice(self.pre_seed.as_bytes());
        }
        let aad = [domain::KEY_FILE_AAD, &prefix].concat();
        let ct = Aes256Gcm::new(key.as_ref().into())
            .encrypt(Nonce::from_slice(&nonce), Payload { msg: &plain, aad: &aad })
            .map_err(|_| CryptoError::InvalidParameter("key file encryption"))?;

        let mut out = prefix;
        out.extend_from_slice(&u32::try_from(ct.len()).unwrap_or(u32::MAX).to_be_bytes());
        out.extend_from_slice(&ct);
        Ok(out)
    }

    /// Decrypts a key file of at most [`MAX_KEY_FILE_LEN`] bytes. Malformed
    /// files give [`CryptoError::Decode`]; a wrong passphrase or altered
    /// contents give [`CryptoError::KeyFile`]. Argon2 parameters outside the
    /// bounds of [`Argon2Params::new`] are refused before any hashing.
    pub fn open(bytes: &[u8], passphrase: &[u8]) -> Result<Self, CryptoError> {
        let mut d = Decoder::open(bytes, MAGIC, &[VERSION], MAX_KEY_FILE_LEN)?;
        let kind = KeyFileKind::from_code(d.u8()?)?;
        let params = Argon2Params::new(d.u32()?, d.u32()?, d.u32()?)
            .map_err(|_| DecodeError::Invalid("argon2 parameters"))?;
        let salt: [u8; SALT_LEN] = d.array()?;
        let nonce: [u8; NONCE_LEN] = d.array()?;
        let prefix_len = bytes.len() - d.remaining();
        let ct = d.bytes(MAX_KEY_FILE_LEN)?;
        d.finish()?;
        if ct.len() != kind.secret_len() + 16 {
            return Err(DecodeError::Invalid("key file ciphertext length").into());
        }

        let key = params.derive_key(passphrase, &salt).map_err(|_| CryptoError::KeyFile)?;
        let aad = [domain::KEY_FILE_AAD, &bytes[..prefix_len]].concat();
        let plain = Zeroizing::new(
            Aes256Gcm::new(key.as_ref().into())
                .decrypt(Nonce::from_slice(&nonce), Payload { msg: ct, aad: &aad })
                .map_err(|_| CryptoError::KeyFile)?,
        );
        let mut signing = Zeroizing::new([0u8; 32]);
        signing.copy_from_slice(&plain[..32]);
        let mut pre = Zeroizing::new([0u8; 32]);
        if kind.secret_len() == 64 {
            pre.copy_from_slice(&plain[32..64]);
        }
        Ok(Self::from_seeds(kind, &signing, &pre))
    }
}

impl fmt::Debug for KeyFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyFile({:?}, ..)", self.kind)
    }
}
