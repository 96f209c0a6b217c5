//! medrelay-crypto: the cryptography of medrelay, with no I/O.
//!
//! Patients encrypt their records locally; a proxy re-encryption (PRE) server
//! transforms each record's small key capsule toward the doctors a patient
//! authorized; no server ever holds a plaintext or a secret key. This crate is
//! pure: bytes in, bytes out; randomness is always a parameter.
//!
//! # Construction
//!
//! - **Record envelope** ([`encrypt_record`]): a fresh 32-byte share per PRE
//!   scheme; data key = HKDF-SHA256(record id as salt, both shares,
//!   [`domain::HKDF_DATA_KEY`]); body under AES-256-GCM with the header's
//!   canonical bytes as associated data; the owner's Ed25519 signature
//!   ([`domain::SIG_RECORD`]) over header, capsule and SHA-256 of the
//!   ciphertext.
//! - **Hybrid capsule** ([`Capsule`]): one share under Umbral (`umbral-pre`,
//!   secp256k1, classical) and one under a lattice BV-PRE on `tfhe`
//!   core_crypto (RLWE, post-quantum; see [`lattice`]). The record stays
//!   confidential while *either* scheme holds.
//! - **Keys** ([`PatientSecretKeys`]): a patient has one PRE key pair per
//!   [`KeyClass`], all derived from one [`MasterSecret`]; a doctor has one
//!   [`PreKeyPair`]. Secrets are exported only in a passphrase-protected
//!   [`KeyFile`] (Argon2id + AES-256-GCM).
//! - **Delegation** ([`generate_reencryption_key`], [`reencrypt_capsule`],
//!   [`decrypt_record_as_delegate`]): t-of-n Umbral key fragments signed by
//!   the patient plus a lattice key-switching key, per key class.
//!
//! # Threat model
//!
//! - *Server / proxy* (honest-but-curious, or compromised): sees envelopes,
//!   capsules and re-encryption keys. It learns no plaintext and no data key:
//!   Umbral and the lattice scheme are each IND-CPA, and the data key needs
//!   both shares. It cannot forge records (owner signature) or key fragments
//!   (patient's Umbral signature); the delegate checks both.
//! - *Doctor* (delegate): reads exactly the classes it holds re-encryption
//!   keys for. Lattice re-encryption adds flooding noise so what it receives
//!   hides the patient's lattice key — for *honestly formed* capsules only. A
//!   crafted capsule would be a key oracle, so [`reencrypt_capsule`] refuses
//!   any envelope whose owner signature does not verify, before re-encrypting.
//! - *Proxy + doctor collusion*: reveals the patient's lattice secret key of
//!   the granted classes (a BV-PRE property). Umbral still protects every
//!   record, and keys are split by class so ungranted classes keep both
//!   halves. Revocation is a policy act: the server deletes the key.
//! - *Tampering*: any change to header, capsule, ciphertext, signature or
//!   capsule fragment makes decryption fail with the one opaque
//!   [`CryptoError::Decryption`].
//! - *Out of scope*: compromised client machines; traffic analysis; the
//!   lattice construction has had no external review.
//!
//! # Example: the whole flow
//!
//! ```
//! use medrelay_crypto::*;
//! use rand_core::OsRng;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let mut rng = OsRng;
//! // Patient: signing key and PRE keys (one pair per key class).
//! let patient_file = KeyFile::new_patient(&mut rng);
//! let patient_sk = patient_file.signing_key();
//! let patient_keys = patient_file.patient_keys().ok_or("not a patient")?;
//! let patient_pks = patient_keys.public_keys();
//! // Doctor: one PRE key pair.
//! let doctor = PreKeyPair::generate(&mut rng);
//!
//! // The patient seals a record.
//! let category = RecordCategory::new("Observation", ["laboratory".to_string()], [])?;
//! let header = RecordHeader::new(
//!     RecordId::random(&mut rng),
//!     patient_sk.principal_id(),
//!     category,
//!     "application/fhir+json",
//!     Timestamp(1_700_000_000),
//! )?;
//! let envelope = encrypt_record(&mut rng, &patient_sk, &patient_pks, header, b"{\"glucose\": 5.4}")?;
//!
//! // The patient delegates the record's key class to the doctor ...
//! let rekey = generate_reencryption_key(
//!     &mut rng, &patient_keys, KeyClass::Laboratory, doctor.public_key(), Threshold::ONE_OF_ONE);
//! // ... the server checks the key on upload and re-encrypts on request ...
//! let rekey = rekey.verify(&patient_pks, doctor.public_key()).map_err(|(e, _)| e)?;
//! let envelope = RecordEnvelope::from_bytes(&envelope.to_bytes(), MAX_ENVELOPE_LEN)?;
//! envelope.verify_owner(&patient_sk.verifying_key())?;
//! let transformed = reencrypt_capsule(&mut rng, &rekey, &patient_sk.verifying_key(), &envelope)?;
//!
//! // ... and the doctor opens it.
//! let body = decrypt_record_as_delegate(
//!     doctor.secret_key(), &patient_sk.verifying_key(), &patient_pks, &envelope, &transformed)?;
//! assert_eq!(body.as_slice(), b"{\"glucose\": 5.4}");
//! # Ok(())
//! # }
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod capsule;
mod category;
pub mod domain;
pub mod encoding;
mod envelope;
mod error;
mod header;
pub mod hpke;
mod ids;
mod keyfile;
mod keys;
pub mod lattice;
mod pre;
mod record;
mod rekey;
mod signing;
mod umbral_codec;

pub use capsule::{Capsule, MAX_CAPSULE_LEN, MAX_LATTICE_CIPHERTEXT_LEN};
pub use category::{KeyClass, RecordCategory, SensitivityLabel, MAX_CATEGORY_CODES, MAX_CODE_LEN};
pub use envelope::{RecordEnvelope, MAX_BODY_LEN, MAX_CIPHERTEXT_LEN, MAX_ENVELOPE_LEN};
pub use error::{CryptoError, DecodeError};
pub use header::{RecordHeader, MAX_HEADER_LEN, RECORD_FORMAT_VERSION};
pub use ids::{GrantId, PrincipalId, RecordId, Timestamp};
pub use keyfile::{
    Argon2Params, KeyFile, KeyFileKind, MAX_ARGON2_ITERATIONS, MAX_ARGON2_MEMORY_KIB, MAX_ARGON2_PARALLELISM,
    MAX_KEY_FILE_LEN,
};
pub use keys::{
    MasterSecret, PatientPublicKeys, PatientSecretKeys, PreKeyPair, PrePublicKey, PreSecretKey,
    UmbralVerifyingKey, MAX_LATTICE_PUBLIC_KEY_LEN, MAX_PATIENT_PUBLIC_KEYS_LEN, MAX_PRE_PUBLIC_KEY_LEN,
};
pub use pre::{generate_reencryption_key, reencrypt_capsule};
pub use record::{decrypt_record_as_delegate, decrypt_record_as_owner, encrypt_record};
pub use rekey::{
    ReencryptedCapsule, ReencryptionKey, Threshold, VerifiedReencryptionKey, MAX_LATTICE_REENCRYPTED_LEN,
    MAX_LATTICE_REKEY_LEN, MAX_REENCRYPTED_CAPSULE_LEN, MAX_REKEY_LEN, MAX_SHARES,
};
pub use signing::{Fingerprint, Signature, SigningKey, VerifyingKey};
