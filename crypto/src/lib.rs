//! medrelay-crypto: the cryptography of medrelay, with no I/O.
//!
//! Patients encrypt their records locally; a proxy re-encryption (PRE) server
//! transforms each batch's small key capsule toward the doctors a patient
//! authorized; no server ever holds a plaintext or a secret key. This crate is
//! pure: bytes in, bytes out; randomness is always a parameter.
//!
//! # Construction
//!
//! - **Batch capsule** ([`generate_batch`], [`SignedCapsule`]): one per
//!   (owner, key class, batch), where a batch is what one import or upload
//!   produces for one class. A fresh 32-byte share per PRE scheme, one under
//!   Umbral (`umbral-pre`, secp256k1, classical) and one under a lattice
//!   BV-PRE on `tfhe` core_crypto (RLWE, post-quantum; see [`lattice`]); the
//!   batch key is HKDF-SHA256 of both shares ([`domain::HKDF_BATCH_KEY`]), so
//!   it stays secret while *either* scheme holds. The owner signs the
//!   capsule's bytes once ([`domain::SIG_CAPSULE`]); its id ([`CapsuleId`])
//!   is their SHA-256 digest.
//! - **Record envelope** ([`encrypt_record`]): data key =
//!   HKDF-SHA256(batch key; record id, SHA-256 of the canonical header,
//!   capsule id) ([`domain::HKDF_DATA_KEY`]); the body, framed and
//!   DEFLATE-compressed when that saves bytes, under AES-256-GCM with the
//!   header's canonical bytes as associated data; the owner's Ed25519
//!   signature ([`domain::SIG_RECORD`]) over header, capsule id and SHA-256
//!   of the ciphertext. A record adds ~150 bytes to its body, not a capsule.
//! - **Keys** ([`PatientSecretKeys`]): a patient has one PRE key pair per
//!   [`KeyClass`], all derived from one [`MasterSecret`]; a doctor has one
//!   [`PreKeyPair`]. Secrets are exported only in a passphrase-protected
//!   [`KeyFile`] (Argon2id + AES-256-GCM).
//! - **Delegation** ([`generate_reencryption_key`], [`reencrypt_capsule`],
//!   [`decrypt_batch_key_as_delegate`], [`decrypt_record`]): t-of-n Umbral
//!   key fragments signed by the patient plus a lattice key-switching key,
//!   per key class, naming the delegating patient. A proxy re-encrypts a
//!   capsule once per (capsule, grant) and keeps the result; the delegate
//!   opens the batch key once and then each record at symmetric speed.
//!
//! # Threat model
//!
//! - *Server / proxy* (honest-but-curious, or compromised): sees envelopes,
//!   capsules and re-encryption keys. It learns no plaintext and no batch or
//!   data key: Umbral and the lattice scheme are each IND-CPA, and the batch
//!   key needs both shares. It cannot forge records or capsules (owner
//!   signatures) or key fragments (patient's Umbral signature); the
//!   delegate checks all of them.
//! - *Doctor* (delegate): opens the batch keys of the classes it holds
//!   re-encryption keys for. A batch key opens every record of that batch
//!   and class *whose ciphertext the doctor obtains*; the server hands out
//!   only the records a grant covers, so the record-level boundary is the
//!   server's policy check, the class-level one is cryptographic. Lattice
//!   re-encryption adds flooding noise so what the doctor receives hides the
//!   patient's lattice key — for *honestly formed* capsules, and for a
//!   bounded number of re-encryptions (a proxy re-encrypts each capsule once
//!   per grant). A crafted capsule would be a key oracle, so
//!   [`reencrypt_capsule`] refuses any capsule whose owner is not the key's
//!   delegator or whose owner signature does not verify, before
//!   re-encrypting.
//! - *Proxy + doctor collusion*: reveals the patient's lattice secret key of
//!   every granted class (a BV-PRE property) and, through the Umbral key
//!   fragments, the Umbral re-encryption toward the doctor: together they
//!   open every capsule of those classes, so every record of a granted
//!   class, in or out of the grant's scope, already stored or stored later,
//!   is exposed. Ungranted classes keep both halves. Revocation is a policy
//!   act: the server deletes the key; it cannot take back what colluders
//!   learned.
//! - *Tampering*: any change to header, capsule, capsule id, ciphertext,
//!   signature or capsule fragment makes decryption fail with the one
//!   opaque [`CryptoError::Decryption`].
//! - *Out of scope*: compromised client machines; traffic analysis
//!   (ciphertext sizes, which compression makes depend on content); the
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
//! // The patient seals a batch of laboratory records under one capsule.
//! let batch = generate_batch(&mut rng, &patient_sk, &patient_pks, KeyClass::Laboratory)?;
//! let category = RecordCategory::new("Observation", ["laboratory".to_string()], [])?;
//! let header = RecordHeader::new(
//!     RecordId::random(&mut rng),
//!     patient_sk.principal_id(),
//!     category,
//!     "application/fhir+json",
//!     Timestamp(1_700_000_000),
//! )?;
//! let envelope = encrypt_record(&mut rng, &patient_sk, &batch, header, b"{\"glucose\": 5.4}")?;
//!
//! // The patient delegates the class to the doctor ...
//! let threshold = Threshold::ONE_OF_ONE;
//! let rekey = generate_reencryption_key(
//!     &mut rng, &patient_keys, patient_sk.principal_id(), KeyClass::Laboratory,
//!     doctor.public_key(), threshold);
//! // ... the server checks the key on upload and re-encrypts the capsule
//! // once for the grant ...
//! let owner_vk = patient_sk.verifying_key();
//! let rekey = rekey.verify(&owner_vk, &patient_pks, doctor.public_key()).map_err(|(e, _)| e)?;
//! let capsule = SignedCapsule::from_bytes(&batch.capsule().to_bytes())?;
//! capsule.verify_owner(&owner_vk)?;
//! let delivered = reencrypt_capsule(&mut rng, &rekey, &owner_vk, &capsule)?;
//!
//! // ... and the doctor opens the batch key, then the record.
//! let key = decrypt_batch_key_as_delegate(
//!     doctor.secret_key(), &owner_vk, &patient_pks, &capsule, &delivered, threshold)?;
//! let envelope = RecordEnvelope::from_bytes(&envelope.to_bytes(), MAX_ENVELOPE_LEN)?;
//! let body = decrypt_record(&key, &owner_vk, &envelope)?;
//! assert_eq!(body.as_slice(), b"{\"glucose\": 5.4}");
//! # Ok(())
//! # }
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod batch;
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

pub use batch::{
    decrypt_batch_key_as_delegate, decrypt_batch_key_as_owner, generate_batch, Batch, BatchKey, BATCH_KEY_LEN,
};
pub use capsule::{
    Capsule, SignedCapsule, MAX_CAPSULE_LEN, MAX_LATTICE_CIPHERTEXT_LEN, MAX_SIGNED_CAPSULE_LEN,
};
pub use category::{KeyClass, RecordCategory, SensitivityLabel, MAX_CATEGORY_CODES, MAX_CODE_LEN};
pub use envelope::{
    RecordEnvelope, SignedRecordHeader, MAX_BODY_LEN, MAX_CIPHERTEXT_LEN, MAX_ENVELOPE_LEN,
    MAX_SIGNED_HEADER_LEN,
};
pub use error::{CryptoError, DecodeError};
pub use header::{RecordHeader, MAX_HEADER_LEN, RECORD_FORMAT_VERSION};
pub use ids::{CapsuleId, GrantId, PrincipalId, RecordId, Timestamp};
pub use keyfile::{
    Argon2Params, KeyFile, KeyFileKind, MAX_ARGON2_ITERATIONS, MAX_ARGON2_MEMORY_KIB, MAX_ARGON2_PARALLELISM,
    MAX_KEY_FILE_LEN,
};
pub use keys::{
    MasterSecret, PatientPublicKeys, PatientSecretKeys, PreKeyPair, PrePublicKey, PreSecretKey,
    UmbralVerifyingKey, MAX_LATTICE_PUBLIC_KEY_LEN, MAX_PATIENT_PUBLIC_KEYS_LEN, MAX_PRE_PUBLIC_KEY_LEN,
};
#[doc(hidden)]
pub use pre::reencrypt_capsule_tfhe_reference;
pub use pre::{generate_reencryption_key, reencrypt_capsule};
pub use record::{decrypt_record, decrypt_record_as_owner, encrypt_record};
pub use rekey::{
    ReencryptedCapsule, ReencryptionKey, Threshold, VerifiedReencryptionKey, MAX_LATTICE_REENCRYPTED_LEN,
    MAX_LATTICE_REKEY_LEN, MAX_REENCRYPTED_CAPSULE_LEN, MAX_REKEY_LEN, MAX_SHARES,
};
pub use signing::{Fingerprint, Signature, SigningKey, VerifyingKey};
